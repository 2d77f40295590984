"""The connection the statements run on, and PostgreSQL's errors mapped to the core's.

PostgreSQL says why a statement failed in its SQLSTATE.  What goes away by itself is
:class:`~bridge.store.errors.TransientStoreError`: the server unreachable, shutting
down or restarting (class 08, 57P01-57P03, or a connection lost with no SQLSTATE:
``unreachable``), out of disk (53100: ``full``), an I/O error (58030: ``io_error``),
a lock not granted in time, a deadlock or a serialization failure (55P03, 40P01,
40001: ``locked``), a database that became read-only (25006, a primary demoted to a
standby: ``read_only``).  Everything else (a constraint, a bug in a statement) is a
plain :class:`~bridge.store.errors.StoreError`.

The mapping happens where a statement runs (:class:`PgConn`), so code inside a unit
of work sees the core's types, as with SQLite.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row

from bridge.store.errors import FailureKind, StoreError, TransientStoreError

_BY_STATE: dict[str, FailureKind] = {
    "53100": "full",
    "58030": "io_error",
    "55P03": "locked",
    "40P01": "locked",
    "40001": "locked",
    "25006": "read_only",
    "57P01": "unreachable",
    "57P02": "unreachable",
    "57P03": "unreachable",
    "53300": "unreachable",  # too many connections: another may be freed
}


def pg_failure_kind(e: BaseException) -> FailureKind | None:
    """The transient kind of a ``psycopg.Error`` (None: not transient)."""
    if isinstance(e, TransientStoreError):
        return e.kind
    if not isinstance(e, psycopg.Error):
        return None
    state = e.sqlstate or ""
    if state in _BY_STATE:
        return _BY_STATE[state]
    if state.startswith("08"):
        return "unreachable"
    if not state and isinstance(e, psycopg.OperationalError | psycopg.InterfaceError):
        # The connection broke (server gone, network cut): libpq gives no SQLSTATE.
        return "unreachable"
    return None


def mapped(e: psycopg.Error) -> StoreError:
    """The core's exception for *e* (raise it ``from e``)."""
    kind = pg_failure_kind(e)
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if kind is not None:
        return TransientStoreError(kind, text)
    return StoreError(f"{type(e).__name__}: {text}")


class PgConn:
    """A psycopg connection whose statements raise the core's exceptions."""

    def __init__(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        self.raw = conn

    def execute(self, sql: str, args: Sequence[Any] | None = None) -> psycopg.Cursor[Any]:
        try:
            return self.raw.execute(sql, args)
        except psycopg.Error as e:
            raise mapped(e) from e

    def one(self, sql: str, args: Sequence[Any] | None = None) -> tuple[Any, ...]:
        """The first row of a query that always returns one (a count)."""
        row = self.execute(sql, args).fetchone()
        assert row is not None
        return tuple(row)

    def rows(self, sql: str, args: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        """Every row, as dicts by column name."""
        try:
            with self.raw.cursor(row_factory=dict_row) as cur:
                cur.execute(sql, args)
                return cur.fetchall()
        except psycopg.Error as e:
            raise mapped(e) from e

    def sever(self) -> None:
        """Shut the socket down under a read blocked in another thread (which then
        fails with a lost connection); the connection is unusable afterwards."""
        try:
            fd = self.raw.pgconn.socket
            with socket.socket(fileno=os.dup(fd)) as s:
                s.shutdown(socket.SHUT_RDWR)
        except (OSError, psycopg.Error):
            pass

    @property
    def broken(self) -> bool:
        return self.raw.closed or self.raw.broken

    def close(self) -> None:
        self.raw.close()


class CacheEpochs:
    """How often each cached table was announced changed (by any process); a cache
    loaded at an older count is stale.  Written by the listener thread, read by the
    writer thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._all = 0

    def get(self, table: str) -> int:
        return self._counts.get(table, 0) + self._all

    def bump(self, table: str) -> None:
        with self._lock:
            self._counts[table] = self._counts.get(table, 0) + 1

    def bump_all(self) -> None:
        """Notifications may have been missed (the listener reconnected): every
        cache is stale."""
        with self._lock:
            self._all += 1
