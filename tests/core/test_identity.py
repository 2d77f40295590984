"""Who is who: accounts, never display names (issue 12, item 7).

A stranger who calls themselves "Alice" must not be taken for Alice: not by
duplicate linking (which would drop Alice's real post and thread replies under
the stranger's), not as a chat-event host.  One person's accounts on two
networks are the same person only when linked from both sides with ``!link``.
Runs the real relay, store and workers with the shipped FakeAdapter platforms.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError
from test_relay import Env, start

from bridge.contract.model import Author, ChannelKey, NativeId, Post, PostId
from bridge.contract.textconv import from_plain
from bridge.features.chatevents import is_host
from bridge.inbound.links import parse
from bridge.runtime.schedule import ChatEventConfig
from bridge.store.sqlite import SqliteStore as Store

ALICE_A = Author(platform="fake", handle="alice-a", display_name="Alice")
ALICE_B = Author(platform="fake", handle="alice-b", display_name="Alice")
MALLORY = Author(platform="fake", handle="mallory", display_name="Alice")


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async for e in start(tmp_path):
        yield e


def answers(env: Env, name: str) -> list[str]:
    return [op.rendered.plain for op in env.sent(name) if op.rendered.is_notice]


def copies(env: Env, name: str) -> list[str]:
    return [op.rendered.plain for op in env.sent(name) if not op.rendered.is_notice]


async def link(env: Env, first: tuple[str, Author], second: tuple[str, Author]) -> None:
    """``!link`` from *first*, naming *second*; then the code from *second*."""
    (ch1, a1), (ch2, a2) = first, second
    env.post(ch1, f"!link {a2.platform}:{a2.handle} #kmers", author_obj=a1)
    await env.settle()
    code = re.search(r"!link ([A-Z0-9]{8})", answers(env, ch1)[-1])
    assert code, answers(env, ch1)
    env.post(ch2, f"@bridge !link {code.group(1)}", author_obj=a2)
    await env.settle()


async def test_stranger_named_alice_cannot_suppress_alices_post(env: Env) -> None:
    # The stranger posts Alice's words first, under her display name...
    env.post("a", "the meetup moves to room 4 #kmers", author_obj=MALLORY)
    await env.settle()
    # ... then Alice posts them on b: hers must be relayed, not taken for a copy.
    alice = env.post("b", "The meetup moves to room 4", author_obj=ALICE_B)
    await env.settle()
    assert copies(env, "a") == ["Alice (B): The meetup moves to room 4"]
    assert len(copies(env, "c")) == 2
    # Replies to Alice's post thread under Alice's copy, not under the stranger's post.
    env.post("b", "see you there", author="bob", reply_to=alice)
    await env.settle()
    alices_copy_on_a = next(op for op in env.sent("a") if op.post.author.handle == "alice-b")
    reply_on_a = next(op for op in env.sent("a") if op.post.author.handle == "bob")
    posted = await env.bridge.store.run(lambda tx: tx.copies(alices_copy_on_a.post.id,
                                                              ChannelKey("kmers/a")))
    assert reply_on_a.reply_to == posted[0].native_id
    assert reply_on_a.reply_to != "a-1"  # the stranger's post


async def test_the_same_account_on_two_channels_is_still_linked(env: Env) -> None:
    env.post("a", "same words #kmers", author_obj=ALICE_A)
    env.post("b", "Same words", author_obj=ALICE_A)
    await env.settle()
    assert len(copies(env, "c")) == 1 and copies(env, "a") == copies(env, "b") == []


async def test_unlinked_accounts_are_not_linked_linked_ones_are(env: Env) -> None:
    env.post("a", "before linking #kmers", author_obj=ALICE_A)
    env.post("b", "Before linking", author_obj=ALICE_B)
    await env.settle()
    assert len(copies(env, "c")) == 2  # two accounts: two people, as far as anyone knows

    await link(env, ("a", ALICE_A), ("b", ALICE_B))
    assert answers(env, "b")[-1].startswith("Linked: alice-b here and alice-a on fake")
    links = await env.bridge.store.run(lambda tx: tx.identity_links())
    assert [(a, b) for a, b, _ in links] == [("fake:alice-a", "fake:alice-b")]

    env.post("a", "after linking #kmers", author_obj=ALICE_A)
    env.post("b", "After linking", author_obj=ALICE_B)
    await env.settle()
    assert copies(env, "c")[2:] == ["Alice (A): after linking #kmers"]
    assert copies(env, "b") == ["Alice (A): before linking #kmers"]  # not the linked one
    # The commands themselves were never relayed.
    assert not any("!link" in c for n in "abc" for c in copies(env, n))

    env.post("b", "!unlink", author_obj=ALICE_B)
    await env.settle()
    assert "no longer linked" in answers(env, "b")[-1]
    assert await env.bridge.store.run(lambda tx: tx.identity_links()) == []


async def test_a_code_read_by_someone_else_is_useless(env: Env) -> None:
    env.post("a", "!link fake:alice-b #kmers", author_obj=ALICE_A)
    await env.settle()
    [answer] = answers(env, "a")
    code = re.search(r"!link ([A-Z0-9]{8})", answer)
    assert code
    # Mallory read the code on a's channel and posts it first.
    env.post("b", f"!link {code.group(1)}", author_obj=MALLORY)
    await env.settle()
    assert answers(env, "b") == [f"The code {code.group(1)} is not for this account."]
    assert await env.bridge.store.run(lambda tx: tx.identity_links()) == []
    # Mallory naming Alice's account gets a code only Alice could use.
    env.post("b", "!link fake:alice-a", author_obj=MALLORY)
    await env.settle()
    assert await env.bridge.store.run(lambda tx: tx.identity_links()) == []
    # The claim is still Alice's to confirm.
    env.post("b", f"!link {code.group(1)}", author_obj=ALICE_B)
    await env.settle()
    assert answers(env, "b")[-1].startswith("Linked:")


async def test_link_commands_count_against_the_author_rate(tmp_path: Path) -> None:
    async for env in start(tmp_path, community={"author_rate_per_minute": 3}):
        for i in range(6):
            env.post("a", f"!link fake:other-{i}", author_obj=MALLORY)
        await env.settle()
        assert len(answers(env, "a")) == 3  # no answer flood from a command flood
        assert copies(env, "b") == []


async def test_blocked_authors_and_bots_get_no_answer(tmp_path: Path) -> None:
    async for env in start(tmp_path, community={"blocklist": ["fake:mallory"]}):
        env.post("a", "!link fake:alice-b", author_obj=MALLORY)
        env.post("a", "!link fake:alice-b",
                 author_obj=Author(platform="fake", handle="b0t", is_bot=True))
        await env.settle()
        assert env.sent("a") == [] and env.sent("b") == []


@pytest.mark.parametrize(("text", "verb", "arg"), [
    ("!link mastodon:@a@b.social #kmers", "link", "mastodon:@a@b.social"),
    ("@hashbridge !LINK   K7Q2M9XA", "link", "K7Q2M9XA"),
    ("#kmers !unlink", None, None), ("!unlink", "unlink", ""), ("!linked in", None, None),
    ("please !link me", None, None), ("!link is broken on the site #kmers", None, None),
    ("@a " * 30 + "!link ABCDEFGH", None, None), ("@a " * 3 + "!link ABCDEFGH", "link", "ABCDEFGH"),
    ("@a@b" * 10000 + " !link", None, None), ("@a@b " * 10 + "!link", "link", ""),
])
def test_parse(text: str, verb: str | None, arg: str | None) -> None:
    got = parse(text)
    assert (got.verb, got.argument) == (verb, arg) if verb else got is None


# ------------------------------------------------------------------ chat-event hosts

def _post(author: Author) -> Post:
    return Post(id=PostId("p"), community="kmers", origin_channel=ChannelKey("kmers/a"),
                origin_native_id=NativeId("1"), permalink="", author=author,
                text=from_plain("Q1: hello?"), created_at=datetime.now(UTC))


def test_a_display_name_does_not_make_a_host() -> None:
    ev = ChatEventConfig(id="w", title="t", day="monday", time="20:00",
                         hosts=["alice", "mastodon:@bob@ex.social", "twitter:783214"])
    assert is_host(ev, _post(Author(platform="fake", handle="alice")))
    assert not is_host(ev, _post(Author(platform="fake", handle="mallory",
                                        display_name="alice")))
    assert not is_host(ev, _post(Author(platform="matrix", handle="@mallory:evil.org",
                                        display_name="@bob@ex.social")))
    assert is_host(ev, _post(Author(platform="mastodon", handle="@bob@ex.social")))
    # X: the stable user id, whatever the account is called today.
    assert is_host(ev, _post(Author(platform="twitter", handle="@renamed",
                                    account_id="783214")))
    assert not is_host(ev, _post(Author(platform="twitter", handle="@783214",
                                        account_id="1")))


@pytest.mark.parametrize("host", ["Alice Smith", "mastodon:", "  ", "matrix: @bob:ex.org"])
def test_a_host_that_is_not_an_account_is_refused_with_a_hint(host: str) -> None:
    with pytest.raises(ValidationError, match=r"never by display name.*platform:handle"):
        ChatEventConfig(id="w", title="t", day="monday", time="20:00", hosts=[host])


async def test_a_stranger_cannot_open_questions_end_to_end(tmp_path: Path) -> None:
    from bridge.features.chatevents import build_transcript
    from bridge.runtime.schedule import occurrences

    ev = ChatEventConfig(id="w", title="t", rrule="FREQ=DAILY", dtstart=datetime(2026, 1, 1),
                         duration_minutes=24 * 60, hosts=["fake:alice"])
    host = Author(platform="fake", handle="alice", display_name="Alice")
    async for env in start(tmp_path):
        env.post("a", "Q1: a stranger's question #kmers", author_obj=MALLORY)
        await env.settle()
        env.post("a", "Q1: the host's question #kmers", author_obj=host)
        await env.settle()
        posts = await env.bridge.store.run(lambda tx: tx.recent_posts("kmers"))
        now = datetime.now(UTC)
        [occ] = [o for o in occurrences(ev, now, now) if o.contains(posts[0].created_at)]
        transcript = build_transcript(occ, posts, lambda p: "A")
        [q] = transcript.questions
        assert q.post is not None and q.post.author.handle == "alice"


# ------------------------------------------------------------------ the store

async def test_links_and_account_ids_survive_a_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "b.db")
    store = await Store.open(path)
    post = _post(Author(platform="twitter", handle="@alice", account_id="783214"))

    def write(tx: object) -> None:
        tx.insert_post(post, "h")  # type: ignore[attr-defined]
        tx.link_identities("twitter:783214", "mastodon:@alice@ex.social")  # type: ignore[attr-defined]

    await store.run(write)
    await store.close()
    store = await Store.open(path)
    try:
        got = await store.run(lambda tx: tx.get_post("p"))
        assert got is not None and got.author.identity == "twitter:783214"
        linked = await store.run(lambda tx: tx.linked_identities("mastodon:@alice@ex.social"))
        assert linked == {"mastodon:@alice@ex.social", "twitter:783214"}
        dup = await store.run(lambda tx: tx.find_duplicate(
            "kmers", "h", linked, 0.0, "kmers/b"))
        assert dup == "p"
    finally:
        await store.close()


def test_x_posts_carry_the_stable_user_id() -> None:
    from adapters.twitter.convert import tweet_to_posted
    from bridge.contract.model import Posted

    users = {"783214": {"id": "783214", "username": "alice", "name": "Alice"}}
    ev = tweet_to_posted({"id": "1", "text": "hi #kmers", "author_id": "783214"},
                         ChannelKey("kmers/x"), users=users, media={})
    assert isinstance(ev, Posted) and ev.author.identity == "twitter:783214"
    renamed = {"783214": {"id": "783214", "username": "alice_new", "name": "Alice"}}
    again = tweet_to_posted({"id": "2", "text": "hi #kmers", "author_id": "783214"},
                            ChannelKey("kmers/x"), users=renamed, media={})
    assert isinstance(again, Posted) and again.author.identity == ev.author.identity


def test_hashbridge_check_names_the_display_name_host_and_how_to_fix_it(tmp_path: Path) -> None:
    from bridge.daemon.harness import build_config, sandbox_channels
    from bridge.runtime.config import ConfigError

    event = {"id": "w", "title": "t", "day": "monday", "time": "20:00",
             "hosts": ["mastodon:@bob@ex.social", "Alice Smith"]}
    with pytest.raises(ConfigError) as err:
        build_config(tmp_path, sandbox_channels(tmp_path), community_options={"events": [event]})
    [line] = [e for e in err.value.errors if "hosts" in e]
    assert line.startswith("communities[0].events[0].hosts")
    assert "'Alice Smith' is not an account" in line and "mastodon:@alice@example.social" in line


async def test_a_database_from_before_links_is_upgraded_in_place(tmp_path: Path) -> None:
    import sqlite3

    from bridge.store.sqlite.migrations import MIGRATIONS
    from bridge.store.sqlite.store import _split

    path = str(tmp_path / "old.db")
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in _split(MIGRATIONS[0]):
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO posts(id, community, origin_channel, origin_native_id,"
                 " author_platform, author_handle, author_name, text_json, created_at,"
                 " text_hash) VALUES ('old', 'kmers', 'kmers/a', '1', 'fake', 'alice',"
                 " 'Alice', '[]', 1.0, 'h')")
    conn.close()
    store = await Store.open(path)
    try:
        post = await store.run(lambda tx: tx.get_post("old"))
        assert post is not None and post.author.identity == "fake:alice"
        assert await store.run(lambda tx: tx.find_duplicate(
            "kmers", "h", {"fake:alice"}, 0.0, "kmers/b")) == "old"
    finally:
        await store.close()
