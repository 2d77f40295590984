"""A tiny chat network kept in one SQLite file per network.

It stands in for a platform in ``hashbridge demo``, the end-to-end tests and the
benchmarks: several processes (the bridge, a test driving members, a second
bridge after a kill -9) can share it, and what is on it can be counted
independently of the bridge's own store.  Like Mastodon it honours an
idempotency key: a second create with the same key returns the first message.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    author TEXT NOT NULL,
    text TEXT NOT NULL,
    html TEXT NOT NULL DEFAULT '',
    reply_to INTEGER,
    by_bridge INTEGER NOT NULL DEFAULT 0,
    edited INTEGER NOT NULL DEFAULT 0,
    deleted INTEGER NOT NULL DEFAULT 0,
    notice INTEGER NOT NULL DEFAULT 0,
    key TEXT UNIQUE,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    message_id INTEGER NOT NULL,
    by_bridge INTEGER NOT NULL DEFAULT 0
);
"""


@dataclass(frozen=True, slots=True)
class Message:
    id: int
    author: str
    text: str
    html: str
    reply_to: int | None
    by_bridge: bool
    edited: bool
    deleted: bool
    notice: bool
    key: str | None
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    kind: str  # posted | edited | deleted
    message: Message


class Network:
    """One sandbox network (a file).  Thread-unsafe; one per user."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, timeout=30)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = NORMAL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    def post(self, author: str, text: str, *, html: str = "", reply_to: int | None = None,
             by_bridge: bool = False, notice: bool = False, key: str | None = None,
             at: float | None = None) -> int:
        """Create a message; with *key*, a repeated call returns the first one's id.
        *at*: when it was posted (default now; history a test sets up)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            if key is not None:
                row = self.db.execute("SELECT id FROM messages WHERE key=?", (key,)).fetchone()
                if row:
                    self.db.execute("COMMIT")
                    return int(row[0])
            cur = self.db.execute(
                "INSERT INTO messages(author, text, html, reply_to, by_bridge, notice, key,"
                " created_at) VALUES (?,?,?,?,?,?,?,?)",
                (author, text, html, reply_to, int(by_bridge), int(notice), key,
                 time.time() if at is None else at))
            mid = int(cur.lastrowid or 0)
            self.db.execute("INSERT INTO events(kind, message_id, by_bridge) VALUES"
                            " ('posted', ?, ?)", (mid, int(by_bridge)))
            self.db.execute("COMMIT")
            return mid
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def edit(self, message_id: int, text: str, *, html: str = "", by_bridge: bool = False) -> bool:
        self.db.execute("BEGIN IMMEDIATE")
        cur = self.db.execute("UPDATE messages SET text=?, html=?, edited=1 WHERE id=?"
                              " AND deleted=0", (text, html, message_id))
        if cur.rowcount:
            self.db.execute("INSERT INTO events(kind, message_id, by_bridge) VALUES"
                            " ('edited', ?, ?)", (message_id, int(by_bridge)))
        self.db.execute("COMMIT")
        return bool(cur.rowcount)

    def delete(self, message_id: int, *, by_bridge: bool = False) -> bool:
        self.db.execute("BEGIN IMMEDIATE")
        cur = self.db.execute("UPDATE messages SET deleted=1 WHERE id=? AND deleted=0",
                              (message_id,))
        if cur.rowcount:
            self.db.execute("INSERT INTO events(kind, message_id, by_bridge) VALUES"
                            " ('deleted', ?, ?)", (message_id, int(by_bridge)))
        self.db.execute("COMMIT")
        return bool(cur.rowcount)

    def exists(self, message_id: int) -> bool:
        return self.db.execute("SELECT 1 FROM messages WHERE id=?",
                               (message_id,)).fetchone() is not None

    def events_after(self, seq: int, limit: int = 500) -> list[Event]:
        rows = self.db.execute(
            "SELECT e.seq, e.kind, m.id, m.author, m.text, m.html, m.reply_to, m.by_bridge,"
            " m.edited, m.deleted, m.notice, m.key, m.created_at FROM events e JOIN messages m"
            " ON m.id = e.message_id WHERE e.seq > ? ORDER BY e.seq LIMIT ?",
            (seq, limit)).fetchall()
        return [Event(r[0], r[1], _msg(r[2:])) for r in rows]

    def messages(self) -> list[Message]:
        rows = self.db.execute("SELECT id, author, text, html, reply_to, by_bridge, edited,"
                               " deleted, notice, key, created_at FROM messages"
                               " ORDER BY id").fetchall()
        return [_msg(r) for r in rows]

    def seq_before(self, at: float) -> int:
        """The event to read after for what was posted since *at*: before the first
        post made then or later (the newest event when none was)."""
        row = self.db.execute(
            "SELECT MIN(e.seq) FROM events e JOIN messages m ON m.id = e.message_id"
            " WHERE e.kind = 'posted' AND m.created_at >= ?", (at,)).fetchone()
        return int(row[0]) - 1 if row and row[0] is not None else self.last_seq()

    def last_seq(self) -> int:
        return int(self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])


def _msg(r: tuple[object, ...]) -> Message:
    return Message(int(r[0]), str(r[1]), str(r[2]), str(r[3]),  # type: ignore[call-overload]
                   None if r[4] is None else int(r[4]),  # type: ignore[call-overload]
                   bool(r[5]), bool(r[6]), bool(r[7]), bool(r[8]),
                   None if r[9] is None else str(r[9]),
                   float(r[10]))  # type: ignore[arg-type]
