"""The fast paths of the converters give the results of the plain ones (issue 12, item 3).

``_linkify`` skips the scans and overlap checks a line cannot need, and the
HTML tree builder collapses only whitespace runs a lone space does not
already stand for.  Each is checked against the straightforward version it
replaced, over arbitrary text made of the characters that matter.
"""

from __future__ import annotations

import html
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.twitter.convert import _text_inlines
from bridge.contract.richtext import Hashtag, Inline, LineBreak, Link, Mention, Text
from bridge.contract.textconv import (
    _MENTION,
    _TAG,
    _URL,
    _collapse_ws,
    _linkify,
    _url_end,
    drop_controls,
    from_html,
)


def reference_linkify(text: str) -> list[Inline]:
    """``_linkify`` as it was before the fast paths (every scan, every check)."""
    if "://" not in text and "#" not in text and "@" not in text:
        return [Text(text)] if text else []
    out: list[Inline] = []
    pos = 0
    spans: list[tuple[int, int, Inline]] = []
    taken = bytearray(len(text))
    for m in _URL.finditer(text):
        s = m.start()
        e = s + _url_end(m.group(0))
        spans.append((s, e, Link(text[s:e])))
        taken[s:e] = b"\x01" * (e - s)
    for m in _TAG.finditer(text):
        s, e = m.span()
        if taken.find(1, s, e) < 0 and not m.group(1).isdigit():
            spans.append((s, e, Hashtag(m.group(1))))
            taken[s:e] = b"\x01" * (e - s)
    for m in _MENTION.finditer(text):
        s, e = m.span()
        if taken.find(1, s, e) < 0:
            spans.append((s, e, Mention(m.group(1))))
    spans.sort(key=lambda x: x[0])
    for s, e, node in spans:
        if s > pos:
            out.append(Text(text[pos:s]))
        out.append(node)
        pos = e
    if pos < len(text):
        out.append(Text(text[pos:]))
    return out


PIECES = st.sampled_from(["@", "#", "://", "http", "https://", "a", "b.c", "1", " ", "/",
                          ".", ")", "(", "-", "_", "&", "é", "x@y.example", "#tag", "@al"])
LINES = st.lists(PIECES, max_size=40).map("".join)


@settings(max_examples=600, deadline=None)
@given(LINES)
def test_linkify_equals_the_reference(text: str) -> None:
    assert _linkify(text) == reference_linkify(text)


def test_linkify_equals_the_reference_on_the_hostile_shapes() -> None:
    for unit in ["@a ", "#a ", "@a #b https://c.example/(d) ", "http://a.example/#b@c ",
                 "#a@b.example ", "@a#b ", "https://x.example/@a #1 #b "]:
        text = unit * 500
        assert _linkify(text) == reference_linkify(text)


@settings(max_examples=600, deadline=None)
@given(st.lists(st.sampled_from([" ", "  ", "\t", "\n", "a", " \n ", "b c", "\r", "\f"]),
                max_size=30).map("".join))
def test_whitespace_runs_collapse_as_before(text: str) -> None:
    assert _collapse_ws(text) == re.sub(r"[ \t\n]+", " ", text)


def test_html_text_keeps_single_spaces_and_collapses_runs() -> None:
    rt = from_html("<p>one two\tthree\n four  five</p>")
    assert rt.blocks[0].inlines == (Text("one two three four five"),)  # type: ignore[attr-defined]


def reference_text_inlines(raw: str) -> list[Inline]:
    """The X converter's text between entities, before its one-node fast path."""
    out: list[Inline] = []
    for i, line in enumerate(drop_controls(html.unescape(raw)).split("\n")):
        if i:
            out.append(LineBreak())
        if line:
            out.append(Text(line))
    return out


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(["a", " ", "\n", "&amp;", "&", "&lt;", "é", ";", "\x08",
                                 "\ud83d"]),
                max_size=20).map("".join))
def test_x_text_between_entities_is_read_as_before(raw: str) -> None:
    assert _text_inlines(raw) == reference_text_inlines(raw)
