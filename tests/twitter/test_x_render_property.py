"""The core renderer with the X adapter's capabilities always yields text X accepts
(twitter-text v3 weighted length), whatever the emoji, CJK and URLs."""

from __future__ import annotations

from dataclasses import replace

import twitter_text
from hypothesis import given, settings
from hypothesis import strategies as st
from twitter_support import make_create, make_spec

from adapters.twitter.adapter import TwitterAdapter
from adapters.twitter.config import TwitterAccount
from bridge.contract.textconv import from_plain
from bridge.outbound.render import Target, render

PIECES = [*"abc xyz.,!\n", "漢字", "ひらがな", "한국어", "👍", "👩‍👩‍👧", "🏳️‍🌈", "e\u0301",
          " https://example.org/a?b=c ", " www.example.com/path ", " @alice ", " #kmers ",
          " @bob@mastodon.example ", "\u202e", "\u200b"]
TEXT = st.lists(st.sampled_from(PIECES), min_size=1, max_size=250).map("".join)


def adapter() -> TwitterAdapter:
    acct = TwitterAccount(consumer_key="a", consumer_secret="b", access_token="c",
                          access_token_secret="d")
    return TwitterAdapter(acct, (make_spec(),))


@settings(max_examples=150, deadline=None)
@given(TEXT, st.sampled_from(["thread", "truncate"]), st.booleans())
def test_rendered_parts_are_always_valid_on_x(text: str, split: str, links: bool) -> None:
    ad = adapter()
    caps = ad.capabilities(make_spec().key)
    post = replace(make_create("x", "p1").post, text=from_plain(text))
    parts = render(post, Target(caps=caps, hashtag="kmers", split=split, links=links),
                   "Mastodon")
    assert parts
    for part in parts:
        parsed = twitter_text.parse_tweet(part.plain)
        assert parsed.weightedLength <= 280, part.plain
        assert ad._fitted(part.plain) == part.plain  # the adapter never has to cut


def test_dropped_links_leave_nothing_x_would_bill_as_a_url() -> None:
    caps = adapter().capabilities(make_spec().key)
    post = replace(make_create("x", "p2").post,
                   text=from_plain("read https://example.org/page now"))
    [part] = render(post, Target(caps=caps, hashtag="kmers"), "Mastodon")
    assert twitter_text.extract_urls(part.plain) == []
