"""What only the PostgreSQL backend promises, on the session's real server (fixture
``pg``): hostile databases refused clearly, caches kept right across processes, the
server going away and coming back with nothing lost, and the whole relay on it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from adapters.sandbox import SandboxPlatform
from bridge.cli.main import EXIT_STORE
from bridge.conformance.faultproxy import FaultProxy, Mode
from bridge.contract.model import Author, ChannelKey, NativeId, Op, Post, PostId
from bridge.contract.richtext import RichText
from bridge.daemon.harness import build_config, quiescent, running, sandbox_channels
from bridge.runtime.config import DatabaseUrl
from bridge.store import SchemaError, Store, StoreError, Tx
from bridge.store.backends import open_store
from bridge.store.leases import Member, leases_of
from bridge.store.postgresql.migrations import latest_version
from bridge.store.postgresql.testserver import PgServer


def _post(pid: str = "P1") -> Post:
    return Post(id=PostId(pid), community="k", origin_channel=ChannelKey("k/a"),
                origin_native_id=NativeId(pid.lower()), permalink="",
                author=Author(platform="sandbox", handle="alice"),
                text=RichText.plain("hi"), created_at=datetime.fromtimestamp(1000.0, UTC))


def _db(pg: PgServer, name: str) -> DatabaseUrl:
    url = pg.create_database(name)
    return DatabaseUrl("postgresql", url, url)


async def _eventually(check: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not seen in time"
        await asyncio.sleep(0.05)


# ------------------------------------------------------------------ hostile databases

async def test_a_wrong_password_is_a_clear_error_that_never_shows_it(
        pg: PgServer, monkeypatch: pytest.MonkeyPatch) -> None:
    db = _db(pg, "wrongpw")
    monkeypatch.setenv("PGPASSWORD", "not-the-password-42")  # wins over the .pgpass file
    with pytest.raises(StoreError) as e:
        await open_store(db)
    text = str(e.value)
    assert "password authentication failed" in text and "PGPASSWORD" in text
    assert "not-the-password-42" not in text
    assert type(e.value) is StoreError  # not transient: waiting does not fix a password


def test_the_cli_exits_with_the_store_code_on_a_wrong_password(pg: PgServer,
                                                                tmp_path: Path) -> None:
    url = pg.create_database("cliwrongpw")
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(f"""
[bridge]
data_dir = "data"
database = "{url}"

[accounts.a]
platform = "sandbox"
dir = "nets"

[accounts.b]
platform = "sandbox"
dir = "nets"

[[communities]]
name = "kmers"
hashtag = "kmers"

[[communities.channels]]
account = "a"
network = "lobby"

