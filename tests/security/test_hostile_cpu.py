"""Conversion costs time linear in the input, whatever its shape (issue 12, item 3).

A 256 KB line of ``@a @a ...`` took 124 s of CPU (each mention was checked
against every earlier one), and 64 KB of nested ``<ul><li>`` took seconds in
html5ever (its scope checks walk the stack of open elements).  No timing
bound here: each test converts n and 4n units of one hostile shape and
checks that the CPU time grows by well under the 16 a quadratic cost gives
(bench/hostile.py prints the figures).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from bridge.contract.textconv import from_html, from_markdown, from_plain, to_plain

FORMATS: dict[str, Callable[[str], object]] = {
    "plain": lambda s: to_plain(from_plain(s)),
    "html": lambda s: to_plain(from_html(f"<p>{s}</p>")),
    "markdown": lambda s: to_plain(from_markdown(s)),
}
LINES = ["@a ", "#a ", "@a@b.example ", "http://a.example/x ", "@a #b https://c.example/(d) ",
         "a.b.c@d " * 2, "http://x.example/" + ")" * 40 + " "]
LINEAR = 10.0
"""A linear cost grows 4x from n to 4n; a quadratic one 16x."""


def cpu(fn: Callable[[str], object], arg: str, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn(arg)
        best = min(best, time.process_time() - t0)
    return max(best, 0.002)  # below the clock's useful resolution


def grows_linearly(fn: Callable[[str], object], unit: str, size: int) -> tuple[bool, str]:
    small = unit * (size // len(unit))
    big = unit * (4 * size // len(unit))
    fn(small)  # warm up (imports, regex caches)
    t1 = cpu(fn, small, 3)
    t4 = cpu(fn, big, 3)
    return t4 < LINEAR * t1, f"{t1 * 1000:.0f} ms for {len(small)} chars, " \
                              f"{t4 * 1000:.0f} ms for {len(big)}"


@pytest.mark.parametrize("unit", LINES)
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_a_line_of_tags_mentions_or_links_converts_in_linear_time(fmt: str, unit: str) -> None:
    ok, figures = grows_linearly(FORMATS[fmt], unit, 16_384)
    assert ok, figures


def test_a_256_kb_line_of_mentions_converts_in_linear_time() -> None:
    ok, figures = grows_linearly(FORMATS["plain"], "@a ", 65_536)
    assert ok, figures


NESTING = ["<ul><li>", "<div>", "<dl><dt>", "<blockquote>", "<em><div>", "<b>", "<span>x",
           "<a href='https://e.example/'>", "<code><b>", "<br>", "<p>x</p>"]


@pytest.mark.parametrize("unit", NESTING)
def test_nested_html_converts_in_linear_time(unit: str) -> None:
    ok, figures = grows_linearly(lambda s: to_plain(from_html(s + "deep")), unit, 65_536)
    assert ok, figures


@pytest.mark.parametrize("unit", ["> ", "*a ", "**", "[", "- ", "> - "])
def test_nested_markdown_converts_in_linear_time(unit: str) -> None:
    ok, figures = grows_linearly(lambda s: to_plain(from_markdown(s + "deep")), unit, 16_384)
    assert ok, figures


@pytest.mark.parametrize("unit", [">", "> ", ">\n"])
def test_nested_plain_quotes_convert_in_linear_time(unit: str) -> None:
    ok, figures = grows_linearly(lambda s: to_plain(from_plain(s + "deep")), unit, 16_384)
    assert ok, figures
