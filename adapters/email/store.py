"""The adapter's small durable state, one SQLite file under ``ctx.data_dir``.

* ``threads``: subject and References chain per Message-ID we saw or sent, so a reply
  gets a complete ``References`` header (the core map only knows the parent's id).
* ``digest``: posts waiting for the channel's next digest mail.  A row is written before
  ``send`` returns and deleted only after the digest mail was accepted, so a restart
  loses nothing; the digest's Message-ID comes from the batch, so a retry is the same mail.
* ``attempts``: keys of mails whose submission started, so a retry knows to look for
  the list's echo of the first attempt before sending again.
* ``salt``: the installation's secret for author handles (see ``convert``).

Calls are blocking and short; the adapter runs them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class DigestItem:
    id: int
    channel: str
    batch: int
    thread: str
    author: str
    network: str
    plain: str
    reply_to: str | None


class EmailStore:
    def __init__(self, path: str) -> None:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript("""
            CREATE TABLE IF NOT EXISTS threads (
                native_id TEXT PRIMARY KEY, subject TEXT NOT NULL, refs TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS digest (
                id INTEGER PRIMARY KEY, key TEXT UNIQUE, channel TEXT NOT NULL,
                batch INTEGER NOT NULL, thread TEXT NOT NULL, author TEXT NOT NULL,
                network TEXT NOT NULL, plain TEXT NOT NULL, reply_to TEXT);
            CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS attempts (key TEXT PRIMARY KEY, at REAL NOT NULL);
        """)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def salt(self) -> bytes:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE name='salt'").fetchone()
            if row:
                return bytes.fromhex(row[0])
            value = secrets.token_bytes(16)
            self._db.execute("INSERT INTO meta VALUES ('salt', ?)", (value.hex(),))
            return value

    def remember(self, native_id: str, subject: str, refs: tuple[str, ...]) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO threads VALUES (?, ?, ?)",
                             (native_id, subject, json.dumps(list(refs))))

    def thread(self, native_id: str) -> tuple[str, tuple[str, ...]] | None:
        with self._lock:
            row = self._db.execute("SELECT subject, refs FROM threads WHERE native_id=?",
                                   (native_id,)).fetchone()
        return (row[0], tuple(json.loads(row[1]))) if row else None

    def attempt(self, key: str, at: float) -> bool:
        """Journal a submission attempt before it starts; True if one was made before
        (its outcome is unknown: the process may have died after the server's 250)."""
        with self._lock:
            cur = self._db.execute("INSERT OR IGNORE INTO attempts VALUES (?, ?)", (key, at))
            return cur.rowcount == 0

    def enqueue(self, *, key: str, channel: str, batch: int, thread: str, author: str,
                network: str, plain: str, reply_to: str | None) -> None:
        # INSERT OR IGNORE: a retried send (same key) is queued once.
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO digest (key, channel, batch, thread, author, network,"
                " plain, reply_to) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (key, channel, batch, thread, author, network, plain, reply_to))

    def due(self, channel: str, now_batch: int) -> list[DigestItem]:
        """Queued items of the oldest batch that is due, oldest first."""
        with self._lock:
            row = self._db.execute("SELECT MIN(batch) FROM digest WHERE channel=? AND batch<=?",
                                   (channel, now_batch)).fetchone()
            if not row or row[0] is None:
                return []
            rows = self._db.execute(
                "SELECT id, channel, batch, thread, author, network, plain, reply_to "
                "FROM digest WHERE channel=? AND batch=? ORDER BY id", (channel, row[0]))
            return [DigestItem(id=r[0], channel=r[1], batch=r[2], thread=r[3], author=r[4],
                               network=r[5], plain=r[6], reply_to=r[7]) for r in rows]

    def done(self, ids: list[int]) -> None:
        with self._lock:
            self._db.executemany("DELETE FROM digest WHERE id=?", [(i,) for i in ids])
