"""Pure composition of ``app.bsky.feed.post`` records from the core's rendered text.

Bluesky counts a post's length in grapheme clusters (300) and also caps it at
3,000 UTF-8 bytes; :func:`post_length` folds both into one figure the core's
renderer fits to (split into a reply thread or truncated, per channel).  Facets
are found in the final text the way Bluesky's own app finds them (hashtags and
links) and indexed by UTF-8 byte offsets.  Mention facets are never made: a
bare ``@handle`` in the text stays text (the renderer also defused it), so a
relayed post notifies nobody on Bluesky.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from datetime import UTC, datetime
from typing import Any

import grapheme

from bridge.contract.mentions import neutralise_generic

MAX_GRAPHEMES = 300
MAX_BYTES = 3000
MAX_TAG_GRAPHEMES = 64
KEY_FIELD = "dev.hashbridge.key"
"""A field of every record the bridge creates: the delivery's idempotency key.
It marks the bridge's own posts and tells a retried create that its record is
already there (records may carry fields outside their lexicon)."""

_TID_CHARS = "234567abcdefghijklmnopqrstuvwxyz"
_INVISIBLE = "\u00ad\u2060\u200a\u200b\u200c\u200d\u20e2"
_TAG = re.compile(r"(?:^|(?<=\s))[#＃]([^\s" + _INVISIBLE + r"]+)")
_URL = re.compile(r"(?:^|(?<=[\s(\[]))https?://[^\s<>\"]+", re.IGNORECASE)
_TRAILING = ".,;:!?\"'”’»"


def graphemes(text: str) -> int:
    if text.isascii():
        return len(text) - text.count("\r\n")
    return int(grapheme.length(text))


def post_length(text: str) -> int:
    """Bluesky's two limits as one count against :data:`MAX_GRAPHEMES`: the
    graphemes, or a tenth of the UTF-8 bytes where that is more (emoji
    sequences of many code points would pass 3,000 bytes first)."""
    size = len(text.encode("utf-8", "replace"))
    return max(graphemes(text), -(-size * MAX_GRAPHEMES // MAX_BYTES))


def neutralise(text: str) -> str:
    """No ``@name`` reads as a mention to any client that detects them in text."""
    return neutralise_generic(text)


def _url_end(url: str) -> int:
    end = len(url)
    while end and (url[end - 1] in _TRAILING or (url[end - 1] == ")" and "(" not in url[:end])):
        end -= 1
    return end


def _tag_of(raw: str) -> str:
    """A ``#word`` match as Bluesky's app takes it: trailing punctuation off, not
    only digits, at most 64 graphemes; empty when it is no tag."""
    end = len(raw)
    while end and unicodedata.category(raw[end - 1]).startswith("P"):
        end -= 1
    tag = raw[:end]
    if not tag or tag.startswith("\ufe0f"):
        return ""
    if all(c.isdigit() or unicodedata.category(c).startswith("P") for c in tag):
        return ""
    return tag if graphemes(tag) <= MAX_TAG_GRAPHEMES else ""


def facets(text: str) -> list[dict[str, Any]]:
    """Tag and link facets of *text*, at UTF-8 byte offsets, in text order."""
    spans: list[tuple[int, int, dict[str, Any]]] = []
    taken: list[tuple[int, int]] = []
    if "://" in text:
        for m in _URL.finditer(text):
            s, e = m.start(), m.start() + _url_end(m.group(0))
            if e > s + 8:
                spans.append((s, e, {"$type": "app.bsky.richtext.facet#link",
                                     "uri": text[s:e]}))
                taken.append((s, e))
    if "#" in text or "＃" in text:
        for m in _TAG.finditer(text):
            tag = _tag_of(m.group(1))
            s = m.start()
            e = m.start(1) + len(tag)
            if tag and not any(a <= s < b for a, b in taken):
                spans.append((s, e, {"$type": "app.bsky.richtext.facet#tag", "tag": tag}))
    spans.sort(key=lambda x: x[0])
    out = []
    # char offsets -> byte offsets in one pass
    pos_char, pos_byte = 0, 0
    for s, e, feature in spans:
        pos_byte += len(text[pos_char:s].encode("utf-8"))
        start = pos_byte
        end = start + len(text[s:e].encode("utf-8"))
        pos_char, pos_byte = e, end
        out.append({"index": {"byteStart": start, "byteEnd": end}, "features": [feature]})
    return out


def with_warning(text: str, warning: str) -> str:
    """A content warning (Bluesky has only fixed labels) as the text's first
    line, the text shortened so both fit."""
    if not warning:
        return text
    head = f"CW: {warning.strip()}\n\n"
    if post_length(head + text) <= MAX_GRAPHEMES:
        return head + text
    words = text.split(" ")
    while len(words) > 1 and post_length(head + " ".join(words) + "…") > MAX_GRAPHEMES:
        words.pop()
    kept = " ".join(words)
    while kept and post_length(head + kept + "…") > MAX_GRAPHEMES:
        kept = kept[:-1]
    return head + kept + "…"


def iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def post_record(text: str, *, created_at: datetime, key: str, warning: str = "",
                reply: dict[str, Any] | None = None, embed: dict[str, Any] | None = None,
                language: str = "") -> dict[str, Any]:
    """An ``app.bsky.feed.post`` record for *text* (already fitted by the core)."""
    body = with_warning(neutralise(_storable(text)), warning)
    record: dict[str, Any] = {"$type": "app.bsky.feed.post", "text": body,
                              "createdAt": iso(created_at), KEY_FIELD: key}
    found = facets(body)
    if found:
        record["facets"] = found
    if reply:
        record["reply"] = reply
    if embed:
        record["embed"] = embed
    if language and re.fullmatch(r"[a-z]{2,3}(-[A-Za-z0-9]{1,8})*", language):
        record["langs"] = [language]
    return record


def _storable(text: str) -> str:
    """No lone surrogate reaches the PDS (it takes UTF-8 only)."""
    return text.encode("utf-8", "replace").decode("utf-8")


def images_embed(images: list[tuple[dict[str, Any], str]]) -> dict[str, Any]:
    """``app.bsky.embed.images`` for uploaded blobs and their alt texts."""
    return {"$type": "app.bsky.embed.images",
            "images": [{"image": blob, "alt": alt[:2000]} for blob, alt in images[:4]]}


def tid(n: int) -> str:
    """A 64-bit number as a TID (13 sortable base32 characters)."""
    out = []
    for _ in range(13):
        out.append(_TID_CHARS[n & 31])
        n >>= 5
    return "".join(reversed(out))


def rkey_for(key: str, at: datetime) -> str:
    """The record key of the part with idempotency key *key*: a valid TID (what
    the lexicon asks of a post's key) whose time is the post's millisecond and
    whose low 20 bits come from the key, so a retried create after a crash
    names the same record and cannot post twice."""
    h = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")
    ms = min(max(int(at.timestamp() * 1000), 0), (1 << 43) - 1)
    micros = ms * 1000 + h % 1000
    return tid((micros << 10) | ((h >> 10) & 1023))
