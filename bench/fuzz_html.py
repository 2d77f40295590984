"""Coverage-guided fuzzing of the HTML converter: ``from_html`` -> ``to_html``.

    .venv/bin/python bench/fuzz_html.py 300        # seconds (default 60)

Properties checked on every input (a violation is a finding):
- neither ``from_html`` nor ``to_html``/``to_plain``/``to_markdown`` raises;
- the HTML we produce is safe: only known tags, no event-handler or style attributes,
  ``href`` only with a safe scheme, no ``<script``/``javascript:`` anywhere;
- a round trip keeps the text: ``to_plain(from_html(to_html(t)))`` equals ``to_plain(t)``
  (modulo whitespace) for the tree ``t`` built from the input.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris
from fuzz_common import Finding, run

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "security"))

with atheris.instrument_imports(include=["bridge", "html"]):
    from bridge.contract.textconv import from_html, to_html, to_markdown, to_plain

from htmlsafety import unsafe_html

SEEDS = [
    b'<p>Hi <a href="https://ex.org/@bob" class="u-url mention">@<span>bob</span></a> '
    b'<a href="https://ex.org/tags/kmers" rel="tag">#<span>kmers</span></a></p><p>2nd</p>',
    b"<blockquote><p>q</p></blockquote><ul><li>a<ol><li>b</li></ol></li></ul><pre><code>x<y"
    b"</code></pre>",
    b'<mx-reply><blockquote>fallback</blockquote></mx-reply><a href="https://matrix.to/#/'
    b'@u:hs">U</a> <del>x</del> <script>alert(1)</script><img src=x onerror=alert(1)>',
    b'<a href="javascript:alert(1)">x</a><a href=" jAvAsCrIpT:1">y</a>&lt;b&gt;&amp;#x3c;',
]


def _norm(text: str) -> str:
    return " ".join(text.split())


def target(data: bytes) -> None:
    html = data.decode("utf-8", "replace")
    tree = from_html(html)
    out = to_html(tree)
    problem = unsafe_html(out)
    if problem:
        raise Finding(f"unsafe output HTML: {problem}")
    to_markdown(tree)
    plain = to_plain(tree)
    again = to_plain(from_html(out))
    if _norm(again) != _norm(plain):
        raise Finding(f"round trip changed the text: {_norm(plain)[:40]!r} -> "
                      f"{_norm(again)[:40]!r}")


if __name__ == "__main__":
    run("html", target, SEEDS)
