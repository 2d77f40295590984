"""Deeply nested input is flattened, never a crash (issue 12, item 1).

A few hundred nested tags used to raise RecursionError in the recursive tree
walks (``to_html``, ``map_inlines``, ``to_json``...), which stopped the reader
that had ingested the post.  Here every input format and every platform's
converter takes 300, 5,000 and 100,000 levels of nesting, and the text at the
deepest level survives conversion, storage (JSON) and rendering to every
target.  The property tests do the same for arbitrary nesting (depth up to
thousands, wide, mixed and misnested tags).
"""

from __future__ import annotations

import json
import random
import re
from email.message import EmailMessage
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.email.convert import (
    MAX_BODY_BYTES,
    Identity,
    ListMail,
    ListSpec,
    parse_list_mail,
)
from adapters.mastodon.convert import parse_status, status_length
from adapters.matrix.convert import HTML_FORMAT, parse_event
from adapters.twitter.compose import weighted_length
from adapters.twitter.convert import rich_text
from bridge.contract.adapter import Capabilities, TextFormat, Unsupported
from bridge.contract.model import Author, ChannelKey, NativeId, Post, Posted, PostId
from bridge.contract.richtext import (
    MAX_NESTING,
    Emphasis,
    Paragraph,
    Quote,
    RichText,
    Text,
    iter_inlines,
    iter_text,
)
from bridge.contract.textconv import (
    from_html,
    from_markdown,
    from_plain,
    to_html,
    to_markdown,
    to_plain,
)
from bridge.outbound.render import Target, render

DEPTHS = [300, 5_000, 100_000]
MARK = "deepword"
TOP = "topword"