[[communities.channels]]
account = "b"
network = "garden"
""")
    cfg.chmod(0o600)
    env = {**os.environ, "PGPASSWORD": "wrong-secret-77",
           "PYTHONPATH": str(Path(__file__).parents[2])}
    res = subprocess.run([sys.executable, "-m", "bridge.cli", "status", "-c", str(cfg)],
                         capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert res.returncode == EXIT_STORE, res.stderr
    assert "password authentication failed" in res.stderr
    assert "wrong-secret-77" not in res.stderr + res.stdout


async def test_a_read_only_database_is_refused_untouched(pg: PgServer) -> None:
    db = _db(pg, "readonly")
    name = db.path.rsplit("/", 1)[1]
    pg.psql(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    with pytest.raises(StoreError, match=r"read-only.*primary"):
        await open_store(db)
    assert pg.psql("SELECT count(*) FROM pg_tables WHERE schemaname='public'", name).strip() \
        == "0"


async def test_a_newer_schema_is_refused_and_left_as_it_is(pg: PgServer) -> None:
    db = _db(pg, "newer")
    name = db.path.rsplit("/", 1)[1]
    await (await open_store(db)).close()
    pg.psql("UPDATE hashbridge_schema SET version = 99", name)
    with pytest.raises(SchemaError, match="99 is newer"):
        await open_store(db)
    assert pg.psql("SELECT version FROM hashbridge_schema", name).strip() == "99"


async def test_a_foreign_database_is_not_written_into(pg: PgServer) -> None:
    db = _db(pg, "foreign")
    name = db.path.rsplit("/", 1)[1]
    pg.psql("CREATE TABLE posts (id int)", name)
    with pytest.raises(StoreError, match="not hashbridge's"):
        await open_store(db)
    assert pg.psql("SELECT to_regclass('hashbridge_schema') IS NULL", name).strip() == "t"


async def test_commands_that_read_do_not_create_a_store(pg: PgServer) -> None:
    db = _db(pg, "mustexist")
    with pytest.raises(StoreError, match="no hashbridge tables yet"):
        await open_store(db, must_exist=True)


async def test_processes_starting_together_migrate_once(pg: PgServer) -> None:
    db = _db(pg, "together")
    stores = await asyncio.gather(*(open_store(db) for _ in range(4)))
    try:
        await asyncio.gather(*(s.run(lambda tx, i=i: tx.set_cursor("a", f"c{i}", "1"))
                               for i, s in enumerate(stores)))
    finally:
        for s in stores:
            await s.close()
    name = db.path.rsplit("/", 1)[1]
    assert pg.psql("SELECT count(*), max(version) FROM hashbridge_schema", name).strip() == \
        f"1|{latest_version()}"


# ------------------------------------------------------------------ several processes

async def test_caches_follow_writes_made_by_another_process(pg: PgServer) -> None:
    """Consent, blocks and linked accounts are cached per process; a change made
    through another store (another process) reaches this one's reads."""
    db = _db(pg, "caches")
    a, b = await open_store(db), await open_store(db)
    try:
        assert await a.run(lambda tx: tx.consent("sandbox", "alice")) is None
        assert not await a.run(lambda tx: tx.is_blocked("sandbox", "eve"))
        assert await a.run(lambda tx: tx.linked_identities("x:1")) == {"x:1"}
        await b.run(lambda tx: (tx.set_consent("sandbox", "alice", "out"),
                                tx.block("sandbox", "eve", "spam"),
                                tx.link_identities("x:1", "m:a")))

        async def a_sees_it() -> bool:
            return await a.run(lambda tx: (tx.consent("sandbox", "alice") == "out"
                                           and tx.is_blocked("sandbox", "eve")
                                           and tx.linked_identities("x:1") == {"x:1", "m:a"}))
        await _eventually(a_sees_it, 10)
        await b.run(lambda tx: tx.unblock("sandbox", "eve"))

        async def a_sees_unblock() -> bool:
            return not await a.run(lambda tx: tx.is_blocked("sandbox", "eve"))
        await _eventually(a_sees_unblock, 10)
    finally:
        await a.close()
        await b.close()


async def test_posts_edited_by_another_process_are_read_as_they_are_now(pg: PgServer) -> None:
    db = _db(pg, "postcache")
    a, b = await open_store(db), await open_store(db)
    try:
        await a.run(lambda tx: tx.insert_post(_post(), ""))
        first = await a.run(lambda tx: tx.get_post("P1"))
        assert first is not None and first.text == RichText.plain("hi")
        await b.run(lambda tx: tx.update_post("P1", RichText.plain("edited"), "", "", None, 5.0))
        got = await a.run(lambda tx: tx.get_post("P1"))
        assert got is not None and got.text == RichText.plain("edited")
    finally:
        await a.close()
        await b.close()


# ------------------------------------------------------------------ the server going away

async def test_a_server_restart_holds_writes_and_loses_nothing(pg: PgServer) -> None:
    """The server stopped mid-stream (a crash: immediate shutdown): writes wait,
    ``storage`` says the server is unreachable, and once it is back every write
    acknowledged is there, each once."""
    db = _db(pg, "restart")
    store = await open_store(db)
    try:
        await store.run(lambda tx: tx.insert_post(_post(), ""))
        acked: list[str] = []

        async def writer() -> None:
            for _ in range(200):
                did = await store.run(lambda tx: tx.enqueue("P1", "k/b", Op.CREATE))
                acked.append(did)
                await asyncio.sleep(0.01)

        task = asyncio.create_task(writer())
        await _eventually(lambda: _true_after(len(acked) >= 20), 30)
        await asyncio.to_thread(pg.stop, "immediate")
        await _eventually(lambda: _true_after(store.storage.state == "unreachable"), 30)
        n_down = len(acked)
        await asyncio.sleep(1.0)
        assert len(acked) <= n_down + 1, "writes acknowledged while the server was down"
        await asyncio.to_thread(pg.start, pg.port)
        await asyncio.wait_for(task, 120)
        assert store.storage.ok
        rows = await store.run(lambda tx: tx.pending("k/b", 1000))
        assert sorted(r.id for r in rows) == sorted(acked) and len(acked) == 200
    finally:
        await store.close()


