"""Per-target rendering, sans I/O: attribution, mentions neutralised, hashtag
appended, links dropped where they cost money, and the length fitted by the
target's own counting rule (split into a numbered thread or truncated with a
reference to the original).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass

from bridge.contract.adapter import Capabilities, Rendered, TextFormat
from bridge.contract.media import note_for
from bridge.contract.mentions import is_matrix_user_link
from bridge.contract.model import Attachment, Post
from bridge.contract.richtext import (
    Block,
    Code,
    CodeBlock,
    Emphasis,
    Hashtag,
    Inline,
    Link,
    Mention,
    Paragraph,
    Quote,
    RichText,
    Text,
)
from bridge.contract.textconv import NEUTRAL_AT, clean_text, to_html, to_markdown, to_plain
from bridge.outbound.extras import extra_blocks, shortened_quote

DEFAULT_ATTRIBUTION = "{name} ({network}): "
MAX_PARTS = 25
ELLIPSIS = "…"

# Every at-sign (ASCII or fullwidth) before a word character, even inside a
# word ("me@admin"), in the tree and in names: the first, conservative pass;
# the target's own rule judges the final text again (Capabilities.neutralise).
_AT_WORD = re.compile(r"[@\uff20](?=\w)")


def _at_free(text: str) -> bool:
    """No at-sign in *text*, ASCII, fullwidth or %-encoded."""
    return "@" not in text and "\uff20" not in text and "%40" not in text


def _neutral_at(text: str) -> str:
    return _AT_WORD.sub("\\g<0>\u2060", text)


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """What the renderer needs to know about one target channel."""

    caps: Capabilities
    hashtag: str
    attribution: str = DEFAULT_ATTRIBUTION
    append_hashtag: bool | None = None
    split: str | None = None
    """``thread`` or ``truncate``; None picks thread where replies exist."""
    links: bool | None = None
    max_length: int | None = None
    """An operator's cap below the platform's own."""


def _neutral_inline(i: Inline) -> Inline:
    match i:
        case Mention(handle):
            return Text(NEUTRAL_AT + handle)
        case Text(t) if "@" in t or "\uff20" in t:
            fixed = _neutral_at(t)
            return i if fixed == t else Text(fixed)
        case _:
            return i


def neutralise(rt: RichText) -> RichText:
    """Mentions become text that pings nobody on any network; so does ``@room``."""
    return rt.map_inlines(_neutral_inline)


_URL_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://(www\.)?", re.IGNORECASE)
_DOMAIN = re.compile(r"\b(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}\b", re.IGNORECASE)
ONE_DOT_LEADER = "\u2024"


def defuse(text: str) -> str:
    """Domain-looking words with their dots replaced by U+2024: they read the
    same and no platform turns them into (billable) links."""
    return _DOMAIN.sub(lambda m: m.group(0).replace(".", ONE_DOT_LEADER), text)


def _linkless_inline(i: Inline) -> Inline:
    match i:
        case Link(url, label):
            host = _URL_SCHEME.sub("", url)
            return Text(defuse(label or host.split("/")[0]))
        case Text(t) if "." in t:
            fixed = defuse(t)
            return i if fixed == t else Text(fixed)
        case _:
            return i


def drop_links(rt: RichText) -> RichText:
    """No URL survives, not even a bare domain a platform would link (and bill)."""
    return rt.map_inlines(_linkless_inline)


def attribution(post: Post, template: str, network: str) -> str:
    return _attribution(post.author.name, post.author.handle, template, network,
                        post.permalink if "{url}" in template else "")


@functools.lru_cache(maxsize=4096)
def _attribution(author_name: str, handle: str, template: str, network: str, url: str) -> str:
    # Cached: the same members post again and again (a pure function of its arguments).
    name = clean_text(author_name).replace("\n", " ")[:80]
    name = _neutral_at(name)
    try:
        return template.format(name=name, handle=_neutral_at(handle),
                               network=network, url=url)
    except (KeyError, IndexError, ValueError):
        return DEFAULT_ATTRIBUTION.format(name=name, network=network)


def render(post: Post, target: Target, network: str, *, text: RichText | None = None,
           reference: str = "", prefix: str = "", keep_reference: bool = False
           ) -> list[Rendered]:
    """Render *post* (or *text* on its behalf) for *target*; one item per part.

    ``network`` is the display name of the post's origin network.
    ``reference`` is a link to the original used when truncating.
    ``prefix`` goes before the attribution (corrections: ``"✏️ "``).
    ``keep_reference``: where links are dropped, the reference still shows, as
    an address that is not a link (a post cut to spare the budget says where
    the rest is).
    """
    caps = target.caps
    links = target.links if target.links is not None else not caps.links_cost
    own, tags = _prepared(text if text is not None else post.text, links)
    if not links:
        reference = defuse(_URL_SCHEME.sub("", reference)) if keep_reference else ""
    head = prefix
    if not post.is_notice:
        head += attribution(post, target.attribution, network)
    wants_tag = (target.append_hashtag if target.append_hashtag is not None
                 else caps.needs_hashtag)
    tag_suffix: list[Inline] = []
    if wants_tag and target.hashtag and target.hashtag.casefold() not in tags:
        tag_suffix = [Text(" "), Hashtag(target.hashtag)]
    attachments, notes = _fit_attachments(post.attachments, caps)
    limit = _limit(target)
    rule = caps.neutralise

    def compose(quote_words: RichText | None = None) -> tuple[RichText, str, str]:
        """The whole body, its plain text and that text under the target's
        rules; *quote_words* in place of the quoted post's words."""
        body = own
        if post.poll is not None or post.quote is not None:
            # (neutralised like the member's words: quoted words hold mentions too)
            more, _ = _prepare(RichText(extra_blocks(post, quote_words)), links)
            body = RichText((*own.blocks, *more.blocks))
        if head:
            # (a post of media alone has no words: no space left dangling after the name)
            body = body.with_prefix(_head_nodes(head if body.blocks else head.rstrip()))
        if tag_suffix:
            body = body.with_suffix(tag_suffix)
        if notes:  # readers learn there was more, before the length is fitted
            body = RichText((*body.blocks, Paragraph((Text(" ".join(notes)),))))
        # The final text, judged by the target's own mention rule: whatever the
        # tree held (code, link labels, hashtags, names, notes) is text now.
        raw = to_plain(body, links=links)
        return body, raw, _final(raw, rule, links)

    body, raw, plain = compose()
    quote = post.quote
    if (limit is not None and quote is not None and quote.author is not None
            and not quote.text.is_empty() and not _fits_whole(plain, limit, caps)):
        # Over the limit: the quoted words are shortened first, never the member's.
        short = shortened_quote(quote.text, lambda words: _fits_whole(
            compose(words)[2], limit, caps))
        body, raw, plain = compose(short if short is not None else RichText())
    if limit is None or _fits_whole(plain, limit, caps):
        # (no at-sign anywhere, not even %40 in a link: no rule changes a leaf)
        tree = body if _at_free(raw) else _final_tree(body, rule)
        return [_rendered(tree, plain, post, attachments, caps)]

    tag_text = f" #{target.hashtag}" if tag_suffix else ""
    full = plain
    if tag_text and full.endswith(tag_text):
        full = full[: -len(tag_text)]
    split = target.split or ("thread" if caps.reply else "truncate")
    if split == "truncate":
        parts = [_truncate(full, tag_text, reference, limit, caps)]
    else:
        parts = _split(full, tag_text, reference, limit, caps)
    out = []
    for i, part in enumerate(parts):
        rt = RichText.plain(part)
        out.append(_rendered(rt, part, post, attachments if i == 0 else (), caps))
    return out


