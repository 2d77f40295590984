"""``hashbridge migrate-store --to postgresql://...``: a bridge's SQLite store copied
into the session's real PostgreSQL, counts verified, and the bridge carrying on there
without re-sending anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from adapters.sandbox import SandboxPlatform
from bridge.cli.main import EXIT_STORE
from bridge.contract.model import Op
from bridge.daemon.harness import quiescent, running
from bridge.runtime.config import DatabaseUrl, load
from bridge.runtime.registry import load_factories
from bridge.store import Tx
from bridge.store.backends import open_store
from bridge.store.postgresql.testserver import PgServer

ROOT = Path(__file__).parents[2]


def write_config(tmp_path: Path, database: str = "") -> Path:
    p = tmp_path / "bridge.toml"
    db = f'database = "{database}"\n' if database else ""
    p.write_text(f"""
[bridge]
data_dir = "data"
{db}
[accounts.sb_lobby]
platform = "sandbox"
dir = "{tmp_path / 'networks'}"

[accounts.sb_garden]
platform = "sandbox"
dir = "{tmp_path / 'networks'}"

[[communities]]
name = "kmers"
hashtag = "kmers"
author_rate_per_minute = 100000

[[communities.channels]]
account = "sb_lobby"
network = "lobby"

[[communities.channels]]
account = "sb_garden"
network = "garden"
""")
    p.chmod(0o600)
    return p


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge.cli", *args], capture_output=True,
                          text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def snapshot(tx: Tx) -> dict[str, object]:
    posts = tx.recent_posts("kmers", 1000, include_deleted=True)
    return {
        "posts": posts,
        "copies": {p.id: tx.all_copies(p.id) for p in posts},
        "sent": tx.count_deliveries("sent"),
        "pending": [(r.id, r.seq) for r in tx.pending("kmers/garden", 1000)],
        "cursors": (tx.get_cursor("sb_lobby", "seq"), tx.get_cursor("~events", "e/1/start")),
        "consent": tx.consents(),
        "blocks": tx.blocks(),
        "state": tx.state_items("sb_lobby", "ns"),
        "links": tx.identity_links(),
        "rejections": tx.rejection_counts(),
    }


async def test_migrate_store_copies_everything_and_the_bridge_carries_on(
        pg: PgServer, tmp_path: Path) -> None:
    nets = {n: SandboxPlatform(str(tmp_path / "networks"), n) for n in ("lobby", "garden")}
    for n in nets.values():
        await n.start()
    cfg_path = write_config(tmp_path)
    cfg = load(str(cfg_path), load_factories(), {})
    async with running(cfg) as bridge:
        for i in range(12):
            await nets["lobby"].post_as_member(f"m{i % 3}", f"before {i} #kmers")
        await quiescent(bridge, timeout=60)

    def extras(tx: Tx) -> None:
        tx.set_consent("sandbox", "m1", "in")
        tx.block("sandbox", "spammer", "spam")
        tx.state_put("sb_lobby", "ns", "b", "1")
        tx.state_put("sb_lobby", "ns", "a", "2")
        tx.set_cursor("~events", "e/1/start", "1")
        tx.link_identities("sandbox:m1", "x:1")
        tx.reject("kmers/lobby", "n9", "bad", "unreadable")
        p = tx.recent_posts("kmers", 1)[0]
        for _ in range(3):  # a queue (of a stopped bridge) whose order must survive
            tx.enqueue(p.id, "kmers/garden", Op.EDIT)
    sqlite_store = await open_store(cfg.database, must_exist=True)
    try:
        await sqlite_store.run(extras)
        before = await sqlite_store.run(snapshot)
    finally:
        await sqlite_store.close()
    sent_before = len([m for m in await nets["garden"].messages() if m.by_bridge])
    assert sent_before == 12

    url = pg.create_database("migrated")
    res = cli("migrate-store", "-c", str(cfg_path), "--to", url)
    assert res.returncode == 0, res.stderr
    assert "posts                   12 rows" in res.stderr
    assert "copied and verified" in res.stderr

    store = await open_store(DatabaseUrl("postgresql", url, url), must_exist=True)
    try:
        after = await store.run(snapshot)
        # queue order kept; a new delivery still goes after the copied ones
        queued = await store.run(lambda tx: tx.pending("kmers/garden", 1000))
        post = queued[0].post_id
        newer = await store.run(lambda tx: tx.enqueue(post, "kmers/garden", Op.EDIT))
        queue = await store.run(lambda tx: tx.pending("kmers/garden", 1000))
        assert [r.id for r in queue] == [r.id for r in queued] + [newer]
        assert await store.run(lambda tx: tx.supersede_edits(post, ["kmers/garden"])) == 4
    finally:
        await store.close()
    assert after == before

    # a second copy into the same database is refused, nothing touched
    res = cli("migrate-store", "-c", str(cfg_path), "--to", url)
    assert res.returncode == EXIT_STORE and "already holds data" in res.stderr
    # a wrong password: the store's exit code, the password never shown
    other = pg.create_database("migrated_pw")
    res = cli("migrate-store", "-c", str(cfg_path), "--to", other,
              env={"PGPASSWORD": "nope-31337"})
    assert res.returncode == EXIT_STORE and "password authentication failed" in res.stderr
    assert "nope-31337" not in res.stderr

    # the bridge on PostgreSQL: nothing relayed twice, new posts relayed
    cfg = load(str(write_config(tmp_path, url)), load_factories(), {})
    async with running(cfg) as bridge:
        await nets["lobby"].post_as_member("m0", "after the move #kmers")
        await quiescent(bridge, timeout=60)
    garden = [m.text for m in await nets["garden"].messages() if m.by_bridge]
    assert len(garden) == 13 and sum("after the move" in t for t in garden) == 1
    for n in nets.values():
        await n.stop()
