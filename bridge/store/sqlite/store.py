"""SQLite (WAL) store with a writer thread and group commit: the
:class:`~bridge.store.api.Store` protocol for one process on one data dir."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from bridge.store.api import Tx
from bridge.store.errors import (
    DiskFullError,
    FailureKind,
    SchemaError,
    StoreError,
    TransientStoreError,
)
from bridge.store.space import (
    StorageState,
    describe_free,
    failure_kind,
    looks_writable,
    probe_write,
)
from bridge.store.sqlite.errors import MappedConnection, mapped, sqlite_failure_kind
from bridge.store.sqlite.migrations import MIGRATIONS, latest_version
from bridge.store.sqlite.tx import SqliteTx

T = TypeVar("T")
log = logging.getLogger("hashbridge.store")

_BATCH = 512
_STOP = object()
_HOLD_CAP = 10.0
"""Longest wait between two tries of held writes (once there is room)."""
_REMIND_EVERY = 300.0


def _no_space(path: str) -> DiskFullError:
    where = os.path.dirname(os.path.abspath(path))
    return DiskFullError(f"data dir {where}: no space left on device ({describe_free(where)}); "
                         "free some space there, then start again (nothing was changed)")


def _kind(e: BaseException) -> FailureKind | None:
    """Transient or not, for a raw ``sqlite3.Error``, a mapped one or an ``OSError``."""
    return sqlite_failure_kind(e) or failure_kind(e)


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                           factory=MappedConnection)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 5000")
    # 32 MiB of page cache instead of SQLite's 2 MiB: the outbox's indexes stay
    # in memory as the database grows (about 15 % more posts/s in bench/relay.py);
    # memory is only taken as pages are read.
    conn.execute("PRAGMA cache_size = -32768")
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
        # A WAL that grew while checkpoints could not run (a full disk) is
        # cut back to this once it has been copied into the database.
        conn.execute("PRAGMA journal_size_limit = 8388608")
        ok = conn.execute("PRAGMA quick_check").fetchone()[0]
    except (sqlite3.DatabaseError, StoreError) as e:
        _raise_if_transient(path, e)
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
        except (sqlite3.Error, StoreError) as e:
            _rollback(conn)
            conn.close()
            _raise_if_transient(path, e)
            raise StoreError(f"{path}: migration {number + 1} failed: {e}") from e
        log.info("store: applied migration %d", number + 1)
    return conn


def open_snapshot(path: str) -> sqlite3.Connection:
    """A read-only view of the database as of its last checkpoint, for reading
    when the disk is too full to open it the normal way (WAL mode must create
    its ``-shm`` file).  Commits still only in the ``-wal`` file are not seen;
    after a clean stop there are none."""
    from urllib.parse import quote

    conn = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?immutable=1", uri=True,
                           check_same_thread=False, factory=MappedConnection)
    conn.row_factory = sqlite3.Row
    return conn


def read_snapshot(path: str, unit: Callable[[Tx], T]) -> T:
    """Run the read-only *unit* on :func:`open_snapshot` (blocking: call it
    through ``asyncio.to_thread``).  Raises :class:`StoreError`."""
    try:
        conn = open_snapshot(path)
    except sqlite3.Error as e:
        raise StoreError(f"{path}: cannot read the database ({e})") from e
    try:
        return unit(SqliteTx(conn))
    except sqlite3.Error as e:
        raise mapped(e) from e
    finally:
        conn.close()


def _raise_if_transient(path: str, e: BaseException) -> None:
    """A full disk or a locked file says nothing about the database: say so,
    rather than suggest restoring a backup."""
    match _kind(e):
        case "full":
            raise _no_space(path) from e
        case "io_error":
            raise StoreError(f"{path}: disk I/O error ({e}); check the device and the kernel "
                             "log, the database was not changed") from e
        case "locked":
            raise StoreError(f"{path}: locked by another process ({e}); is another hashbridge "
                             "running on this data dir?") from e


def _transient_cause(e: BaseException) -> BaseException | None:
    """The transient storage failure *e* was raised from or while handling, if any."""
    seen = 0
    cause = e.__cause__ or e.__context__
    while cause is not None and seen < 16:
        if _kind(cause) is not None:
            return cause
        cause = cause.__cause__ or cause.__context__
        seen += 1
    return None


def _rollback(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("ROLLBACK")
    except (sqlite3.Error, StoreError):  # the failure may have rolled it back already
        pass


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


class SqliteStore:
    """Runs units of work in one writer thread; see :mod:`bridge.store`.

    A write that fails because of the disk (full, I/O error) or another
    process's lock is *held*: the batch is rolled back whole and tried again
    with backoff (for a full disk, once there is room) until it commits.  Its
    callers wait meanwhile, so nothing is acknowledged that is not saved:
    adapters do not advance their cursors, and records of completed sends stay
    queued in memory, in order.  :attr:`storage` tells what is happening.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._checkpointer: threading.Thread | None = None
        self._closing = threading.Event()
        self._state_lock = threading.Lock()
        self._storage = StorageState()
        self._unsaved = 0
        self._reminded = 0.0
        self.commits = 0
        self.units = 0

    @property
    def storage(self) -> StorageState:
        """The writer's view of the disk: ``ok``, or why writes are held."""
        return self._storage

    @property
    def data_dir(self) -> str:
        return os.path.dirname(os.path.abspath(self.path))

    async def writable(self, poll: float = 0.5) -> None:
        """Return once writes go through (at once when they do): a caller about
        to do something it must record waits here rather than act unrecorded."""
        # The state changes in the writer thread; a poll is all it takes.
        while not self._storage.ok and not self._closing.is_set():  # noqa: ASYNC110
            await asyncio.sleep(poll)

    def _set_storage(self, **changes: Any) -> StorageState:
        with self._state_lock:
            self._storage = dataclasses.replace(self._storage, **changes)
            return self._storage

    @classmethod
    async def open(cls, path: str, *, require_free: int = 0) -> SqliteStore:
        """Open (creating and migrating as needed).  Raises :class:`StoreError`;
        :class:`DiskFullError` when fewer than *require_free* bytes can be
        written in the data dir (the daemon asks for
        :data:`~bridge.store.space.MIN_FREE_BYTES`)."""
        if path != ":memory:":
            where = os.path.dirname(os.path.abspath(path))
            try:
                if require_free:
                    await asyncio.to_thread(probe_write, where, require_free)
                else:
                    os.makedirs(where, exist_ok=True)
            except OSError as e:
                if failure_kind(e) == "full":
                    raise _no_space(path) from e
                raise StoreError(f"data dir {where}: cannot write there ({e})") from e
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
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                        if self._storage.checkpoint_error:
                            self._set_storage(checkpoint_error="")
                            log.warning("store: checkpoint succeeded again; the WAL is copied "
                                        "into the database")
                except (OSError, sqlite3.Error, StoreError) as e:
                    if _kind(e) in ("full", "io_error"):
                        if not self._storage.checkpoint_error:
                            # The WAL stays authoritative: nothing is lost, it only
                            # grows until the database file can grow again.
                            log.warning("store: checkpoint failed in the data dir %s: %s (%s); "
                                        "the WAL keeps every commit and is copied in once "
                                        "there is room", self.data_dir, e,
                                        describe_free(self.data_dir))
                        self._set_storage(checkpoint_error=str(e))
                    else:
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
        """Stop the writer after what is queued.  Writes still held then (the
        disk is full) are given up with :class:`StoreError`; their work is
        redone at the next start (events re-read from the saved cursors,
        unrecorded sends re-sent with the same idempotency keys)."""
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
        tx = SqliteTx(conn)
        while True:
            first = self._q.get()
            if first is _STOP:
                break
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
                break
        if self._unsaved:
            log.error("store: stopped with %d writes not saved (%s); the next start re-reads "
                      "their events from the platforms and re-sends unrecorded deliveries "
                      "with the same idempotency keys", self._unsaved,
                      self._storage.detail or "writes failing")

    def _run_batch(self, conn: sqlite3.Connection, tx: SqliteTx, batch: list[Any]) -> None:
        tries = 0
        committed = False
        while True:
            try:
                results = self._commit(conn, tx, batch)
                committed = True
                break
            except (sqlite3.Error, StoreError) as e:
                tx.forget()
                _rollback(conn)
                kind = _kind(e)
                if kind is None or self._closing.is_set():
                    results = self._fail(e, kind, len(batch))
                    break
                self._hold(e, kind, len(batch), tries)
                tries += 1
        if committed and not self._storage.ok:
            self._resumed(len(batch) + self._q.qsize())
        # One wake-up per event loop for the whole batch, not one per unit.
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, bool, Any]]] = {}
        for (_unit, fut, loop), (ok, value) in zip(batch, results, strict=True):
            by_loop.setdefault(loop, []).append((fut, ok, value))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve_all, items)
            except RuntimeError:  # the caller's loop is gone (shutdown)
                pass

    def _commit(self, conn: sqlite3.Connection, tx: SqliteTx, batch: list[Any]
                ) -> list[tuple[bool, Any]]:
        """One try at the batch: each unit in a savepoint, then one COMMIT.
        Raises :class:`StoreError` (or ``sqlite3.Error``) when the batch as a
        whole failed.  A unit's own failure goes to its caller, an error of
        SQLite's mapped to the core's type."""
        results: list[tuple[bool, Any]] = []
        conn.execute("BEGIN IMMEDIATE")
        for unit, _fut, _loop in batch:
            conn.execute("SAVEPOINT unit")
            try:
                value = unit(tx)
            except (sqlite3.Error, StoreError) as e:
                if _kind(e) is not None:
                    raise  # the disk, not the unit: hold the whole batch
                tx.forget()
                conn.execute("ROLLBACK TO unit")
                conn.execute("RELEASE unit")
                results.append((False, mapped(e) if isinstance(e, sqlite3.Error) else e))
            except BaseException as e:  # the unit's failure is its caller's ...
                held = _transient_cause(e)
                if held is not None:
                    # ... unless it wraps a failure of the disk (the relay's
                    # EventFailed around a row fetch that hit an I/O error):
                    # still the disk, not the unit.
                    raise held from e
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
        return results

    def _fail(self, e: BaseException, kind: FailureKind | None, n: int
              ) -> list[tuple[bool, Any]]:
        err = (StoreError(f"store write failed: {e}") if kind is None else
               TransientStoreError(kind, f"store write failed: {e}"))
        if kind is not None and self._closing.is_set():
            self._unsaved += n  # reported once, when the writer stops
        else:
            log.error("store: %s", err)
        return [(False, err)] * n

    def _hold(self, e: BaseException, kind: FailureKind, n: int, tries: int) -> None:
        """Log (once), then wait until the held batch is worth trying again."""
        held = n + self._q.qsize()
        where = self.data_dir
        state = self._storage
        if state.ok:
            detail = {"full": f"no space left on device ({describe_free(where)})",
                      "io_error": f"disk I/O error ({e})",
                      "locked": f"the database is locked by another process ({e})"}[kind]
            state = self._set_storage(state=kind, detail=detail, since=time.time(), held=held)
            self._reminded = time.monotonic()
            log.error("store: cannot write to the data dir %s: %s; holding writes and "
                      "retrying until they go through (nothing is acknowledged meanwhile)",
                      where, detail)
        else:
            self._set_storage(held=held)
            if time.monotonic() - self._reminded > _REMIND_EVERY:
                self._reminded = time.monotonic()
                log.error("store: still cannot write to the data dir %s after %.0f s: %s (%s); "
                          "%d units of work held", where,
                          time.time() - (state.since or time.time()), e, describe_free(where),
                          held)
        delay = min(_HOLD_CAP, 0.25 * 2 ** min(tries, 10))
        if self._closing.wait(delay):
            return
        # A full disk: poll for room rather than fail again and again; try
        # anyway now and then (free space as statvfs shows it can mislead).
        deadline = time.monotonic() + 60.0
        while not looks_writable(where, kind) and time.monotonic() < deadline:
            if self._closing.wait(0.5):
                return

    def _resumed(self, waiting: int) -> None:
        state = self._storage
        took = time.time() - (state.since or time.time())
        self._set_storage(state="ok", detail="", since=None, held=0)
        log.warning("store: writes go through again after %.1f s (%s); %d units of work "
                    "that waited are being saved in order", took, describe_free(self.data_dir),
                    max(waiting, state.held))


def _resolve_all(items: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for fut, ok, value in items:
        _resolve(fut, ok, value)


def _resolve(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if fut.done():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)
