"""Converters fed with every recorded real page, plus X's length rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import twitter_text
from hypothesis import given, settings
from hypothesis import strategies as st
from twitter_support import LOCAL, load_jsonl

from adapters.twitter.compose import DigestItem, digest_text, fit, weighted_length
from adapters.twitter.convert import (
    missing_ids,
    parse_page,
    rich_text,
    tweet_to_posted,
)
from bridge.contract.adapter import Unsupported
from bridge.contract.model import ChannelKey
from bridge.contract.richtext import Hashtag, Link, Mention, iter_inlines
from bridge.contract.textconv import to_plain

CH = ChannelKey("kmers/x")


def recorded_pages() -> list[tuple[str, dict[str, Any]]]:
    pages: list[tuple[str, dict[str, Any]]] = []
    for p in sorted(LOCAL.glob("*.jsonl")):
        pages += [(f"{p.name}:{i}", page) for i, page in enumerate(load_jsonl(p))]
    for p in sorted(LOCAL.glob("sns_*.json")):
        pages.append((p.name, json.loads(p.read_text())))
    for p in sorted(LOCAL.glob("tweepy_*_decoded.json")):
        for i, inter in enumerate(json.loads(p.read_text())):
            pages.append((f"{p.name}:{i}", inter["response"]["body"]))
    return pages


PAGES = recorded_pages()


def test_there_are_recorded_pages() -> None:
    assert len(PAGES) >= 15


@pytest.mark.parametrize(("name", "page"), PAGES, ids=[n for n, _ in PAGES])
def test_every_recorded_page_converts_without_raising(name: str, page: dict[str, Any]) -> None:
    parsed = parse_page(page, CH)
    data = page.get("data") or []
    n = len(data) if isinstance(data, list) else 1
    assert len(parsed.events) + len(parsed.skipped) == n
    for ev in parsed.events:
        assert ev.native_id.isdigit()
        assert ev.permalink.endswith("/status/" + ev.native_id)
        for node in iter_inlines(ev.text):
            if isinstance(node, Link):
                assert not node.url.startswith("https://t.co/"), (name, node)
    for sk in parsed.skipped:
        assert sk.reason
    if parsed.events or parsed.skipped:
        ids = [int(x["id"]) for x in (data if isinstance(data, list) else [data])]
        meta_newest = int(page.get("meta", {}).get("newest_id", 0) or 0)
        assert parsed.newest_id == str(max([*ids, meta_newest]))


def test_media_tweet_has_video_attachment_and_no_pic_link() -> None:
    page = load_jsonl(LOCAL / "media_tweet.jsonl")[0]
    ev = parse_page(page, CH).events[0]
    assert ev.attachments and ev.attachments[0].media_type == "video/mp4"
    assert ev.attachments[0].url.startswith("https://video.twimg.com/")
    assert "t.co" not in to_plain(ev.text)
    assert ev.author.handle == "@IgorBrigadir" or ev.author.handle.startswith("@")


def test_retweets_are_skipped_with_a_reason() -> None:
    page = load_jsonl(LOCAL / "two_tweets.jsonl")[0]
    parsed = parse_page(page, CH)
    assert any("repost" in s.reason for s in parsed.skipped)


def test_mentions_page_entities() -> None:
    page = load_jsonl(LOCAL / "mentions_tweet.jsonl")[0]
    assert parse_page(page, CH).events == ()  # the page's post is a repost...
    originals = {"data": page["includes"]["tweets"], "includes": page["includes"]}
    ev = max(parse_page(originals, CH).events,  # ...of a post naming many people
             key=lambda e: sum(isinstance(n, Mention) for n in iter_inlines(e.text)))
    handles = [n.handle for n in iter_inlines(ev.text) if isinstance(n, Mention)]
    assert len(handles) >= 5


def test_deleted_posts_in_errors_are_reported_missing() -> None:
    page = {"errors": [{"value": "9", "detail": "Could not find tweet with id: [9].",
                        "resource_type": "tweet", "parameter": "id", "resource_id": "9",
                        "title": "Not Found Error",
                        "type": "https://api.twitter.com/2/problems/resource-not-found"}]}
    assert missing_ids(page) == {"9"}
    assert parse_page(page, CH).events == ()


def test_note_tweet_full_text_and_entities_win() -> None:
    long = "#kmers " + "word " * 80 + "end"
    tw = {"id": "5", "text": long[:270] + "…", "author_id": "1",
          "note_tweet": {"text": long, "entities": {"hashtags": [
              {"start": 0, "end": 6, "tag": "kmers"}]}},
          "referenced_tweets": [{"type": "replied_to", "id": "4"}], "lang": "en"}
    ev = tweet_to_posted(tw, CH, users={"1": {"id": "1", "username": "al", "name": "Al"}},
                         media={})
    assert not isinstance(ev, Unsupported)
    assert to_plain(ev.text).endswith("end")
    assert ev.reply_to_native == "4"
    assert Hashtag("kmers") in list(iter_inlines(ev.text))


def test_own_posts_are_not_emitted() -> None:
    page = {"data": [{"id": "7", "text": "mine", "author_id": "42"}],
            "includes": {"users": [{"id": "42", "username": "bot", "name": "Bot"}]}}
    parsed = parse_page(page, CH, own_user_id="42")
    assert parsed.events == () and parsed.newest_id == "7"


def test_html_escapes_are_undone_after_cutting_entities() -> None:
    rt = rich_text("a &amp; b #t", {"hashtags": [{"start": 10, "end": 12, "tag": "t"}]})
    assert to_plain(rt) == "a & b #t"


@pytest.mark.parametrize("bad", [{}, {"id": "x"}, {"id": "1", "text": 3},
                                 {"id": "1", "text": "t", "author_id": "nobody"},
                                 {"id": "1", "text": "t", "author_id": "1",
                                  "entities": {"urls": [{"start": 90, "end": 2, "url": "u"}]}}])
def test_hostile_posts_become_values(bad: dict[str, Any]) -> None:
    out = tweet_to_posted(bad, CH, users={"1": {"id": "1", "username": "u"}}, media={})
    assert isinstance(out, Unsupported) or out.native_id == "1"


def test_weighted_length_rules() -> None:
    assert weighted_length("a" * 280) == 280
    assert weighted_length("漢" * 140) == 280
    assert weighted_length("https://example.org/" + "x" * 100) == 23
    assert weighted_length("👩‍👩‍👧") == 2


def test_digest_newest_first_with_count() -> None:
    items = [DigestItem(author=f"user{i}", text=f"message number {i} " * 4) for i in range(20)]
    text, shown = digest_text(items, hashtag="kmers")
    assert weighted_length(text) <= 280
    assert text.startswith("user19:")
    assert f"+{20 - shown} more" in text and text.endswith("#kmers")
    one, n = digest_text([DigestItem(author="a", text="漢" * 400)])
    assert n == 1 and weighted_length(one) <= 280


TEXT = st.lists(st.sampled_from(
    [*"abc xyz#@.\n", "漢", "字", "ひ", "👍", "👩‍👩‍👧", "🏳️‍🌈", "é", "\u0301",
     " https://example.org/a?b=c ", " www.example.com "]),
    max_size=300).map("".join)


@settings(max_examples=200, deadline=None)
@given(TEXT)
def test_fit_is_always_valid_by_twitter_text(text: str) -> None:
    out = fit(text)
    assert twitter_text.parse_tweet(out).weightedLength <= 280
    if weighted_length(text) <= 280:
        assert out == text


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["alice", "ボブ", "😀x"]), TEXT), max_size=30))
def test_digest_is_always_valid_by_twitter_text(msgs: list[tuple[str, str]]) -> None:
    items = [DigestItem(author=a, text=t) for a, t in msgs]
    if not items:
        return
    text, shown = digest_text(items, hashtag="kmers")
    assert twitter_text.parse_tweet(text).weightedLength <= 280
    assert 1 <= shown <= len(items)


def test_fixture_dir_is_local() -> None:
    assert Path(LOCAL).is_dir()


@pytest.mark.parametrize("text", ["see example.org now", "https://a.example.com/x?y=1 ok",
                                  "www.x.com", "two: example.org and https://t.co/abc"])
def test_defused_urls_are_not_links_for_x(text: str) -> None:
    from adapters.twitter.compose import defuse_urls

    out = defuse_urls(text)
    assert twitter_text.extract_urls(out) == []
    assert "example" in out or "x\u2024com" in out or "t\u2024co" in out
