"""Pure conversions between the canonical rich text and plain text, Markdown and HTML.

Every HTML that enters is sanitised with nh3 first; everything that leaves as
HTML is built from escaped text, so no input can smuggle markup through.
"""

from __future__ import annotations

import html as htmllib
import re
from typing import Any, ClassVar, assert_never
from urllib.parse import unquote, urlsplit

import nh3
from markdown_it import MarkdownIt

from bridge.contract.richtext import (
    MAX_NESTING,
    Block,
    Code,
    CodeBlock,
    Emphasis,
    Hashtag,
    Inline,
    LineBreak,
    Link,
    Mention,
    Paragraph,
    Quote,
    RichText,
    Text,
)

SAFE_SCHEMES = frozenset({"http", "https", "mailto"})

# Characters that can reorder, hide or fake text (bidi overrides, zero-width
# joiners used to break words, BOM).  Line/paragraph separators become newlines.
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\u00ad]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")
"""C0 controls, and what no UTF-8 store or XML feed can hold: lone surrogates (a
JSON ``\\ud83d`` escape, an emoji cut in half) and the noncharacters U+FFFE/U+FFFF."""

NEUTRAL_AT = "@\u2060"
"""``@`` followed by a word joiner: reads as ``@alice``, links and pings nobody."""


def drop_controls(text: str) -> str:
    """Only the characters of ``_CONTROL`` dropped (text whose offsets matter
    keeps its zero-width characters)."""
    return _CONTROL.sub("", text)


def clean_text(text: str) -> str:
    """Drop control, bidi-override and zero-width characters, lone surrogates and
    U+FFFE/U+FFFF; normalise newlines."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u2028", "\n")
    text = text.replace("\u2029", "\n\n")
    return _INVISIBLE.sub("", _CONTROL.sub("", text))


def safe_url(url: str) -> str | None:
    """The URL if its scheme is safe to link, else None."""
    url = url.strip()
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        return None
    return url if scheme in SAFE_SCHEMES else None


# ====================================================================== output

def to_plain(rt: RichText, *, links: bool = True, neutralise_mentions: bool = False) -> str:
    """Plain text.  ``links=False`` keeps a link's text and drops its URL."""
    out = [_block_plain(b, links, neutralise_mentions) for b in rt.blocks]
    return "\n\n".join([s for s in out if s])


# isinstance rather than class patterns: every ingest and every rendering walks
# the tree, and a chain of class patterns costs several times more per node.
def _inline_plain(i: Inline, links: bool, neutral: bool) -> str:
    if isinstance(i, Text | Code):
        return i.text
    if isinstance(i, LineBreak):
        return "\n"
    if isinstance(i, Hashtag):
        return "#" + i.tag
    if isinstance(i, Emphasis):
        return "".join([_inline_plain(c, links, neutral) for c in i.children])
    if isinstance(i, Mention):
        return (NEUTRAL_AT if neutral else "@") + i.handle
    url, text = i.url, i.text
    if not links:
        return text or _url_label(url)
    if not text or text == url or _same_url(text, url):
        return url
    return f"{text} ({url})"