# A post goes to every target channel in turn: what does not depend on the
# target (mentions neutralised, links dropped, its hashtags) is worked out once
# per text.  Keyed by identity, holding the text itself so the id stays its own.
_PREPARED: dict[tuple[int, bool], tuple[RichText, RichText, frozenset[str]]] = {}


def _prepared(text: RichText, links: bool) -> tuple[RichText, frozenset[str]]:
    key = (id(text), links)
    hit = _PREPARED.get(key)
    if hit is not None and hit[0] is text:
        return hit[1], hit[2]
    body, tags = _prepare(text, links)
    if len(_PREPARED) >= 512:
        _PREPARED.clear()
    _PREPARED[key] = (text, body, tags)
    return body, tags


def _prepare(rt: RichText, links: bool) -> tuple[RichText, frozenset[str]]:
    """:func:`neutralise` and, where links are dropped, :func:`drop_links`
    (each node as they do it), in one walk that joins neighbouring text: the
    words between the nodes that stay (links, hashtags, code) become one
    text node.  A post of 10,000 mentions is one node for every pass after
    this, not 20,000.  Also its hashtags, casefolded (``RichText.hashtags``),
    found on the way."""
    tags: set[str] = set()

    def text(t: str) -> str:
        if "@" in t or "\uff20" in t:
            t = _neutral_at(t)
        return defuse(t) if not links and "." in t else t

    def inlines(items: tuple[Inline, ...]) -> tuple[Inline, ...]:
        out: list[Inline] = []
        run: list[str] = []
        for i in items:
            kind = type(i)
            if kind is Text:
                run.append(text(i.text))  # type: ignore[union-attr]
            elif kind is Mention:
                t = NEUTRAL_AT + i.handle  # type: ignore[union-attr]
                run.append(defuse(t) if not links and "." in t else t)
            elif kind is Link and not links:
                assert isinstance(i, Link)
                run.append(defuse(i.text or _URL_SCHEME.sub("", i.url).split("/")[0]))
            else:
                if run:
                    out.append(Text("".join(run)))
                    run = []
                if isinstance(i, Emphasis):
                    i = Emphasis(inlines(i.children), i.strong)
                elif isinstance(i, Hashtag):
                    tags.add(i.tag.casefold())
                out.append(i)
        if run:
            out.append(Text("".join(run)))
        return tuple(out)

    def blocks(items: tuple[Block, ...]) -> tuple[Block, ...]:
        out: list[Block] = []
        for b in items:
            if isinstance(b, Paragraph):
                b = Paragraph(inlines(b.inlines))
            elif isinstance(b, Quote):
                b = Quote(blocks(b.blocks))
            out.append(b)
        return tuple(out)

    body = RichText(blocks(rt.blocks))
    return body, frozenset(tags)


