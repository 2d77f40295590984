"""The SQLite store: migrations, refusal of foreign/newer/corrupt files, group commit."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from bridge.contract.model import (
    Author,
    ChannelKey,
    NativeId,
    Op,
    Post,
    PostId,
    derived_delivery_id,
)
from bridge.contract.richtext import RichText
from bridge.store import SchemaError, Store, StoreError, Tx
from bridge.store.migrations import latest_version


def _post(pid: str = "P1") -> Post:
    return Post(id=PostId(pid), community="k", origin_channel=ChannelKey("k/a"),
                origin_native_id=NativeId(pid.lower()), permalink="",
                author=Author(platform="sandbox", handle="alice"), text=RichText.plain("hi"))


async def test_fresh_database_is_migrated_in_wal_mode(tmp_path: Path) -> None:
    path = str(tmp_path / "db.sqlite")
    store = await Store.open(path)
    await store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == latest_version()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"posts", "native_ids", "deliveries", "cursors", "consent"} <= tables


async def test_reopen_keeps_data(tmp_path: Path) -> None:
    path = str(tmp_path / "db.sqlite")
    store = await Store.open(path)
    await store.run(lambda tx: tx.insert_post(_post(), ""))
    await store.close()
    store = await Store.open(path)
    post = await store.run(lambda tx: tx.get_post("P1"))
    await store.close()
    assert post is not None and post.text == RichText.plain("hi")


async def test_newer_schema_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    store = await Store.open(str(path))
    await store.close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {latest_version() + 1}")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(SchemaError, match="newer"):
        await Store.open(str(path))
    assert path.read_bytes() == before


async def test_corrupt_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=r"not a usable hashbridge database|corrupt"):
        await Store.open(str(path))
    assert path.read_bytes() == b"this is not a database" * 100


async def test_foreign_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not hashbridge"):
        await Store.open(str(path))


async def test_a_failing_unit_does_not_take_its_batch_down(tmp_path: Path) -> None:
    store = await Store.open(str(tmp_path / "db.sqlite"))
    try:
        def bad(tx: Tx) -> None:
            tx.insert_post(_post("P9"), "")
            raise ValueError("boom")

        results = await asyncio.gather(
            store.run(lambda tx: tx.insert_post(_post("P1"), "")),
            store.run(bad),
            store.run(lambda tx: tx.insert_post(_post("P2"), "")),
            return_exceptions=True)
        assert isinstance(results[1], ValueError)
        got = await store.run(lambda tx: [tx.get_post(p) for p in ("P1", "P9", "P2")])
        assert got[0] is not None and got[1] is None and got[2] is not None
        assert store.commits < store.units  # several units shared a commit
    finally:
        await store.close()


async def test_derived_delivery_ids_repeat_per_origin_and_never_collide(tmp_path: Path) -> None:
    store = await Store.open(str(tmp_path / "db.sqlite"))
    try:
        await store.run(lambda tx: tx.insert_post(_post(), ""))
        first = await store.run(lambda tx: tx.enqueue_many(
            "P1", ["k/b", "k/c"], Op.CREATE, source="k/a\x1ep1", at=1.5))
        # the same origin message, target and op: the same id (and key) ...
        assert first[0] == derived_delivery_id("k/a\x1ep1", "k/b", "create", 1.5)
        assert len(set(first)) == 2
        # ... so a second queueing (the message read again) cannot reuse it:
        # it gets a fresh random id instead of being dropped
        again = await store.run(lambda tx: tx.enqueue_many(
            "P1", ["k/b", "k/d"], Op.CREATE, source="k/a\x1ep1", at=1.5))
        assert again[0] not in first and again[1] == derived_delivery_id(
            "k/a\x1ep1", "k/d", "create", 1.5)
        rows = await store.run(lambda tx: tx.pending("k/b", 10))
        assert [r.id for r in rows] == [first[0], again[0]]
    finally:
        await store.close()


async def test_cached_post_state_consent_and_blocks_follow_writes(tmp_path: Path) -> None:
    store = await Store.open(str(tmp_path / "db.sqlite"))
    try:
        await store.run(lambda tx: tx.insert_post(_post(), ""))
        assert await store.run(lambda tx: tx.post_state("P1")) == (None, None, False)
        await store.run(lambda tx: tx.set_hidden("P1", True))
        assert (await store.run(lambda tx: tx.post_state("P1")))[2] is True
        await store.run(lambda tx: tx.mark_post_deleted("P1"))
        assert (await store.run(lambda tx: tx.post_state("P1")))[1] is not None
        assert (await store.run(lambda tx: tx.get_post("P1"))).text == RichText()
        assert await store.run(lambda tx: tx.consent("sandbox", "Alice")) is None
        await store.run(lambda tx: tx.set_consent("sandbox", "Alice", "in"))
        assert await store.run(lambda tx: tx.consent("sandbox", "alice")) == "in"
        assert not await store.run(lambda tx: tx.is_blocked("sandbox", "bob"))
        await store.run(lambda tx: tx.block("sandbox", "Bob", "spam"))
        assert await store.run(lambda tx: tx.is_blocked("sandbox", "bob"))
        assert await store.run(lambda tx: tx.unblock("sandbox", "bob"))
        assert not await store.run(lambda tx: tx.is_blocked("sandbox", "bob"))

        # a unit that fails after a write leaves no cached trace of it
        def failing(tx: Tx) -> None:
            tx.set_consent("sandbox", "carol", "out")
            assert tx.consent("sandbox", "carol") == "out"
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            await store.run(failing)
        assert await store.run(lambda tx: tx.consent("sandbox", "carol")) is None
    finally:
        await store.close()


async def test_outbox_fifo_and_requeue(tmp_path: Path) -> None:
    store = await Store.open(str(tmp_path / "db.sqlite"))
    try:
        await store.run(lambda tx: tx.insert_post(_post(), ""))
        ids = await store.run(lambda tx: [tx.enqueue("P1", "k/b", Op.CREATE) for _ in range(3)])
        rows = await store.run(lambda tx: tx.pending("k/b", 10))
        assert [r.id for r in rows] == ids
        await store.run(lambda tx: tx.finish(ids[0], "dead", "422 rejected"))
        assert [r.id for r in await store.run(lambda tx: tx.pending("k/b", 10))] == ids[1:]
        dead = await store.run(lambda tx: tx.dead())
        assert dead[0].last_error == "422 rejected"
        assert await store.run(lambda tx: tx.requeue_dead()) == 1
        assert [r.id for r in await store.run(lambda tx: tx.pending("k/b", 10))] == ids
    finally:
        await store.close()
