"""Pure outbound composition for X: its text rules (the twitter-text v3 weighted
length, fitting, links that must not become billed URLs, a post's price class), the
digest text, and a post's text as X shows it back (to recognise our own copy).

No I/O and no client objects (the adapter posts); the inbound half is
:mod:`adapters.twitter.convert`.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

import twitter_text

from adapters.twitter.textrules import weighted_length as _fast_weighted_length

MAX_WEIGHTED = 280
ELLIPSIS = "…"
_URL = re.compile(r"https?://\S+")


def weighted_length(text: str) -> int:
    """X's own count (twitter-text v3): URLs 23, CJK and emoji 2, NFC first
    (:func:`adapters.twitter.textrules.weighted_length`, the same number as
    ``twitter_text.parse_tweet`` at a fraction of its cost)."""
    return _fast_weighted_length(text)


def fits(text: str, limit: int = MAX_WEIGHTED) -> bool:
    return weighted_length(text) <= limit and not twitter_text.has_invalid_characters(text)


def fit(text: str, limit: int = MAX_WEIGHTED) -> str:
    """*text* cut at a grapheme-safe point so it fits *limit*, with an ellipsis."""
    if weighted_length(text) <= limit:
        return text
    lo, hi = 0, len(text)
    while lo < hi:  # longest prefix that fits together with the ellipsis
        mid = (lo + hi + 1) // 2
        if weighted_length(text[:mid].rstrip() + ELLIPSIS) <= limit:
            lo = mid
        else:
            hi = mid - 1
    cut = text[:lo]
    # Never split a surrogate-free but joined emoji sequence or a URL in half.
    while cut and (cut[-1] in "\u200d\ufe0f" or 0x1F3FB <= ord(cut[-1]) <= 0x1F3FF):
        cut = cut[:-1]
    m = re.search(r"\S*$", cut)
    tail = m.group(0) if m else ""
    if "://" in tail or tail.startswith("www."):
        cut = cut[: len(cut) - len(tail)]
    return cut.rstrip() + ELLIPSIS


def defuse_urls(text: str) -> str:
    """*text* with nothing X would turn into a link (and bill at the URL price):
    each URL, bare domains included, becomes its host with the dots replaced by
    U+2024 ONE DOT LEADER, which reads the same and is not linkified."""
    out, pos = [], 0
    for ent in twitter_text.extract_urls_with_indices(text):
        s, e = ent["indices"]
        host = re.sub(r"^[a-z][a-z0-9+.-]*://", "", ent["url"], flags=re.I).split("/")[0]
        out.append(text[pos:s] + host.replace(".", "\u2024"))
        pos = e
    out.append(text[pos:])
    return "".join(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class DigestItem:
    author: str
    text: str
    network: str = ""


def digest_text(items: Iterable[DigestItem], *, hashtag: str = "",
                limit: int = MAX_WEIGHTED) -> tuple[str, int]:
    """One post summarising *items* (given oldest first), newest first, within
    *limit* weighted chars, ending with "+N more" for what did not fit.

    Returns ``(text, shown)``; at least one item is shown (cut if needed)."""
    items = list(items)[::-1]
    tag = f" #{hashtag}" if hashtag else ""
    lines: list[str] = []
    for i, it in enumerate(items):
        line = f"{it.author}: {' '.join(it.text.split())}"
        rest = len(items) - i - 1
        more = f"\n+{rest} more" if rest else ""
        candidate = "\n".join([*lines, line]) + more + tag
        if weighted_length(candidate) <= limit:
            lines.append(line)
            continue
        if not lines:  # the newest alone is too long: cut it to make room
            room = limit - weighted_length(more + tag) - 1
            lines.append(fit(line, max(room, 10)))
        break
    shown = len(lines)
    rest = len(items) - shown
    text = "\n".join(lines) + (f"\n+{rest} more" if rest else "") + tag
    return fit(text, limit), shown


def has_url(text: str) -> bool:
    """Whether X would find a URL in *text* (a post with one is billed at its own price)."""
    return bool(twitter_text.extract_urls(text))


def as_shown(text: str) -> str:
    """Text as X would show it back, for recognising our own copy: NFC, HTML
    entities undone, URLs dropped, whitespace folded."""
    text = unicodedata.normalize("NFC", html.unescape(text))
    # URLs are dropped, not compared: X shows them as t.co links and adds one
    # for attached media.
    return " ".join(_URL.sub("", text).split())