async def _true_after(value: bool) -> bool:
    return value


async def test_a_held_unit_is_not_applied_twice_after_reconnecting(pg: PgServer) -> None:
    """Connections killed under a busy writer (the server's side of a cut network):
    every unit commits exactly once, however many times its batch is retried."""
    db = _db(pg, "killconn")
    name = db.path.rsplit("/", 1)[1]
    store = await open_store(db)
    try:
        async def killer() -> None:
            for _ in range(20):
                await asyncio.to_thread(
                    pg.psql, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE"
                    f" datname='{name}' AND application_name LIKE 'hashbridge store%'")
                await asyncio.sleep(0.2)

        await store.run(lambda tx: tx.insert_post(_post(), ""))
        k = asyncio.create_task(killer())
        # enqueue is not idempotent (a fresh id each time): a batch applied twice
        # would leave more rows than acknowledgements.
        acked: list[str] = []
        while not k.done() or len(acked) < 300:
            acked += await asyncio.gather(*(
                store.run(lambda tx: tx.enqueue("P1", "k/b", Op.CREATE)) for _ in range(5)))
        await k
        rows = await store.run(lambda tx: tx.pending("k/b", 100_000))
        assert Counter(r.id for r in rows) == Counter(acked)
        assert len(set(acked)) == len(acked) >= 300
    finally:
        await store.close()


# ------------------------------------------------------------------ the relay on it

async def test_the_relay_runs_on_postgresql(pg: PgServer, tmp_path: Path) -> None:
    url = pg.create_database("relay")
    nets = {n: SandboxPlatform(str(tmp_path / "networks"), n) for n in ("lobby", "garden")}
    for n in nets.values():
        await n.start()
    cfg = build_config(tmp_path, sandbox_channels(tmp_path),
                       bridge_options={"database": url},
                       community_options={"author_rate_per_minute": 100000})
    try:
        async with running(cfg) as bridge:
            for i in range(20):
                await nets["lobby"].post_as_member(f"m{i % 3}", f"hello {i} #kmers")
            await quiescent(bridge, timeout=60)
        got = [m.text for m in await nets["garden"].messages() if m.by_bridge]
        assert sorted(t for t in got if "hello" in t) == sorted(got)
        for i in range(20):
            assert sum(f"hello {i} " in t for t in got) == 1, (i, got)
        assert not (tmp_path / "data" / "hashbridge.sqlite").exists()
    finally:
        for n in nets.values():
            await n.stop()

    store: Store = await open_store(DatabaseUrl("postgresql", url, url), must_exist=True)
    try:
        def counts(tx: Tx) -> tuple[int, int]:
            return tx.count_deliveries("sent"), tx.count_deliveries("pending")
        assert await store.run(counts) == (20, 0)
    finally:
        await store.close()
    with psycopg.connect(pg.admin_url("relay")) as c:
        assert c.execute("SELECT count(*) FROM posts").fetchone() == (20,)


# ------------------------------------------------------------------ leases

async def test_leases_are_taken_once_renewed_and_given_up(pg: PgServer) -> None:
    db = _db(pg, "leases")
    a, b = await open_store(db), await open_store(db)
    try:
        la, lb = leases_of(a, Member()), leases_of(b, Member())
        assert la is not None and lb is not None
        names = ["account:x", "account:y", "account:z"]
        ha = await la.heartbeat(names, set(), 30.0, 2)
        hb = await lb.heartbeat(names, set(), 30.0, 2)
        assert len(ha.held) == 2 and hb.held == frozenset(names) - ha.held
        assert hb.members == 2 and hb.taken == hb.held
        again = await la.heartbeat(names, ha.held, 30.0, 3)  # renews; nothing is free
        assert again.held == ha.held and again.taken == frozenset()
        rows = {r.name: r for r in await lb.holders()}
        assert {n for n, r in rows.items() if r.member == la.member.id} == ha.held
        assert all(r.pid == os.getpid() and r.expires_in > 20 for r in rows.values())
        await la.release(ha.held)
        hb2 = await lb.heartbeat(names, hb.held, 30.0, 3)
        assert hb2.held == frozenset(names) and hb2.taken == ha.held
        await lb.leave()
        assert await la.holders() == []
    finally:
        await a.close()
        await b.close()