def _url_label(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc or url


_URL_LEAD = re.compile(r"^(https?://)?(www\.)?")


def _same_url(text: str, url: str) -> bool:
    # whitespace collapsed: HTML shows a URL's run of spaces as one
    text, url = " ".join(text.split()), " ".join(url.split())
    return _URL_LEAD.sub("", text.rstrip("/…")) == _URL_LEAD.sub("", url.rstrip("/"))


def _block_plain(b: Block, links: bool, neutral: bool) -> str:
    if isinstance(b, Paragraph):
        return "".join([_inline_plain(i, links, neutral) for i in b.inlines]).strip("\n")
    if isinstance(b, Quote):
        inner = "\n\n".join([_block_plain(x, links, neutral) for x in b.blocks])
        return "\n".join(["> " + line if line else ">" for line in inner.split("\n")])
    return b.text.rstrip("\n")


_MD_ESCAPE = re.compile(r"([\\`*_\[\]<>#|~])")


def _md_escape(text: str) -> str:
    return _MD_ESCAPE.sub(r"\\\1", text)


def to_markdown(rt: RichText, *, neutralise_mentions: bool = False) -> str:
    return "\n\n".join(_block_md(b, neutralise_mentions) for b in rt.blocks)


def _inline_md(i: Inline, neutral: bool) -> str:
    match i:
        case Text(t):
            return _md_escape(t)
        case LineBreak():
            return "  \n"
        case Link(url, text):
            if not text or text == url:
                return f"<{url}>"
            return f"[{_md_escape(text)}]({url.replace(')', '%29')})"
        case Mention(handle):
            return (NEUTRAL_AT if neutral else "@") + _md_escape(handle)
        case Hashtag(tag):
            return "\\#" + _md_escape(tag)
        case Emphasis(children, strong):
            mark = "**" if strong else "*"
            inner = "".join(_inline_md(c, neutral) for c in children)
            return f"{mark}{inner}{mark}" if inner.strip() else inner
        case Code(t):
            fence = "``" if "`" in t else "`"
            return f"{fence}{t}{fence}" if t.strip() else t
        case _:
            assert_never(i)


def _block_md(b: Block, neutral: bool) -> str:
    match b:
        case Paragraph(inlines):
            return "".join(_inline_md(i, neutral) for i in inlines)
        case Quote(blocks):
            inner = "\n\n".join(_block_md(x, neutral) for x in blocks)
            return "\n".join("> " + line for line in inner.split("\n"))
        case CodeBlock(text):
            fence = "~~~~" if "```" in text else "```"
            return f"{fence}\n{text.rstrip()}\n{fence}"
        case _:
            assert_never(b)


def to_html(rt: RichText, *, neutralise_mentions: bool = False,
            hashtag_url: str = "") -> str:
    """Escaped HTML built from the tree.  ``hashtag_url`` is a template with ``{tag}``."""
    return "".join(_block_html(b, neutralise_mentions, hashtag_url) for b in rt.blocks)


def _esc(text: str) -> str:
    return htmllib.escape(text, quote=True)


def _inline_html(i: Inline, neutral: bool, tag_url: str) -> str:
    match i:
        case Text(t):
            return _esc(t)
        case LineBreak():
            return "<br>"
        case Link(url, text):
            href = safe_url(url)
            label = _esc(text or url)
            if href is None:
                return label
            return f'<a href="{_esc(href)}" rel="nofollow noopener noreferrer">{label}</a>'
        case Mention(handle, url):
            if neutral or not safe_url(url):
                return _esc((NEUTRAL_AT if neutral else "@") + handle)
            # class="mention" (as Mastodon writes it): read back as a mention
            # whatever the URL looks like
            return f'<a href="{_esc(url)}" class="mention">@{_esc(handle)}</a>'
        case Hashtag(tag):
            if tag_url:
                href = tag_url.format(tag=_esc(tag))
                return f'<a href="{href}" rel="tag">#{_esc(tag)}</a>'
            return "#" + _esc(tag)
        case Emphasis(children, strong):
            t = "strong" if strong else "em"
            inner = "".join(_inline_html(c, neutral, tag_url) for c in children)
            return f"<{t}>{inner}</{t}>"
        case Code(t):
            return f"<code>{_esc(t)}</code>"
        case _:
            assert_never(i)


def _block_html(b: Block, neutral: bool, tag_url: str) -> str:
    match b:
        case Paragraph(inlines):
            return "<p>" + "".join(_inline_html(i, neutral, tag_url) for i in inlines) + "</p>"
        case Quote(blocks):
            return ("<blockquote>" + "".join(_block_html(x, neutral, tag_url) for x in blocks)
                    + "</blockquote>")
        case CodeBlock(text):
            return f"<pre><code>{_esc(text)}</code></pre>"
        case _:
            assert_never(b)


# ====================================================================== input

_URL = re.compile(r"""\bhttps?://[^\s<>"'`]+""", re.IGNORECASE)
_TAG = re.compile(r"(?<![\w&#/])#(\w[\w]*)", re.UNICODE)
_MENTION = re.compile(r"(?<![\w@/])@([A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?"
                      r"(?:@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)?)")
_TRAILING_PUNCT = ".,;:!?)]}'\""


def _url_end(url: str) -> int:
    """Where a matched URL really ends: trailing punctuation is the sentence's
    (a ``)`` stays when the URL holds a ``(``).  Linear in the URL's length."""
    end, paren = len(url), url.find("(")
    while end and url[end - 1] in _TRAILING_PUNCT \
            and not (url[end - 1] == ")" and -1 < paren < end):
        end -= 1
    return end


def _first(span: tuple[int, int, Inline]) -> int:
    return span[0]


def _linkify(text: str) -> list[Inline]:
    """Split a line of plain text into text, links, hashtags and mentions.

    Linear in the line's length whatever it holds (a line of 10,000 ``@a``):
    the positions already taken by a link, tag or mention are marked in a
    bytearray, so a later match is checked against them in one C-level scan."""
    has_url, has_tag, has_at = "://" in text, "#" in text, "@" in text
    if not (has_url or has_tag or has_at):
        return [Text(text)] if text else []
    out: list[Inline] = []
    pos = 0
    spans: list[tuple[int, int, Inline]] = []
    taken = bytearray(len(text)) if has_url + has_tag + has_at > 1 else None
    if has_url:
        for m in _URL.finditer(text):
            s = m.start()
            e = s + _url_end(m.group(0))
            spans.append((s, e, Link(text[s:e])))
            if taken is not None:
                taken[s:e] = b"\x01" * (e - s)
    if has_tag:
        for m in _TAG.finditer(text):
            s, e = m.span()
            if (not spans or taken is None or taken.find(1, s, e) < 0) \
                    and not m.group(1).isdigit():
                spans.append((s, e, Hashtag(m.group(1))))
                if taken is not None and has_at:
                    taken[s:e] = b"\x01" * (e - s)
    if has_at:
        checked = bool(spans) and taken is not None
        for m in _MENTION.finditer(text):
            s, e = m.span()
            if not checked or taken.find(1, s, e) < 0:  # type: ignore[union-attr]
                spans.append((s, e, Mention(m.group(1))))
    if has_url + has_tag + has_at > 1:
        spans.sort(key=_first)
    for s, e, node in spans:
        if s > pos:
            out.append(Text(text[pos:s]))
        out.append(node)
        pos = e
    if pos < len(text):
        out.append(Text(text[pos:]))
    return out


def from_plain(text: str) -> RichText:
    """Plain text with links, ``#hashtags`` and ``@mentions`` recognised."""
    return RichText(tuple(_plain_blocks(clean_text(text), 0)))


_PARA_BREAK = re.compile(r"\n[ \t]*\n")


def _plain_blocks(text: str, depth: int) -> list[Block]:
    blocks: list[Block] = []
    for chunk in _PARA_BREAK.split(text):
        lines = chunk.strip("\n").split("\n")
        # ``>`` quotes nest MAX_NESTING deep; deeper ``>`` stay in the text
        if depth < MAX_NESTING and all(line.startswith(">") for line in lines) \
                and chunk.strip():
            inner = "\n".join(line[1:].removeprefix(" ") for line in lines)
            blocks.append(Quote(tuple(_plain_blocks(inner, depth + 1))))
            continue
        inlines: list[Inline] = []
        for i, line in enumerate(lines):
            if i:
                inlines.append(LineBreak())
            inlines.extend(_linkify(line))
        if any(not isinstance(x, LineBreak) for x in inlines):
            blocks.append(Paragraph(tuple(inlines)))
    return blocks


_md = MarkdownIt("commonmark", {"html": False, "linkify": False})
_TOO_DEEP = "hashbridge.too_deep"
_block_tokenize = _md.block.tokenize


def _watched_tokenize(state: Any, start: int, end: int) -> None:
    # markdown-it drops every line below its nesting limit (maxNesting, 20):
    # note it, so the text can be kept another way
    if state.level >= state.md.options.maxNesting:
        state.env[_TOO_DEEP] = True
    _block_tokenize(state, start, end)


_md.block.tokenize = _watched_tokenize  # type: ignore[method-assign,assignment]


def from_markdown(text: str) -> RichText:
    """CommonMark (raw HTML is treated as text) into the canonical tree.

    Blocks nested deeper than markdown-it reads (quotes in lists in quotes...)
    would lose their lines: such a text is read as plain text instead."""
    text = clean_text(text)
    env: dict[str, Any] = {}
    html = _md.render(text, env)
    if env.get(_TOO_DEEP):
        return from_plain(text)
    return from_html(html)


_ALLOWED_TAGS = {
    "p", "br", "a", "span", "em", "i", "strong", "b", "code", "pre", "blockquote", "ul",
    "ol", "li", "del", "s", "u", "h1", "h2", "h3", "h4", "h5", "h6", "div", "sup", "sub",
}
_DROP_WITH_CONTENT = {"script", "style", "mx-reply", "template", "noscript", "iframe",
                      "object", "embed", "svg", "math", "head", "title"}


def sanitise_html(html: str) -> str:
    """nh3 with the tags the converter understands; scripts and reply fallbacks go
    with their content.

    html5ever (under nh3) checks the stack of open elements at many tags, which
    is quadratic in the nesting depth (64 KB of ``<ul><li>`` costs seconds):
    HTML with more possible tags than :data:`_FEW_TAGS` is first rewritten by
    :func:`_shallow`, which keeps the text and at most :data:`MAX_HTML_DEPTH`
    open elements."""
    if _count_tags(html) > _FEW_TAGS:
        html = _shallow(html)
    return nh3.clean(
        html,
        tags=_ALLOWED_TAGS,
        clean_content_tags=_DROP_WITH_CONTENT,
        attributes={"a": {"href", "class"}, "span": {"class"}},
        url_schemes=set(SAFE_SCHEMES),
        link_rel=None,
        strip_comments=True,
    )


MAX_HTML_DEPTH = 48
"""Open elements kept by :func:`_shallow` (the tree keeps MAX_NESTING of them)."""
_FEW_TAGS = 1000
_TAG_START = re.compile(r"<[A-Za-z]")


def _count_tags(html: str) -> int:
    """An upper bound of the start tags in *html*."""
    return len(_TAG_START.findall(html))


# One token of raw HTML as the tokenizer reads it: a tag (name, then attributes
# whose values, quoted after "=", may hold ">"), a comment or other markup declaration, a
# run of text, or a lone "<".  Possessive: one pass, no backtracking.
_RAW_TOKEN = re.compile(
    r"""<(/?)([A-Za-z][^\t\n\f\r />]*+)"""
    r"""((?:[^>"'=]++|=[\t\n\f\r ]*+(?:"[^"]*+"|'[^']*+'|(?!["']))|["'])*+)>"""
    r"|(<!--.*?(?:--!?>|\Z)|<!-?-?>|<[!?][^>]*+(?:>|\Z)|</(?![A-Za-z])[^>]*+(?:>|\Z))"
    r"|([^<]++)|<", re.S)
_ATTR = re.compile(r"""([^\s"'>/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+)))?""")
_RAWTEXT = {"script", "style", "noscript", "iframe", "title", "textarea", "xmp", "noembed",
            "noframes"}
_DROP_CONTAINER = {"mx-reply", "template", "object", "svg", "math"}
_KEEP_ATTRS = {"a": ("href", "class"), "span": ("class",)}


_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "keygen", "link",
                   "meta", "param", "source", "track", "wbr"})


