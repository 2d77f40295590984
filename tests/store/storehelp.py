"""The backends the store contract suite runs on.

Each entry of :data:`BACKENDS` is a name; :func:`make_backend` builds a
:class:`Backend` for it in a fresh location: a file in the test's tmp_path for SQLite,
a database of its own on the session's server (the ``pg`` fixture) for PostgreSQL.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bridge.runtime.config import DatabaseUrl
from bridge.store import Store
from bridge.store.backends import open_store
from bridge.store.postgresql.migrations import latest_version as pg_latest
from bridge.store.postgresql.testserver import PgServer
from bridge.store.sqlite.migrations import latest_version

BACKENDS = ["sqlite", "postgresql"]


@dataclass
class Backend:
    name: str
    db: DatabaseUrl
    hold_write_lock: Callable[[], contextlib.AbstractContextManager[None]]
    """Another client holding the database's write lock while the block runs."""
    mark_newer_schema: Callable[[], None]
    """Make the (closed) database look written by a newer hashbridge."""
    schema_version: Callable[[], int]
    """The number of migrations applied to the (closed) database."""

    async def open(self) -> Store:
        return await open_store(self.db)


def _sqlite(tmp_path: Path) -> Backend:
    path = tmp_path / "db.sqlite"

    @contextlib.contextmanager
    def hold_write_lock() -> Iterator[None]:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            other.execute("ROLLBACK")
            other.close()

    def mark_newer_schema() -> None:
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute(f"PRAGMA user_version = {latest_version() + 1}")
            conn.commit()

    def schema_version() -> int:
        with contextlib.closing(sqlite3.connect(path)) as conn:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])

    return Backend("sqlite", DatabaseUrl("sqlite", str(path), f"sqlite://{path}"),
                   hold_write_lock, mark_newer_schema, schema_version)


def _postgresql(tmp_path: Path, server: PgServer) -> Backend:
    import psycopg

    url = server.create_database(f"t_{tmp_path.name.lower()}"[:60])
    admin = server.admin_url(url.rsplit("/", 1)[1])

    @contextlib.contextmanager
    def hold_write_lock() -> Iterator[None]:
        # Another client's transaction holding every table the store writes.
        with psycopg.connect(admin) as other:
            other.execute("LOCK TABLE posts, deliveries, cursors, native_ids"
                          " IN ACCESS EXCLUSIVE MODE")
            yield
            other.rollback()

    def mark_newer_schema() -> None:
        server.psql(f"UPDATE hashbridge_schema SET version = {pg_latest() + 1}",
                    url.rsplit("/", 1)[1])

    def schema_version() -> int:
        return int(server.psql("SELECT version FROM hashbridge_schema",
                               url.rsplit("/", 1)[1]).strip())

    return Backend("postgresql", DatabaseUrl("postgresql", url, url), hold_write_lock,
                   mark_newer_schema, schema_version)


def make_backend(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> Backend:
    match name:
        case "sqlite":
            return _sqlite(tmp_path)
        case "postgresql":
            return _postgresql(tmp_path, request.getfixturevalue("pg"))
    raise AssertionError(f"no backend {name}")
