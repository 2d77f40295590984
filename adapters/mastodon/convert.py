"""Pure inbound conversions: Mastodon payloads (REST statuses, stream events, the
instance document) into the canonical model, and Mastodon's length rule.

No I/O and no client objects.  Input that cannot (or must not) be relayed comes
back as :class:`~bridge.contract.adapter.Unsupported` with a reason; nothing here
raises on bad input.  The outbound half is :mod:`adapters.mastodon.compose`.
"""

from __future__ import annotations

import contextlib
import html
import json
import mimetypes
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

from adapters.mastodon import graphemes
from bridge.contract.adapter import Unsupported, UnsupportedKind
from bridge.contract.consent import OPT_OUT_TAGS, profile_opt_outs
from bridge.contract.media import host_entry
from bridge.contract.model import (
    LIKE,
    Attachment,
    Author,
    ChannelKey,
    Deleted,
    Edited,
    NativeId,
    Poll,
    PollOption,
    Posted,
    QuotedPost,
    Reacted,
)
from bridge.contract.richtext import Hashtag, RichText, iter_inlines, iter_text
from bridge.contract.textconv import from_html

PLATFORM = "mastodon"
NETWORK = "Mastodon"
COMMANDS = ("!join", "!leave")


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceLimits:
    """What ``/api/v2/instance`` says about writing on this server."""

    max_characters: int
    url_weight: int
    max_media_attachments: int
    media_types: frozenset[str]
    image_size_limit: int
    version: str
    hashtag_feed_access: str = "public"
    video_size_limit: int = 99 * 1024 * 1024
    media_hosts: frozenset[str] = frozenset()
    """Hosts the instance serves files from, as its own thumbnail and contact
    account's avatar show (``files.mastodon.social``): where its media lives."""


# Mastodon's documented defaults, used only for fields an instance leaves out.
_DEFAULT_LIMITS = InstanceLimits(max_characters=500, url_weight=23, max_media_attachments=4,
                                 media_types=frozenset(), image_size_limit=16 * 1024 * 1024,
                                 version="")


def parse_instance(data: Mapping[str, Any]) -> InstanceLimits:
    """``/api/v2/instance`` (or v1, which has the same ``configuration.statuses``)."""
    d = _DEFAULT_LIMITS
    conf = _get(data, "configuration") or {}
    statuses = _get(conf, "statuses") or {}
    media = _get(conf, "media_attachments") or {}
    access = _get(_get(_get(conf, "timelines_access") or {}, "hashtag_feeds") or {}, "remote")

    def num(m: Any, key: str, default: int) -> int:
        v = _get(m, key)
        return v if isinstance(v, int) and v > 0 else default

    return InstanceLimits(
        max_characters=num(statuses, "max_characters", d.max_characters),
        url_weight=num(statuses, "characters_reserved_per_url", d.url_weight),
        max_media_attachments=num(statuses, "max_media_attachments", d.max_media_attachments),
        media_types=frozenset(str(m) for m in _items(media, "supported_mime_types")),
        image_size_limit=num(media, "image_size_limit", d.image_size_limit),
        version=str(_get(data, "version") or ""),
        hashtag_feed_access=str(access or "public"),
        video_size_limit=num(media, "video_size_limit", d.video_size_limit),
        media_hosts=_served_from(data))


def _served_from(data: Mapping[str, Any]) -> frozenset[str]:
    account = _get(_get(data, "contact"), "account")
    urls = [_get(_get(data, "thumbnail"), "url"), _get(account, "avatar_static"),
            _get(account, "avatar"), _get(account, "header")]
    hosts = set()
    for url in urls:
        if isinstance(url, str) and url.startswith(("https://", "http://")):
            with contextlib.suppress(ValueError):
                hosts.add(host_entry(url))
    return frozenset(h for h in hosts if h)


def id_key(status_id: str) -> tuple[int, str]:
    """Mastodon ids are opaque strings: compare by length, then lexically."""
    return (len(status_id), status_id)


# ---------------------------------------------------------------- length

_URL = re.compile(r"https?://[^\s<>\"]+[^\s<>\".,;:!?)\]']")
_REMOTE_MENTION = re.compile(r"(^|[^/\w])@([a-z0-9_]+)@[a-z0-9.\-]+[a-z0-9]+", re.IGNORECASE)