def cap_html_depth(html: str, max_depth: int = MAX_HTML_DEPTH) -> str:
    """*html* with at most *max_depth* elements open at any point: deeper tags
    are dropped (their content stays), every other tag, attribute, comment and
    text kept as written (HTML with fewer tags than that comes back as it
    was).  For HTML handed to parsers that lose text below a depth (libxml2
    stops at 256) or slow down with it.  Not a sanitiser."""
    if _count_tags(html) <= max_depth:
        return html
    return _shallow(html, keep=True, max_depth=max_depth)


def _shallow(html: str, *, keep: bool = False, max_depth: int = MAX_HTML_DEPTH) -> str:
    """*html* rewritten in one linear pass: allowed tags only (attributes only
    those :func:`sanitise_html` keeps), comments and markup declarations gone,
    scripts and the other drop-with-content elements gone with their content,
    every text kept, and never more than MAX_HTML_DEPTH elements open (deeper
    tags are dropped, their content stays).  Well nested, so html5ever reads
    it in linear time; nh3 still sanitises the result.

    ``keep=True``: only the depth is capped (see :func:`cap_html_depth`)."""
    out: list[str] = []
    stack: list[str] = []
    skipped: dict[str, int] = {}  # tags dropped for depth, so their end tags go too
    resume = 0  # after a skipped element: tokens before this are inside it
    n = len(html)
    for m in _RAW_TOKEN.finditer(html):
        start = m.start()
        if start < resume:
            continue
        name = m[2]
        if name is None:
            if m[5] is not None or (keep and m[4] is not None):
                out.append(m[0])
            elif m[4] is None:  # a lone "<"
                nxt = html[start + 1:start + 3].lstrip("/")[:1]
                if nxt.isascii() and nxt.isalpha():
                    break  # a tag that never ends: the rest is in it (as html5ever reads it)
                out.append("&lt;")
            continue
        name = name.lower()
        end, attrs = m[1], m[3]
        if not end and name == "plaintext":  # the rest of the document is text
            out.append(html[start:] if keep else htmllib.escape(html[m.end():], quote=False))
            break
        if not end and name in _RAWTEXT:
            close = re.compile(rf"</{re.escape(name)}[\t\n\f\r />]", re.I).search(html, m.end())
            stop = close.start() if close else n
            if keep:
                gt = html.find(">", stop)
                resume = n if close is None or gt < 0 else gt + 1
                out.append(html[start:resume])
                continue
            if name not in _DROP_WITH_CONTENT:
                out.append(htmllib.escape(htmllib.unescape(html[m.end():stop]), quote=False))
            gt = html.find(">", stop)
            resume = n if close is None or gt < 0 else gt + 1
            continue
        if keep:
            if name in _VOID:
                out.append(m[0])
                continue
        elif not end and name in _DROP_CONTAINER and not attrs.rstrip().endswith("/"):
            resume = _skip_element(html, m.end(), name)
            continue
        elif name not in _ALLOWED_TAGS:
            continue
        if name == "br":
            if not end:
                out.append("<br>")
        elif not end:
            if len(stack) >= max_depth:
                skipped[name] = skipped.get(name, 0) + 1
                continue
            stack.append(name)
            if keep:
                out.append(m[0])
            else:
                out.append(f"<{name}{_keep_attrs(name, attrs)}>" if attrs else f"<{name}>")
        elif skipped.get(name):
            skipped[name] -= 1
        elif name in stack:
            while stack:
                top = stack.pop()
                if not keep:
                    out.append(f"</{top}>")
                if top == name:
                    break
            if keep:
                out.append(m[0])
        elif keep:
            out.append(m[0])
    if not keep:
        out.extend(f"</{t}>" for t in reversed(stack))
    return "".join(out)


