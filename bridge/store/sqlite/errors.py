"""SQLite's errors mapped to the core's (:mod:`bridge.store.errors`).

SQLite reports a full disk as ``SQLITE_FULL`` ("database or disk is full"), a
failing device as ``SQLITE_IOERR`` ("disk I/O error") and another process
holding the write lock past the busy timeout as ``SQLITE_BUSY``: those are
:class:`~bridge.store.errors.TransientStoreError`.  Every other ``sqlite3.Error``
(a constraint, a bug in a statement, a corrupt page) is a plain
:class:`~bridge.store.errors.StoreError`.

The mapping happens where a statement runs (:class:`MappedConnection`), so code
inside a unit of work (the relay telling the store's failure from an event's)
sees the core's types too.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from bridge.store.errors import FailureKind, StoreError, TransientStoreError

_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_IOERR, _SQLITE_FULL = 5, 6, 10, 13


def sqlite_failure_kind(e: BaseException) -> FailureKind | None:
    """``full``, ``io_error`` or ``locked`` for a transient ``sqlite3.Error``."""
    if not isinstance(e, sqlite3.Error):
        return None
    code = getattr(e, "sqlite_errorcode", None)
    if code is not None:
        primary = code & 0xFF
        if primary == _SQLITE_FULL:
            return "full"
        if primary == _SQLITE_IOERR:
            return "io_error"
        if primary in (_SQLITE_BUSY, _SQLITE_LOCKED):
            return "locked"
        return None
    text = str(e).lower()
    if "disk is full" in text:
        return "full"
    if "disk i/o error" in text:
        return "io_error"
    if "database is locked" in text:
        return "locked"
    return None


def mapped(e: sqlite3.Error) -> StoreError:
    """The core's exception for *e* (raise it ``from e``: the driver's stays the cause)."""
    kind = sqlite_failure_kind(e)
    if kind is not None:
        return TransientStoreError(kind, f"{e}")
    return StoreError(f"{type(e).__name__}: {e}")


class MappedConnection(sqlite3.Connection):
    """A connection whose statements raise the core's exceptions.

    Only ``execute``/``executemany`` are wrapped: that is where SQLite writes (and
    so where a full disk or a held lock shows), and the wrapper costs about 0.2 µs a
    statement.  Rows fetched later can still raise ``sqlite3.Error``: the store maps
    what escapes a unit of work, and holds a unit that failed *because of* a
    transient one (its exception raised from it, as the relay's ``EventFailed``)."""

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        try:
            return super().execute(sql, parameters)
        except sqlite3.Error as e:
            raise mapped(e) from e

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> sqlite3.Cursor:
        try:
            return super().executemany(sql, parameters)
        except sqlite3.Error as e:
            raise mapped(e) from e