def status_length(text: str, url_weight: int = 23, spoiler: str = "") -> int:
    """How Mastodon counts a status: grapheme clusters, every URL as *url_weight*,
    a remote mention as its ``@user`` part only, plus the content warning."""
    countable = _URL.sub("x" * url_weight, text)
    countable = _REMOTE_MENTION.sub(r"\1@\2", countable)
    return graphemes.length(countable) + graphemes.length(spoiler)


# ---------------------------------------------------------------- inbound

def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, Mapping) else None


def _items(obj: Any, key: str) -> list[Any]:
    """A list-valued field, or [] whatever else the payload put there."""
    value = _get(obj, key)
    return list(value) if isinstance(value, list | tuple) else []


def _when(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return datetime.now(UTC)


_TAG_RE = re.compile(r"<[^>]*>")


def opt_out_reasons(account: Mapping[str, Any]) -> tuple[str, ...]:
    """Why this author must not be relayed (empty: no objection on their profile).

    Honoured: ``#nobot``/``#nobridge`` in the bio, name or profile fields,
    ``discoverable: false``, ``indexable: false``, ``noindex: true`` and a locked
    account (followers-only by choice).  ``discoverable: null`` (never set) is no
    objection.
    """
    reasons: list[str] = []
    texts = [str(_get(account, "note") or ""), str(_get(account, "display_name") or "")]
    for f in _items(account, "fields"):
        texts += [str(_get(f, "name") or ""), str(_get(f, "value") or "")]
    # Notes and field values are HTML where a tag reads ``#<span>nobot</span>``.
    texts = [html.unescape(_TAG_RE.sub("", t)) for t in texts]
    reasons += profile_opt_outs(texts)
    if _get(account, "discoverable") is False:
        reasons.append("discoverable: false")
    if _get(account, "indexable") is False:
        reasons.append("indexable: false")
    if _get(account, "noindex") is True:
        reasons.append("noindex: true")
    if _get(account, "locked") is True:
        reasons.append("locked account")
    return tuple(reasons)


def handle_of(account: Mapping[str, Any]) -> str:
    """``@user@host`` for every account, local ones too (acct omits the local host)."""
    acct = str(_get(account, "acct") or _get(account, "username") or "")
    if "@" not in acct:
        host = urlparse(str(_get(account, "url") or "")).netloc
        acct = f"{acct}@{host}" if host else acct
    return "@" + acct


def parse_author(account: Mapping[str, Any]) -> Author:
    # #nobridge is final; the other objections yield to an explicit !join.
    reasons = opt_out_reasons(account)
    hard = "profile says #nobridge" in reasons
    soft = [r for r in reasons if r != "profile says #nobridge"]
    return Author(platform=PLATFORM, handle=handle_of(account),
                  display_name=str(_get(account, "display_name") or ""),
                  profile_url=str(_get(account, "url") or ""),
                  is_bot=_get(account, "bot") is True,
                  opted_out=hard, reluctant=", ".join(soft))


def parse_favourite(notification: Mapping[str, Any], channel: ChannelKey) -> Reacted | None:
    """A ``favourite`` notification (someone favourited one of the bridge's
    statuses) as a reaction on *channel*; None for another kind or a payload
    without its status or account."""
    if _get(notification, "type") != "favourite":
        return None
    status, account = _get(notification, "status"), _get(notification, "account")
    sid = _get(status, "id") if isinstance(status, Mapping) else None
    if not sid or not isinstance(account, Mapping):
        return None
    return Reacted(channel=channel, native_id=NativeId(str(sid)), reactor=parse_author(account),
                   key=LIKE, reaction_id=f"favourite:{_get(notification, 'id')}")


def parse_attachments(status: Mapping[str, Any]) -> tuple[Attachment, ...]:
    out = []
    for m in _items(status, "media_attachments"):
        url = _get(m, "url") or _get(m, "remote_url")
        if not url:
            continue
        guessed = mimetypes.guess_type(urlparse(str(url)).path)[0]
        kind = str(_get(m, "type") or "unknown")
        mime = guessed or {"image": "image/jpeg", "gifv": "video/mp4", "video": "video/mp4",
                           "audio": "audio/mpeg"}.get(kind, "application/octet-stream")
        out.append(Attachment(url=str(url), media_type=mime,
                              alt_text=str(_get(m, "description") or "")))
    return tuple(out)


def parse_command(status: Mapping[str, Any], text: RichText, bridge_acct: str) -> str:
    """``!join``/``!leave`` when the status mentions the bridge account, else ""."""
    me = bridge_acct.lstrip("@").split("@")[0].casefold()
    mentioned = any(str(_get(m, "acct") or "").split("@")[0].casefold() == me
                    or str(_get(m, "username") or "").casefold() == me
                    for m in _items(status, "mentions"))
    if not mentioned or not me:
        return ""
    words = " ".join(iter_text(text)).casefold().split()
    return next((w for w in words if w in COMMANDS), "")


def carries_opt_out_tag(status: Mapping[str, Any], text: RichText) -> bool:
    names = {str(_get(t, "name") or "").casefold() for t in _items(status, "tags")}
    names |= {i.tag.casefold() for i in iter_inlines(text) if isinstance(i, Hashtag)}
    return not OPT_OUT_TAGS.isdisjoint(names)


_QUOTE_INLINE = re.compile(
    r"""<p\b[^>]*\bclass\s*=\s*["'][^"']*\bquote-inline\b[^"']*["'][^>]*>(.*?)</p>""",
    re.IGNORECASE | re.DOTALL)
_HREF = re.compile(r"""\bhref\s*=\s*["']([^"']+)["']""", re.IGNORECASE)


def split_quote_inline(content: str) -> tuple[str, str]:
    """*content* without Mastodon's ``quote-inline`` fallback paragraph
    (``<p class="quote-inline">RE: <a href=…>…</a></p>``, written for servers
    that do not show quotes), and the address that paragraph links to."""
    if "quote-inline" not in content:
        return content, ""
    url = ""
    m = _QUOTE_INLINE.search(content)
    if m and (h := _HREF.search(m.group(1))):
        url = html.unescape(h.group(1))
    return _QUOTE_INLINE.sub("", content), url


def status_text(status: Mapping[str, Any]) -> tuple[RichText, str]:
    """The status's own words (no quote-inline fallback) and the fallback's link."""
    content, url = split_quote_inline(str(_get(status, "content") or ""))
    return from_html(content), url


def parse_poll(poll: Any) -> Poll | None:
    """A Mastodon ``status.poll`` as the canonical Poll."""
    if not isinstance(poll, Mapping):
        return None
    options = tuple(PollOption(title=str(_get(o, "title") or ""),
                               votes=v if isinstance(v := _get(o, "votes_count"), int) else None)
                    for o in _items(poll, "options"))
    if not options:
        return None
    voters = _get(poll, "voters_count")
    return Poll(options=options,
                ends_at=_when(_get(poll, "expires_at")) if _get(poll, "expires_at") else None,
                closed=_get(poll, "expired") is True, multiple=_get(poll, "multiple") is True,
                voters=voters if isinstance(voters, int) else None)


def parse_quote(status: Mapping[str, Any], fallback_url: str) -> QuotedPost | None:
    """A Mastodon 4.5 quote (``status.quote``): the quoted post's author and
    words only when its ``state`` is ``accepted``; in any other state (pending,
    revoked, deleted, unauthorized...) only its address, from the quoted
    status or the quote-inline fallback paragraph."""
    quote = _get(status, "quote")
    if not isinstance(quote, Mapping):
        return QuotedPost(url=fallback_url, network=NETWORK) if fallback_url else None
    quoted = _get(quote, "quoted_status")
    url = fallback_url
    if isinstance(quoted, Mapping):
        url = str(_get(quoted, "url") or _get(quoted, "uri") or "") or fallback_url
    if not url:
        return None
    account = _get(quoted, "account") if isinstance(quoted, Mapping) else None
    if _get(quote, "state") != "accepted" or not isinstance(account, Mapping):
        return QuotedPost(url=url, network=NETWORK)
    assert isinstance(quoted, Mapping)
    words, _ = status_text(quoted)
    if _get(quoted, "spoiler_text"):
        words = RichText.plain(f"CW: {_get(quoted, 'spoiler_text')}")
    return QuotedPost(url=url, network=NETWORK, author=parse_author(account), text=words)


def parse_status(status: Mapping[str, Any], *, channel: ChannelKey,
                 bridge_acct: str = "") -> Posted | Unsupported:
    """A Status (REST or stream ``update``) into :class:`Posted`.

    Non-public posts come back with ``public=False`` (only a command may be
    acted on); a post carrying ``#nobridge``/``#nobot`` is Unsupported.
    """
    sid = _get(status, "id")
    if not isinstance(status, Mapping) or not sid:
        return Unsupported(reason="not a status", kind=UnsupportedKind.MALFORMED)
    native = NativeId(str(sid))
    if _get(status, "reblog"):
        return Unsupported(reason="boost", kind=UnsupportedKind.IGNORED, native_id=native)
    account = _get(status, "account")
    if not isinstance(account, Mapping):
        return Unsupported(reason="status without account", kind=UnsupportedKind.MALFORMED,
                           native_id=native)
    text, quote_link = status_text(status)
    command = parse_command(status, text, bridge_acct) if bridge_acct else ""
    if not command and carries_opt_out_tag(status, text):
        return Unsupported(reason="post carries #nobridge/#nobot", kind=UnsupportedKind.IGNORED,
                           native_id=native)
    reply = _get(status, "in_reply_to_id")
    reply = reply if isinstance(reply, str | int) and not isinstance(reply, bool) else None
    return Posted(channel=channel, native_id=native, author=parse_author(account), text=text,
                  permalink=str(_get(status, "url") or _get(status, "uri") or ""),
                  attachments=parse_attachments(status),
                  reply_to_native=NativeId(str(reply)) if reply else None,
                  content_warning=str(_get(status, "spoiler_text") or ""),
                  language=str(_get(status, "language") or ""),
                  created_at=_when(_get(status, "created_at")),
                  public=_get(status, "visibility") == "public", command=command,
                  poll=parse_poll(_get(status, "poll")), quote=parse_quote(status, quote_link))


def parse_edit(status: Mapping[str, Any], *, channel: ChannelKey
               ) -> Edited | Deleted | Unsupported:
    """A ``status.update``: the new text, or a deletion when the edit added
    ``#nobridge`` (the author withdrew the post from the bridge)."""
    sid = _get(status, "id")
    if not isinstance(status, Mapping) or not sid:
        return Unsupported(reason="not a status", kind=UnsupportedKind.MALFORMED)
    text, quote_link = status_text(status)
    if carries_opt_out_tag(status, text) or _get(status, "visibility") != "public":
        return Deleted(channel=channel, native_id=NativeId(str(sid)))
    edited = _get(status, "edited_at") or _get(status, "created_at")
    return Edited(channel=channel, native_id=NativeId(str(sid)), text=text,
                  content_warning=str(_get(status, "spoiler_text") or ""),
                  attachments=parse_attachments(status), edited_at=_when(edited),
                  extras=(parse_poll(_get(status, "poll")), parse_quote(status, quote_link)))


def parse_stream_event(event: str, data: str, *, channel: ChannelKey, bridge_acct: str = "",
                       ) -> Posted | Edited | Deleted | Unsupported:
    """One SSE event (``event:`` name and ``data:`` text) into an inbound event."""
    if event == "delete":
        sid = data.strip().strip('"')
        return Deleted(channel=channel, native_id=NativeId(sid)) if sid else \
            Unsupported(reason="delete without id", kind=UnsupportedKind.MALFORMED)
    if event not in ("update", "status.update"):
        return Unsupported(reason=f"event {event!r} is not for a hashtag channel",
                           kind=UnsupportedKind.IGNORED)
    try:
        payload = json.loads(data)
    except ValueError:
        return Unsupported(reason="malformed JSON in stream event", kind=UnsupportedKind.MALFORMED)
    if event == "update":
        return parse_status(payload, channel=channel, bridge_acct=bridge_acct)
    return parse_edit(payload, channel=channel)
