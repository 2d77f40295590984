"""The SQLite backend: one process, one file in WAL mode, one writer thread.

Every SQL statement hashbridge runs on SQLite is in this package: the schema
(:mod:`.migrations`), the statements (:mod:`.tx`), the writer with group commit and
held writes (:mod:`.store`), and SQLite's errors mapped to the core's (:mod:`.errors`).

May import: ``bridge.contract``, ``bridge.store`` (its interface, errors and space).
"""

from bridge.store.sqlite.store import SqliteStore, open_snapshot, read_snapshot
from bridge.store.sqlite.tx import SqliteTx

__all__ = ["SqliteStore", "SqliteTx", "open_snapshot", "read_snapshot"]
