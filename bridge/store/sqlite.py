"""SQLite (WAL) store with a writer thread and group commit."""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from bridge.store.migrations import MIGRATIONS, latest_version
from bridge.store.tx import Tx

T = TypeVar("T")
log = logging.getLogger("hashbridge.store")

_BATCH = 512
_STOP = object()


class StoreError(Exception):
    """The database cannot be used (corrupt, unwritable); the message says what to do."""


class SchemaError(StoreError):
    """The database was written by a newer hashbridge."""


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


def open_checked(path: str) -> sqlite3.Connection:
    """Open, verify and migrate the database; raise :class:`StoreError` with advice."""
    try:
        conn = _connect(path)
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal" and path != ":memory:":
            log.warning("SQLite refused WAL mode (got %s); continuing", mode)
        conn.execute("PRAGMA synchronous = NORMAL")
        # Checkpoints (with their fsyncs) run in a background thread instead of
        # inside a writer's commit; this is only the safety net if it lags.
        conn.execute("PRAGMA wal_autocheckpoint = 20000")
        ok = conn.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.DatabaseError as e:
        raise StoreError(f"{path}: not a usable hashbridge database ({e}); restore it "
                         "from a backup or move it away to start empty") from e
    if ok != "ok":
        conn.close()
        raise StoreError(f"{path}: database is corrupt ({ok}); restore it from a backup")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > latest_version():
        conn.close()
        raise SchemaError(f"{path}: schema version {version} is newer than this hashbridge "
                          f"understands ({latest_version()}); upgrade hashbridge, the "
                          "database was left untouched")
    if version:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "posts" not in tables:
            conn.close()
            raise StoreError(f"{path}: has user_version {version} but no hashbridge tables; "
                             "this is not a hashbridge database")
    elif conn.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()[0]:
        conn.close()
        raise StoreError(f"{path}: holds tables that are not hashbridge's; refusing to "
                         "write into it")
    for number in range(version, latest_version()):
        try:
            conn.execute("BEGIN IMMEDIATE")
            for statement in _split(MIGRATIONS[number]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number + 1}")
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            conn.execute("ROLLBACK")
            conn.close()
            raise StoreError(f"{path}: migration {number + 1} failed: {e}") from e
        log.info("store: applied migration %d", number + 1)
    return conn


def _split(script: str) -> list[str]:
    """Split a migration into statements (``sqlite3.complete_statement`` knows
    where they end)."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        if line.strip().startswith("--"):
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out


class Store:
    """Runs units of work in one writer thread; see the package docstring."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._checkpointer: threading.Thread | None = None
        self._closing = threading.Event()
        self.commits = 0
        self.units = 0

    @classmethod
    async def open(cls, path: str) -> Store:
        """Open (creating and migrating as needed).  Raises :class:`StoreError`."""
        if path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        store = cls(path)
        store._conn = await asyncio.to_thread(open_checked, path)
        store._thread = threading.Thread(target=store._loop, name="hashbridge-store",
                                         daemon=True)
        store._thread.start()
        if path != ":memory:":
            store._checkpointer = threading.Thread(target=store._checkpoint_loop,
                                                   name="hashbridge-checkpoint", daemon=True)
            store._checkpointer.start()
        return store

    def _checkpoint_loop(self) -> None:
        """Copy the WAL into the database now and then, off the writer's path
        (PASSIVE: never blocks the writer)."""
        conn = _connect(self.path)
        wal = self.path + "-wal"
        try:
            while not self._closing.wait(1.0):
                try:
                    if os.path.getsize(wal) > 4 * 1024 * 1024:
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except (OSError, sqlite3.Error) as e:
                    log.debug("checkpoint skipped: %s", e)
        finally:
            conn.close()

    async def run(self, unit: Callable[[Tx], T]) -> T:
        """Run *unit* in the store thread inside a transaction; return its result
        once committed (or raise what it raised; nothing of it is kept then)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._q.put((unit, fut, loop))
        return await fut

    def submit(self, unit: Callable[[Tx], Any]) -> asyncio.Future[Any]:
        """Like :meth:`run` without waiting: the returned future resolves on commit."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._q.put((unit, fut, loop))
        return fut

    async def close(self) -> None:
        if self._thread is None:
            return
        self._closing.set()
        self._q.put(_STOP)
        await asyncio.to_thread(self._thread.join)
        if self._checkpointer is not None:
            await asyncio.to_thread(self._checkpointer.join)
        self._thread = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- the writer thread ------------------------------------------------
    def _loop(self) -> None:
        assert self._conn is not None
        conn = self._conn
        tx = Tx(conn)
        while True:
            first = self._q.get()
            if first is _STOP:
                return
            batch = [first]
            stop = False
            while len(batch) < _BATCH:
                try:
                    item = self._q.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            self._run_batch(conn, tx, batch)
            if stop:
                return

    def _run_batch(self, conn: sqlite3.Connection, tx: Tx, batch: list[Any]) -> None:
        results: list[tuple[bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for unit, _fut, _loop in batch:
                conn.execute("SAVEPOINT unit")
                try:
                    value = unit(tx)
                except BaseException as e:  # the unit's failure is its caller's
                    tx.forget()
                    conn.execute("ROLLBACK TO unit")
                    conn.execute("RELEASE unit")
                    results.append((False, e))
                else:
                    conn.execute("RELEASE unit")
                    results.append((True, value))
            conn.execute("COMMIT")
            self.commits += 1
            self.units += len(batch)
        except sqlite3.Error as e:
            # Disk full, I/O error, locked: nothing of the batch was kept.
            tx.forget()
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            err = StoreError(f"store write failed: {e}")
            log.error("store: %s", err)
            results = [(False, err)] * len(batch)
        for (_unit, fut, loop), (ok, value) in zip(batch, results, strict=True):
            try:
                loop.call_soon_threadsafe(_resolve, fut, ok, value)
            except RuntimeError:  # the caller's loop is gone (shutdown)
                pass


def _resolve(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if fut.done():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)
