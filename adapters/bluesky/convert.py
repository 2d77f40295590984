"""Pure conversions from AT Protocol records (as the firehose and ``getRecord``
carry them: plain dicts) to the canonical model.

No I/O and no client objects.  A record we do not turn into an event comes back
as :class:`Unsupported` with a reason.  Facets index the text by UTF-8 *byte*
offsets; a facet whose span is out of range, reversed, overlapping another or
cuts a character in half is ignored (as Bluesky's own app does), so a hostile
record shows its text without the bad facet.  A record over the sizes Bluesky
itself allows raises :class:`~bridge.contract.adapter.TooLarge` (one rejection).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import libipld

from bridge.contract.adapter import Unsupported, UnsupportedKind, check_size
from bridge.contract.consent import OPT_OUT_TAGS, opt_out_tags
from bridge.contract.model import (
    Attachment,
    Author,
    ChannelKey,
    Deleted,
    Edited,
    NativeId,
    Posted,
    QuotedPost,
)
from bridge.contract.richtext import (
    Hashtag,
    Inline,
    LineBreak,
    Link,
    Mention,
    Paragraph,
    RichText,
    Text,
)
from bridge.contract.textconv import clean_text, safe_url

PLATFORM = "bluesky"
NETWORK = "Bluesky"
POST = "app.bsky.feed.post"
PROFILE = "app.bsky.actor.profile"
LIKE_RECORD = "app.bsky.feed.like"
COMMANDS = ("!join", "!leave")
NO_UNAUTHENTICATED = "!no-unauthenticated"
WEB = "https://bsky.app"

MAX_TEXT_BYTES = 30_000
"""Bluesky's lexicon allows 3,000 bytes of text; ten times that is refused unread."""
MAX_FACETS = 1_000
"""Bluesky's app makes a facet per tag, link or mention: a few per post.  A record
with more is refused unread (a huge list is an attack, not a post)."""

_TAG = "app.bsky.richtext.facet#tag"
_LINK = "app.bsky.richtext.facet#link"
_MENTION = "app.bsky.richtext.facet#mention"
_URI = re.compile(r"^at://(did:[a-z]+:[A-Za-z0-9._:%-]+)/([A-Za-z0-9.-]+)/([A-Za-z0-9._~:-]+)$")

# Post self-labels and how a content warning reads for them elsewhere.
_LABEL_WARNINGS = {"sexual": "sexual content", "nudity": "nudity", "porn": "adult content",
                   "graphic-media": "graphic media", "gore": "graphic media"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Profile:
    """What the bridge reads from an author's ``app.bsky.actor.profile/self``."""

    display_name: str = ""
    description: str = ""
    self_labels: frozenset[str] = frozenset()

    @property
    def opted_out(self) -> bool:
        """``#nobridge`` in the description: never relayed, whatever the author posts."""
        return "nobridge" in _profile_tags(self.description)

    @property
    def reluctant(self) -> str:
        """Softer objections, which an explicit ``!join`` overrides."""
        why = []
        if "nobot" in _profile_tags(self.description):
            why.append("profile says #nobot")
        if NO_UNAUTHENTICATED in self.self_labels:
            why.append("asks not to be shown to logged-out users (!no-unauthenticated)")
        return ", ".join(why)


def _profile_tags(text: str) -> set[str]:
    return set(opt_out_tags([text]))


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, Mapping) else None


def _items(obj: Any, key: str) -> list[Any]:
    value = _get(obj, key)
    return list(value) if isinstance(value, list | tuple) else []


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def parse_profile(record: Any) -> Profile:
    """An ``app.bsky.actor.profile`` record (None or junk: an empty profile)."""
    labels = {_str(_get(v, "val")) for v in _items(_get(record, "labels"), "values")}
    return Profile(display_name=_str(_get(record, "displayName"))[:640],
                   description=_str(_get(record, "description"))[:2560],
                   self_labels=frozenset(labels - {""}))


def split_uri(uri: str) -> tuple[str, str, str]:
    """``at://DID/COLLECTION/RKEY`` as its three parts (ValueError otherwise)."""
    m = _URI.match(uri)
    if not m:
        raise ValueError(f"not a record URI: {uri[:200]!r}")
    return m.group(1), m.group(2), m.group(3)


def permalink(uri: str, handle: str = "") -> str:
    """Where people see a post: ``https://bsky.app/profile/<handle or DID>/post/<rkey>``."""
    did, _, rkey = split_uri(uri)
    return f"{WEB}/profile/{handle or did}/post/{rkey}"


