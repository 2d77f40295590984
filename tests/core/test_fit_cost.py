"""Fitting a long post costs time linear in its length (issue 12, item 3): the
cut points are found without measuring every remainder again, and X's
weighted length is the twitter-text number without its per-character walk."""

from __future__ import annotations

import dataclasses

import grapheme
import twitter_text
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.mastodon import graphemes
from adapters.mastodon.convert import _REMOTE_MENTION as _MASTO_REMOTE
from adapters.mastodon.convert import _URL as _MASTO_URL
from adapters.mastodon.convert import status_length
from adapters.twitter.adapter import TwitterAdapter
from adapters.twitter.config import TwitterAccount, TwitterChannel
from adapters.twitter.textrules import weighted_length
from bridge.contract.adapter import Capabilities, ChannelSpec
from bridge.contract.model import Author, ChannelKey, NativeId, Post, PostId
from bridge.contract.richtext import RichText
from bridge.outbound.render import MAX_PARTS, Target, render

KEY = ChannelKey("kmers/x")

_PIECES = [*"abc xyz.,!:/\n\r1#*@", "漢字", "ひらがな", "👍", "👩‍👩‍👧", "🏳️‍🌈", "🇫🇷", "1️⃣", "©", "®️",
           "‼", "™", "e\u0301", "\ufe0f", "\u20e3", "🏻", "\u200d", "\u2060",
           " https://example.org/a?b=c ", " www.example.com/path ", "http://ああ.com",
           " t.co/abc ", "x.co", " @alice ", " #kmers ", "\u3000", "\t", "\n", "。", "a.b",
           ".com", "/", "?q=1", "-", "_", ":", "(", ")", "'", "\"", "x", "\u00a0", "xn--p1ai"]


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(_PIECES), st.characters(exclude_categories=("Cs",))),
                max_size=120).map("".join))
def test_weighted_length_is_twitter_texts_number(text: str) -> None:
    assert weighted_length(text) == twitter_text.parse_tweet(text).weightedLength


def x_caps() -> Capabilities:
    acct = TwitterAccount(consumer_key="a", consumer_secret="b", access_token="c",
                          access_token_secret="d")
    spec = ChannelSpec(key=KEY, community="kmers", hashtag="kmers", direction="both",
                       options=TwitterChannel(query="#kmers"))
    return TwitterAdapter(acct, (spec,)).capabilities(KEY)


def measured(n: int, split: str) -> tuple[int, int]:
    """(code points the count and mention rules were given, parts) for an
    *n*-character post rendered for X."""
    seen = [0]
    real = x_caps()

    def count(text: str) -> int:
        seen[0] += len(text)
        return real.count(text)

    def rule(text: str) -> str:
        seen[0] += len(text)
        return real.neutralise(text)

    caps = dataclasses.replace(real, count=count, neutralise=rule)
    words = " ".join(f"w{i} @m{i} 漢字" for i in range(n))[:n]
    post = Post(id=PostId("01TEST0000000000000000000A"), community="kmers",
                origin_channel=ChannelKey("kmers/masto"), origin_native_id=NativeId("1"),
                permalink="https://m.example/@alice/1",
                author=Author(platform="mastodon", handle="alice", display_name="Alice"),
                text=RichText.plain(words))
    parts = render(post, Target(caps=caps, hashtag="kmers", split=split), "Mastodon")
    return seen[0], len(parts)


def test_fitting_a_long_post_measures_a_linear_amount_of_text() -> None:
    for split in ("thread", "truncate"):
        small, _ = measured(10_000, split)
        big, parts_big = measured(40_000, split)
        assert parts_big == (MAX_PARTS if split == "thread" else 1)
        # Re-measuring every remainder (the old way) reads hundreds of times the
        # post; a few times its length is the whole text once plus the parts.
        assert big <= 10 * 40_000, (split, big)
        assert big / small <= 6, (split, small, big)  # 4x the text: ~4x the work


_GRAPHEME_PIECES = [*"ab \r\n\t", "\u0915", "\u094d", "\u0937", "\u093f", "\u0301", "\u200d",
                    "\ufe0f", "👩", "👍", "🇫", "🇷", "🏻", "\u1100", "\u1161", "\u11a8", "\uac00",
                    "\uac01", "\u0600", "\u0903", "©", "\x00", "\u0e33", "\U000e0020", "\u00ad",
                    "https://example.org/x ", "@bob@host.example "]


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(_GRAPHEME_PIECES),
                          st.characters(exclude_categories=("Cs",))),
                max_size=60).map("".join))
def test_grapheme_count_is_the_grapheme_packages(text: str) -> None:
    """Mastodon's count runs the grapheme package's own machine, memoised and
    only where a character has a break property: the same number."""
    assert graphemes.length(text) == grapheme.length(text)
    countable = _MASTO_URL.sub("x" * 23, text)
    countable = _MASTO_REMOTE.sub(r"\1@\2", countable)
    assert status_length(text) == grapheme.length(countable)


def _measurements(caps: Capabilities, text: str) -> tuple[int, int]:
    """(count calls, parts) for *text* rendered as a thread for *caps*."""
    calls = [0]
    real = caps.count

    def count(t: str) -> int:
        calls[0] += 1
        return real(t)

    post = Post(id=PostId("01TEST0000000000000000000A"), community="kmers",
                origin_channel=ChannelKey("kmers/masto"), origin_native_id=NativeId("1"),
                permalink="https://m.example/@alice/1",
                author=Author(platform="mastodon", handle="alice", display_name="Alice"),
                text=RichText.plain(text))
    parts = render(post, Target(caps=dataclasses.replace(caps, count=count), hashtag="kmers",
                                split="thread"), "Mastodon")
    return calls[0], len(parts)


def test_each_part_is_found_with_few_measurements() -> None:
    """The cut point is interpolated from the measured counts, not bisected
    over the limit (10 to 16 measurements a part): at most 9 a part, for
    ordinary words, CJK and emoji clusters alike."""
    from tests.core.test_mentions import masto_caps

    shapes = {"words": "lorem ipsum dolor sit amet, consectetur elit. " * 900,
              "cjk": "漢字ひらがなカタカナ한국어。" * 3000,
              "emoji": "👍👩‍👩‍👧🇫🇷1️⃣©🏳️‍🌈👍🏻✨ " * 3000}
    for name, text in shapes.items():
        for caps in (x_caps(), masto_caps()):
            calls, parts = _measurements(caps, text)
            assert parts == MAX_PARTS
            assert calls <= 9 * parts, (name, caps.max_length, calls, parts)
