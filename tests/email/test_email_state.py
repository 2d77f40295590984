"""The adapter's state lives in the bridge's store; an earlier version's side file
(``email-<account>.sqlite``) is imported on the first start, nothing lost."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

from mailhelp import CHANNEL, make_adapter, make_op, wait_until

from adapters.email.convert import msgid
from adapters.email.legacy import IMPORTED_SUFFIX, side_file_path
from adapters.email.sandbox import EmailSandbox
from adapters.email.store import EmailStore, digest_namespace
from bridge.store.adapter_state import StoredAccountState
from bridge.store.sqlite import SqliteStore

OLD_SCHEMA = """
    CREATE TABLE IF NOT EXISTS threads (
        native_id TEXT PRIMARY KEY, subject TEXT NOT NULL, refs TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS digest (
        id INTEGER PRIMARY KEY, key TEXT UNIQUE, channel TEXT NOT NULL,
        batch INTEGER NOT NULL, thread TEXT NOT NULL, author TEXT NOT NULL,
        network TEXT NOT NULL, plain TEXT NOT NULL, reply_to TEXT);
    CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS attempts (key TEXT PRIMARY KEY, at REAL NOT NULL);
"""
"""The side file as the version before the store held adapter state wrote it."""
SALT = "00112233445566778899aabbccddeeff"


def write_side_file(path: str, channel: str = CHANNEL) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(OLD_SCHEMA)
    db.execute("INSERT INTO meta VALUES ('salt', ?)", (SALT,))
    db.execute("INSERT INTO threads VALUES (?, ?, ?)",
               ("parent@m.test", "Old topic", json.dumps(["root@m.test", "parent@m.test"])))
    for key, author, text in (("k2", "Bob", "second queued post"),
                              ("k1", "Alice", "first queued post")):
        db.execute("INSERT INTO digest (key, channel, batch, thread, author, network, plain,"
                   " reply_to) VALUES (?, ?, 1, 'Old topic', ?, 'Mastodon', ?, NULL)",
                   (key, channel, author, text))
    db.execute("INSERT INTO attempts VALUES ('journalled-key', 12.5)")
    db.close()


async def test_an_old_side_file_is_imported_on_first_start(mail: EmailSandbox, tmp_path: Path,
                                                           running: Any) -> None:
    data = tmp_path / "d"
    data.mkdir()
    side = side_file_path(str(data), "mail")
    write_side_file(side)
    hours = 1.0 / 3600  # a 1 s period: the old batch is long due
    adapter, ctx = make_adapter(mail, data, digest_hours=hours)
    await running(adapter, ctx)
    # The digest an old version queued goes out, in the order it was queued.
    await wait_until(lambda: len(mail.dovecot.messages("reader")) >= 1, 15)
    [m] = mail.dovecot.messages("reader")
    body = m.get_body(("plain",)).get_content()
    assert body.index("second queued post") < body.index("first queued post")
    assert "== Old topic ==" in body
    await wait_until(lambda: not ctx.state.rows.get(digest_namespace(CHANNEL)), 10)
    rows = ctx.state.rows
    assert rows["meta"]["salt"] == SALT  # author handles stay what they were
    assert json.loads(rows["threads"]["parent@m.test"]) == {
        "subject": "Old topic", "refs": ["root@m.test", "parent@m.test"]}
    assert "journalled-key" in rows["attempts"]
    # The file is retired, not deleted, and not read again.
    assert not os.path.exists(side) and os.path.exists(side + IMPORTED_SUFFIX)  # noqa: ASYNC240


async def test_a_reply_gets_the_references_an_old_version_remembered(
        mail: EmailSandbox, tmp_path: Path, running: Any) -> None:
    data = tmp_path / "d"
    data.mkdir()
    write_side_file(side_file_path(str(data), "mail"))
    adapter, ctx = make_adapter(mail, data)
    await running(adapter, ctx)
    res = await adapter.send(make_op("an answer", key="r1", reply_to="parent@m.test"))
    await wait_until(lambda: len(mail.dovecot.messages("reader")) >= 1, 10)
    [m] = mail.dovecot.messages("reader")
    assert msgid(m["Message-ID"]) == res.native_id
    assert m["In-Reply-To"].strip() == "<parent@m.test>"
    assert m["References"].split() == ["<root@m.test>", "<parent@m.test>"]
    assert "Old topic" in m["Subject"]


async def test_the_import_is_kept_once_in_the_real_store(tmp_path: Path) -> None:
    """Into the bridge's own store: every row, once.  A side file that is back (it
    could not be renamed, or was restored by hand) is not imported again: its digest
    rows, sent since, would be sent twice."""
    side = str(tmp_path / "email-mail.sqlite")
    write_side_file(side)
    shutil.copy(side, tmp_path / "copy.sqlite")
    log = logging.getLogger("test")
    store = await SqliteStore.open(str(tmp_path / "db.sqlite"))
    try:
        state = StoredAccountState(store, "mail")
        es = await EmailStore.open(state, side, log)
        assert await es.salt() == bytes.fromhex(SALT)
        assert await es.thread("parent@m.test") == ("Old topic",
                                                    ("root@m.test", "parent@m.test"))
        assert await es.attempt("journalled-key", 99.0) is True  # made before the upgrade
        due = await es.due(CHANNEL, 10)
        assert [(i.key, i.author) for i in due] == [("k2", "Bob"), ("k1", "Alice")]
        await es.done(CHANNEL, [i.key for i in due])

        shutil.copy(tmp_path / "copy.sqlite", side)
        es = await EmailStore.open(state, side, log)
        assert await es.due(CHANNEL, 10) == []
        assert not os.path.exists(side)  # noqa: ASYNC240
        # another account's state is its own
        other = await EmailStore.open(StoredAccountState(store, "mail2"),
                                      str(tmp_path / "none.sqlite"), log)
        assert await other.thread("parent@m.test") is None
        assert len(await other.salt()) == 16 and await other.salt() != bytes.fromhex(SALT)
    finally:
        await store.close()