def like_subject(record: Any) -> str:
    """The post URI an ``app.bsky.feed.like`` record likes ("" if it is none)."""
    if not isinstance(record, dict) or record.get("$type", LIKE_RECORD) != LIKE_RECORD:
        return ""
    subject = record.get("subject")
    uri = subject.get("uri") if isinstance(subject, dict) else None
    return uri if isinstance(uri, str) and uri.startswith("at://") \
        and f"/{POST}/" in uri else ""


def author_of(did: str, handle: str, profile: Profile) -> Author:
    shown = handle if handle and handle != "handle.invalid" else did
    return Author(platform=PLATFORM, handle="@" + shown, account_id=did,
                  display_name=profile.display_name, profile_url=f"{WEB}/profile/{shown}",
                  opted_out=profile.opted_out, reluctant=profile.reluctant)


def cid_str(ref: Any) -> str:
    """A CID as the firehose (raw bytes) or JSON (``{"$link": ...}``) gives it."""
    if isinstance(ref, str):
        return ref
    link = _get(ref, "$link")
    if isinstance(link, str):
        return link
    if isinstance(ref, bytes):
        try:
            return str(libipld.encode_cid(ref))
        except ValueError:
            return ""
    return ""


def when(value: Any) -> datetime:
    """An ISO 8601 datetime (``createdAt``, a commit's ``time``); now when unreadable."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        dt = datetime.fromisoformat(_str(value).replace("Z", "+00:00"))
    except ValueError:
        return datetime.now(UTC)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


# ---------------------------------------------------------------- matching

def record_tags(record: Any) -> set[str]:
    """Every hashtag of a post, case-folded: its tag facets and its ``tags`` (tags
    the author added without showing them in the text)."""
    tags = set()
    for facet in _items(record, "facets")[:MAX_FACETS]:
        for f in _items(facet, "features"):
            if _get(f, "$type") == _TAG and isinstance(tag := _get(f, "tag"), str):
                tags.add(tag.casefold().removeprefix("#"))
    for tag in _items(record, "tags")[:64]:
        if isinstance(tag, str):
            tags.add(tag.casefold().removeprefix("#"))
    return tags


def mentions(record: Any) -> set[str]:
    """DIDs the post's mention facets point at."""
    out = set()
    for facet in _items(record, "facets")[:MAX_FACETS]:
        for f in _items(facet, "features"):
            if _get(f, "$type") == _MENTION and isinstance(did := _get(f, "did"), str):
                out.add(did)
    return out


def reply_refs(record: Any) -> tuple[str, str]:
    """``(root uri, parent uri)`` of a reply; empty strings for a top-level post."""
    reply = _get(record, "reply")
    root = _str(_get(_get(reply, "root"), "uri"))
    parent = _str(_get(_get(reply, "parent"), "uri"))
    return root, parent


# ---------------------------------------------------------------- text

def _facet_spans(raw: bytes, facets: list[Any]) -> list[tuple[int, int, Any]]:
    """The facets whose span is usable, as ``(byteStart, byteEnd, features)``,
    sorted; out of range, reversed or mid-character ones left out."""
    spans = []
    for facet in facets:
        index = _get(facet, "index")
        start, end = _get(index, "byteStart"), _get(index, "byteEnd")
        if type(start) is not int or type(end) is not int:
            continue
        if not 0 <= start < end <= len(raw):
            continue
        # a span must start and end on character boundaries (not on a continuation byte)
        if (raw[start] & 0xC0) == 0x80 or (end < len(raw) and (raw[end] & 0xC0) == 0x80):
            continue
        spans.append((start, end, _items(facet, "features")))
    spans.sort(key=lambda s: (s[0], s[1]))
    return spans


def _node(segment: str, features: list[Any]) -> Inline | None:
    for f in features:
        kind = _get(f, "$type")
        if kind == _TAG and isinstance(tag := _get(f, "tag"), str) and tag.strip():
            # Shown elsewhere as "#" + tag: only where the text says the same.
            tag = clean_text(tag.strip().removeprefix("#"))
            if segment.lstrip("#＃").casefold() == tag.casefold():
                return Hashtag(tag)
        if kind == _LINK and isinstance(uri := _get(f, "uri"), str):
            url = safe_url(uri)
            if url:
                return Link(url, "" if segment.strip() == uri else segment)
        if kind == _MENTION and isinstance(did := _get(f, "did"), str):
            return Mention(segment.lstrip("@＠"), url=f"{WEB}/profile/{did}")
    return None