# HTML tags that end SVG and MathML content (the HTML standard's "breakout" list)
_BREAKOUT = ("b|big|blockquote|body|br|center|code|dd|div|dl|dt|em|embed|h[1-6]|head|hr|i|img"
             "|li|listing|menu|meta|nobr|ol|p|pre|ruby|s|small|span|strong|strike|sub|sup"
             "|table|tt|u|ul|var")


def _skip_element(html: str, pos: int, name: str) -> int:
    """Where the element *name* opened before *pos* ends (after its end tag;
    SVG and MathML also end before an HTML tag that breaks out of them)."""
    breakout = rf"|<(?=(?:{_BREAKOUT})[\t\n\f\r />])" if name in ("svg", "math") else ""
    rx = re.compile(rf"<(/?){re.escape(name)}[\t\n\f\r />]{breakout}", re.I)
    depth = 1
    for m in rx.finditer(html, pos):
        if m[1] is None:
            return m.start()
        depth += -1 if m[1] else 1
        if not depth:
            gt = html.find(">", m.end() - 1)
            return len(html) if gt < 0 else gt + 1
    return len(html)


def _keep_attrs(name: str, raw: str) -> str:
    keep = _KEEP_ATTRS.get(name)
    if not keep or not raw:
        return ""
    out: list[tuple[str, str]] = []
    for m in _ATTR.finditer(raw):
        key = m[1].lower()
        if key in keep and key not in [k for k, _ in out]:
            value = m[2] if m[2] is not None else m[3] if m[3] is not None else m[4] or ""
            out.append((key, htmllib.escape(htmllib.unescape(value), quote=True)))
    return "".join(f' {k}="{v}"' for k, v in out)


