"""What the public sees of a post: escaped HTML, names, badges, no email addresses.

Pure functions shared by the web view and the exports.  Email handles are
addresses of real people, so they never reach a public page: an email author
is shown by display name (or the address' local part), addresses in the text
are shortened to ``name@…``, and mailto links lose their target.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bridge.contract.model import Author, Post
from bridge.contract.richtext import Inline, Link, Mention, RichText, Text
from bridge.contract.textconv import safe_url, to_html, to_plain
from bridge.outbound.extras import end_time, extra_blocks

_EMAIL = re.compile(r"([A-Za-z0-9._%+\-]{1,64})@([A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+)")


def mask_emails(text: str) -> str:
    return _EMAIL.sub(lambda m: f"{m.group(1)}@…", text)


def _looks_email(handle: str) -> bool:
    return not handle.startswith("@") and _EMAIL.fullmatch(handle.strip("<>")) is not None


def _public_inline(i: Inline) -> Inline:
    match i:
        case Text(t):
            return Text(mask_emails(t))
        case Link(url, label):
            bare_address = "://" not in url and _EMAIL.search(url.split("?")[0]) is not None
            if url.lower().startswith("mailto:") or bare_address:
                return Text(mask_emails(label or url.removeprefix("mailto:")))
            return Link(url, mask_emails(label))
        case Mention(handle, url):
            return Mention(mask_emails(handle), url)
    return i


def public_text(rt: RichText) -> RichText:
    return rt.map_inlines(_public_inline)


def author_name(a: Author) -> str:
    name = a.display_name.strip()
    if name:
        return mask_emails(name)
    if _looks_email(a.handle):
        return a.handle.strip("<>").split("@", 1)[0]
    return a.handle


def author_handle(a: Author) -> str:
    """The handle if it is public on its network; empty for email addresses."""
    return "" if _looks_email(a.handle) else a.handle


def author_url(a: Author) -> str:
    url = safe_url(a.profile_url) if a.profile_url else None
    if not url or url.lower().startswith("mailto:"):
        return ""
    return url


def pseudonymous_address(a: Author) -> str:
    """A stable, non-reversible address for mbox ``From:`` lines."""
    digest = hashlib.sha256(f"{a.platform}:{a.handle.casefold()}".encode()).hexdigest()[:12]
    return f"{a.platform}-{digest}@hashbridge.invalid"


def post_html(post: Post) -> str:
    """Escaped HTML of the post's text (every character of remote content escaped);
    its poll and quote are the card's own parts (see :func:`poll_view`)."""
    return to_html(public_text(post.text))


def full_text(post: Post) -> RichText:
    """The post's words followed by its poll and its quote, as the copies show
    them (feeds and exports: nothing a member wrote is left out)."""
    if post.poll is None and post.quote is None:
        return public_text(post.text)
    return public_text(RichText((*post.text.blocks, *extra_blocks(post))))


def full_html(post: Post) -> str:
    return to_html(full_text(post))


def post_plain(post: Post) -> str:
    return to_plain(full_text(post))


def iso(ts: datetime | float | None) -> str:
    if ts is None:
        return ""
    if isinstance(ts, (int, float)):
        ts = datetime.fromtimestamp(ts, UTC)
    return ts.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def badge_class(network: str) -> str:
    """A CSS class for the network badge (letters and dashes only)."""
    return "net-" + (re.sub(r"[^a-z0-9]+", "-", network.casefold()).strip("-") or "other")