def _blocks(pieces: Iterable[Inline]) -> tuple[Paragraph, ...]:
    """Inlines into paragraphs: a blank line between paragraphs, a line break within."""
    paras: list[list[Inline]] = [[]]
    for p in pieces:
        if not isinstance(p, Text):
            paras[-1].append(p)
            continue
        chunks = re.split(r"\n[ \t]*\n", p.text)
        for i, chunk in enumerate(chunks):
            if i:
                paras.append([])
            for j, line in enumerate(chunk.split("\n")):
                if j:
                    paras[-1].append(LineBreak())
                if line:
                    paras[-1].append(Text(line))
    out = []
    for inl in paras:
        while inl and isinstance(inl[0], LineBreak):
            inl.pop(0)
        while inl and isinstance(inl[-1], LineBreak):
            inl.pop()
        if inl:
            out.append(Paragraph(tuple(inl)))
    return tuple(out)


def text_of(record: Any) -> RichText:
    """A post's text with its facets as rich text (links, hashtags, mentions)."""
    text = _str(_get(record, "text"))
    raw = text.encode("utf-8", "surrogatepass")
    check_size(len(raw), MAX_TEXT_BYTES, "a Bluesky post's text is taken up to")
    facets = _items(record, "facets")
    check_size(len(facets), MAX_FACETS, "a Bluesky post is taken with facets up to",
               unit="facets")
    pieces: list[Inline] = []
    pos = 0
    for start, end, features in _facet_spans(raw, facets):
        if start < pos:
            continue  # overlaps the facet before: Bluesky's app drops it too
        segment = raw[start:end].decode("utf-8", "replace")
        node = _node(segment, features)
        if node is None:
            continue
        if start > pos:
            pieces.append(Text(clean_text(raw[pos:start].decode("utf-8", "replace"))))
        pieces.append(node)
        pos = end
    if pos < len(raw):
        pieces.append(Text(clean_text(raw[pos:].decode("utf-8", "replace"))))
    return RichText(_blocks(pieces))


# ---------------------------------------------------------------- embeds

def blob_url(pds: str, did: str, blob: Any) -> str:
    cid = cid_str(_get(blob, "ref")) or _str(_get(blob, "cid"))
    if not cid or not pds:
        return ""
    return f"{pds}/xrpc/com.atproto.sync.getBlob?did={did}&cid={cid}"


def _media(embed: Any, pds: str, did: str) -> list[Attachment]:
    kind = _get(embed, "$type")
    out = []
    if kind == "app.bsky.embed.images":
        for img in _items(embed, "images")[:4]:
            blob = _get(img, "image")
            url = blob_url(pds, did, blob)
            if url:
                size = _get(blob, "size")
                out.append(Attachment(url=url, media_type=_str(_get(blob, "mimeType"))
                                      or "image/jpeg", alt_text=_str(_get(img, "alt"))[:5000],
                                      size=size if type(size) is int else None))
    elif kind == "app.bsky.embed.video":
        blob = _get(embed, "video")
        url = blob_url(pds, did, blob)
        if url:
            out.append(Attachment(url=url, media_type=_str(_get(blob, "mimeType")) or "video/mp4",
                                  alt_text=_str(_get(embed, "alt"))[:5000]))
    return out


def _embed_links(embed: Any, text: RichText) -> list[Inline]:
    """Links an embed adds to the text: a link card's URL (unless the text has it),
    a quoted post's web address."""
    kind = _get(embed, "$type")
    out: list[Inline] = []
    if kind == "app.bsky.embed.recordWithMedia":
        inner = _get(_get(embed, "record"), "record")
        out += _embed_links({"$type": "app.bsky.embed.record", "record": inner}, text)
        out += _embed_links(_get(embed, "media"), text)
        return out
    if kind == "app.bsky.embed.external":
        uri = safe_url(_str(_get(_get(embed, "external"), "uri")))
        shown = {i.url for b in text.blocks if isinstance(b, Paragraph)
                 for i in b.inlines if isinstance(i, Link)}
        if uri and uri not in shown:
            title = clean_text(_str(_get(_get(embed, "external"), "title")))[:300]
            out.append(Link(uri, title))
    # (a quoted post, app.bsky.embed.record, is the post's quote: see quoted_uri)
    return out


def quoted_uri(record: Any) -> str:
    """The ``at://`` URI of the post a quote post quotes (``app.bsky.embed.record``,
    or ``recordWithMedia``'s record), "" when it quotes none."""
    embed = _get(record, "embed")
    kind = _get(embed, "$type")
    ref = _get(embed, "record")
    if kind == "app.bsky.embed.recordWithMedia":
        ref = _get(ref, "record")
    elif kind != "app.bsky.embed.record":
        return ""
    uri = _str(_get(ref, "uri"))
    try:
        _, collection, _ = split_uri(uri)
    except ValueError:
        return ""
    return uri if collection == POST else ""


