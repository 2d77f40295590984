"""X's text rules, fast: the twitter-text v3 weighted length and the mention
rule, on the twitter-text-parser package's own URL and emoji data.

``twitter_text.parse_tweet`` walks the text one character at a time in Python
and runs its emoji expression (thousands of alternatives) at every position:
about 6 µs a character, so fitting a long post by trying prefixes cost
seconds.  :func:`weighted_length` gives the same number (a property test holds
it to ``parse_tweet``) from regular expressions that run in C, and tries the
emoji expression only where an emoji can start.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import twitter_text
from twitter_text.config import config as _tt_config
from twitter_text.regexp.emoji import emoji_list as _EMOJI_LIST

from bridge.contract.mentions import neutralise_x_text

_V3 = _tt_config["defaults"]
_SCALE: int = _V3["scale"]
_URL_WEIGHT: int = _V3["transformed_url_length"] * _SCALE
_DEFAULT_WEIGHT: int = _V3["default_weight"]


def _light_class() -> str:
    parts = []
    for r in _V3["ranges"]:
        assert r["weight"] == _SCALE, "twitter-text ranges other than weight 1 are not expected"
        parts.append(f"\\U{r['start']:08x}-\\U{r['end']:08x}")
    return "".join(parts)


# Characters outside the weight-1 ranges count twice (CJK, most symbols, emoji).
_HEAVY = re.compile(f"[^{_light_class()}]")


def _ranges(cps: set[int]) -> str:
    """A regex class body for *cps*, as ranges."""
    out = []
    ordered = sorted(cps)
    lo = prev = ordered[0]
    for c in [*ordered[1:], -2]:
        if c != prev + 1:
            out.append(f"\\U{lo:08x}" if lo == prev else f"\\U{lo:08x}-\\U{prev:08x}")
            lo = c
        prev = c
    return "".join(out)


def _start_pattern() -> re.Pattern[str]:
    """Where an emoji of twitter-text's list can start: its first code point;
    an ASCII one (a keycap's digit, ``#``, ``*``) only before what can follow
    it in a sequence, so ordinary digits are not tried one by one."""
    seqs = [[int(c, 16) for c in e.codepoint.split()] for e in _EMOJI_LIST]
    wide = {s[0] for s in seqs if s[0] > 0x7F}
    ascii_single = {s[0] for s in seqs if s[0] <= 0x7F and len(s) == 1}
    ascii_multi = {s[0] for s in seqs if s[0] <= 0x7F and len(s) > 1} - ascii_single
    after = {s[1] for s in seqs if s[0] <= 0x7F and len(s) > 1}
    first = wide | ascii_single
    # A BMP character is looked up in the class's table at once, but every
    # astral range is tried in turn: astral ranges only for astral characters.
    alts = [f"[{_ranges({c for c in first if c <= 0xFFFF})}]",
            f"(?=[\\U00010000-\\U0010ffff])[{_ranges({c for c in first if c > 0xFFFF})}]"]
    if ascii_multi:
        alts.append(f"[{_ranges(ascii_multi)}](?=[{_ranges(after)}])")
    return re.compile("|".join(alts))


_EMOJI_START = _start_pattern()
_SINGLE = frozenset(int(e.codepoint, 16) for e in _EMOJI_LIST if " " not in e.codepoint.strip())
_NEWLINES = re.compile(r"\r\n|\r|\n")
_ANY_AT = re.compile(r"[@\uff20](?=[a-zA-Z0-9_])")


def _sequence_trie() -> dict[int, Any]:
    """twitter-text's sequences of two or more code points, as a trie (key -1
    marks where one ends)."""
    trie: dict[int, Any] = {}
    for e in _EMOJI_LIST:
        cps = [int(c, 16) for c in e.codepoint.split()]
        if len(cps) > 1:
            node = trie
            for c in cps:
                node = node.setdefault(c, {})
            node[-1] = True
    return trie


_TRIE = _sequence_trie()


def _emoji_spans(text: str) -> list[tuple[int, int]]:
    """``extract_emojis_with_indices``: a left-to-right scan of its expression,
    the longest sequence of its list (the expression's alternatives come
    longest first) or else a single emoji code point, tried only where an
    emoji can start and looked up in a trie rather than by trying each of
    its thousands of alternatives in turn."""
    out = []
    end = 0
    n = len(text)
    for m in _EMOJI_START.finditer(text):
        p = m.start()
        if p < end:
            continue
        node = _TRIE
        i = p
        best = 0
        while i < n:
            child = node.get(ord(text[i]))
            if child is None:
                break
            node = child
            i += 1
            if -1 in node:
                best = i
        if best:
            out.append((p, best))
            end = best
        elif ord(text[p]) in _SINGLE:
            out.append((p, p + 1))
            end = p + 1
    return out


def _weight(segment: str) -> int:
    return len(segment) * _SCALE + len(_HEAVY.findall(segment)) * (_DEFAULT_WEIGHT - _SCALE)


_TOKEN = re.compile(r"[^ \n\t]+")
"""What lies between separators no entity of X's can hold (URLs and emoji
have no space, newline or tab): X's entities are found token by token."""
_TOKEN_CACHE: dict[str, list[tuple[int, int, int]]] = {}