@functools.lru_cache(maxsize=1024)
def _head_nodes(head: str) -> tuple[Inline, ...]:
    if head.endswith(" "):
        return (Emphasis((Text(head.rstrip()),), strong=True), Text(" "))
    return (Text(head),)


def _limit(target: Target) -> int | None:
    limits = [x for x in (target.caps.max_length, target.max_length) if x]
    return min(limits) if limits else None


def _rendered(rt: RichText, plain: str, post: Post, attachments: tuple[Attachment, ...],
              caps: Capabilities) -> Rendered:
    # Only the format the target speaks is built (the others cost time per delivery).
    fmt = caps.text_format
    return Rendered(text=rt, plain=plain, html=to_html(rt) if fmt == TextFormat.HTML else "",
                    markdown=to_markdown(rt) if fmt == TextFormat.MARKDOWN else "",
                    content_warning=post.content_warning, attachments=attachments,
                    is_notice=post.is_notice)


def _fit_attachments(items: tuple[Attachment, ...], caps: Capabilities
                     ) -> tuple[tuple[Attachment, ...], list[str]]:
    """The attachments the target takes, and a note for each it does not."""
    ok: list[Attachment] = []
    notes: list[str] = []
    for a in items:
        major = a.media_type.split("/")[0] + "/*"
        if a.media_type not in caps.media_types and major not in caps.media_types:
            notes.append(note_for(a, "type"))
        elif caps.max_media_bytes and a.size and a.size > caps.max_media_bytes:
            notes.append(note_for(a, "size"))
        elif len(ok) >= caps.max_attachments:
            notes.append(note_for(a, "count"))
        else:
            ok.append(a)
    return tuple(ok), notes


def _final(text: str, rule: Callable[[str], str], links: bool) -> str:
    """The last steps before the length is fitted: where links are dropped, no
    domain survives anywhere (code and hashtags included); then no mention by
    the target's rule (after the defusing, which can change what precedes an
    at-sign)."""
    if not links:
        text = defuse(text)
    return rule(text)