# the formats' ways to nest, each with TOP before and MARK at the deepest level
HTML_SHAPES = {
    "inline": lambda n: f"<p>{TOP} " + "<b>" * n + f"{MARK} @alice #tag" + "</b>" * n + "</p>",
    "mixed": lambda n: f"{TOP} " + "".join(("<em>", "<span>", "<strong>", "<i>", "<u>")[j % 5]
                                           for j in range(n)) + MARK,
    "quote": lambda n: f"{TOP}<br>" + "<blockquote>" * n + MARK + "</blockquote>" * n,
    "list": lambda n: f"{TOP}" + "<ul><li>" * n + MARK,
    "code": lambda n: f"{TOP} " + "<code><b>" * n + MARK + "</b></code>" * n,
}
MD_SHAPES = {
    "quote": lambda n: f"{TOP}\n\n" + ">" * n + f" {MARK}",
    "emphasis": lambda n: f"{TOP} " + "*a " * n + MARK + " a*" * n,
    "strong": lambda n: f"{TOP} " + "**" * n + MARK + "**" * n,
    "link": lambda n: f"{TOP} " + "[" * n + MARK + "](https://e.org/)" * n,
}
PLAIN_SHAPES = {
    "quote": lambda n: f"{TOP}\n\n" + ">" * n + f" {MARK}",
    "quote lines": lambda n: f"{TOP}\n\n" + "\n".join(">" * min(i, n) + f" w{i}"
                                                      for i in range(0, n, max(1, n // 8)))
    + "\n" + ">" * n + f" {MARK}",
}

# X and Mastodon without their length limits: fitting a long text is timed in
# bench/hostile.py, and is not what these tests are about
TARGETS = {
    "x": Capabilities(count=weighted_length, text_format=TextFormat.PLAIN,
                      reply=True, needs_hashtag=True, links_cost=True),
    "mastodon": Capabilities(count=status_length, text_format=TextFormat.PLAIN,
                             reply=True, needs_hashtag=True),
    "matrix": Capabilities(max_length=24000, text_format=TextFormat.HTML, reply=True,
                           formatted=True),
    "email": Capabilities(text_format=TextFormat.HTML, formatted=True, reply=True),
    "markdown": Capabilities(text_format=TextFormat.MARKDOWN, formatted=True),
}


def _post(rt: RichText) -> Post:
    return Post(id=PostId("01DEEP"), community="kmers", origin_channel=ChannelKey("kmers/m"),
                origin_native_id=NativeId("1"), permalink="https://m.example/@a/1",
                author=Author(platform="mastodon", handle="a@m.example", display_name="A"),
                text=rt)


def _depth(rt: RichText) -> int:
    """The deepest nesting of emphasis and quotes (iteratively)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(b, 1) for b in rt.blocks]
    while stack:
        node, d = stack.pop()
        if isinstance(node, Quote):
            deepest = max(deepest, d)
            stack.extend((b, d + 1) for b in node.blocks)
        elif isinstance(node, Paragraph):
            stack.extend((i, 1) for i in node.inlines)
        elif isinstance(node, Emphasis):
            deepest = max(deepest, d)
            stack.extend((i, d + 1) for i in node.children)
    return deepest


def _words(text: str) -> str:
    return " ".join(text.split())


def exercise(rt: RichText, *words: str) -> None:
    """Every walk the relay makes over a stored post: the plain, Markdown and
    HTML outputs, the store's JSON round trip, the text walks, and rendering
    for every kind of target.  *words* survive all of them."""
    assert _depth(rt) <= MAX_NESTING
    outs = [to_plain(rt), to_plain(rt, links=False, neutralise_mentions=True),
            to_markdown(rt), to_html(rt), " ".join(iter_text(rt))]
    for out in outs:
        for w in words:
            assert w in out
    again = RichText.from_json(rt.to_json())
    assert again == rt
    assert list(iter_inlines(again)) == list(iter_inlines(rt))
    rt.hashtags()
    assert not rt.is_empty()
    for name, caps in TARGETS.items():
        parts = render(_post(rt), Target(caps=caps, hashtag="kmers", split="thread"), "Net")
        assert parts, name
        if caps.max_length is None:
            for w in words:
                assert w in parts[0].plain, name


# ------------------------------------------------------------------ formats

@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("shape", sorted(HTML_SHAPES))
def test_deep_html_is_flattened_and_keeps_its_text(shape: str, depth: int) -> None:
    exercise(from_html(HTML_SHAPES[shape](depth)), TOP, MARK)


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("shape", sorted(MD_SHAPES))
def test_deep_markdown_is_flattened_and_keeps_its_text(shape: str, depth: int) -> None:
    exercise(from_markdown(MD_SHAPES[shape](depth)), TOP, MARK)


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("shape", sorted(PLAIN_SHAPES))
def test_deep_plain_quotes_are_flattened_and_keep_their_text(shape: str, depth: int) -> None:
    rt = from_plain(PLAIN_SHAPES[shape](depth))
    exercise(rt, TOP, MARK)


def test_a_tree_built_deep_in_code_is_bounded_too() -> None:
    # the bound holds for every tree, not only the parsers' output
    inner: Emphasis = Emphasis((Text(MARK),))
    for i in range(5_000):
        inner = Emphasis((Text(f"w{i} "), inner), strong=bool(i % 2))
    quote = Quote((Paragraph((inner,)),))
    for _ in range(5_000):
        quote = Quote((quote,))
    rt = RichText((Paragraph((Text(TOP + " "),)), quote))
    exercise(rt, TOP, MARK, "w0 ", "w4999 ")


def test_text_stored_deeper_by_an_older_version_loads_flattened() -> None:
    # the store holds JSON; a text written before the bound could nest as deep
    # as json itself allows
    obj: Any = MARK
    for _ in range(450):
        obj = ["b", [obj]]
    data = json.dumps([["p", [TOP + " ", obj]]])
    rt = RichText.from_json(data)
    exercise(rt, TOP, MARK)


# ------------------------------------------------------------------ platforms

CH = ChannelKey("kmers/net")


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("shape", sorted(HTML_SHAPES))
def test_mastodon_status_with_deep_html(shape: str, depth: int) -> None:
    status = {"id": "7", "content": HTML_SHAPES[shape](depth), "visibility": "public",
              "url": "https://m.example/@a/7", "created_at": "2026-01-01T00:00:00Z",
              "account": {"acct": "a", "url": "https://m.example/@a", "display_name": "A"}}
    ev = parse_status(status, channel=CH)
    assert isinstance(ev, Posted)
    exercise(ev.text, TOP, MARK)


def _matrix(content: dict[str, Any]) -> Any:
    return parse_event({"type": "m.room.message", "event_id": "$e", "sender": "@a:m.example",
                        "origin_server_ts": 1_700_000_000_000, "content": content},
                       channel=CH, room_id="!r:m.example", homeserver="https://m.example")


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("shape", sorted(HTML_SHAPES))
def test_matrix_formatted_body_with_deep_html(shape: str, depth: int) -> None:
    html = HTML_SHAPES[shape](depth)
    ev = _matrix({"msgtype": "m.text", "body": f"{TOP} {MARK}", "format": HTML_FORMAT,
                  "formatted_body": html})
    assert isinstance(ev, Posted)
    # Matrix reads at most 128 K characters of HTML (an event is 64 KiB): past
    # that, the deepest text is cut by the platform's limit, not lost to a crash
    exercise(ev.text, TOP, *([MARK] if len(html) < 131_072 else []))


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("shape", sorted(PLAIN_SHAPES))
def test_matrix_plain_body_with_deep_quotes(shape: str, depth: int) -> None:
    body = PLAIN_SHAPES[shape](depth)
    ev = _matrix({"msgtype": "m.text", "body": body})
    assert isinstance(ev, Posted)
    exercise(ev.text, TOP, *([MARK] if len(body) <= 65_536 else []))


SPEC = ListSpec(channel=CH, list_id="kmers.lists.test", address="kmers@lists.test",
                subject_tag="kmers")
ME = Identity(address="bridge@bridge.test", domain="bridge.test", salt=b"salt")


def _mail(msg: EmailMessage) -> bytes:
    msg["From"] = "Alice <alice@members.test>"
    msg["To"] = "kmers@lists.test"
    msg["Subject"] = "[kmers] deep"
    msg["List-Id"] = "Kmers <kmers.lists.test>"
    msg["Message-ID"] = "<deep@members.test>"
    return b"Return-Path: <kmers-bounces@lists.test>\r\n" + msg.as_bytes()


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("shape", sorted(HTML_SHAPES))
def test_email_html_body_with_deep_html(shape: str, depth: int) -> None:
    # only an HTML part: the converter reads it when there is no plain part
    html_only = EmailMessage()
    body = HTML_SHAPES[shape](depth)
    html_only.set_content(body, subtype="html")
    res = parse_list_mail(_mail(html_only), SPEC, ME)
    if len(body.encode()) > MAX_BODY_BYTES:  # over the cap: rejected whole, with why
        assert isinstance(res, Unsupported) and res.reason.startswith("too large: "), res
        return
    assert isinstance(res, ListMail), res
    exercise(res.event.text, TOP, MARK)


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("shape", sorted(PLAIN_SHAPES))
def test_email_plain_body_with_deep_quotes(shape: str, depth: int) -> None:
    msg = EmailMessage()
    msg.set_content(PLAIN_SHAPES[shape](depth))
    res = parse_list_mail(_mail(msg), SPEC, ME)
    assert isinstance(res, ListMail), res
    exercise(res.event.text, TOP)


@pytest.mark.parametrize("depth", [30, 300, 5_000])
def test_email_with_deeply_nested_mime_parts(depth: int) -> None:
    """Nested multiparts: the body and attachments are found at any depth the
    mail parser takes; deeper than it takes, the mail is an Unsupported with its
    reason (costing that mail only), never an exception."""
    head = ("Return-Path: <kmers-bounces@lists.test>\nList-Id: <kmers.lists.test>\n"
            "From: Alice <alice@members.test>\nSubject: [kmers] mime\n"
            "Message-ID: <mime@members.test>\nMIME-Version: 1.0\n")
    body = "".join(f'Content-Type: multipart/mixed; boundary="b{i}"\n\n--b{i}\n'
                   for i in range(depth))
    body += (f"Content-Type: text/plain\n\n{TOP} {MARK}\n--b{depth - 1}\n"
             "Content-Type: application/pdf\nContent-Disposition: attachment; "
             "filename=\"a.pdf\"\nContent-Transfer-Encoding: base64\n\nJVBERg==\n")
    body += "".join(f"--b{i}--\n" for i in reversed(range(depth)))
    res = parse_list_mail((head + body).encode(), SPEC, ME)
    if isinstance(res, Unsupported):
        assert depth > 300 and res.reason
        return
    exercise(res.event.text, TOP, MARK)
    assert [p.filename for p in res.parts] == ["a.pdf"]


@pytest.mark.parametrize("depth", DEPTHS)
def test_x_text_with_deep_markup_characters(depth: int) -> None:
    # X sends plain text: nesting characters are text, and stay text
    text = f"{TOP} " + ">" * depth + "*" * depth + f" {MARK}"
    exercise(rich_text(text, {}), TOP, MARK)


# ------------------------------------------------------------------ properties

KEEP_TAGS = ["p", "div", "span", "b", "i", "em", "strong", "code", "pre", "blockquote", "ul",
             "ol", "li", "h1", "h3", "del", "s", "u", "sup", "sub", "font", "section",
             "article", "x-custom", 'a href="https://e.org/"', 'span class="mention"']


@st.composite
def nested_html(draw: st.DrawFn) -> tuple[str, list[str]]:
    """Nesting up to thousands deep, siblings, text at any level, end tags
    complete, partial, missing or misnested."""
    rnd = draw(st.randoms(use_true_random=False))
    depth = draw(st.integers(0, 3_000))
    pool = draw(st.lists(st.sampled_from(KEEP_TAGS), min_size=1, max_size=6))
    words: list[str] = []
    out: list[str] = []
    open_: list[str] = []
    for i in range(depth):
        tag = rnd.choice(pool)
        out.append(f"<{tag}>")
        open_.append(tag.split()[0])
        if rnd.random() < 0.2:
            words.append(f"w{i}")
            out.append(f"w{i} ")
        if open_ and rnd.random() < 0.1:  # a sibling: close one, open again later
            out.append(f"</{open_.pop()}>")
    words.append(MARK)
    out.append(MARK)
    ending = draw(st.sampled_from(["all", "none", "some", "shuffled"]))
    closes = [f"</{t}>" for t in reversed(open_)]
    if ending == "none":
        closes = []
    elif ending == "some":
        closes = closes[: len(closes) // 2]
    elif ending == "shuffled":
        rnd.shuffle(closes)
    out.extend(closes)
    out.append(" endword")
    words.append("endword")
    return "".join(out), words


SLOW = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _assert_kept(rt: RichText, words: list[str]) -> None:
    plain = to_plain(rt)
    missing = [w for w in words if not re.search(rf"(?<![\w]){w}(?!\w)", plain)]
    assert not missing, missing[:10]


@SLOW
@given(nested_html())
def test_any_nested_html_converts_and_keeps_its_text(case: tuple[str, list[str]]) -> None:
    html, words = case
    rt = from_html(html)
    _assert_kept(rt, words)
    exercise(rt, MARK)


@st.composite
def nested_markdown(draw: st.DrawFn) -> tuple[str, list[str]]:
    rnd = draw(st.randoms(use_true_random=False))
    depth = draw(st.integers(0, 3_000))
    # (no backticks or tildes: a fence's info string is not text, nesting or not)
    marks = draw(st.lists(st.sampled_from([">", "> ", "*", "**", "_", "__", "[", "- ",
                                           "1. ", "  ", "# "]),
                          min_size=1, max_size=6))
    words: list[str] = []
    lines: list[str] = []
    line: list[str] = []
    for i in range(depth):
        line.append(rnd.choice(marks))
        if rnd.random() < 0.2:
            line.append(f" w{i} ")
            words.append(f"w{i}")
        if rnd.random() < 0.02:
            lines.append("".join(line))
            line = []
    line.append(f" {MARK} ")
    words.append(MARK)
    lines.append("".join(line))
    return "\n".join(lines), words


@settings(SLOW, max_examples=25)
@given(nested_markdown())
def test_any_nested_markdown_converts_and_keeps_its_text(case: tuple[str, list[str]]) -> None:
    md, words = case
    rt = from_markdown(md)
    _assert_kept(rt, words)
    exercise(rt, MARK)


@settings(SLOW, max_examples=30)
@given(st.integers(0, 3_000), st.randoms(use_true_random=False))
def test_any_nested_plain_quotes_convert_and_keep_their_text(depth: int,
                                                             rnd: random.Random) -> None:
    words, lines = [], []
    level = 0
    for i in range(depth):
        level = max(0, level + rnd.choice([-3, -1, 1, 1, 2, 5]))
        lines.append(">" * level + rnd.choice(["", " "]) + f"w{i}")
        words.append(f"w{i}")
        if rnd.random() < 0.05:
            lines.append("")
    lines.append(">" * depth + f" {MARK}")
    words.append(MARK)
    rt = from_plain("\n".join(lines))
    _assert_kept(rt, words)
    exercise(rt, MARK)
