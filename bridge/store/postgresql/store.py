"""The PostgreSQL store: the :class:`~bridge.store.api.Store` protocol on a database
server that several hashbridge processes may share.

Like the SQLite store it runs units of work in one writer thread per process, many
units to a transaction (each in a savepoint), so the promises are the same: atomic
units, nothing acknowledged that is not committed, transient failures held and
retried.  What differs:

* **The server can go away** (restarted, failed over, the network cut): the failure
  is ``unreachable``; the batch is held, the writer reconnects with backoff and tries
  again.  A connection lost *during* ``COMMIT`` leaves it unknown whether the batch
  was saved; every batch writes a token (``hashbridge_commits``) in its transaction,
  so after reconnecting the writer looks the token up: found, the batch is
  acknowledged as it was; not found, it is run again.  A batch is never applied twice
  and never acknowledged unsaved.
* **Other processes write too**: caches are invalidated by notifications
  (:data:`~bridge.store.postgresql.tx.CACHE_CHANNEL`) read by a listener thread,
  which also delivers the notifications other parts of the bridge subscribe to
  (:meth:`PgStore.listen`).
* ``lock_timeout`` bounds how long a statement waits for another transaction's lock
  (then ``locked``: held and retried, like SQLite's busy timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bridge.store.api import Tx
from bridge.store.errors import FailureKind, SchemaError, StoreError, TransientStoreError
from bridge.store.leases import Member
from bridge.store.postgresql.conn import CacheEpochs, PgConn, mapped, pg_failure_kind
from bridge.store.postgresql.leases import PgLeases
from bridge.store.postgresql.migrations import BACKEND_TABLES, MIGRATIONS, latest_version
from bridge.store.postgresql.tx import CACHE_CHANNEL, PgTx
from bridge.store.space import StorageState

T = TypeVar("T")
log = logging.getLogger("hashbridge.store")

_BATCH = 512
_STOP = object()
_HOLD_CAP = 5.0
_REMIND_EVERY = 300.0
_LOCK_TIMEOUT = "2s"
_MIGRATION_LOCK = 0x68617368  # "hash": one process migrates at a time
_PRUNE_EVERY = 1000
STALL_SECONDS = 10.0
"""A batch (or a listener's ping) with no answer for this long: the connection is
given up and made again (see :class:`Watchdog`)."""
_PING_EVERY = 5.0

DEFAULTS = {
    "connect_timeout": "10",
    # A server that stops answering (a cut network) is noticed in ~10 s, not at the
    # kernel's TCP timeout of minutes: its leases must be seen lost in time.
    "keepalives": "1",
    "keepalives_idle": "5",
    "keepalives_interval": "2",
    "keepalives_count": "3",
    "tcp_user_timeout": "10000",
}


def conninfo(url: str, purpose: str = "store") -> str:
    """libpq's connection string for *url*, with our defaults where it sets none.
    The password is never in *url* (refused by the config); libpq reads it from
    ``PGPASSWORD`` or the ``.pgpass`` file (``PGPASSFILE``)."""
    params: dict[str, Any] = dict(conninfo_to_dict(url))
    for k, v in DEFAULTS.items():
        params.setdefault(k, v)
    params.setdefault("application_name",
                      f"hashbridge {purpose} {socket.gethostname()[:30]} {os.getpid()}")
    return make_conninfo(**params)


def connect(url: str, shown: str, purpose: str = "store") -> PgConn:
    """A connection in autocommit mode (transactions are explicit).  Raises
    :class:`StoreError` saying what to check; never shows a password."""
    try:
        raw = psycopg.connect(conninfo(url, purpose), autocommit=True)
    except psycopg.Error as e:
        text = str(e).strip()
        if "password" in text or "authentication" in text:
            hint = ("check the password in PGPASSWORD or the .pgpass file (PGPASSFILE), "
                    "and the user in the URL")
        elif "does not exist" in text:
            hint = "create the database (createdb) or fix its name in the URL"
        else:
            hint = "is the server running and reachable from here?"
        message = f"database {shown}: cannot connect ({text}); {hint}"
        # A server down or out of reach comes back: a caller that can wait (the
        # writer reconnecting) holds its work.  A refused login does not.
        if hint.startswith("is the server") and pg_failure_kind(e) == "unreachable":
            raise TransientStoreError("unreachable", message) from e
        raise StoreError(message) from e
    c = PgConn(raw)
    c.execute(f"SET lock_timeout = '{_LOCK_TIMEOUT}'")
    return c


def open_checked(url: str, shown: str, *, must_exist: bool = False) -> PgConn:
    """Connect, verify and migrate; raise :class:`StoreError` with advice."""
    conn = connect(url, shown)
    try:
        _check_and_migrate(conn, shown, must_exist)
    except BaseException:
        conn.close()
        raise
    return conn


def _check_and_migrate(conn: PgConn, shown: str, must_exist: bool) -> None:
    if conn.one("SHOW transaction_read_only")[0] == "on":
        raise StoreError(f"database {shown}: is read-only (a standby, or "
                         "default_transaction_read_only is on); point database at the "
                         "primary server, nothing was changed")
    # One process checks and migrates at a time.  The lock is taken before the
    # transaction starts, so the transaction sees what the one before committed.
    conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
    try:
        conn.execute("BEGIN")
        has_schema = conn.one("SELECT to_regclass('hashbridge_schema') IS NOT NULL")[0]
        if must_exist and not has_schema:
            raise StoreError(f"database {shown}: no hashbridge tables yet (has `hashbridge "
                             "run` started once on it?)")
        if not has_schema and conn.one("SELECT to_regclass('posts') IS NOT NULL")[0]:
            raise StoreError(f"database {shown}: holds a 'posts' table that is not "
                             "hashbridge's; refusing to write into it (use a database of "
                             "its own)")
        conn.execute(BACKEND_TABLES)
        row = conn.execute("SELECT version FROM hashbridge_schema").fetchone()
        if row is None:
            conn.execute("INSERT INTO hashbridge_schema(version) VALUES (0)")
            version = 0
        else:
            version = int(row[0])
        if version > latest_version():
            raise SchemaError(f"database {shown}: schema version {version} is newer than this "
                              f"hashbridge understands ({latest_version()}); upgrade "
                              "hashbridge, the database was left untouched")
        for number in range(version, latest_version()):
            try:
                conn.execute(MIGRATIONS[number])
                conn.execute("UPDATE hashbridge_schema SET version=%s", (number + 1,))
            except TransientStoreError:
                raise
            except StoreError as e:
                raise StoreError(f"database {shown}: migration {number + 1} failed: {e}") from e
            log.info("store: applied migration %d", number + 1)
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise
    finally:
        if not conn.broken:
            conn.raw.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))


class Watchdog:
    """Unblocks a connection stuck waiting for an answer that will not come.

    A server that hangs, or a middlebox that swallows a connection while still
    acknowledging its packets, leaves a blocking read waiting for ever: TCP
    keepalives and ``tcp_user_timeout`` see a healthy peer.  Work on a connection
    runs inside :meth:`watch`; past *limit* seconds its socket is shut down, the
    read fails, and the caller reconnects (the failure is ``unreachable``)."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._busy: dict[int, tuple[PgConn, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="hashbridge-store-watchdog",
                                        daemon=True)
        self._thread.start()

    @contextlib.contextmanager
    def watch(self, conn: PgConn) -> Iterator[None]:
        with self._lock:
            self._busy[id(conn)] = (conn, time.monotonic())
        try:
            yield
        finally:
            with self._lock:
                self._busy.pop(id(conn), None)

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(min(1.0, self.limit / 4)):
            now = time.monotonic()
            with self._lock:
                stuck = [c for c, since in self._busy.values() if now - since > self.limit]
            for conn in stuck:
                log.warning("store: no answer from the database for %.0f s; dropping the "
                            "connection and reconnecting", self.limit)
                conn.sever()