def _final_tree(rt: RichText, rule: Callable[[str], str]) -> RichText:
    """The tree the formatted body (HTML, Markdown) is built from, under the
    same rule leaf by leaf (a leaf's start counts as the start of a text, so
    this catches at least what the rule catches in the joined text), and no
    link to a Matrix user (clients show those as pills)."""

    def fix(i: Inline) -> Inline:
        match i:
            case Text(t) if t:
                out = rule(t)
                return i if out == t else Text(out)
            case Code(t) if t:
                out = rule(t)
                return i if out == t else Code(out)
            case Link(url, label) if is_matrix_user_link(url):
                return Text(rule(label or url))
            case Link(url, label) if label:
                out = rule(label)
                return i if out == label else Link(url, out)
            case Hashtag(tag) if tag:
                out = rule(tag)
                return i if out == tag else Text(rule("#" + tag))
            case _:
                return i

    def blocks(items: tuple[Block, ...]) -> tuple[Block, ...]:
        out: list[Block] = []
        for b in items:
            if isinstance(b, CodeBlock):
                out.append(CodeBlock(rule(b.text)))
            elif isinstance(b, Quote):
                out.append(Quote(blocks(b.blocks)))
            else:
                out.append(b)
        return tuple(out)

    mapped = rt.map_inlines(fix)
    return RichText(blocks(mapped.blocks))


def _fits(text: str, limit: int, caps: Capabilities) -> bool:
    return caps.count(text) <= limit


def _fits_whole(text: str, limit: int, caps: Capabilities) -> bool:
    """Whether all of *text* fits, measuring prefixes of doubling length first:
    a long text is found too long after measuring about twice the limit, not
    all of it (the count is monotone in the prefix)."""
    step = max(limit, 16)
    while step < len(text):
        if not _fits(text[:step], limit, caps):
            return False
        step *= 2
    return _fits(text, limit, caps)


_HEAD = 64
"""Code points at the start of a thread part whose mentions can change with
what preceded them (at most "RT:" before an at-sign, a 20-letter name, a list
slug and the three characters X looks at after it)."""


def _rule_head(text: str, rule: Callable[[str], str]) -> str:
    """*text*, now the start of a part, under *rule* again where its start
    matters (its beginning; the rest was judged in its context already)."""
    head = text[:_HEAD]
    fixed = rule(head)
    return text if fixed == head else fixed + text[_HEAD:]


def _cut(text: str, suffix: str, limit: int, caps: Capabilities,
         rule: Callable[[str], str], hint: int = 0) -> tuple[int, str]:
    """The longest prefix of *text* (at a word boundary if one is near) that
    fits with *suffix* once the target's mention rule is applied: ``(end of
    the prefix in text, the part)``.

    Linear in the length of the part, not of *text*, with few measurements:
    the prefix length is searched by interpolation on the measured counts
    (the count is about proportional to the length), growing from the limit
    until a prefix does not fit, then narrowing between the longest prefix
    known to fit and the shortest known not to: after a prefix that fits,
    by doubling steps past it (the answer is usually a code point or a
    cluster away); after one that does not, by interpolation, or bisection
    where interpolation did not halve the interval.  A text of ordinary
    words takes three or four measurements of about one part's length; no
    prefix measured is longer than four times the part.  *hint*: where the
    search starts (the length of the part before, in a thread)."""
    n = len(text)

    def part(k: int) -> str:
        return rule(text[:k] + suffix)

    def size(k: int) -> int:
        return caps.count(part(k))

    lo, clo = 0, _suffix_size(suffix, caps, rule)
    k = min(n, hint if hint > 0 else max(limit, 16))
    while True:  # grow until a prefix does not fit (or all of it does)
        c = size(k)
        if c > limit:
            hi, chi = k, c
            break
        lo, clo = k, c
        if k >= n:
            return n, part(n)
        per = max(c, 1) / k  # count per code point so far
        guess = k + int((limit - c) / per) + 8
        k = min(n, max(k + 1, min(guess, 4 * k)))
    halve = False
    step = 0  # > 0: galloping up from a prefix that fitted, by doubling steps
    while hi - lo > 1:  # lo fits, hi does not
        width = hi - lo
        if step:
            k = min(hi - 1, lo + step)
        elif halve or chi <= clo:
            k = (lo + hi) // 2
        else:  # where the count reaches the limit, were it proportional
            k = lo + (limit - clo) * width // (chi - clo)
            k = min(hi - 1, max(lo + 1, k))
        c = size(k)
        if c <= limit:
            # the last code points that fit are near: look just past them
            lo, clo = k, c
            if step or limit - c <= limit // 64:
                step = step * 2 if step else 1
            else:
                halve = hi - lo > width // 2
        else:
            hi, chi = k, c
            halve = step > 0 or hi - lo > width // 2
            step = 0
    cut = text[:lo]
    space = max(cut.rfind(" "), cut.rfind("\n"))
    if space > lo * 0.6:
        word = cut[:space].rstrip()
        out = rule(word + suffix)
        if _fits(out, limit, caps):  # (cutting elsewhere can wake a mention: judged again)
            return len(word), out
    cut = cut.rstrip()
    return len(cut), rule(cut + suffix)


