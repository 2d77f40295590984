"""What only the SQLite backend promises (the rest is the contract suite's,
``test_contract.py``): WAL mode, refusal of foreign/corrupt files, group commit
sharing commits between units."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from bridge.contract.model import (
    Author,
    ChannelKey,
    NativeId,
    Post,
    PostId,
)
from bridge.contract.richtext import RichText
from bridge.store import SchemaError, StoreError, TransientStoreError, Tx
from bridge.store.space import failure_kind
from bridge.store.sqlite import SqliteStore as Store
from bridge.store.sqlite.errors import MappedConnection, mapped, sqlite_failure_kind
from bridge.store.sqlite.migrations import latest_version


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


def test_sqlite_errors_map_to_the_cores_types(tmp_path: Path) -> None:
    """A statement that meets another writer's lock raises TransientStoreError
    ("locked") and a broken constraint a plain StoreError, each with SQLite's error
    as the cause; a full disk or I/O error code is transient too."""
    path = tmp_path / "db.sqlite"
    mine = sqlite3.connect(path, isolation_level=None, factory=MappedConnection)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        mine.execute("PRAGMA busy_timeout = 0")
        mine.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")
        mine.execute("INSERT INTO t VALUES ('a')")
        with pytest.raises(StoreError) as broken:
            mine.execute("INSERT INTO t VALUES ('a')")
        assert type(broken.value) is StoreError
        assert isinstance(broken.value.__cause__, sqlite3.IntegrityError)
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(TransientStoreError) as busy:
            mine.executemany("INSERT INTO t VALUES (?)", [("b",)])
        assert busy.value.kind == "locked"
        assert isinstance(busy.value.__cause__, sqlite3.OperationalError)
        other.execute("ROLLBACK")
    finally:
        mine.close()
        other.close()

    class Full(sqlite3.OperationalError):
        sqlite_errorcode = 13

    class Io(sqlite3.OperationalError):
        sqlite_errorcode = 10 | (3 << 8)  # SQLITE_IOERR_WRITE

    assert sqlite_failure_kind(Full("database or disk is full")) == "full"
    assert sqlite_failure_kind(Io("disk I/O error")) == "io_error"
    assert sqlite_failure_kind(sqlite3.OperationalError("no such table: x")) is None
    assert failure_kind(mapped(Full("database or disk is full"))) == "full"


async def test_group_commit_shares_commits(tmp_path: Path) -> None:
    store = await Store.open(str(tmp_path / "db.sqlite"))
    try:
        await asyncio.gather(*(store.run(lambda tx, i=i: tx.set_cursor("a", str(i), "v"))
                               for i in range(50)))
        assert store.commits < store.units == 50
    finally:
        await store.close()
