"""The store contract for reactions (migration step 5), on every backend
(``conftest.BACKENDS``: SQLite and a real PostgreSQL server)."""

from __future__ import annotations

from datetime import UTC, datetime

from storehelp import Backend

from bridge.contract.model import Author, ChannelKey, NativeId, Post, PostId
from bridge.contract.richtext import RichText
from bridge.store import Store, Tx


def _post(pid: str) -> Post:
    return Post(id=PostId(pid), community="k", origin_channel=ChannelKey("k/a"),
                origin_native_id=NativeId(pid.lower()), permalink="",
                author=Author(platform="sandbox", handle="alice"),
                text=RichText.plain("hi"), created_at=datetime.fromtimestamp(1000, UTC))


async def _posts(store: Store, *ids: str) -> None:
    def fill(tx: Tx) -> None:
        for pid in ids:
            tx.insert_post(_post(pid), "h")
    await store.run(fill)


async def test_add_is_idempotent_and_counted_per_network(store: Store) -> None:
    await _posts(store, "P1", "P2")
    add = store.run
    assert await add(lambda tx: tx.add_reaction("P1", "matrix", "matrix:@a:x", "👍",
                                                reaction_id="$r1"))
    assert not await add(lambda tx: tx.add_reaction("P1", "matrix", "matrix:@a:x", "👍",
                                                    reaction_id="$r1"))
    assert await add(lambda tx: tx.add_reaction("P1", "matrix", "matrix:@a:x", "🎉"))
    assert await add(lambda tx: tx.add_reaction("P1", "mastodon", "mastodon:@b@y", "♥"))
    assert await add(lambda tx: tx.add_reaction("P2", "bluesky", "bluesky:did:plc:c", "♥"))
    counts = await store.run(lambda tx: tx.reaction_counts(["P1", "P2", "P3"]))
    assert counts == {"P1": {"matrix": 2, "mastodon": 1}, "P2": {"bluesky": 1}}
    assert await store.run(lambda tx: tx.reaction_reactors("P1", "👍")) == 1
    assert await store.run(lambda tx: tx.reaction_reactors("P1", "♥")) == 1


async def test_remove_by_key_and_by_reaction_id(store: Store) -> None:
    await _posts(store, "P1")
    await store.run(lambda tx: tx.add_reaction("P1", "matrix", "matrix:@a:x", "👍",
                                               reaction_id="$r1"))
    await store.run(lambda tx: tx.add_reaction("P1", "matrix", "matrix:@b:x", "👍",
                                               reaction_id="$r2"))
    assert await store.run(lambda tx: tx.remove_reaction_by_id("matrix", "$r1")) == \
        ("P1", "matrix:@a:x", "👍")
    assert await store.run(lambda tx: tx.remove_reaction_by_id("matrix", "$r1")) is None
    assert await store.run(lambda tx: tx.remove_reaction_by_id("bluesky", "$r2")) is None
    assert await store.run(lambda tx: tx.remove_reaction_by_id("matrix", "")) is None
    assert await store.run(lambda tx: tx.reaction_counts(["P1"])) == {"P1": {"matrix": 1}}
    assert await store.run(lambda tx: tx.remove_reaction("P1", "matrix", "matrix:@b:x", "👍"))
    assert not await store.run(lambda tx: tx.remove_reaction("P1", "matrix", "matrix:@b:x",
                                                             "👍"))
    assert await store.run(lambda tx: tx.reaction_counts(["P1"])) == {}
    assert await store.run(lambda tx: tx.reaction_reactors("P1", "👍")) == 0


async def test_aggregate_replaces_its_total(store: Store) -> None:
    await _posts(store, "P1")
    assert await store.run(lambda tx: tx.add_reaction("P1", "twitter", "", "♥", count=3))
    assert not await store.run(lambda tx: tx.add_reaction("P1", "twitter", "", "♥", count=3))
    assert await store.run(lambda tx: tx.add_reaction("P1", "twitter", "", "♥", count=5))
    assert await store.run(lambda tx: tx.reaction_counts(["P1"])) == {"P1": {"twitter": 5}}
    assert await store.run(lambda tx: tx.add_reaction("P1", "twitter", "", "♥", count=0))
    assert await store.run(lambda tx: tx.reaction_counts(["P1"])) == {}


async def test_reactions_survive_reopening(backend: Backend) -> None:
    store = await backend.open()
    try:
        await _posts(store, "P1")
        await store.run(lambda tx: tx.add_reaction("P1", "mastodon", "mastodon:@b@y", "♥"))
    finally:
        await store.close()
    store = await backend.open()
    try:
        assert await store.run(lambda tx: tx.reaction_counts(["P1"])) == \
            {"P1": {"mastodon": 1}}
    finally:
        await store.close()


async def test_many_posts_counted_in_one_call(store: Store) -> None:
    ids = [f"P{i:04d}" for i in range(1200)]
    await _posts(store, *ids)

    def react(tx: Tx) -> None:
        for pid in ids[::2]:
            tx.add_reaction(pid, "bluesky", "bluesky:did:plc:c", "♥")
    await store.run(react)
    counts = await store.run(lambda tx: tx.reaction_counts(ids))
    assert len(counts) == 600 and counts[PostId("P0000")] == {"bluesky": 1}
