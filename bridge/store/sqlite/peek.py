"""Read-only peeks into a SQLite store that another process owns (a running
``hashbridge run`` under the conformance kit and the fault suites): the accounts'
health and the deliveries still open.  Never writes, never migrates."""

from __future__ import annotations

import sqlite3
from typing import Any

from bridge.store.errors import StoreError

QUERIES = {
    "health": "SELECT account, state FROM health",
    "open deliveries": "SELECT channel, op, last_error FROM deliveries "
                       "WHERE state IN ('pending', 'dead')",
    "pending deliveries": "SELECT channel, op, last_error FROM deliveries "
                          "WHERE state = 'pending'",
    "dead deliveries": "SELECT channel, op, last_error FROM deliveries WHERE state = 'dead'",
    "integrity": "PRAGMA integrity_check",
}
"""``health``: ``(account, state)`` of every account that reported health;
``open deliveries``: ``(channel, op, last error)`` of those not sent yet or given up
(``pending deliveries`` and ``dead deliveries`` each apart); ``integrity``: SQLite's
own check of the file (one row, ``ok`` when undamaged)."""


def query(db: str, what: str) -> list[Any]:
    """Rows of the query named *what* on the database file *db*, opened read-only;
    a database that cannot be read yet is a :class:`StoreError`."""
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute(QUERIES[what]).fetchall()
        finally:
            con.close()
    except sqlite3.Error as e:
        raise StoreError(f"{db}: {e}") from e
