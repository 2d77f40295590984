"""Leases and members in PostgreSQL (the :class:`~bridge.store.leases.Leases`
protocol): rows in ``hashbridge_leases`` and ``hashbridge_members``, timed by the
server's clock (``clock_timestamp()``), each heartbeat one transaction on a
connection of the leases' own.

Taking a lease is one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` the row is
expired (or already ours): the row lock makes two members racing for the same lease
agree on one winner.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Protocol, TypeVar

import psycopg

from bridge.store.api import Store, Tx
from bridge.store.leases import Heartbeat, LeaseRow, Member
from bridge.store.postgresql.conn import PgConn
from bridge.store.postgresql.tx import PgTx

T = TypeVar("T")

_NOW = "extract(epoch from clock_timestamp())"


def _c(tx: Tx) -> PgTx:
    assert isinstance(tx, PgTx)
    return tx


class _ListeningStore(Store, Protocol):
    def listen(self, channel: str, callback: Callable[[str], None]) -> None: ...


class _Watch(Protocol):
    def watch(self, conn: PgConn) -> AbstractContextManager[None]: ...


class PgLeases:
    """Heartbeats run on a connection of their own, not through the store's writer:
    a writer with a long queue (thousands of workers planning at start-up) must not
    delay a renewal past the lease's time."""

    def __init__(self, store: _ListeningStore, member: Member,
                 connect: Callable[[], PgConn], watchdog: _Watch) -> None:
        self.store = store
        self.member = member
        self._connect = connect
        self._watchdog = watchdog
        self._conn: PgConn | None = None
        self._lock = threading.Lock()
        # One thread of their own: a stalled call waits here, never in the
        # event loop's default pool that the rest of the bridge uses.
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="hashbridge-leases")

    async def _call(self, fn: Callable[[PgConn], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._in_tx, fn)

    def _in_tx(self, fn: Callable[[PgConn], T]) -> T:
        """*fn* in a transaction on the lease connection (blocking; reconnects)."""
        with self._lock:
            if self._conn is None or self._conn.broken:
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                self._conn = self._connect()
            c = self._conn
            try:
                with self._watchdog.watch(c):
                    c.execute("BEGIN")
                    result = fn(c)
                    c.execute("COMMIT")
                return result
            except BaseException:
                if not c.broken:
                    with contextlib.suppress(psycopg.Error):
                        c.raw.execute("ROLLBACK")
                raise

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    async def heartbeat(self, wanted: Sequence[str], held: Collection[str], ttl: float,
                        limit: int) -> Heartbeat:
        m = self.member
        names, mine = list(wanted), list(held)

        def unit(c: PgConn) -> Heartbeat:
            c.execute(
                "INSERT INTO hashbridge_members(member, host, pid, started_at, heartbeat_at)"
                f" VALUES (%s, %s, %s, {_NOW}, {_NOW}) ON CONFLICT (member) DO UPDATE SET"
                " heartbeat_at = excluded.heartbeat_at", (m.id, m.host, m.pid))
            renewed = {r[0] for r in c.execute(
                f"UPDATE hashbridge_leases SET heartbeat_at = {_NOW},"
                f" expires_at = {_NOW} + %s WHERE member = %s AND name = ANY(%s)"
                " RETURNING name", (ttl, m.id, mine)).fetchall()}
            alive = int(c.one(f"SELECT count(*) FROM hashbridge_members WHERE"
                              f" heartbeat_at > {_NOW} - %s", (ttl,))[0])
            taken: set[str] = set()
            room = limit - len(renewed)
            if room > 0:
                free = [r[0] for r in c.execute(
                    "SELECT n FROM unnest(%s::text[]) AS n LEFT JOIN hashbridge_leases l"
                    f" ON l.name = n WHERE l.name IS NULL OR l.expires_at < {_NOW}"
                    " OR (l.member = %s AND NOT l.name = ANY(%s)) ORDER BY n",
                    (names, m.id, list(renewed))).fetchall()]
                for name in free[:room]:
                    got = c.execute(
                        "INSERT INTO hashbridge_leases(name, member, host, pid, acquired_at,"
                        f" heartbeat_at, expires_at) VALUES (%s, %s, %s, %s, {_NOW}, {_NOW},"
                        f" {_NOW} + %s) ON CONFLICT (name) DO UPDATE SET member ="
                        " excluded.member, host = excluded.host, pid = excluded.pid,"
                        " acquired_at = excluded.acquired_at, heartbeat_at ="
                        " excluded.heartbeat_at, expires_at = excluded.expires_at"
                        f" WHERE hashbridge_leases.expires_at < {_NOW}"
                        " OR hashbridge_leases.member = excluded.member RETURNING name",
                        (name, m.id, m.host, m.pid, ttl)).fetchone()
                    if got:
                        taken.add(name)
            # Members gone for long (killed): forget them.
            c.execute(f"DELETE FROM hashbridge_members WHERE heartbeat_at < {_NOW} - %s",
                      (max(ttl * 20, 600.0),))
            loads = {r[0]: int(r[1]) for r in c.execute(
                "SELECT m.member, count(l.name) FROM hashbridge_members m"
                " LEFT JOIN hashbridge_leases l ON l.member = m.member"
                f" AND l.expires_at > {_NOW} WHERE m.heartbeat_at > {_NOW} - %s"
                " GROUP BY m.member", (ttl,)).fetchall()}
            return Heartbeat(frozenset(renewed | taken), max(alive, 1), frozenset(taken),
                             loads)

        return await self._call(unit)

    async def release(self, names: Collection[str]) -> None:
        m, gone = self.member, list(names)
        await self._call(lambda c: c.execute(
            "DELETE FROM hashbridge_leases WHERE member = %s AND name = ANY(%s)", (m.id, gone)))

    async def leave(self) -> None:
        m = self.member

        def unit(c: PgConn) -> None:
            c.execute("DELETE FROM hashbridge_leases WHERE member = %s", (m.id,))
            c.execute("DELETE FROM hashbridge_members WHERE member = %s", (m.id,))
        await self._call(unit)

    async def holders(self) -> list[LeaseRow]:
        def unit(c: PgConn) -> list[LeaseRow]:
            return [LeaseRow(r[0], r[1], r[2], int(r[3]), float(r[4]), float(r[5]))
                    for r in c.execute(
                        "SELECT name, member, host, pid, acquired_at,"
                        f" expires_at - {_NOW} FROM hashbridge_leases ORDER BY name")]
        return await self._call(unit)

    def broadcast(self, channel: str, payload: str) -> None:
        fut = self.store.submit(lambda tx: _c(tx).c.execute(
            "SELECT pg_notify(%s, %s)", (channel, payload)))
        fut.add_done_callback(lambda f: f.exception())  # never "exception never retrieved"

    def listen(self, channel: str, callback: Callable[[str], None]) -> None:
        self.store.listen(channel, callback)
