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

# The machine's inputs and states as small integers (enum members hash in
# Python, which cost more than the lookups themselves): an input is a code
# point's (group, Indic-conjunct group); a state is the machine's state with
# the last code point's group.  Transitions are asked of the package's own
# ``GraphemeIterator.fsm`` once each and kept.
_GCBS = list(GCB)
_INCBS = list(InCB)
_STATES = list(UState)
_N_IN = len(_GCBS) * len(_INCBS)
_N_LAST = len(_GCBS)


class _Inputs(dict[str, int]):
    def __missing__(self, c: str) -> int:
        x = _GCBS.index(get_group(c)) * len(_INCBS) + _INCBS.index(get_incb(c))
        if len(self) < 65_536:
            self[c] = x
        return x


class _Transitions(dict[int, int]):
    """(state * _N_LAST + last group) * _N_IN + input -> next such state * 2
    + 1 where the machine breaks before the input."""

    def __missing__(self, key: int) -> int:
        combined, x = divmod(key, _N_IN)
        state, last = divmod(combined, _N_LAST)
        brk, nxt = GraphemeIterator.fsm(_STATES[state], _GCBS[last], _GCBS[x // len(_INCBS)],
                                        _INCBS[x % len(_INCBS)])
        group = x // len(_INCBS)
        out = self[key] = ((_STATES.index(nxt) * _N_LAST + group) * _N_IN) * 2 + int(brk)
        return out


_INPUT = _Inputs()
_FSM = _Transitions()


def _initial(x: int) -> int:
    """The machine's state after its first code point (GraphemeIterator.__init__)."""
    g, incb = _GCBS[x // len(_INCBS)], _INCBS[x % len(_INCBS)]
    if g is GCB.EXTENDED_PICTOGRAPHIC:
        state = UState.GB11_Picto
    elif g is GCB.REGIONAL_INDICATOR:
        state = UState.GB12_First
    elif incb is InCB.LINKER:
        state = UState.GB9c_Linker
    else:
        state = UState.DEFAULT
    return (_STATES.index(state) * _N_LAST + _GCBS.index(g)) * _N_IN


def length(text: str) -> int:
    """``grapheme.length(text)``."""
    if _SPECIAL.search(text) is None:
        # no character with a break property: UAX #29 breaks between any two
        # (GB999), and so does the package's machine
        return len(text)
    inputs = map(_INPUT.__getitem__, text)
    state = _initial(next(inputs))
    fsm = _FSM
    count = 1
    for x in inputs:
        out = fsm[state + x]
        count += out & 1
        state = out >> 1
    return count
