"""Canonical rich text: a small typed tree every platform converts through.

Blocks (paragraph, quote, code block) hold inlines (text, line break, link,
mention, hashtag, emphasis, code).  Conversions to plain text, Markdown and HTML
live in :mod:`bridge.contract.textconv`; this module is the data and its small algebra.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar, assert_never

MAX_NESTING = 16
"""Deepest nesting kept: emphasis inside emphasis, quote inside quote.  Deeper
nesting is flattened where the tree is built (the node's children take its
place, so no text is lost): every walk over a tree is then depth-bounded, and
no input (a few hundred nested tags) can exhaust the interpreter's stack."""


@dataclass(frozen=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, slots=True)
class LineBreak:
    pass


@dataclass(frozen=True, slots=True)
class Link:
    url: str
    text: str = ""
    """Shown text; empty means the URL itself is shown."""


@dataclass(frozen=True, slots=True)
class Mention:
    handle: str
    """As written on the origin, without a leading ``@`` (``alice``, ``alice@host``)."""
    url: str = ""
    display: str = ""


@dataclass(frozen=True, slots=True)
class Hashtag:
    tag: str
    """Without the ``#``."""


_N = TypeVar("_N", "Emphasis", "Quote")


def _bounded(items: tuple[Any, ...], kind: type[_N],
             inner: Callable[[_N], tuple[Any, ...]]) -> tuple[tuple[Any, ...], int]:
    """*items* of a node of *kind*, and the node's depth (levels of *kind* from
    it down): where a child of the same kind is already ``MAX_NESTING`` deep,
    its own items take its place (the text is kept, a level goes)."""
    deepest = 0
    for c in items:
        if type(c) is kind and c.depth > deepest:
            deepest = c.depth
    if deepest < MAX_NESTING:
        return items, deepest + 1
    flat: list[Any] = []
    for c in items:
        if type(c) is kind and c.depth >= MAX_NESTING:
            flat.extend(inner(c))
        else:
            flat.append(c)
    return tuple(flat), MAX_NESTING


@dataclass(frozen=True, slots=True)
class Emphasis:
    children: tuple[Inline, ...]
    strong: bool = False
    depth: int = field(default=1, init=False, repr=False, compare=False)
    """Emphasis levels from this node down (1: no emphasis inside)."""

    def __post_init__(self) -> None:
        children, depth = _bounded(self.children, Emphasis, lambda e: e.children)
        if children is not self.children:
            object.__setattr__(self, "children", children)
        object.__setattr__(self, "depth", depth)


@dataclass(frozen=True, slots=True)
class Code:
    text: str


Inline = Text | LineBreak | Link | Mention | Hashtag | Emphasis | Code


@dataclass(frozen=True, slots=True)
class Paragraph:
    inlines: tuple[Inline, ...]


@dataclass(frozen=True, slots=True)
class Quote:
    blocks: tuple[Block, ...]
    depth: int = field(default=1, init=False, repr=False, compare=False)
    """Quote levels from this node down (1: no quote inside)."""

    def __post_init__(self) -> None:
        blocks, depth = _bounded(self.blocks, Quote, lambda q: q.blocks)
        if blocks is not self.blocks:
            object.__setattr__(self, "blocks", blocks)
        object.__setattr__(self, "depth", depth)


@dataclass(frozen=True, slots=True)
class CodeBlock:
    text: str


Block = Paragraph | Quote | CodeBlock


@dataclass(frozen=True, slots=True)
class RichText:
    blocks: tuple[Block, ...] = ()

    @classmethod
    def plain(cls, text: str) -> RichText:
        """Literal text, no detection of links or tags (see ``textconv.from_plain``)."""
        paras = []
        for chunk in text.split("\n\n"):
            inlines: list[Inline] = []
            for i, line in enumerate(chunk.split("\n")):
                if i:
                    inlines.append(LineBreak())
                if line:
                    inlines.append(Text(line))
            if inlines:
                paras.append(Paragraph(tuple(inlines)))
        return cls(tuple(paras))

    def is_empty(self) -> bool:
        return not any(True for _ in iter_text(self))

    def with_prefix(self, inlines: Iterable[Inline]) -> RichText:
        """Put *inlines* at the start of the first paragraph (a new one if needed)."""
        pre = tuple(inlines)
        if self.blocks and isinstance(self.blocks[0], Paragraph):
            first = self.blocks[0]
            return RichText((Paragraph(pre + first.inlines), *self.blocks[1:]))
        return RichText((Paragraph(pre), *self.blocks))

    def with_suffix(self, inlines: Iterable[Inline]) -> RichText:
        """Put *inlines* at the end of the last paragraph (a new one if needed)."""
        post = tuple(inlines)
        if self.blocks and isinstance(self.blocks[-1], Paragraph):
            last = self.blocks[-1]
            return RichText((*self.blocks[:-1], Paragraph(last.inlines + post)))
        return RichText((*self.blocks, Paragraph(post)))

    def map_inlines(self, fn: Callable[[Inline], Inline]) -> RichText:
        """*fn* applied to every inline (children of emphasis first); returns
        *self* when *fn* changed nothing (returned every inline as it was)."""
        blocks = tuple([_map_block(b, fn) for b in self.blocks])
        if all(a is b for a, b in zip(blocks, self.blocks, strict=True)):
            return self
        return RichText(blocks)

    def hashtags(self) -> set[str]:
        return {i.tag.casefold() for i in iter_inlines(self) if isinstance(i, Hashtag)}

    # -- persistence --------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps([_block_to_obj(b) for b in self.blocks], ensure_ascii=False,
                          separators=(",", ":"))

    @classmethod
    def from_json(cls, data: str) -> RichText:
        return cls(tuple(_block_from_obj(o) for o in json.loads(data)))


