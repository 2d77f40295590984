"""Grapheme clusters counted as the ``grapheme`` package counts them, fast.

``grapheme.length`` runs a Python state machine with enum matching on every
code point: 2-3 µs a character for plain text and over 10 µs for emoji, so a
long post measured for Mastodon cost seconds.  :func:`length` runs the same
machine (the package's own transition function, its own property tables), but
memoised per transition and only where a character has a property: between two
characters without one (most text), UAX #29 breaks (GB999) and the package's
machine says so without looking at its state.  A property test holds it to
``grapheme.length``.
"""

from __future__ import annotations

import re

from grapheme.finder import GraphemeIterator, UState
from grapheme.grapheme_property_group import RANGE_TREE as _GCB_RANGES
from grapheme.grapheme_property_group import SINGLE_CHAR_MAPPINGS as _GCB_SINGLE
from grapheme.grapheme_property_group import GraphemePropertyGroup as GCB
from grapheme.grapheme_property_group import get_group
from grapheme.incb_property_group import RANGE_TREE as _INCB_RANGES
from grapheme.incb_property_group import SINGLE_CHAR_MAPPINGS as _INCB_SINGLE
from grapheme.incb_property_group import InCBPropertyGroup as InCB
from grapheme.incb_property_group import get_group as get_incb


def _special_class() -> re.Pattern[str]:
    """Every code point with a grapheme-break or Indic-conjunct property."""
    cps: set[int] = set(_GCB_SINGLE) | set(_INCB_SINGLE)
    spans = [(lo, hi) for lo, hi, _ in (*_GCB_RANGES[1], *_INCB_RANGES[1])]
    spans += [(c, c) for c in cps]
    spans.sort()
    merged: list[list[int]] = []
    for lo, hi in spans:
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    def body(spans: list[list[int]]) -> str:
        return "".join(f"\\U{lo:08x}" if lo == hi else f"\\U{lo:08x}-\\U{hi:08x}"
                       for lo, hi in spans)

    # Two classes: the engine looks a BMP character up in a table at once but
    # walks every astral range in turn, so astral ranges are tried only for
    # astral characters.
    bmp = [[lo, min(hi, 0xFFFF)] for lo, hi in merged if lo <= 0xFFFF]
    astral = [[max(lo, 0x10000), hi] for lo, hi in merged if hi > 0xFFFF]
    return re.compile(f"[{body(bmp)}]|(?=[\\U00010000-\\U0010ffff])[{body(astral)}]")


_SPECIAL = _special_class()

# The machine's inputs and states as small integers: enum members hash in
# Python, which cost more than the lookups themselves.
_GCB_ID = {g: i for i, g in enumerate(GCB)}
_INCB_ID = {g: i for i, g in enumerate(InCB)}
_STATE_ID = {s: i for i, s in enumerate(UState)}
_STATES = list(UState)
_GCBS: list[GCB | None] = [*GCB, None]
_OTHER = _GCB_ID[GCB.OTHER] * len(_INCB_ID) + _INCB_ID[InCB.OTHER]
_DEFAULT = _STATE_ID[UState.DEFAULT]
_W_IN = len(GCB) * len(InCB)
_W_LAST = len(_GCBS)

_FSM: dict[int, tuple[int, int]] = {}
"""(state, last group, input) -> (1 for a break else 0, next state)."""
_INPUT: dict[str, int] = {}
"""A code point's input: group * len(InCB) + Indic-conjunct group."""


def _input(c: str) -> int:
    x = _INPUT.get(c)
    if x is None:
        x = _GCB_ID[get_group(c)] * len(_INCB_ID) + _INCB_ID[get_incb(c)]
        if len(_INPUT) < 65_536:
            _INPUT[c] = x
    return x


def _step(state: int, last: int, x: int) -> tuple[int, int]:
    key = (state * _W_LAST + last) * _W_IN + x
    out = _FSM.get(key)
    if out is None:
        g, incb = list(GCB)[x // len(InCB)], list(InCB)[x % len(InCB)]
        brk, nxt = GraphemeIterator.fsm(_STATES[state], _GCBS[last], g, incb)
        out = _FSM[key] = (int(brk), _STATE_ID[nxt])
    return out


def _initial(c: str) -> tuple[int, int]:
    """(state, last group) after the first code point (GraphemeIterator.__init__)."""
    x = _input(c)
    g, incb = list(GCB)[x // len(InCB)], list(InCB)[x % len(InCB)]
    if g is GCB.EXTENDED_PICTOGRAPHIC:
        state = UState.GB11_Picto
    elif g is GCB.REGIONAL_INDICATOR:
        state = UState.GB12_First
    elif incb is InCB.LINKER:
        state = UState.GB9c_Linker
    else:
        state = UState.DEFAULT
    return _STATE_ID[state], x // len(InCB)


def length(text: str) -> int:
    """``grapheme.length(text)``."""
    if not text:
        return 0
    state, last = _initial(text[0])
    other_g = _OTHER // len(InCB)
    count = 1
    pos = 1
    fsm = _FSM
    for m in _SPECIAL.finditer(text, 1):
        i = m.start()
        if i > pos:  # a run of characters without a property
            brk, state = _step(state, last, _OTHER)
            count += brk + (i - pos - 1)
            if i - pos > 1:
                state = _DEFAULT
            last = other_g
        c = text[i]
        x = _INPUT.get(c)
        if x is None:
            x = _input(c)
        out = fsm.get((state * _W_LAST + last) * _W_IN + x)
        if out is None:
            out = _step(state, last, x)
        count += out[0]
        state = out[1]
        last = x // len(InCB)
        pos = i + 1
    if len(text) > pos:
        brk, state = _step(state, last, _OTHER)
        count += brk + (len(text) - pos - 1)
    return count
