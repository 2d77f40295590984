"""Mention rules: what each platform takes for a mention in the text it is
sent, and the neutraliser that makes such text ping nobody while it reads the
same (a word joiner after the at-sign: ``@⁠alice``).

The renderer applies the target's rule (``Capabilities.neutralise``) to the
final text of every message, after everything else has been put together
(attribution, link labels, code, hashtags, notes) and before the length is
fitted, so nothing added later can bring a live mention back.

Rules here are pure (regular expressions and ``unicodedata``), no platform
library: X's rule needs twitter-text's URL extractor on top and lives in
:mod:`adapters.twitter.textrules`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable

WORD_JOINER = "\u2060"
AT_SIGNS = "@\uff20"
"""``@`` and the fullwidth ``＠`` (which X also takes for an at-sign)."""

Neutraliser = Callable[[str], str]


def insert_joiners(text: str, positions: Iterable[int]) -> str:
    """*text* with a word joiner after each at-sign at *positions*."""
    out: list[str] = []
    last = 0
    for p in sorted(set(positions)):
        out.append(text[last:p + 1])
        out.append(WORD_JOINER)
        last = p + 1
    if not out:
        return text
    out.append(text[last:])
    return "".join(out)


# ------------------------------------------------------------------ generic

_URL = re.compile(r"""\bhttps?://[^\s<>"'`]+""", re.IGNORECASE)
_AT_BEFORE_WORD = re.compile(r"[@\uff20](?=\w)")


def neutralise_generic(text: str) -> str:
    """The default for a platform without a rule of its own (Matrix bodies,
    email, third-party adapters): every at-sign before a word character, even
    inside a word (``me@admin``), except inside http(s) URLs, which stay whole."""
    if "@" not in text and "\uff20" not in text:
        return text
    urls = [(m.start(), m.end()) for m in _URL.finditer(text)]
    hits = []
    j = 0
    for m in _AT_BEFORE_WORD.finditer(text):
        p = m.start()
        while j < len(urls) and urls[j][1] <= p:
            j += 1
        if j < len(urls) and urls[j][0] <= p:
            continue
        hits.append(p)
    return insert_joiners(text, hits)


# ------------------------------------------------------------------ Mastodon

# Mastodon's Account::MENTION_RE (app/models/account.rb):
#   USERNAME_RE = /[a-z0-9_]+([.-]+[a-z0-9_]+)*/i
#   MENTION_RE  = %r{(?<![=/[:word:]])@((#{USERNAME_RE})(?:@[[:word:]]+([.-]+[[:word:]]+)*)?)}
# ProcessMentionsService runs it over the whole status text (URLs included).
# Only the ASCII "@" counts.  Ruby's [:word:] is letters, marks, decimal digits
# and connector punctuation, which Python's \w does not match exactly, so the
# character before the "@" is judged by its Unicode category.
_MASTO_AT = re.compile(r"@(?=[a-z0-9_])", re.IGNORECASE)


def _ruby_word(ch: str) -> bool:
    cat = unicodedata.category(ch)
    return cat[0] in "LM" or cat in ("Nd", "Pc")


def mastodon_mentions(text: str) -> list[int]:
    """Offsets of the ``@`` of every mention Mastodon would resolve in *text*."""
    out = []
    for m in _MASTO_AT.finditer(text):
        p = m.start()
        prev = text[p - 1] if p else ""
        if prev and (prev in "=/" or _ruby_word(prev)):
            continue
        out.append(p)
    return out


def neutralise_mastodon(text: str) -> str:
    """No mention by Mastodon's own rule survives (a bare ``@name`` would
    resolve to a local account and notify a stranger)."""
    if "@" not in text:
        return text
    return insert_joiners(text, mastodon_mentions(text))


# ------------------------------------------------------------------ X (twitter-text)

# twitter-text (js/src/regexp): validMentionPrecedingChars, atSigns,
# validMentionOrList and endMentionMatch, as extractMentionsOrListsWithIndices
# uses them.  The preceding character is consumed by the match (no lookbehind),
# exactly as the JavaScript global replace does.
_LATIN_ACCENTS = ("\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u00ff\u0100-\u024f\u0253\u0254\u0256"
                  "\u0257\u0259\u025b\u0263\u0268\u026f\u0272\u0289\u028b\u02bb\u0300-\u036f"
                  "\u1e00-\u1eff")
_X_PRECEDING = r"(?:^|[^a-zA-Z0-9_!#$%&*@\uff20]|(?:^|[^a-zA-Z0-9_+~.-])(?:rt|RT|rT|Rt):?)"
_X_MENTION = re.compile(
    rf"(?P<before>{_X_PRECEDING})(?P<at>[@\uff20])(?P<name>[a-zA-Z0-9_]{{1,20}})"
    r"(?P<list>/[a-zA-Z][a-zA-Z0-9_\-]{0,24})?")
# Java's twitter-text (which X's servers descend from) takes a run of at-signs
# ("@@name"); the neutraliser covers that too.
_X_MENTION_RUN = re.compile(
    rf"(?P<before>{_X_PRECEDING})(?P<at>[@\uff20]+)(?P<name>[a-zA-Z0-9_]{{1,20}})"
    r"(?P<list>/[a-zA-Z][a-zA-Z0-9_\-]{0,24})?")
_X_END = re.compile(rf"(?:[@\uff20]|[{_LATIN_ACCENTS}]|://)")


def x_mentions(text: str, *, at_runs: bool = False) -> list[tuple[int, int, str]]:
    """twitter-text's ``extractMentionsOrListsWithIndices``: ``(start, end,
    screen_name)`` of each mention or list, ``start`` at its at-sign.
    ``at_runs`` also takes ``@@name`` (Java's variant; start at the last at-sign)."""
    if "@" not in text and "\uff20" not in text:
        return []
    out = []
    for m in (_X_MENTION_RUN if at_runs else _X_MENTION).finditer(text):
        if _X_END.match(text, m.end()):
            continue
        start = m.end("at") - 1
        out.append((start, m.end(), m.group("name")))
    return out


def x_live_mentions(text: str, urls: Iterable[tuple[int, int]], *,
                    at_runs: bool = False) -> list[tuple[int, int, str]]:
    """The mentions X makes of *text*: those not inside one of its URL
    entities (``extractEntitiesWithIndices`` drops an entity overlapping an
    earlier one, and a URL never starts with an at-sign)."""
    spans = sorted(urls)
    out = []
    j = 0
    for s, e, name in x_mentions(text, at_runs=at_runs):
        while j < len(spans) and spans[j][1] <= s:
            j += 1
        if j < len(spans) and spans[j][0] <= s:
            continue
        out.append((s, e, name))
    return out


def neutralise_x_text(text: str, urls: Iterable[tuple[int, int]]) -> str:
    """No mention by twitter-text's rule survives; URLs (given as code-point
    spans, from twitter-text's extractor) stay whole."""
    return insert_joiners(text, [s for s, _, _ in x_live_mentions(text, urls, at_runs=True)])


# ------------------------------------------------------------------ Matrix pills

_MATRIX_USER = re.compile(r"^https://matrix\.to/#/(?:@|%40)", re.IGNORECASE)


def is_matrix_user_link(url: str) -> bool:
    """A matrix.to permalink to a user: Matrix clients show it as a pill."""
    return bool(_MATRIX_USER.match(url.strip()))