@dataclass(frozen=True, slots=True)
class PostCard:
    """Everything a template renders for one post; all strings are plain (the
    template escapes them) except ``html``, which :func:`post_html` built."""

    id: str
    network: str
    channel: str
    badge: str
    author: str
    handle: str
    author_url: str
    created: str
    created_human: str
    edited: bool
    permalink: str
    html: str
    content_warning: str
    attachments: tuple[dict[str, Any], ...]
    reply_to: str
    reply_author: str
    reply_excerpt: str
    is_notice: bool
    role: str = ""
    """``Q3`` (a host's question), ``A3`` (an answer) or "" (live page only)."""
    host: bool = False
    """The author is one of the chat events' hosts (live page only)."""
    poll: dict[str, Any] | None = None
    """Options (title, votes once ended), end time, ended; plain strings."""
    quote: dict[str, Any] | None = None
    """Author, network, url (plain) and ``html`` (the quoted words, escaped)."""
    reaction_total: int = 0
    """Likes, favourites and reactions on the post and its copies, every network."""
    reaction_title: str = ""
    """The same per network, for the count's tooltip (``Mastodon 2, Matrix 1``)."""

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


def card(post: Post, network: str, *, edited_at: float | None = None,
         parent: Post | None = None, role: str = "", host: bool = False,
         reactions: Mapping[str, int] | None = None) -> PostCard:
    """*reactions*: the post's reactions counted per network (shown name)."""
    atts = tuple({"url": safe_url(a.url) or "", "media_type": a.media_type,
                  "alt": mask_emails(a.alt_text) or a.filename or "attachment",
                  "image": a.media_type.startswith("image/")}
                 for a in post.attachments if safe_url(a.url))
    excerpt = ""
    if parent is not None:
        excerpt = post_plain(parent)
        excerpt = excerpt[:140] + ("…" if len(excerpt) > 140 else "")
    return PostCard(
        id=post.id, network=network, channel=post.origin_channel, badge=badge_class(network),
        author=author_name(post.author), handle=author_handle(post.author),
        author_url=author_url(post.author), created=iso(post.created_at),
        created_human=post.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        edited=edited_at is not None, permalink=safe_url(post.permalink) or "",
        html=post_html(post), content_warning=mask_emails(post.content_warning),
        attachments=atts, reply_to=parent.id if parent else "",
        reply_author=author_name(parent.author) if parent else "", reply_excerpt=excerpt,
        is_notice=post.is_notice, role=role, host=host, poll=poll_view(post),
        quote=quote_view(post), reaction_total=sum((reactions or {}).values()),
        reaction_title=reaction_title(reactions or {}))


def poll_view(post: Post) -> dict[str, Any] | None:
    """The poll as the web view shows it: numbered options, the end time, the
    counts only once it has ended (as on every network)."""
    poll = post.poll
    if poll is None:
        return None
    ended, final = poll.ended(), poll.closed  # (counts read while open are no result)
    return {"options": [{"title": mask_emails(o.title),
                         "votes": o.votes if final and o.votes is not None else None}
                        for o in poll.options],
            "ends": iso(poll.ends_at), "ends_human": end_time(poll.ends_at)
            if poll.ends_at else "", "ended": ended, "voters": poll.voters if final else None,
            "multiple": poll.multiple}


def quote_view(post: Post) -> dict[str, Any] | None:
    """The quoted post: "Quoting <author> on <Network>:", its words, its link
    (only the link where the bridge does not copy the quoted author's words)."""
    q = post.quote
    if q is None:
        return None
    return {"author": author_name(q.author) if q.author else "", "network": q.network,
            "url": safe_url(q.url) or "",
            "html": to_html(public_text(q.text)) if q.author else ""}


def reaction_title(counts: Mapping[str, int]) -> str:
    """``Mastodon 2, Matrix 1``: the reactions per network, most first."""
    return ", ".join(f"{net} {n}" for net, n in sorted(counts.items(), key=lambda i: (-i[1], i[0]))
                     if n)


def shown_reactions(counts: Mapping[str, int], name_of: Callable[[str], str]) -> dict[str, int]:
    """Stored counts (by platform) by the networks' shown names."""
    out: dict[str, int] = {}
    for platform, n in counts.items():
        name = name_of(platform)
        out[name] = out.get(name, 0) + n
    return out
