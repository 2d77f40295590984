"""The side file earlier versions kept: ``email-<account>.sqlite`` in the account's
data dir, with the tables ``threads``, ``digest``, ``attempts`` and ``meta``.

Its rows now live in the bridge's store (see :mod:`adapters.email.store`); this module
only reads the old file once, on the first start of a version that no longer writes
it, and then retires it (renamed to ``*.imported``, kept for the operator to delete).
Calls are blocking; the adapter runs them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field

IMPORTED_SUFFIX = ".imported"


@dataclass(slots=True)
class SideFile:
    """Every row of an old side file."""

    salt: str | None = None
    threads: list[tuple[str, str, str]] = field(default_factory=list)
    """(native id, subject, refs as JSON)"""
    digest: list[tuple[str, str, int, str, str, str, str, str | None]] = field(
        default_factory=list)
    """(key, channel, batch, thread, author, network, plain, reply_to), oldest first"""
    attempts: list[tuple[str, float]] = field(default_factory=list)


def side_file_path(data_dir: str, account: str) -> str:
    return os.path.join(data_dir, f"email-{account}.sqlite")


def read_side_file(path: str) -> SideFile | None:
    """The rows of the side file at *path*; None when there is none."""
    if not os.path.exists(path):
        return None
    db = sqlite3.connect(path, isolation_level=None)
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        out = SideFile()
        if "meta" in tables:
            row = db.execute("SELECT value FROM meta WHERE name='salt'").fetchone()
            out.salt = row[0] if row else None
        if "threads" in tables:
            out.threads = [(r[0], r[1], r[2]) for r in db.execute(
                "SELECT native_id, subject, refs FROM threads ORDER BY rowid")]
        if "digest" in tables:
            out.digest = [(r[1] or f"legacy-{r[0]}", r[2], int(r[3]), r[4], r[5], r[6], r[7],
                           r[8]) for r in db.execute(
                "SELECT id, key, channel, batch, thread, author, network, plain, reply_to"
                " FROM digest ORDER BY id")]
        if "attempts" in tables:
            out.attempts = [(r[0], float(r[1])) for r in db.execute(
                "SELECT key, at FROM attempts ORDER BY rowid")]
        return out
    finally:
        db.close()


def retire_side_file(path: str) -> str:
    """Rename the imported side file (and any WAL files left) out of the way; the
    new name."""
    for extra in ("-wal", "-shm"):
        if os.path.exists(path + extra):
            os.replace(path + extra, path + IMPORTED_SUFFIX + extra)
    os.replace(path, path + IMPORTED_SUFFIX)
    return path + IMPORTED_SUFFIX
