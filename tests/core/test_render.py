"""Per-target rendering: attribution, neutral mentions, hashtag, links, fitting."""

from __future__ import annotations

import dataclasses
import re

from hypothesis import given, settings
from hypothesis import strategies as st
from twitter_text import extract_urls, parse_tweet

from bridge.contract.adapter import Capabilities, TextFormat
from bridge.contract.model import Attachment, Author, ChannelKey, NativeId, Post, PostId
from bridge.contract.richtext import RichText
from bridge.contract.textconv import from_plain
from bridge.outbound.render import NEUTRAL_AT, Target, render


def weighted(text: str) -> int:
    return int(parse_tweet(text).weightedLength)


def post(text: str, name: str = "Alice", permalink: str = "https://m.example/@alice/1") -> Post:
    return Post(id=PostId("01TEST"), community="kmers", origin_channel=ChannelKey("kmers/masto"),
                origin_native_id=NativeId("1"), permalink=permalink,
                author=Author(platform="mastodon", handle="alice@m.example", display_name=name),
                text=from_plain(text))


def test_attribution_hashtag_and_neutral_mentions() -> None:
    caps = Capabilities(needs_hashtag=True, text_format=TextFormat.HTML)
    [r] = render(post("hi @bob and @room, see you"), Target(caps=caps, hashtag="kmers"),
                 "Mastodon")
    assert r.plain == f"Alice (Mastodon): hi {NEUTRAL_AT}bob and {NEUTRAL_AT}room, see you #kmers"
    assert "<strong>Alice (Mastodon):</strong>" in r.html


def test_hashtag_not_repeated_when_present() -> None:
    [r] = render(post("about #KMERS today"), Target(caps=Capabilities(needs_hashtag=True),
                                                     hashtag="kmers"), "X")
    assert r.plain.count("#") == 1


def test_display_name_cannot_inject_a_mention_or_markup() -> None:
    [r] = render(post("x", name="@everyone <script>"),
                 Target(caps=Capabilities(text_format=TextFormat.HTML), hashtag="k"), "Matrix")
    assert r.plain.startswith(f"{NEUTRAL_AT}everyone <script>")
    assert "<script>" not in r.html


def test_links_dropped_where_they_cost() -> None:
    caps = Capabilities(links_cost=True, max_length=280, count=weighted)
    [r] = render(post("read https://example.org/paper now"), Target(caps=caps, hashtag="k"), "M")
    assert "https://" not in r.plain and "example\u2024org" in r.plain
    assert not extract_urls(r.plain)  # nothing X would bill as a URL
    [r2] = render(post("read https://example.org/paper now"),
                  Target(caps=caps, hashtag="k", links=True), "M")
    assert "https://example.org/paper" in r2.plain


def test_truncate_adds_reference() -> None:
    caps = Capabilities(max_length=100, reply=False)
    [r] = render(post("word " * 100), Target(caps=caps, hashtag="kmers"), "M",
                 reference="https://m.example/@alice/1")
    assert len(r.plain) <= 100
    assert r.plain.endswith("… https://m.example/@alice/1")


def test_split_numbers_parts_and_keeps_every_word() -> None:
    caps = Capabilities(max_length=80, reply=True, needs_hashtag=True)
    text = " ".join(f"w{i}" for i in range(120))
    parts = render(post(text), Target(caps=caps, hashtag="kmers"), "M")
    assert len(parts) > 1
    for i, p in enumerate(parts, 1):
        assert len(p.plain) <= 80
        assert p.plain.endswith(f"({i}/{len(parts)}) #kmers")
    words = [w for p in parts for w in re.findall(r"\bw\d+\b", p.plain)]
    assert words == [f"w{i}" for i in range(120)]


def test_notice_has_no_attribution() -> None:
    p = post("the chat starts now")
    notice = Post(**{**{f: getattr(p, f) for f in p.__dataclass_fields__}, "is_notice": True})
    [r] = render(notice, Target(caps=Capabilities(), hashtag="k"), "M")
    assert r.plain == "the chat starts now" and r.is_notice


