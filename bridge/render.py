"""Per-target rendering, sans I/O: attribution, mentions neutralised, hashtag
appended, links dropped where they cost money, and the length fitted by the
target's own counting rule (split into a numbered thread or truncated with a
reference to the original).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from bridge.adapter import Capabilities, Rendered, TextFormat
from bridge.media import note_for
from bridge.model import Attachment, Post
from bridge.richtext import Emphasis, Hashtag, Inline, Link, Mention, Paragraph, RichText, Text
from bridge.textconv import NEUTRAL_AT, clean_text, to_html, to_markdown, to_plain

DEFAULT_ATTRIBUTION = "{name} ({network}): "
MAX_PARTS = 25
ELLIPSIS = "…"

# Every "@" before a word character, even inside a word ("me@admin"): a thread
# split could otherwise start a part with a live "@admin".
_AT_WORD = re.compile(r"@(?=\w)")
# An "@" a platform would take for a mention in plain text: not after a word
# character, "/", ".", "@" or the word joiner (Mastodon's and X's own rule).
_LIVE_AT = re.compile(r"(?<![\w/.@\u2060])@(?=\w)")


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """What the renderer needs to know about one target channel."""

    caps: Capabilities
    hashtag: str
    attribution: str = DEFAULT_ATTRIBUTION
    append_hashtag: bool | None = None
    split: str | None = None
    """``thread`` or ``truncate``; None picks thread where replies exist."""
    links: bool | None = None
    max_length: int | None = None
    """An operator's cap below the platform's own."""


def neutralise(rt: RichText) -> RichText:
    """Mentions become text that pings nobody on any network; so does ``@room``."""

    def fix(i: Inline) -> Inline:
        match i:
            case Mention(handle):
                return Text(NEUTRAL_AT + handle)
            case Text(t) if "@" in t:
                fixed = _AT_WORD.sub(NEUTRAL_AT, t)
                return i if fixed == t else Text(fixed)
            case _:
                return i

    return rt.map_inlines(fix)


_DOMAIN = re.compile(r"\b(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}\b", re.IGNORECASE)
ONE_DOT_LEADER = "\u2024"


def defuse(text: str) -> str:
    """Domain-looking words with their dots replaced by U+2024: they read the
    same and no platform turns them into (billable) links."""
    return _DOMAIN.sub(lambda m: m.group(0).replace(".", ONE_DOT_LEADER), text)


def drop_links(rt: RichText) -> RichText:
    """No URL survives, not even a bare domain a platform would link (and bill)."""

    def fix(i: Inline) -> Inline:
        match i:
            case Link(url, label):
                host = re.sub(r"^[a-z][a-z0-9+.-]*://(www\.)?", "", url, flags=re.I)
                return Text(defuse(label or host.split("/")[0]))
            case Text(t) if "." in t:
                fixed = defuse(t)
                return i if fixed == t else Text(fixed)
            case _:
                return i

    return rt.map_inlines(fix)


def attribution(post: Post, template: str, network: str) -> str:
    return _attribution(post.author.name, post.author.handle, template, network,
                        post.permalink if "{url}" in template else "")


@functools.lru_cache(maxsize=4096)
def _attribution(author_name: str, handle: str, template: str, network: str, url: str) -> str:
    # Cached: the same members post again and again (a pure function of its arguments).
    name = clean_text(author_name).replace("\n", " ")[:80]
    name = _AT_WORD.sub(NEUTRAL_AT, name)
    try:
        return template.format(name=name, handle=_AT_WORD.sub(NEUTRAL_AT, handle),
                               network=network, url=url)
    except (KeyError, IndexError, ValueError):
        return DEFAULT_ATTRIBUTION.format(name=name, network=network)


def render(post: Post, target: Target, network: str, *, text: RichText | None = None,
           reference: str = "", prefix: str = "") -> list[Rendered]:
    """Render *post* (or *text* on its behalf) for *target*; one item per part.

    ``network`` is the display name of the post's origin network.
    ``reference`` is a link to the original used when truncating.
    ``prefix`` goes before the attribution (corrections: ``"✏️ "``).
    """
    caps = target.caps
    links = target.links if target.links is not None else not caps.links_cost
    body, tags = _prepared(text if text is not None else post.text, links)
    if not links:
        reference = ""
    head = prefix
    if not post.is_notice:
        head += attribution(post, target.attribution, network)
    if head:
        # (a post of media alone has no words: no space left dangling after the name)
        body = body.with_prefix(_head_nodes(head if body.blocks else head.rstrip()))
    tag_suffix: list[Inline] = []
    wants_tag = (target.append_hashtag if target.append_hashtag is not None
                 else caps.needs_hashtag)
    if wants_tag and target.hashtag and target.hashtag.casefold() not in tags:
        tag_suffix = [Text(" "), Hashtag(target.hashtag)]
        body = body.with_suffix(tag_suffix)
    attachments, notes = _fit_attachments(post.attachments, caps)
    if notes:  # readers learn there was more, before the length is fitted
        body = RichText((*body.blocks, Paragraph((Text(" ".join(notes)),))))

    limit = _limit(target)
    plain = to_plain(body, links=links)
    if limit is None or caps.count(plain) <= limit:
        return [_rendered(body, plain, post, attachments, caps)]

    tag_text = f" #{target.hashtag}" if tag_suffix else ""
    # The parts are plain text where a cut link no longer protects what it held:
    # an "@name" a platform would read as a mention is defused (before fitting).
    full = _LIVE_AT.sub(NEUTRAL_AT, to_plain(body, links=links))
    if tag_text and full.endswith(tag_text):
        full = full[: -len(tag_text)]
    split = target.split or ("thread" if caps.reply else "truncate")
    if split == "truncate":
        parts = [_truncate(full, tag_text, reference, limit, caps)]
    else:
        parts = _split(full, tag_text, reference, limit, caps)
    out = []
    for i, part in enumerate(parts):
        rt = RichText.plain(part)
        out.append(_rendered(rt, part, post, attachments if i == 0 else (), caps))
    return out


# A post goes to every target channel in turn: what does not depend on the
# target (mentions neutralised, links dropped, its hashtags) is worked out once
# per text.  Keyed by identity, holding the text itself so the id stays its own.
_PREPARED: dict[tuple[int, bool], tuple[RichText, RichText, frozenset[str]]] = {}


def _prepared(text: RichText, links: bool) -> tuple[RichText, frozenset[str]]:
    key = (id(text), links)
    hit = _PREPARED.get(key)
    if hit is not None and hit[0] is text:
        return hit[1], hit[2]
    body = neutralise(text)
    if not links:
        body = drop_links(body)
    tags = frozenset(body.hashtags())
    if len(_PREPARED) >= 512:
        _PREPARED.clear()
    _PREPARED[key] = (text, body, tags)
    return body, tags


@functools.lru_cache(maxsize=1024)
def _head_nodes(head: str) -> tuple[Inline, ...]:
    if head.endswith(" "):
        return (Emphasis((Text(head.rstrip()),), strong=True), Text(" "))
    return (Text(head),)


def _limit(target: Target) -> int | None:
    limits = [x for x in (target.caps.max_length, target.max_length) if x]
    return min(limits) if limits else None


def _rendered(rt: RichText, plain: str, post: Post, attachments: tuple[Attachment, ...],
              caps: Capabilities) -> Rendered:
    # Only the format the target speaks is built (the others cost time per delivery).
    fmt = caps.text_format
    return Rendered(text=rt, plain=plain, html=to_html(rt) if fmt == TextFormat.HTML else "",
                    markdown=to_markdown(rt) if fmt == TextFormat.MARKDOWN else "",
                    content_warning=post.content_warning, attachments=attachments,
                    is_notice=post.is_notice)


def _fit_attachments(items: tuple[Attachment, ...], caps: Capabilities
                     ) -> tuple[tuple[Attachment, ...], list[str]]:
    """The attachments the target takes, and a note for each it does not."""
    ok: list[Attachment] = []
    notes: list[str] = []
    for a in items:
        major = a.media_type.split("/")[0] + "/*"
        if a.media_type not in caps.media_types and major not in caps.media_types:
            notes.append(note_for(a, "type"))
        elif caps.max_media_bytes and a.size and a.size > caps.max_media_bytes:
            notes.append(note_for(a, "size"))
        elif len(ok) >= caps.max_attachments:
            notes.append(note_for(a, "count"))
        else:
            ok.append(a)
    return tuple(ok), notes


def _fits(text: str, limit: int, caps: Capabilities) -> bool:
    return caps.count(text) <= limit


def _cut_to_fit(text: str, suffix: str, limit: int, caps: Capabilities) -> str:
    """The longest prefix of *text* (at a word boundary if one is near) with
    *suffix* appended that fits."""
    if _fits(text + suffix, limit, caps):
        return text + suffix
    lo, hi = 0, len(text)
    while lo < hi:  # binary search on code points: count() is monotone in prefix length
        mid = (lo + hi + 1) // 2
        if _fits(text[:mid] + suffix, limit, caps):
            lo = mid
        else:
            hi = mid - 1
    cut = text[:lo]
    space = max(cut.rfind(" "), cut.rfind("\n"))
    if space > lo * 0.6:
        cut = cut[:space]
    return cut.rstrip() + suffix


def _truncate(full: str, tag_text: str, reference: str, limit: int, caps: Capabilities) -> str:
    tail = ELLIPSIS + (f" {reference}" if reference else "") + tag_text
    if not _fits(tail, limit, caps):
        tail = ELLIPSIS
    return _cut_to_fit(full, tail, limit, caps)


def _split(full: str, tag_text: str, reference: str, limit: int,
           caps: Capabilities) -> list[str]:
    """Greedy word packing into parts ending ``(i/n)``; nothing is lost unless
    more than MAX_PARTS would be needed, then the last part is truncated."""
    width = len(str(MAX_PARTS))
    probe = f" ({'9' * width}/{'9' * width}){tag_text}"
    if not _fits("x" + probe, limit, caps):
        probe = ""
    chunks: list[str] = []
    rest = full
    while rest and len(chunks) < MAX_PARTS:
        if _fits(rest + probe, limit, caps):
            chunks.append(rest)
            rest = ""
            break
        piece = _cut_to_fit(rest, probe, limit, caps)[: -len(probe) or None]
        if not piece.strip():  # nothing fits: hard cut one code point at a time
            piece = rest[:1]
        chunks.append(piece.rstrip())
        rest = rest[len(piece):].lstrip(" \n")
        if rest.startswith("@"):  # a part must not open with a live mention
            rest = _LIVE_AT.sub(NEUTRAL_AT, rest, count=1)
    if rest:
        last = chunks.pop() + " " + rest
        tail = ELLIPSIS + (f" {reference}" if reference else "")
        chunks.append(_cut_to_fit(last, tail, limit - _len_probe(probe, caps), caps))
    n = len(chunks)
    if not probe:
        return chunks
    return [f"{c} ({i + 1}/{n}){tag_text}" for i, c in enumerate(chunks)]


def _len_probe(probe: str, caps: Capabilities) -> int:
    return caps.count(probe) if probe else 0
