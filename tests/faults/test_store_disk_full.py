"""The store on a filesystem that fills up (a real tmpfs, filled by a ballast
file until the kernel answers ENOSPC): writes are held, not failed, and go
through in order once space returns; one clear error is logged, not a storm;
the background checkpointer survives ENOSPC; start-up on a full disk is
refused with the data dir named; the database is never left corrupt.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from diskspace import Ballast, delegated_to_userns, free_bytes, mounted_here

from bridge.contract.adapter import SendCreate
from bridge.contract.model import Author, ChannelKey, NativeId, Posted
from bridge.contract.testing import FakeAdapter, FakeFactory
from bridge.contract.textconv import from_plain
from bridge.daemon.harness import ChannelDef, build_config, quiescent, running
from bridge.runtime.registry import load_factories
from bridge.store import MIN_FREE_BYTES, DiskFullError, StoreError, Tx
from bridge.store.sqlite import SqliteStore as Store


@pytest.fixture
def fs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path | None]:
    """A fresh 16 MiB tmpfs (None: the test already ran in a user namespace)."""
    if delegated_to_userns(request, tmp_path):
        yield None
        return
    with mounted_here(tmp_path / "fs", "16m") as where:
        yield where


def _integrity(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def _size(path: Path | str) -> int:
    return os.stat(path).st_size


def _cursor(i: int, size: int = 2000) -> object:
    return lambda tx: tx.set_cursor("acct", f"c{i:04d}", f"{i:04d}" + "x" * size)


def _store_errors(caplog: pytest.LogCaptureFixture, level: int = logging.ERROR
                  ) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "hashbridge.store" and r.levelno == level]


async def _wait(pred: object, timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def test_writes_are_held_while_full_and_saved_in_order_once_freed(
        fs: Path | None, caplog: pytest.LogCaptureFixture) -> None:
    if fs is None:
        return
    caplog.set_level(logging.INFO, logger="hashbridge.store")
    db = fs / "data" / "hashbridge.sqlite"
    store = await Store.open(str(db), require_free=MIN_FREE_BYTES)
    ballast = Ballast(fs)
    try:
        for i in range(10):
            await store.run(_cursor(i))  # type: ignore[arg-type]
        ballast.fill()
        assert free_bytes(fs) < 64 * 1024
        held = [store.submit(_cursor(i)) for i in range(10, 60)]  # type: ignore[arg-type]

        def count(tx: Tx) -> int:
            return int(tx.c.execute("SELECT count(*) FROM cursors").fetchone()[0])

        counted = store.submit(count)
        await _wait(lambda: store.storage.state == "full", 20, "the store to see the full disk")
        await asyncio.sleep(4.0)  # kept full: nothing may fail, nothing may be lost
        assert not counted.done()
        assert not all(f.done() for f in held)
        assert not any(f.done() and f.exception() for f in held)
        assert store.storage.state == "full" and "no space left" in store.storage.detail
        assert store.storage.held >= 1
        errors = _store_errors(caplog)
        assert len(errors) == 1, errors  # one clear line, not one per retry
        assert f"cannot write to the data dir {db.parent}: no space left on device" in errors[0]

        ballast.free()
        async with asyncio.timeout(30):
            await asyncio.gather(*held)
            # Units keep their order: the count runs after every held write.
            assert await counted == 60
        assert store.storage.ok
        resumed = _store_errors(caplog, logging.WARNING)
        assert any("writes go through again" in m for m in resumed), resumed
        assert len(_store_errors(caplog)) == 1
    finally:
        ballast.free()
        await store.close()
    assert _integrity(db) == "ok"
    conn = sqlite3.connect(db)
    values = dict(conn.execute("SELECT name, value FROM cursors").fetchall())
    conn.close()
    assert sorted(values) == [f"c{i:04d}" for i in range(60)]
    assert all(v.startswith(k[1:]) for k, v in values.items())


async def test_a_units_own_error_still_fails_only_that_unit_while_full(
        fs: Path | None) -> None:
    if fs is None:
        return
    db = fs / "data" / "hashbridge.sqlite"
    store = await Store.open(str(db))
    ballast = Ballast(fs)
    try:
        ballast.fill()
        before = store.submit(_cursor(1, 8000))  # type: ignore[arg-type]

        def broken(tx: Tx) -> None:
            tx.set_cursor("acct", "broken", "v")
            raise ValueError("the unit's own bug")

        bad = store.submit(broken)
        after = store.submit(_cursor(2, 8000))  # type: ignore[arg-type]
        await _wait(lambda: not store.storage.ok, 20, "held writes")
        await asyncio.sleep(1.0)
        assert not bad.done()  # it waits with its batch; its error is not a disk error
        ballast.free()
        async with asyncio.timeout(30):
            await before
            await after
            with pytest.raises(ValueError, match="own bug"):
                await bad
        got = await store.run(lambda tx: tx.get_cursor("acct", "broken"))
        assert got is None
    finally:
        ballast.free()
        await store.close()
    assert _integrity(db) == "ok"


async def test_stopping_while_full_gives_up_held_writes_cleanly(
        fs: Path | None, caplog: pytest.LogCaptureFixture) -> None:
    if fs is None:
        return
    db = fs / "data" / "hashbridge.sqlite"
    store = await Store.open(str(db))
    ballast = Ballast(fs)
    try:
        await store.run(_cursor(0))  # type: ignore[arg-type]
        ballast.fill()
        held = [store.submit(_cursor(i, 8000)) for i in range(1, 6)]  # type: ignore[arg-type]
        await _wait(lambda: not store.storage.ok, 20, "held writes")
        async with asyncio.timeout(15):  # closing must not wait for space
            await store.close()
        for f in held:
            with pytest.raises(StoreError):
                await f
        stopped = [m for m in _store_errors(caplog) if "stopped with" in m]
        assert len(stopped) == 1 and "not saved" in stopped[0], _store_errors(caplog)
    finally:
        ballast.free()
        await store.close()
    assert _integrity(db) == "ok"
    conn = sqlite3.connect(db)
    names = [r[0] for r in conn.execute("SELECT name FROM cursors")]
    conn.close()
    assert "c0000" in names  # what was committed before is all there


async def test_start_on_a_full_disk_is_refused_naming_the_data_dir(fs: Path | None) -> None:
    if fs is None:
        return
    db = fs / "data" / "hashbridge.sqlite"
    store = await Store.open(str(db))
    await store.run(_cursor(0))  # type: ignore[arg-type]
    await store.close()
    before = db.read_bytes()
    ballast = Ballast(fs)
    try:
        ballast.fill()
        with pytest.raises(DiskFullError) as info:
            await Store.open(str(db), require_free=MIN_FREE_BYTES)
        message = str(info.value)
        assert f"data dir {db.parent}: no space left on device" in message
        assert "free some space" in message
        assert db.read_bytes() == before
        assert not list(db.parent.glob(".hashbridge-space-check*"))
    finally:
        ballast.free()
    store = await Store.open(str(db), require_free=MIN_FREE_BYTES)
    try:
        assert await store.run(lambda tx: tx.get_cursor("acct", "c0000")) is not None
    finally:
        await store.close()
    assert _integrity(db) == "ok"


async def test_first_start_on_a_full_disk_creates_nothing_broken(fs: Path | None) -> None:
    if fs is None:
        return
    db = fs / "data" / "hashbridge.sqlite"
    ballast = Ballast(fs)
    try:
        ballast.fill()
        with pytest.raises(DiskFullError, match="no space left on device"):
            await Store.open(str(db), require_free=MIN_FREE_BYTES)
    finally:
        ballast.free()
    store = await Store.open(str(db), require_free=MIN_FREE_BYTES)
    await store.run(_cursor(0))  # type: ignore[arg-type]
    await store.close()
    assert _integrity(db) == "ok"


async def test_checkpointer_hitting_enospc_keeps_the_wal_and_recovers(
        fs: Path | None, caplog: pytest.LogCaptureFixture) -> None:
    if fs is None:
        return
    caplog.set_level(logging.INFO, logger="hashbridge.store")
    db = fs / "data" / "hashbridge.sqlite"
    store = await Store.open(str(db))
    ballast = Ballast(fs)
    # A reader's snapshot keeps the checkpointer from copying anything, so
    # the WAL grows past its 4 MiB mark with pages the database file must
    # grow to take; then the disk fills and the reader goes away.
    reader = sqlite3.connect(db, isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM cursors").fetchone()
        for i in range(0, 1200, 20):
            await asyncio.gather(*(store.run(_cursor(j, 4000))  # type: ignore[arg-type]
                                   for j in range(i, i + 20)))
        assert _size(f"{db}-wal") > 4 * 1024 * 1024
        assert _size(db) < 1024 * 1024
        ballast.fill()
        reader.execute("COMMIT")
        await _wait(lambda: bool(store.storage.checkpoint_error), 20,
                    "the checkpointer to hit ENOSPC")
        await asyncio.sleep(3.0)  # it keeps trying every second: one warning only
        warned = [m for m in _store_errors(caplog, logging.WARNING) if "checkpoint failed" in m]
        assert len(warned) == 1, warned
        assert f"checkpoint failed in the data dir {db.parent}" in warned[0]
        assert "full" in warned[0]
        # The writer is not blocked by the checkpointer's trouble: a write either
        # goes through (the WAL had room) or is held; it is never lost.
        late = store.submit(_cursor(5000))  # type: ignore[arg-type]
        await asyncio.sleep(1.0)
        ballast.free()
        await _wait(lambda: not store.storage.checkpoint_error, 20, "a checkpoint to succeed")
        async with asyncio.timeout(20):
            await late
        assert any("checkpoint succeeded again" in m
                   for m in _store_errors(caplog, logging.WARNING))
        assert _size(db) > 4 * 1024 * 1024  # the WAL's pages reached the database
    finally:
        reader.close()
        ballast.free()
        await store.close()
    assert _integrity(db) == "ok"
    conn = sqlite3.connect(db)
    n = conn.execute("SELECT count(*) FROM cursors").fetchone()[0]
    conn.close()
    assert n == 1201


# ---------------------------------------------------------------- the relay on top

def _registry(fakes: dict[str, FakeAdapter]) -> Any:
    base = load_factories()
    return type(base)({**base.factories, "fake": FakeFactory(fakes)})


async def test_posts_held_on_a_full_disk_are_not_counted_twice_against_the_author(
        fs: Path | None) -> None:
    if fs is None:
        return
    channels = [ChannelDef(n, "fake", {"display_name": n.upper()}, {"spot": n}, {})
                for n in ("a", "b")]
    fakes: dict[str, FakeAdapter] = {}
    cfg = build_config(fs / "work", channels, registry=_registry(fakes),
                       community_options={"author_rate_per_minute": 3})
    ballast = Ballast(fs)
    try:
        async with running(cfg) as bridge:
            a, b = fakes["A"], fakes["B"]
            ballast.fill()
            for i in range(3):  # exactly the author's rate: all three must go
                a.inject(Posted(channel=ChannelKey("kmers/a"), native_id=NativeId(f"a-{i}"),
                                author=Author(platform="fake", handle="alice"),
                                text=from_plain(f"post {i}")))
            await _wait(lambda: not bridge.store.storage.ok, 20, "held writes")
            await asyncio.sleep(1.0)
            ballast.free()
            await quiescent(bridge, timeout=30)
            sent = [op.post.text for op in b.sent if isinstance(op, SendCreate)]
            refused = await bridge.store.run(lambda tx: tx.rejections())
    finally:
        ballast.free()
    assert refused == [] and len(sent) == 3, (sent, refused)
