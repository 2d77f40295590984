"""Copy a SQLite store into an empty PostgreSQL one (``hashbridge migrate-store``).

Both are brought to the latest schema first (the same numbered steps, so the same
tables and columns); then every table is read from one SQLite read transaction (a
consistent snapshot even if a writer were running) and written with ``COPY`` in one
PostgreSQL transaction, with the sequence numbers kept (a channel's queue order, the
adapter state's insertion order); the identity sequences continue after them.  The
counts of every table are compared before committing: a mismatch rolls the whole copy
back.  A target that already holds data is refused untouched.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import psycopg

from bridge.store.errors import StoreError
from bridge.store.postgresql.conn import PgConn
from bridge.store.postgresql.store import _rollback, open_checked
from bridge.store.sqlite.store import open_checked as open_sqlite

TABLES = ("posts", "native_ids", "deliveries", "cursors", "consent", "blocks", "rejections",
          "health", "identity_links", "link_claims", "adapter_state", "reactions")
"""Every table of the numbered schema (chat events' announcements are cursors)."""
IDENTITIES = {"deliveries": "seq", "rejections": "id", "adapter_state": "seq"}


def copy_sqlite(path: str, url: str, shown: str,
                progress: Callable[[str, int], None] = lambda table, n: None
                ) -> dict[str, int]:
    """Copy the SQLite database *path* into the PostgreSQL database *url*; the rows
    per table.  Blocking (call through ``asyncio.to_thread``).  Raises
    :class:`StoreError` saying what to do; nothing is written then."""
    src = open_sqlite(path)  # migrated to the latest steps, like the target
    try:
        dst = open_checked(url, shown)
        try:
            return _copy(src, dst, shown, progress)
        finally:
            dst.close()
    finally:
        src.close()


def _copy(src: sqlite3.Connection, dst: PgConn, shown: str,
          progress: Callable[[str, int], None]) -> dict[str, int]:
    src.execute("BEGIN")  # one snapshot of every table
    try:
        dst.execute("BEGIN")
        try:
            busy = [t for t in TABLES if dst.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone()]
            if busy:
                raise StoreError(f"database {shown}: already holds data ({', '.join(busy)}); "
                                 "migrate-store copies into an empty database only (create "
                                 "a new one, or drop and recreate this one)")
            counts: dict[str, int] = {}
            for table in TABLES:
                cols = [r[1] for r in src.execute(f"PRAGMA table_info({table})")]
                names = ", ".join(cols)
                n = 0
                try:
                    with dst.raw.cursor().copy(f"COPY {table} ({names}) FROM STDIN") as cp:
                        for row in src.execute(f"SELECT {names} FROM {table}"):
                            cp.write_row(tuple(row))
                            n += 1
                except psycopg.Error as e:
                    raise StoreError(f"database {shown}: copying {table} failed at row "
                                     f"{n + 1}: {e}; nothing was written") from e
                counts[table] = n
                progress(table, n)
            for table, col in IDENTITIES.items():
                dst.execute(f"SELECT setval(pg_get_serial_sequence('{table}', '{col}'),"
                            f" coalesce((SELECT max({col}) FROM {table}), 0) + 1, false)")
            for table in TABLES:
                have = int(dst.one(f"SELECT count(*) FROM {table}")[0])
                want = int(src.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
                if have != want or have != counts[table]:
                    raise StoreError(f"database {shown}: {table} holds {have} rows after the "
                                     f"copy, the SQLite file {want}; nothing was written")
            dst.execute("COMMIT")
            return counts
        except BaseException:
            _rollback(dst)
            raise
    finally:
        src.execute("ROLLBACK")
