"""Polls and quotes: rendered as text every network shows, the quoted words
shortened before the member's own, and the quoted author's consent respected
(through the real relay and store, with the shipped FakeAdapter)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from twitter_text import parse_tweet

from bridge.contract.adapter import Capabilities, SendEdit, TextFormat
from bridge.contract.model import (
    Author,
    ChannelKey,
    Edited,
    NativeId,
    Poll,
    PollOption,
    Post,
    PostId,
    QuotedPost,
)
from bridge.contract.richtext import RichText
from bridge.contract.textconv import from_plain, to_plain
from bridge.outbound.render import Target, render
from tests.core.test_relay import Env, start

END = datetime(2026, 12, 10, 18, 0, tzinfo=UTC)
BOB = Author(platform="mastodon", handle="@bob@m.example", display_name="Bob Quoted",
             profile_url="https://m.example/@bob")
X_CAPS = Capabilities(max_length=280, count=lambda t: int(parse_tweet(t).weightedLength),
                      links_cost=True, needs_hashtag=True, reply=True)
MASTO_CAPS = Capabilities(max_length=500, needs_hashtag=True, reply=True)
HTML_CAPS = Capabilities(text_format=TextFormat.HTML)


def post(text: str, **kw: object) -> Post:
    return Post(id=PostId("01TEST"), community="kmers", origin_channel=ChannelKey("kmers/m"),
                origin_native_id=NativeId("1"), permalink="https://m.example/@alice/1",
                author=Author(platform="mastodon", handle="@alice@m.example",
                              display_name="Alice"),
                text=from_plain(text), **kw)  # type: ignore[arg-type]


def poll(**kw: object) -> Poll:
    return Poll(options=(PollOption(title="Tea", votes=5), PollOption(title="Coffee", votes=1)),
                ends_at=END, **kw)  # type: ignore[arg-type]


def quote(words: str, author: Author | None = BOB) -> QuotedPost:
    return QuotedPost(url="https://m.example/@bob/7", network="Mastodon", author=author,
                      text=RichText.plain(words))


def test_an_open_poll_reads_as_options_end_and_where_to_vote() -> None:
    [r] = render(post("which one?", poll=poll()), Target(caps=MASTO_CAPS, hashtag="kmers"),
                 "Mastodon")
    assert ("Poll: 1) Tea 2) Coffee — ends 10 Dec 18:00 UTC; vote on "
            "https://m.example/@alice/1") in r.plain
    assert "vote" in r.plain and "5 votes" not in r.plain  # no counts while voting is open
    assert r.plain.startswith("Alice (Mastodon): which one?")
    assert r.plain.endswith("#kmers")


def test_counts_appear_once_the_poll_has_ended() -> None:
    [r] = render(post("results", poll=poll(closed=True, voters=6)),
                 Target(caps=MASTO_CAPS, hashtag="kmers"), "Mastodon")
    assert "Poll (ended): 1) Tea (5 votes) 2) Coffee (1 vote) — 6 voters" in r.plain
    # past its end but read while open: ended, and its counts then were not the result
    past = dataclasses.replace(poll(), ends_at=datetime.now(UTC) - timedelta(minutes=1))
    [r2] = render(post("done", poll=past), Target(caps=MASTO_CAPS, hashtag="k"), "M")
    assert "Poll (ended): 1) Tea 2) Coffee; results on https://m.example/@alice/1" in r2.plain
    assert "votes" not in r2.plain


def test_a_quote_names_author_network_words_and_address_in_a_blockquote() -> None:
    p = post("so true", quote=quote("cats are @liquid"))
    [r] = render(p, Target(caps=HTML_CAPS, hashtag="kmers"), "Mastodon")
    assert "<blockquote><p>Quoting Bob Quoted on Mastodon:</p><p>cats are" in r.html
    assert 'href="https://m.example/@bob/7"' in r.html and r.html.endswith("</blockquote>")
    assert "@liquid" not in r.plain  # a quoted mention pings nobody either
    [plain] = render(p, Target(caps=MASTO_CAPS, hashtag="kmers"), "Mastodon")
    assert "> Quoting Bob Quoted on Mastodon:\n>\n> cats are" in plain.plain


def test_a_quote_of_an_unrelayable_author_is_only_its_link() -> None:
    [r] = render(post("hm", quote=quote("secret words").link_only()),
                 Target(caps=MASTO_CAPS, hashtag="k"), "M")
    assert "Quoting a post on Mastodon:" in r.plain and "https://m.example/@bob/7" in r.plain
    assert "secret" not in r.plain and "Bob" not in r.plain


@pytest.mark.parametrize("caps", [X_CAPS, MASTO_CAPS], ids=["x", "mastodon"])
def test_over_the_limit_the_quoted_words_are_shortened_never_the_members(
        caps: Capabilities) -> None:
    own = "my own words, every one of them kept " * 3
    long_quote = ("quoted sentence number %d goes on. " * 80 % tuple(range(80)))[:2600]
    p = post(own.strip(), poll=poll(), quote=quote(long_quote))
    [r] = render(p, Target(caps=caps, hashtag="kmers"), "Mastodon",
                 reference=p.permalink)
    assert caps.count(r.plain) <= (caps.max_length or 0)
    assert own.strip() in r.plain  # all of the member's words
    assert "> quoted sentence" in r.plain and "…" in r.plain
    assert "Quoting Bob Quoted on Mastodon:" in r.plain and "1) Tea 2) Coffee" in r.plain
    if not caps.links_cost:
        assert "https://m.example/@bob/7" in r.plain


# ------------------------------------------------------------------ consent, end to end

@pytest.fixture
async def optin(tmp_path: Path) -> AsyncIterator[Env]:
    async for e in start(tmp_path, community={"consent": "opt-in",
                                              "blocklist": ["fake:mallory"]}):
        yield e


async def test_quoted_authors_who_would_not_be_relayed_are_only_linked(optin: Env) -> None:
    def fake(handle: str, **kw: object) -> Author:
        return Author(platform="fake", handle=handle, display_name=handle.title(),
                      **kw)  # type: ignore[arg-type]

    alice = fake("alice")
    optin.post("a", "!join", author_obj=alice, command="!join")  # the poster opts in
    optin.post("a", "!join", author_obj=fake("joined"), command="!join")
    await optin.settle()
    cases = {"joined": fake("joined"), "stranger": fake("stranger"),
             "mallory": fake("mallory"), "hermit": fake("hermit", opted_out=True),
             "shy": fake("shy", reluctant="profile says #nobot"),
             "robot": fake("robot", is_bot=True)}
    for name, who in cases.items():
        optin.post("a", f"quoting {name}", author_obj=alice,
                   quote=QuotedPost(url=f"https://fake/{name}", network="Fake", author=who,
                                    text=RichText.plain(f"words of {name}")))
    optin.post("a", "quoting a tagged post", author_obj=alice,
               quote=QuotedPost(url="https://fake/tagged", network="Fake", author=fake("joined"),
                                text=from_plain("not this one #nobridge")))
    await optin.settle()
    plains = {op.rendered.plain.split("quoting ")[1].split("\n")[0]: op.rendered.plain
              for op in optin.sent("b") if "quoting" in op.rendered.plain}
    assert "words of joined" in plains["joined"] and "Quoting Joined on Fake:" in plains["joined"]
    for name in ("stranger", "mallory", "hermit", "shy", "robot"):
        assert f"words of {name}" not in plains[name], name
        assert f"Quoting a post on Fake:\n>\n> https://fake/{name}" in plains[name], name
    assert "not this one" not in plains["a tagged post"]
    stored = await optin.bridge.store.run(lambda tx: tx.recent_posts("kmers", 20))
    kept = {p.quote.url: p.quote for p in stored if p.quote}
    assert kept["https://fake/stranger"] == QuotedPost(url="https://fake/stranger", network="Fake")
    assert kept["https://fake/joined"].author is not None


async def test_a_bare_quote_with_no_words_of_its_own_is_relayed(optin: Env) -> None:
    alice = Author(platform="fake", handle="alice", display_name="Alice")
    optin.post("a", "!join", author_obj=alice, command="!join")
    await optin.settle()
    optin.post("a", "", author_obj=alice,
               quote=QuotedPost(url="https://fake/q", network="Fake"))
    await optin.settle()
    assert any("https://fake/q" in op.rendered.plain for op in optin.sent("b"))


def test_a_poll_from_anywhere_is_bounded() -> None:
    huge = Poll(options=tuple(PollOption(title="x" * 1000) for _ in range(50)))
    assert len(huge.options) == 20 and all(len(o.title) == 300 for o in huge.options)
    assert huge.options[0].title.endswith("…")


async def test_quoted_words_are_bounded_like_the_members_own(tmp_path: Path) -> None:
    async for env in start(tmp_path, community={"max_post_chars": 100}):
        env.post("a", "look", quote=QuotedPost(
            url="https://fake/long", network="Fake",
            author=Author(platform="fake", handle="bob", display_name="Bob"),
            text=RichText.plain("long words " * 500)))
        await env.settle()
        [stored] = [p for p in await env.bridge.store.run(lambda tx: tx.recent_posts("kmers", 5))
                    if p.quote]
        assert stored.quote is not None and 90 <= len(to_plain(stored.quote.text)) <= 110


async def test_an_edit_that_revokes_the_quote_leaves_only_the_link(tmp_path: Path) -> None:
    async for env in start(tmp_path):
        bob = Author(platform="fake", handle="bob", display_name="Bob")
        full = QuotedPost(url="https://fake/q", network="Fake", author=bob,
                          text=RichText.plain("bob's words"))
        nid = env.post("a", "so true", quote=full,
                       poll=Poll(options=(PollOption(title="Yes", votes=0),)))
        await env.settle()
        assert "bob's words" in env.sent("b")[0].rendered.plain
        # votes counted since: no edit for that alone
        env.fake("a").inject(Edited(channel=ChannelKey("kmers/a"), native_id=nid,
                                    text=from_plain("so true"), extras=(
                                        Poll(options=(PollOption(title="Yes", votes=7),)),
                                        full)))
        await env.settle()
        assert env.sent("b", SendEdit) == []
        # the quoted author revoked the quote: the copies keep only its link
        env.fake("a").inject(Edited(channel=ChannelKey("kmers/a"), native_id=nid,
                                    text=from_plain("so true"),
                                    extras=(None, full.link_only())))
        await env.settle()
        [edit] = env.sent("b", SendEdit)
        assert "bob's words" not in edit.rendered.plain
        assert "Quoting a post on Fake:" in edit.rendered.plain and "Poll" not in \
            edit.rendered.plain
        [stored] = await env.bridge.store.run(lambda tx: tx.recent_posts("kmers", 5))
        assert stored.quote == full.link_only() and stored.poll is None