async def test_an_expired_lease_is_taken_over(pg: PgServer) -> None:
    db = _db(pg, "lease_expiry")
    a, b = await open_store(db), await open_store(db)
    try:
        la, lb = leases_of(a, Member()), leases_of(b, Member())
        assert la is not None and lb is not None
        assert (await la.heartbeat(["account:x"], set(), 1.0, 1)).held == {"account:x"}
        assert (await lb.heartbeat(["account:x"], set(), 1.0, 1)).held == frozenset()
        await asyncio.sleep(1.5)  # a is dead: no renewal
        assert (await lb.heartbeat(["account:x"], set(), 1.0, 1)).held == {"account:x"}
        # a's late renewal does not take it back
        assert (await la.heartbeat(["account:x"], {"account:x"}, 1.0, 1)).held == frozenset()
    finally:
        await a.close()
        await b.close()


async def test_heartbeats_do_not_wait_behind_the_writer(pg: PgServer) -> None:
    """Thousands of workers planning at once queue units in the store's writer; a
    heartbeat must not wait behind them (its lease would expire meanwhile)."""
    db = _db(pg, "lease_writer")
    store = await open_store(db)
    release = threading.Event()
    try:
        leases = leases_of(store, Member())
        assert leases is not None
        blocked = store.run(lambda tx: release.wait(60))  # the writer is busy
        task = asyncio.ensure_future(blocked)
        await asyncio.sleep(0.2)
        hb = await asyncio.wait_for(leases.heartbeat(["account:x"], set(), 30.0, 1), 20)
        assert hb.held == {"account:x"} and not task.done()
    finally:
        release.set()
        await task
        await store.close()


def test_failover_seconds_is_a_checked_bridge_key(tmp_path: Path) -> None:
    from bridge.runtime.config import ConfigError, load
    from bridge.runtime.registry import load_factories

    def cfg(value: str) -> str:
        p = tmp_path / "c.toml"
        p.write_text(f"""
[bridge]
failover_seconds = {value}

[accounts.a]
platform = "sandbox"
dir = "n"

[accounts.b]
platform = "sandbox"
dir = "n"

[[communities]]
name = "k"
hashtag = "k"

[[communities.channels]]
account = "a"
network = "x"

[[communities.channels]]
account = "b"
network = "y"
""")
        return str(p)

    assert load(cfg("15"), load_factories(), {}).bridge.failover_seconds == 15
    assert load(cfg("4.5"), load_factories(), {}).bridge.failover_seconds == 4.5
    for bad in ("1", "601", '"soon"'):
        with pytest.raises(ConfigError) as e:
            load(cfg(bad), load_factories(), {})
        assert any("failover_seconds" in x for x in e.value.errors), e.value.errors


async def test_a_commit_whose_answer_is_lost_is_not_applied_twice(
        pg: PgServer, caplog: pytest.LogCaptureFixture) -> None:
    """The server commits, but its answer never arrives (the connection goes silent
    during COMMIT): the writer cannot know, reconnects, finds the batch's token and
    acknowledges it as it was, rather than run it again."""
    db = _db(pg, "lostcommit")
    name = db.path.rsplit("/", 1)[1]
    proxy = FaultProxy("pg", "127.0.0.1", pg.port)
    await proxy.start()
    via = db.path.replace(f":{pg.port}/", f":{proxy.port}/")
    store = await open_store(DatabaseUrl("postgresql", via, via))
    try:
        await store.run(lambda tx: tx.insert_post(_post(), ""))
        # COMMIT of a new delivery now takes 2 s, server side.
        pg.psql("CREATE FUNCTION slow() RETURNS trigger AS $$ BEGIN PERFORM pg_sleep(2);"
                " RETURN NULL; END $$ LANGUAGE plpgsql;"
                " CREATE CONSTRAINT TRIGGER slow AFTER INSERT ON deliveries"
                " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow()", name)
        fut = asyncio.ensure_future(store.run(lambda tx: tx.enqueue("P1", "k/b", Op.CREATE)))
        await asyncio.sleep(0.7)  # in COMMIT now
        await proxy.set_mode(Mode.DROP)  # the answer is lost; new connections pass
        did = await asyncio.wait_for(fut, 60)
        rows = pg.psql("SELECT id FROM deliveries", name).split()
        assert rows == [did]  # committed once, and the id acknowledged is the one kept
        assert "had gone through" in caplog.text
    finally:
        await store.close()
        await proxy.stop()