# --------------------------------------------------------------- properties

_piece = st.one_of(
    st.sampled_from(list("abc xyz 世界 😀👩‍🔬 é\n#@.:/")),
    st.sampled_from([" https://example.org/a/very/long/path?q=1 ", " #kmers ", " @bob ",
                     " 日本語のテキスト ", " 🇫🇷 ", "\n\n"]),
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
)
_text = st.lists(_piece, max_size=400).map("".join)


@settings(max_examples=200, deadline=None)
@given(_text, st.sampled_from(["thread", "truncate"]), st.sampled_from([280, 500, 60]))
def test_every_part_fits_the_twitter_weighted_limit(text: str, split: str, limit: int) -> None:
    caps = Capabilities(max_length=limit, count=weighted, reply=True, needs_hashtag=True)
    parts = render(post(text), Target(caps=caps, hashtag="kmers", split=split, links=True), "M",
                   reference="https://m.example/@alice/1")
    assert parts
    for p in parts:
        assert weighted(p.plain) <= limit, p.plain


@settings(max_examples=200, deadline=None)
@given(_text)
def test_split_loses_no_words(text: str) -> None:
    caps = Capabilities(max_length=120, reply=True)
    parts = render(post(text), Target(caps=caps, hashtag="kmers", split="thread", links=True),
                   "M")
    joined = " ".join(p.plain for p in parts)
    source = render(post(text), Target(caps=Capabilities(), hashtag="kmers", links=True), "M")
    words = re.findall(r"\w+", source[0].plain)
    if len(parts) < 25:  # MAX_PARTS reached: the rest is truncated with a reference
        out = re.findall(r"\w+", re.sub(r"\(\d+/\d+\)", " ", joined))
        it = iter(out)
        assert all(w in it for w in words)  # a subsequence: in order, none lost


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=300))
def test_rendered_html_never_carries_markup_from_input(text: str) -> None:
    [r] = render(Post(**{**{f: getattr(post("x"), f) for f in Post.__dataclass_fields__},
                        "text": RichText.plain(text)}),
                 Target(caps=Capabilities(text_format=TextFormat.HTML), hashtag="k"), "M")
    assert r.html.startswith("<p>") or not text.strip()
    assert "<script" not in r.html.lower()


def test_attachments_a_target_cannot_take_are_named_in_the_text() -> None:
    atts = (Attachment(url="https://m.example/a.png", media_type="image/png", size=1000),
            Attachment(url="https://m.example/b.mp4", media_type="video/mp4", size=50_000_000),
            Attachment(url="https://m.example/c.pdf", media_type="application/pdf"),
            Attachment(url="https://m.example/d.png", media_type="image/png"),
            Attachment(url="https://m.example/e.png", media_type="image/png"))
    p = dataclasses.replace(post("look"), attachments=atts)
    caps = Capabilities(max_length=500, media_types=frozenset({"image/*", "video/mp4"}),
                        max_media_bytes=8_000_000, max_attachments=2)
    [r] = render(p, Target(caps=caps, hashtag="kmers"), "Mastodon")
    assert [a.url for a in r.attachments] == [atts[0].url, atts[3].url]
    assert r.plain.endswith("[video not relayed: too large] [attachment not relayed: not taken"
                            " here] [image not relayed: too many attachments]")
    # a target without media gets a note for each, inside its length limit
    text_only = Capabilities(max_length=60)
    parts = render(p, Target(caps=text_only, hashtag="kmers", split="truncate"), "Mastodon")
    assert parts[0].attachments == () and "[image not relayed" in parts[0].plain
    assert len(parts[0].plain) <= 60


def test_a_post_of_media_alone_reads_cleanly() -> None:
    p = dataclasses.replace(post(""), attachments=(
        Attachment(url="https://m.example/a.png", media_type="image/png"),))
    caps = Capabilities(needs_hashtag=True, media_types=frozenset({"image/*"}))
    [r] = render(p, Target(caps=caps, hashtag="kmers"), "Matrix")
    assert r.plain == "Alice (Matrix): #kmers" and len(r.attachments) == 1