def from_html(html: str, *, hashtag_hosts: tuple[str, ...] = ()) -> RichText:
    """Sanitised HTML (Mastodon statuses, Matrix ``formatted_body``, mail) into the tree.

    Recognises Mastodon's mention and hashtag links (``class="mention"``,
    ``rel="tag"``/``/tags/`` paths) and matrix.to user pills.
    """
    parser = _TreeBuilder()
    parser.feed(sanitise_html(clean_text(html)))
    return parser.result()


# nh3's output is html5ever's serialisation: only the allowed tags, attribute
# values double-quoted (``"`` escaped, ``>`` not), ``<`` in text escaped.  A
# regex reads it exactly, at a fraction of html.parser's cost per tag.
_SANITISED_TOKEN = re.compile(r"""<(/?)([A-Za-z][A-Za-z0-9-]*)((?:[^>"]|"[^"]*")*)>|([^<]+)|<""")
_SANITISED_ATTR = re.compile(r"""([^\s="/]+)(?:="([^"]*)")?""")


_WS_TO_SPACE = str.maketrans("\t\n", "  ")
_SPACES = re.compile("  +")  # (a literal prefix: the regex engine skips to each "  ")


def _collapse_ws(text: str) -> str:
    """``re.sub(r"[ \t\n]+", " ", text)`` at C speed: a regex tried at every
    space of a long text costs most of its conversion."""
    text = text.translate(_WS_TO_SPACE)
    return _SPACES.sub(" ", text) if "  " in text else text