def _rollback(conn: PgConn) -> None:
    try:
        conn.raw.execute("ROLLBACK")
    except psycopg.Error:
        pass


class _CommitUnknown(Exception):
    """The connection broke during COMMIT: the batch may or may not be saved."""

    def __init__(self, token: str, results: list[tuple[bool, Any]], cause: BaseException):
        super().__init__(str(cause))
        self.token = token
        self.results = results
        self.cause = cause


class PgStore:
    """Runs units of work in one writer thread; see the module docstring."""

    def __init__(self, url: str, shown: str) -> None:
        self.url = url
        self.shown = shown
        self.epochs = CacheEpochs()
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._listener: threading.Thread | None = None
        self._conn: PgConn | None = None
        self._tx: PgTx | None = None
        self._closing = threading.Event()
        self._state_lock = threading.Lock()
        self._storage = StorageState()
        self._unsaved = 0
        self._reminded = 0.0
        self._subscribers: dict[str, list[Callable[[str], None]]] = {CACHE_CHANNEL: []}
        self._listening: set[str] = set()
        self._watchdog = Watchdog(STALL_SECONDS)
        self._leases: list[PgLeases] = []
        self.commits = 0
        self.units = 0

    @property
    def storage(self) -> StorageState:
        return self._storage

    @classmethod
    async def open(cls, url: str, shown: str, *, must_exist: bool = False) -> PgStore:
        """Connect, check and migrate.  Raises :class:`StoreError` (a
        :class:`SchemaError` for a newer schema)."""
        store = cls(url, shown)
        try:
            store._conn = await asyncio.to_thread(open_checked, url, shown,
                                                  must_exist=must_exist)
        except BaseException:
            store._watchdog.stop()
            raise
        store._thread = threading.Thread(target=store._loop, name="hashbridge-store",
                                         daemon=True)
        store._thread.start()
        store._listener = threading.Thread(target=store._listen_loop,
                                           name="hashbridge-store-listen", daemon=True)
        store._listener.start()
        return store

    async def writable(self, poll: float = 0.5) -> None:
        while not self._storage.ok and not self._closing.is_set():  # noqa: ASYNC110
            await asyncio.sleep(poll)

    def _set_storage(self, **changes: Any) -> StorageState:
        with self._state_lock:
            self._storage = dataclasses.replace(self._storage, **changes)
            return self._storage

    async def run(self, unit: Callable[[Tx], T]) -> T:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._q.put((unit, fut, loop))
        return await fut

    def submit(self, unit: Callable[[Tx], Any]) -> asyncio.Future[Any]:
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
        if self._listener is not None:
            await asyncio.to_thread(self._listener.join)
        self._watchdog.stop()
        for leases in self._leases:
            leases.close()
        self._thread = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def leases(self, member: Member) -> PgLeases:
        """This store's leases, held by *member* (see :mod:`bridge.store.leases`)."""
        leases = PgLeases(self, member, lambda: connect(self.url, self.shown, "leases"),
                          self._watchdog)
        self._leases.append(leases)
        return leases

    # -- notifications ---------------------------------------------------
    def listen(self, channel: str, callback: Callable[[str], None]) -> None:
        """Call *callback(payload)* (in the listener thread) for each notification
        on *channel*, from any process sharing the database.  Notifications sent
        while the listener was reconnecting are lost: subscribers that cannot miss
        one also poll."""
        self._subscribers.setdefault(channel, []).append(callback)

    def notify(self, tx: Tx, channel: str, payload: str) -> None:
        """Send *payload* on *channel* when *tx* commits (inside a unit of work)."""
        assert isinstance(tx, PgTx)
        tx.c.execute("SELECT pg_notify(%s, %s)", (channel, payload))

    def _listen_loop(self) -> None:
        conn: PgConn | None = None
        backoff = 0.5
        pinged = time.monotonic()
        while not self._closing.is_set():
            try:
                if conn is None or conn.broken:
                    conn = connect(self.url, self.shown, "listener")
                    self._listening = set()
                    # Whatever was announced while we were away is unknown.
                    self.epochs.bump_all()
                    backoff = 0.5
                for channel in list(self._subscribers):
                    if channel not in self._listening:
                        conn.execute(f'LISTEN "{channel}"')
                        self._listening.add(channel)
                if time.monotonic() - pinged > _PING_EVERY:
                    # A silent connection receives no notifications either: make
                    # sure it still answers.
                    with self._watchdog.watch(conn):
                        conn.execute("SELECT 1")
                    pinged = time.monotonic()
                for n in conn.raw.notifies(timeout=0.5):
                    if n.channel == CACHE_CHANNEL:
                        self.epochs.bump(n.payload)
                    for fn in list(self._subscribers.get(n.channel, ())):
                        try:
                            fn(n.payload)
                        except Exception:  # a subscriber's bug must not stop the others
                            log.exception("store: notification handler failed")
            except (psycopg.Error, StoreError) as e:
                if conn is not None:
                    conn.close()
                conn = None
                log.debug("store: listener reconnecting: %s", e)
                self._closing.wait(backoff)
                backoff = min(backoff * 2, _HOLD_CAP)
        if conn is not None:
            conn.close()

    # -- the writer thread ------------------------------------------------
    def _loop(self) -> None:
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
            self._run_batch(batch)
            if stop:
                break
        if self._unsaved:
            log.error("store: stopped with %d writes not saved (%s); the next start re-reads "
                      "their events from the platforms and re-sends unrecorded deliveries "
                      "with the same idempotency keys", self._unsaved,
                      self._storage.detail or "writes failing")

    def _ensure_conn(self) -> PgConn:
        if self._conn is None or self._conn.broken:
            if self._conn is not None:
                self._conn.close()
            self._conn = None
            self._conn = connect(self.url, self.shown)
        return self._conn

    def _run_batch(self, batch: list[Any]) -> None:
        tries = 0
        committed = False
        unknown: _CommitUnknown | None = None
        tx = self._tx
        while True:
            try:
                conn = self._ensure_conn()
                if tx is None or tx.c is not conn:
                    # One Tx per connection: its caches outlive the batch.
                    tx = self._tx = PgTx(conn, self.epochs)
                if unknown is not None:
                    with self._watchdog.watch(conn):
                        found = conn.execute("SELECT 1 FROM hashbridge_commits WHERE"
                                             " token=%s", (unknown.token,)).fetchone()
                    if found:
                        results = unknown.results
                        committed = True
                        log.warning("store: the commit interrupted by the lost connection "
                                    "had gone through; not applied again")
                        break
                    unknown = None
                with self._watchdog.watch(conn):
                    results = self._commit(conn, tx, batch)
                committed = True
                break
            except _CommitUnknown as e:
                unknown = e
                if tx is not None:
                    tx.forget()
                kind = pg_failure_kind(e.cause) or "unreachable"
                if self._closing.is_set():
                    results = self._fail(e.cause, kind, len(batch))
                    break
                self._hold(e.cause, kind, len(batch), tries)
                tries += 1
            except (psycopg.Error, StoreError) as e:
                if tx is not None:
                    tx.forget()
                if self._conn is not None and not self._conn.broken:
                    _rollback(self._conn)
                failure = pg_failure_kind(e)
                if failure is None or self._closing.is_set():
                    results = self._fail(e, failure, len(batch))
                    break
                self._hold(e, failure, len(batch), tries)
                tries += 1
        if committed and not self._storage.ok:
            self._resumed(len(batch) + self._q.qsize())
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, bool, Any]]] = {}
        for (_unit, fut, loop), (ok, value) in zip(batch, results, strict=True):
            by_loop.setdefault(loop, []).append((fut, ok, value))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve_all, items)
            except RuntimeError:
                pass

    def _commit(self, conn: PgConn, tx: PgTx, batch: list[Any]) -> list[tuple[bool, Any]]:
        results: list[tuple[bool, Any]] = []
        conn.execute("BEGIN")
        for unit, _fut, _loop in batch:
            conn.execute("SAVEPOINT unit")
            try:
                value = unit(tx)
            except (psycopg.Error, StoreError) as e:
                if pg_failure_kind(e) is not None:
                    raise  # the server, not the unit: hold the whole batch
                tx.forget()
                conn.execute("ROLLBACK TO SAVEPOINT unit")
                conn.execute("RELEASE SAVEPOINT unit")
                results.append((False, mapped(e) if isinstance(e, psycopg.Error) else e))
            except BaseException as e:
                tx.forget()
                conn.execute("ROLLBACK TO SAVEPOINT unit")
                conn.execute("RELEASE SAVEPOINT unit")
                results.append((False, e))
            else:
                conn.execute("RELEASE SAVEPOINT unit")
                results.append((True, value))
        token = uuid.uuid4().hex
        now = time.time()
        conn.execute("INSERT INTO hashbridge_commits(token, at) VALUES (%s, %s)", (token, now))
        if self.commits % _PRUNE_EVERY == 0:
            conn.execute("DELETE FROM hashbridge_commits WHERE at < %s", (now - 3600,))
        try:
            conn.raw.execute("COMMIT")
        except psycopg.Error as e:
            if pg_failure_kind(e) == "unreachable" or conn.broken:
                raise _CommitUnknown(token, results, e) from e
            raise mapped(e) from e
        self.commits += 1
        self.units += len(batch)
        return results

    def _fail(self, e: BaseException, kind: FailureKind | None, n: int
              ) -> list[tuple[bool, Any]]:
        err = (StoreError(f"store write failed: {e}") if kind is None else
               TransientStoreError(kind, f"store write failed: {e}"))
        if kind is not None and self._closing.is_set():
            self._unsaved += n
        else:
            log.error("store: %s", err)
        return [(False, err)] * n

    def _hold(self, e: BaseException, kind: FailureKind, n: int, tries: int) -> None:
        held = n + self._q.qsize()
        state = self._storage
        if state.ok:
            detail = {"full": f"the database server's disk is full ({e})",
                      "io_error": f"the database server reports an I/O error ({e})",
                      "locked": f"a lock is held by another transaction ({e})",
                      "unreachable": f"the database server is unreachable ({e})",
                      "read_only": f"the database is read-only ({e})"}[kind]
            self._set_storage(state=kind, detail=detail, since=time.time(), held=held)
            self._reminded = time.monotonic()
            log.error("store: cannot write to %s: %s; holding writes and retrying until "
                      "they go through (nothing is acknowledged meanwhile)", self.shown, detail)
        else:
            self._set_storage(held=held)
            if time.monotonic() - self._reminded > _REMIND_EVERY:
                self._reminded = time.monotonic()
                log.error("store: still cannot write to %s after %.0f s: %s; %d units of "
                          "work held", self.shown, time.time() - (state.since or time.time()),
                          e, held)
        self._closing.wait(min(_HOLD_CAP, 0.1 * 2 ** min(tries, 10)))

    def _resumed(self, waiting: int) -> None:
        state = self._storage
        took = time.time() - (state.since or time.time())
        self._set_storage(state="ok", detail="", since=None, held=0)
        log.warning("store: writes go through again after %.1f s; %d units of work that "
                    "waited are being saved in order", took, max(waiting, state.held))


def read_once(url: str, shown: str, unit: Callable[[Tx], T]) -> T:
    """Run the read-only *unit* on a connection of its own, in a read-only
    transaction (blocking: call it through ``asyncio.to_thread``)."""
    conn = connect(url, shown, "reader")
    try:
        conn.execute("BEGIN READ ONLY")
        try:
            return unit(PgTx(conn))
        finally:
            _rollback(conn)
    finally:
        conn.close()


def _resolve_all(items: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for fut, ok, value in items:
        if fut.done():
            continue
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)