def _suffix_size(suffix: str, caps: Capabilities, rule: Callable[[str], str]) -> int:
    """The count of *suffix* alone (the same for every part of a thread)."""
    key = (suffix, caps.count, rule)
    hit = _SUFFIX_SIZES.get(key)
    if hit is None:
        if len(_SUFFIX_SIZES) >= 256:
            _SUFFIX_SIZES.clear()
        hit = _SUFFIX_SIZES[key] = caps.count(rule(suffix))
    return hit


_SUFFIX_SIZES: dict[tuple[str, Callable[[str], int], Callable[[str], str]], int] = {}


def _truncate(full: str, tag_text: str, reference: str, limit: int, caps: Capabilities) -> str:
    tail = ELLIPSIS + (f" {reference}" if reference else "") + tag_text
    if not _fits(tail, limit, caps):
        tail = ELLIPSIS
    return _cut(full, tail, limit, caps, caps.neutralise)[1]


def _split(full: str, tag_text: str, reference: str, limit: int,
           caps: Capabilities) -> list[str]:
    """Greedy word packing into parts ending ``(i/n)``; nothing is lost unless
    more than MAX_PARTS would be needed, then the last part is truncated.
    Each part is measured once it is under the target's mention rule: a part
    that starts where a mention was not one (``me@admin``) is judged again."""
    rule = caps.neutralise
    width = len(str(MAX_PARTS))
    probe = f" ({'9' * width}/{'9' * width}){tag_text}"
    if not _fits("x" + probe, limit, caps):
        probe = ""
    chunks: list[str] = []
    rest = full
    end = 0
    while rest and len(chunks) < MAX_PARTS:
        if chunks:
            rest = _rule_head(rest, rule)
        end, _ = _cut(rest, probe, limit, caps, rule, hint=end)
        if end >= len(rest):
            chunks.append(rest)
            rest = ""
            break
        piece = rest[:end]
        if not piece.strip():  # nothing fits: hard cut one code point at a time
            piece = rest[:1]
        chunks.append(piece.rstrip())
        rest = rest[len(piece):].lstrip(" \n")
    if rest:
        last = chunks.pop() + " " + rest
        tail = ELLIPSIS + (f" {reference}" if reference else "")
        chunks.append(_cut(last, tail, limit - _len_probe(probe, caps), caps, rule)[1])
    n = len(chunks)
    if not probe:
        return [rule(c) for c in chunks]
    out = []
    for i, c in enumerate(chunks):
        suffix = f" ({i + 1}/{n}){tag_text}"
        part = rule(c + suffix)
        if not _fits(part, limit, caps):  # (not expected: the probe is the widest suffix)
            part = _cut(c, ELLIPSIS + suffix, limit, caps, rule)[1]
        out.append(part)
    return out


def _len_probe(probe: str, caps: Capabilities) -> int:
    return caps.count(probe) if probe else 0