def quoted_post(uri: str, record: Any = None, author: Author | None = None) -> QuotedPost:
    """The quoted post at *uri*: its author and words when its *record* could
    be read, else only its bsky.app link."""
    if record is None or author is None or not isinstance(record, Mapping):
        return QuotedPost(url=permalink(uri), network=NETWORK)
    return QuotedPost(url=permalink(uri, author.handle.lstrip("@")), network=NETWORK,
                      author=author, text=text_of(record))


def _with_embeds(text: RichText, record: Any, pds: str, did: str
                 ) -> tuple[RichText, tuple[Attachment, ...]]:
    embed = _get(record, "embed")
    if embed is None:
        return text, ()
    media = _media(embed, pds, did)
    if _get(embed, "$type") == "app.bsky.embed.recordWithMedia":
        media = _media(_get(embed, "media"), pds, did)
    extra = _embed_links(embed, text)
    if extra:
        text = RichText((*text.blocks, Paragraph(tuple(extra))))
    return text, tuple(media)


def content_warning(record: Any) -> str:
    """A post's self-labels as a content warning for networks that show one."""
    vals = {_str(_get(v, "val")) for v in _items(_get(record, "labels"), "values")}
    return ", ".join(sorted({_LABEL_WARNINGS[v] for v in vals if v in _LABEL_WARNINGS}))


def command_of(text: RichText) -> str:
    """``!join`` or ``!leave`` when the post says it (the caller checks it is
    addressed to the bridge)."""
    words = " ".join(to_words(text)).casefold().split()
    return next((w for w in words if w in COMMANDS), "")


def to_words(text: RichText) -> list[str]:
    return [i.text for b in text.blocks if isinstance(b, Paragraph)
            for i in b.inlines if isinstance(i, Text)]


# ---------------------------------------------------------------- events

def parse_post(record: Any, *, uri: str, channel: ChannelKey, author: Author, pds: str = "",
               addressed: bool = False) -> Posted | Unsupported:
    """A created ``app.bsky.feed.post`` record into :class:`Posted`.

    *pds* is the author's PDS (images are read from it); *addressed*: the post
    mentions the bridge or answers one of its posts, so a ``!join``/``!leave`` in
    it is a command.  A post carrying ``#nobridge``/``#nobot`` is Unsupported.
    """
    if not isinstance(record, Mapping):
        return Unsupported(reason="record is not an object", native_id=uri,
                           kind=UnsupportedKind.MALFORMED)
    did, collection, _ = split_uri(uri)
    if collection != POST:
        return Unsupported(reason=f"not a post: {collection}", native_id=uri,
                           kind=UnsupportedKind.IGNORED)
    text = text_of(record)
    command = command_of(text) if addressed else ""
    if not command and (record_tags(record) & OPT_OUT_TAGS):
        return Unsupported(reason="post carries #nobridge/#nobot", native_id=uri,
                           kind=UnsupportedKind.IGNORED)
    text, media = _with_embeds(text, record, pds, did)
    _, parent = reply_refs(record)
    langs = [x for x in _items(record, "langs") if isinstance(x, str)]
    quoted = quoted_uri(record)
    return Posted(channel=channel, native_id=NativeId(uri), author=author, text=text,
                  permalink=permalink(uri, author.handle.lstrip("@")),
                  attachments=media, quote=quoted_post(quoted) if quoted else None,
                  reply_to_native=NativeId(parent) if parent.startswith("at://") else None,
                  content_warning=content_warning(record),
                  language=langs[0][:16] if langs else "",
                  created_at=when(_get(record, "createdAt")), command=command)


def parse_update(record: Any, *, uri: str, channel: ChannelKey, pds: str = "",
                 edited_at: datetime) -> Edited | Deleted | Unsupported:
    """A ``putRecord`` of a post (an edit: Bluesky's app never makes one, other
    clients can).  Adding ``#nobridge`` withdraws the post: a deletion."""
    if not isinstance(record, Mapping):
        return Unsupported(reason="record is not an object", native_id=uri,
                           kind=UnsupportedKind.MALFORMED)
    did, collection, _ = split_uri(uri)
    if collection != POST:
        return Unsupported(reason=f"not a post: {collection}", native_id=uri,
                           kind=UnsupportedKind.IGNORED)
    if record_tags(record) & OPT_OUT_TAGS:
        return Deleted(channel=channel, native_id=NativeId(uri))
    text, media = _with_embeds(text_of(record), record, pds, did)
    return Edited(channel=channel, native_id=NativeId(uri), text=text,
                  content_warning=content_warning(record), attachments=media,
                  edited_at=edited_at)