def _token_entities(window: str) -> list[tuple[int, int, int]]:
    """``(start, end, weight)`` of the emoji and URLs twitter-text finds in
    *window* (a token with the separator on each side, where there is one),
    emoji first, so a URL at the same start wins.  Kept: fitting a post
    measures the same words again and again as prefixes grow and shrink."""
    hit = _TOKEN_CACHE.get(window)
    if hit is not None:
        return hit
    out = [(p, e, _DEFAULT_WEIGHT) for p, e in _emoji_spans(window)]
    if "." in window:
        for ent in twitter_text.extract_urls_with_indices(window):
            b = ent["indices"][0]
            out.append((b, b + len(ent["url"]), _URL_WEIGHT))
    if len(_TOKEN_CACHE) >= 8192:
        _TOKEN_CACHE.clear()
    _TOKEN_CACHE[window] = out
    return out


def weighted_length(text: str) -> int:
    """X's own count (twitter-text v3): NFC first, URLs 23, emoji 2, CJK 2;
    the same number as ``twitter_text.parse_tweet(text).weightedLength``."""
    t = _NEWLINES.sub("\n", unicodedata.normalize("NFC", text))
    # The same walk as parse_tweet: at each position a URL wins over an emoji,
    # and an entity starting inside the previous one is not seen.  Entities
    # are looked for only in tokens that can hold one (a dot: a URL; an
    # emoji's first code point), each with its separators around it (what
    # twitter-text's URL expression looks at before and after a URL).
    starts: dict[int, tuple[int, int]] = {}
    n = len(t)
    if "." in t or _EMOJI_START.search(t):
        for m in _TOKEN.finditer(t):
            tok = m.group()
            if "." not in tok and not _EMOJI_START.search(tok):
                continue
            lo = max(0, m.start() - 1)
            window = t[lo:min(n, m.end() + 1)]
            for b, e, w in _token_entities(window):
                starts[lo + b] = (lo + e, w)
    total = 0
    pos = 0
    for s in sorted(starts):
        if s < pos:
            continue
        end, weight = starts[s]
        total += _weight(t[pos:s]) + weight
        pos = max(end, s + 1)
    total += _weight(t[pos:])
    return total // _SCALE


def neutralise(text: str) -> str:
    """No mention by twitter-text's rule (``@`` or ``＠``, after RT, a list
    slug, ``@@name``) survives in *text*; URLs X would link stay whole."""
    if "@" not in text and "\uff20" not in text:
        return text
    urls = [(u["indices"][0], u["indices"][1])
            for u in twitter_text.extract_urls_with_indices(text)]
    out = neutralise_x_text(text, urls)
    if out != text:
        # A word joiner changes what precedes the name, which can make a URL
        # of what follows; judge the result again (twice is a fixed point in
        # practice; the backstop defuses every at-sign before a name, URLs
        # or not: a broken link rather than a mention).
        urls = [(u["indices"][0], u["indices"][1])
                for u in twitter_text.extract_urls_with_indices(out)]
        again = neutralise_x_text(out, urls)
        if again != out:
            return _ANY_AT.sub("\\g<0>\u2060", again)
        return out
    return text