def _map_inline(i: Inline, fn: Callable[[Inline], Inline]) -> Inline:
    if isinstance(i, Emphasis):
        children = _map_inlines(i.children, fn)
        return fn(i if children is i.children else Emphasis(children, i.strong))
    return fn(i)


def _map_inlines(items: tuple[Inline, ...], fn: Callable[[Inline], Inline]
                 ) -> tuple[Inline, ...]:
    """The mapped items; the same tuple when nothing changed (no copy)."""
    new = [_map_inline(i, fn) for i in items]
    for a, b in zip(new, items, strict=True):
        if a is not b:
            return tuple(new)
    return items


def _map_block(b: Block, fn: Callable[[Inline], Inline]) -> Block:
    if isinstance(b, Paragraph):
        inlines = _map_inlines(b.inlines, fn)
        return b if inlines is b.inlines else Paragraph(inlines)
    if isinstance(b, Quote):
        blocks = tuple([_map_block(x, fn) for x in b.blocks])
        same = all(x is y for x, y in zip(blocks, b.blocks, strict=True))
        return b if same else Quote(blocks)
    return b


def iter_inlines(rt: RichText) -> Iterator[Inline]:
    """Every inline in document order (emphasis before its children); a code
    block shows up as one Code inline."""
    out: list[Inline] = []
    blocks: list[Iterator[Block]] = [iter(rt.blocks)]
    while blocks:  # iterative: a walk must not depend on the nesting depth
        for b in blocks[-1]:
            if isinstance(b, Paragraph):
                inlines: list[Iterator[Inline]] = [iter(b.inlines)]
                while inlines:
                    for i in inlines[-1]:
                        out.append(i)
                        if isinstance(i, Emphasis):
                            inlines.append(iter(i.children))
                            break
                    else:
                        inlines.pop()
            elif isinstance(b, Quote):
                blocks.append(iter(b.blocks))
                break
            else:
                out.append(Code(b.text))
        else:
            blocks.pop()
    return iter(out)


def iter_text(rt: RichText) -> Iterator[str]:
    """Every visible word-bearing string, in order (for hashing and 'no lost text')."""
    for i in iter_inlines(rt):
        match i:
            case Text(t) | Code(t):
                if t.strip():
                    yield t
            case Link(url, text):
                yield text or url
            case Mention(handle):
                yield "@" + handle
            case Hashtag(tag):
                yield "#" + tag
            case LineBreak() | Emphasis():
                pass
            case _:
                assert_never(i)


# ---------------------------------------------------------------- json codec

def _inline_to_obj(i: Inline) -> Any:
    match i:
        case Text(t):
            return t
        case LineBreak():
            return ["br"]
        case Link(url, text):
            return ["a", url, text]
        case Mention(handle, url, display):
            return ["@", handle, url, display]
        case Hashtag(tag):
            return ["#", tag]
        case Emphasis(children, strong):
            return ["b" if strong else "i", [_inline_to_obj(c) for c in children]]
        case Code(t):
            return ["code", t]
        case _:
            assert_never(i)


def _leaf_from_obj(o: Any) -> Inline:
    if isinstance(o, str):
        return Text(o)
    match o[0]:
        case "br":
            return LineBreak()
        case "a":
            return Link(o[1], o[2])
        case "@":
            return Mention(o[1], o[2], o[3])
        case "#":
            return Hashtag(o[1])
        case "code":
            return Code(o[1])
    raise ValueError(f"unknown inline {o[0]!r}")


def _is_emphasis_obj(o: Any) -> bool:
    return not isinstance(o, str) and o[0] in ("b", "i")


def _inline_from_obj(o: Any) -> Inline:
    """Iterative (a text stored by an older version may nest deeper than
    MAX_NESTING; the Emphasis constructor flattens it on the way in)."""
    if not _is_emphasis_obj(o):
        return _leaf_from_obj(o)
    stack: list[tuple[Any, list[Inline], Iterator[Any]]] = [(o, [], iter(o[1]))]
    while True:
        obj, done, it = stack[-1]
        for c in it:
            if _is_emphasis_obj(c):
                stack.append((c, [], iter(c[1])))
                break
            done.append(_leaf_from_obj(c))
        else:
            stack.pop()
            node = Emphasis(tuple(done), obj[0] == "b")
            if not stack:
                return node
            stack[-1][1].append(node)


def _block_to_obj(b: Block) -> Any:
    match b:
        case Paragraph(inlines):
            return ["p", [_inline_to_obj(i) for i in inlines]]
        case Quote(blocks):
            return ["q", [_block_to_obj(x) for x in blocks]]
        case CodeBlock(text):
            return ["pre", text]
        case _:
            assert_never(b)


def _block_from_obj(o: Any) -> Block:
    """Iterative, as :func:`_inline_from_obj`."""
    if o[0] != "q":
        return _leaf_block_from_obj(o)
    stack: list[tuple[list[Block], Iterator[Any]]] = [([], iter(o[1]))]
    while True:
        done, it = stack[-1]
        for c in it:
            if c[0] == "q":
                stack.append(([], iter(c[1])))
                break
            done.append(_leaf_block_from_obj(c))
        else:
            stack.pop()
            node = Quote(tuple(done))
            if not stack:
                return node
            stack[-1][0].append(node)


def _leaf_block_from_obj(o: Any) -> Block:
    match o[0]:
        case "p":
            return Paragraph(tuple([_inline_from_obj(i) for i in o[1]]))
        case "pre":
            return CodeBlock(o[1])
    raise ValueError(f"unknown block {o[0]!r}")
