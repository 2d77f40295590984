"""What "HTML always sanitised" means, checked on HTML the bridge produces.

Used by the hostile-input property tests and by ``bench/fuzz_html.py``.  Parses with the
stdlib parser (a different parser from nh3's html5ever, on purpose: a disagreement between
the two is exactly how sanitiser bypasses happen).
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from bridge.contract.textconv import SAFE_SCHEMES

ALLOWED_TAGS = {
    "p", "br", "a", "span", "em", "i", "strong", "b", "code", "pre", "blockquote", "ul",
    "ol", "li", "del", "s", "u", "h1", "h2", "h3", "h4", "h5", "h6", "div", "sup", "sub",
}
ALLOWED_ATTRS = {"href", "class", "rel", "target", "title", "data-mx-spoiler"}


class _Checker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ALLOWED_TAGS:
            self.problems.append(f"tag <{tag}>")
        for name, value in attrs:
            if name not in ALLOWED_ATTRS:
                self.problems.append(f"attribute {name}= on <{tag}>")
            if name == "href" and value is not None:
                # As a browser reads it (WHATWG URL): tabs and newlines removed, leading
                # and trailing controls and spaces stripped.
                value = re.sub(r"[\t\n\r]", "", value).strip("\x00- ")
                scheme = value.split(":", 1)[0].lower() if ":" in value else ""
                # A relative href has no scheme; anything with one must be a safe one.
                if scheme and "/" not in scheme and scheme not in SAFE_SCHEMES:
                    self.problems.append(f"href scheme {scheme!r}")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_comment(self, data: str) -> None:
        self.problems.append("comment")

    def handle_decl(self, decl: str) -> None:
        self.problems.append(f"declaration {decl[:20]!r}")

    def handle_pi(self, data: str) -> None:
        self.problems.append("processing instruction")

    def unknown_decl(self, data: str) -> None:
        self.problems.append("CDATA/unknown declaration")


def unsafe_html(html: str) -> str:
    """The first reason *html* is not safe to show, or "" when it is."""
    lowered = html.lower()
    # A second opinion on tags; "javascript:" in escaped text is harmless, in an href it
    # is caught by the scheme check below.
    for needle in ("<script", "<iframe", "<object", "<embed", "<svg", "<math", "<style",
                   "<img", "<form", "<input"):
        if needle in lowered:
            return f"contains {needle!r}"
    checker = _Checker()
    checker.feed(html)
    checker.close()
    return checker.problems[0] if checker.problems else ""
