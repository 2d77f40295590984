"""``[bridge] database`` to an open :class:`~bridge.store.api.Store`.

The one place that knows which backends exist (``bridge.runtime.config`` lists
their schemes in ``DATABASE_SCHEMES`` and validates the URL).  A new backend is a
package next to ``bridge.store.sqlite`` plus a case here.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import Callable
from typing import Any, TypeVar

from bridge.runtime.config import DatabaseUrl
from bridge.store.api import Store, Tx
from bridge.store.errors import StoreError
from bridge.store.sqlite import SqliteStore, peek, read_snapshot

T = TypeVar("T")


async def open_store(db: DatabaseUrl, *, require_free: int = 0,
                     must_exist: bool = False) -> Store:
    """Open (creating and migrating as needed) the store *db* names.

    *require_free*: bytes that must be writable next to a SQLite file (the daemon
    asks for :data:`~bridge.store.space.MIN_FREE_BYTES`).  *must_exist*: refuse to
    create one (the commands that only read, or fix, an existing bridge's data).
    Raises :class:`~bridge.store.errors.StoreError` saying what to do.
    """
    match db.scheme:
        case "sqlite":
            if must_exist and not os.path.exists(db.path):  # noqa: ASYNC240 - one stat
                raise StoreError(f"{db.path}: no database yet (has `hashbridge run` started "
                                 "once?)")
            return await SqliteStore.open(db.path, require_free=require_free)
        case "postgresql":
            _need_psycopg()
            from bridge.store.postgresql.store import PgStore  # optional dependency
            return await PgStore.open(db.path, db.redacted, must_exist=must_exist)
        case other:
            raise StoreError(f"database {db}: no backend for {other!r} in this version")


async def read_last_checkpoint(db: DatabaseUrl, unit: Callable[[Tx], T]) -> T:
    """Run the read-only *unit* on what the database held at its last checkpoint,
    without writing anything (``status`` on a disk too full to open the database
    the normal way).  Raises :class:`~bridge.store.errors.StoreError`."""
    match db.scheme:
        case "sqlite":
            return await asyncio.to_thread(read_snapshot, db.path, unit)
        case "postgresql":
            _need_psycopg()
            from bridge.store.postgresql.store import read_once  # optional dependency
            return await asyncio.to_thread(read_once, db.path, db.redacted, unit)
        case other:
            raise StoreError(f"database {db}: no backend for {other!r} in this version")



def _need_psycopg() -> None:
    """The PostgreSQL backend's driver is an optional dependency (imported only when
    a config names it): say how to install it rather than fail on an ImportError."""
    if importlib.util.find_spec("psycopg") is None:
        raise StoreError("the PostgreSQL backend needs the psycopg driver; install it with "
                         "pip install 'hashbridge[postgresql]'")


def migrate_to_postgresql() -> Callable[..., dict[str, int]]:
    """``copy_sqlite(path, url, shown, progress)`` of the PostgreSQL backend (see
    :mod:`bridge.store.postgresql.importer`).  Raises :class:`StoreError` when its
    driver is not installed."""
    _need_psycopg()
    from bridge.store.postgresql.importer import copy_sqlite  # optional dependency
    return copy_sqlite


def peek_sqlite(db_file: str, what: str) -> list[Any]:
    """Rows of a named read-only query (``health``, ``open deliveries``: see
    :data:`bridge.store.sqlite.peek.QUERIES`) on a SQLite store another process owns,
    for the conformance kit and the fault suites watching a running bridge."""
    return peek.query(db_file, what)