class _TreeBuilder:
    """Builds blocks from sanitised HTML.  Tolerant of any nesting nh3 lets through."""

    _BLOCK: ClassVar[set[str]] = {"p", "div", "li", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol"}

    def __init__(self) -> None:
        # A stack of block containers: each is a list of finished blocks plus the
        # inline list being filled.
        self._blocks: list[list[Block]] = [[]]
        self._inlines: list[list[Inline]] = [[]]
        self._inline_stack: list[tuple[str, list[Inline], dict[str, str]]] = []
        # how many of each tag the inline stack holds: the checks on every end
        # tag and every text run stay O(1) however deep the nesting
        self._open: dict[str, int] = {}
        self._pre: list[str] | None = None
        self._list_depth = 0

    # -- helpers
    def _flush_para(self) -> None:
        # Close any open inline containers (unbalanced HTML) into the paragraph.
        while self._inline_stack:
            self._close_inline(self._inline_stack[-1][0])
        items = _trim(self._inlines[-1])
        if items:
            self._blocks[-1].append(Paragraph(tuple(items)))
        self._inlines[-1] = []

    def _cur(self) -> list[Inline]:
        return self._inline_stack[-1][1] if self._inline_stack else self._inlines[-1]

    def _close_inline(self, tag: str) -> None:
        if not self._open.get(tag):
            return
        while self._inline_stack:
            t, children, attrs = self._inline_stack.pop()
            self._open[t] -= 1
            node = _make_inline(t, children, attrs)
            self._cur().extend(node)
            if t == tag:
                break

    def feed(self, html: str) -> None:
        """Read HTML as :func:`sanitise_html` writes it."""
        unescape = htmllib.unescape
        for m in _SANITISED_TOKEN.finditer(html):
            text = m[4]
            if text is not None:
                self.handle_data(unescape(text) if "&" in text else text)
            elif m[2] is None:
                self.handle_data("<")
            elif m[1]:
                self.handle_endtag(m[2].lower())
            else:
                attrs = [(a[1].lower(), unescape(a[2]) if a[2] is not None else None)
                         for a in _SANITISED_ATTR.finditer(m[3])] if m[3] else []
                self.handle_starttag(m[2].lower(), attrs)

    # -- parser callbacks
    def handle_starttag(self, tag: str, attrs_list: list[tuple[str, str | None]]) -> None:
        attrs = {k: v or "" for k, v in attrs_list}
        if self._pre is not None:
            return
        if tag == "br":
            self._cur().append(LineBreak())
        elif tag == "pre":
            self._flush_para()
            self._pre = []
        elif tag == "blockquote":
            self._flush_para()
            self._blocks.append([])
            self._inlines.append([])
        elif tag in self._BLOCK:
            self._flush_para()
            if tag in ("ul", "ol"):
                self._list_depth += 1
            if tag == "li":
                self._cur().append(Text("• "))
        elif tag in ("a", "em", "i", "strong", "b", "code", "del", "s", "u", "span",
                     "sup", "sub"):
            self._inline_stack.append((tag, [], attrs))
            self._open[tag] = self._open.get(tag, 0) + 1

    def handle_endtag(self, tag: str) -> None:
        if self._pre is not None:
            if tag == "pre":
                self._blocks[-1].append(CodeBlock("".join(self._pre).strip("\n")))
                self._pre = None
            return
        if tag == "blockquote" and len(self._blocks) > 1:
            self._flush_para()
            inner = self._blocks.pop()
            self._inlines.pop()
            if inner:
                self._blocks[-1].append(Quote(tuple(inner)))
        elif tag in self._BLOCK:
            self._flush_para()
            if tag in ("ul", "ol"):
                self._list_depth = max(0, self._list_depth - 1)
        else:
            self._close_inline(tag)

    def handle_data(self, data: str) -> None:
        if self._pre is not None:
            self._pre.append(data)
            return
        data = _collapse_ws(data)
        if not data:
            return
        if self._open.get("a") or self._open.get("code"):
            self._cur().append(Text(data))
        else:
            # Bare URLs, #tags and @mentions in formatted text (Matrix clients,
            # HTML mail) are what they would be in plain text.
            self._cur().extend(_linkify(data))

    def result(self) -> RichText:
        if self._pre is not None:
            self._blocks[-1].append(CodeBlock("".join(self._pre)))
            self._pre = None
        while len(self._blocks) > 1:
            self._flush_para()
            inner = self._blocks.pop()
            self._inlines.pop()
            if inner:
                self._blocks[-1].append(Quote(tuple(inner)))
        self._flush_para()
        return RichText(tuple(self._blocks[0]))


def _text_of(children: list[Inline]) -> str:
    out = []
    for c in children:
        match c:
            case Text(t) | Code(t):
                out.append(t)
            case Link(url, text):
                out.append(text or url)
            case Mention(h):
                out.append("@" + h)
            case Hashtag(t):
                out.append("#" + t)
            case Emphasis(ch):
                out.append(_text_of(list(ch)))
            case LineBreak():
                out.append(" ")
    return "".join(out)


def _link_node(label: str, attrs: dict[str, str]) -> Inline:
    """What an ``<a>`` with a safe href and this (stripped) label is: a hashtag,
    a mention (a Matrix pill, a fediverse profile) or a link."""
    url = safe_url(attrs.get("href", "")) or ""
    classes = set(attrs.get("class", "").split())
    path = urlsplit(url).path
    if "hashtag" in classes or (label.startswith("#") and "/tags/" in path):
        return Hashtag(label[1:] or unquote(path.rsplit("/", 1)[-1]))
    if url.startswith("https://matrix.to/#/@") and label and not _same_url(label, url):
        # a pill (labelled with the person's name); a bare matrix.to URL stays a link
        return Mention(unquote(url.split("#/", 1)[1]).split("?")[0].lstrip("@"), url,
                       label)
    profile = f"/@{label.lstrip('@').split('@')[0]}" in path or "/users/" in path
    if "mention" in classes or (label.startswith("@") and ("u-url" in classes or profile)):
        host = urlsplit(url).hostname or ""
        user = label.lstrip("@") or (path.rsplit("/@", 1)[-1] if "/@" in path else "")
        if user:
            handle = user if "@" in user or not host else f"{user}@{host}"
            return Mention(handle, url)
    if not label or _same_url(label, url):
        return Link(url)
    return Link(url, label)


def _make_inline(tag: str, children: list[Inline], attrs: dict[str, str]) -> list[Inline]:
    if tag == "a":
        if safe_url(attrs.get("href", "")) is None:
            return children
        raw = _text_of(children)
        node = _link_node(raw.strip(), attrs)
        # The space a label starts or ends with stays beside the link: "<a>w3 </a>x"
        # reads "w3 x", never "w3x".
        lead = [Text(" ")] if raw[:1].isspace() else []
        return lead + [node] + ([Text(" ")] if raw[-1:].isspace() else [])
    if tag in ("em", "i"):
        return [Emphasis(tuple(children))] if children else []
    if tag in ("strong", "b"):
        return [Emphasis(tuple(children), strong=True)] if children else []
    if tag == "code":
        return [Code(_text_of(children))]
    return children


def _joined(run: list[Text]) -> Text:
    """Adjacent texts as one, a space where two meet collapsed as HTML does (the
    space kept beside a link's label meets the text's own)."""
    out: list[str] = []
    for t in run:
        piece = t.text
        if out and out[-1].endswith(" ") and piece.startswith(" "):
            piece = piece.lstrip(" ")
        if piece:
            out.append(piece)
    return Text("".join(out))


def _trim(items: list[Inline]) -> list[Inline]:
    """Merge adjacent text, strip leading/trailing whitespace and line breaks."""
    merged: list[Inline] = []
    run: list[Text] = []  # adjacent texts joined once (not pairwise: linear)
    for i in items:
        if type(i) is Text:
            run.append(i)
            continue
        if run:
            # a lone text node is kept as it is (no new node per tag or mention)
            merged.append(run[0] if len(run) == 1 else _joined(run))
            run = []
        merged.append(i)
    if run:
        merged.append(run[0] if len(run) == 1 else _joined(run))

    def blank(i: Inline) -> bool:
        return isinstance(i, LineBreak) or (isinstance(i, Text) and not i.text.strip())

    start, end = 0, len(merged)
    while start < end and blank(merged[start]):
        start += 1
    while end > start and blank(merged[end - 1]):
        end -= 1
    merged = merged[start:end]
    if merged and isinstance(merged[0], Text):
        merged[0] = Text(merged[0].text.lstrip())
    if merged and isinstance(merged[-1], Text):
        merged[-1] = Text(merged[-1].text.rstrip())
    return merged
