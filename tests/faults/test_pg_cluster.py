"""Three ``hashbridge run`` processes on one PostgreSQL database (the session's real
server): the accounts are shared out, and kill -9 of one process mid-burst moves its
accounts to the others with nothing lost, nothing posted twice and every channel's
order kept, counted on the networks themselves."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
from scaffold import ROOT, check, start_bridge, stop_bridge, wait_complete, write_config

from adapters.sandbox import SandboxPlatform
from bridge.conformance.faultproxy import FaultProxy, Mode
from bridge.daemon.harness import build_config, running, sandbox_channels
from bridge.features.chatevents import announce_due
from bridge.runtime.schedule import ChatEventConfig, occurrence_at
from bridge.store.postgresql.testserver import PgServer
from bridge.web import serve_web

NETS = [f"n{i}" for i in range(6)]
FAILOVER = 5.0


def status(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([sys.executable, "-m", "bridge.cli", "status", "-c", str(cfg), *args],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stderr
    return res


def leases(pg: PgServer, db: str) -> dict[str, int]:
    """Lease name -> the pid holding it (unexpired leases only)."""
    with psycopg.connect(pg.admin_url(db)) as c:
        if c.execute("SELECT to_regclass('hashbridge_leases')").fetchone() == (None,):
            return {}  # no process has started yet
        rows = c.execute("SELECT name, pid FROM hashbridge_leases WHERE expires_at >"
                         " extract(epoch from clock_timestamp())").fetchall()
    return {r[0]: int(r[1]) for r in rows}


async def wait_for(what: str, check_fn: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check_fn()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout:.0f}s: {what}")
        await asyncio.sleep(0.25)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    running: list[subprocess.Popen[bytes]] = []
    yield running
    for p in running:
        if p.poll() is None:
            p.kill()
            p.wait(10)


@pytest.mark.timeout(300)
async def test_kill9_of_one_of_three_processes_mid_burst(
        pg: PgServer, tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    url = pg.create_database("cluster_kill9")
    db = url.rsplit("/", 1)[1]
    boxes: dict[str, Any] = {n: SandboxPlatform(str(tmp_path / "networks"), n) for n in NETS}
    for b in boxes.values():
        await b.start()
    cfg = tmp_path / "bridge.toml"
    write_config(cfg, boxes, tmp_path / "data", {}, {},
                 bridge_options={"database": url, "failover_seconds": FAILOVER})
    log = tmp_path / "bridge.log"
    for _ in range(3):
        procs.append(start_bridge(cfg, log))
    pids = {p.pid for p in procs}

    # Every account leased, the six shared out over the three processes (2 each).
    held = await wait_for("accounts shared by three processes", lambda: (
        (got := leases(pg, db)) and len(got) == 6 and set(got.values()) == pids and got), 60)
    assert sorted(list(held.values()).count(p) for p in pids) == [2, 2, 2]

    origin: dict[int, tuple[str, str]] = {}
    victim = procs[0]
    for i in range(90):
        net = NETS[i % len(NETS)]
        text = f"burst [f{i:04d}] from {net} #kmers"
        origin[i] = (net, text)
        await boxes[net].post_as_member(f"m{i % 5}", text)
        if i == 45:
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)
            killed_at = time.monotonic()
        await asyncio.sleep(0.05)

    # Its accounts move to the two survivors within failover_seconds (+ a heartbeat).
    survivors = pids - {victim.pid}
    moved = await wait_for("the killed process's accounts taken over", lambda: (
        (got := leases(pg, db)) and len(got) == 6 and set(got.values()) <= survivors
        and got), 30)
    took = time.monotonic() - killed_at
    assert took < FAILOVER + 10, f"takeover took {took:.1f}s"
    assert sorted(list(moved.values()).count(p) for p in survivors) == [3, 3]

    await wait_complete(boxes, origin, set(), 120, set())
    await asyncio.sleep(2 * FAILOVER)  # anything sent twice would show by now
    snapshot = {n: await b.messages() for n, b in boxes.items()}
    check(snapshot, origin, set(), set(), log, set())
    total = sum(1 for msgs in snapshot.values() for m in msgs if m.by_bridge)
    assert total == 90 * (len(NETS) - 1)

    # status shows which process holds which account and channel, and the lag
    res = await asyncio.to_thread(status, cfg, "--json")
    report = json.loads(res.stdout)
    where = report["processes"]
    assert {a["pid"] for a in where["accounts"].values()} == survivors
    assert {(m["host"], m["pid"]) for m in where["members"]} == \
        {(socket.gethostname(), p) for p in survivors}
    for ch, h in where["channels"].items():
        assert h["pid"] == where["accounts"][h["account"]]["pid"], ch
    assert set(report["lag_seconds"]) == set(where["channels"])
    assert all(v == 0.0 for v in report["lag_seconds"].values())  # all delivered
    text = (await asyncio.to_thread(status, cfg)).stdout
    assert "processes (2 sharing the database)" in text
    for pid in survivors:
        assert f"pid {pid}" in text

    for p in procs[1:]:
        await stop_bridge(p)
    assert leases(pg, db) == {}, "a clean stop gives its leases up"
    text = (await asyncio.to_thread(status, cfg)).stdout
    assert "held by no process" in text
    for b in boxes.values():
        await b.stop()


async def test_live_updates_reach_the_viewers_of_every_process(pg: PgServer,
                                                                tmp_path: Path) -> None:
    """Two bridges on one database (two processes' worth, in one event loop): a post
    read by either reaches the live-view subscribers of both, and is relayed once;
    the one stopping first records only its own accounts as stopped."""
    url = pg.create_database("cluster_live")
    nets = {n: SandboxPlatform(str(tmp_path / "networks"), n) for n in ("lobby", "garden")}
    for n in nets.values():
        await n.start()
    cfg = build_config(tmp_path, sandbox_channels(tmp_path),
                       bridge_options={"database": url, "failover_seconds": 3,
                                       "web": {"listen": "127.0.0.1:0"}},
                       community_options={"author_rate_per_minute": 100000})

    async def relayed(net: str) -> list[str]:
        return [m.text for m in await nets[net].messages() if m.by_bridge]

    try:
        async with running(cfg) as a:
            assert a.cluster is not None
            async with running(cfg) as b:
                assert b.cluster is not None
                qa, qb = a.subscribe(), b.subscribe()
                await wait_for("one account each", lambda: (
                    len(a.cluster.running) == 1  # type: ignore[union-attr]
                    and len(b.cluster.running) == 1), 30)  # type: ignore[union-attr]
                await nets["lobby"].post_as_member("alice", "from the lobby #kmers")
                await nets["garden"].post_as_member("bob", "from the garden #kmers")
                seen_a = {await asyncio.wait_for(qa.get(), 20) for _ in range(2)}
                seen_b = {await asyncio.wait_for(qb.get(), 20) for _ in range(2)}
                assert seen_a == seen_b and {k for k, _ in seen_a} == {"posted"}
                for net in ("lobby", "garden"):
                    deadline = time.monotonic() + 30
                    while not await relayed(net) and time.monotonic() < deadline:  # noqa: ASYNC110
                        await asyncio.sleep(0.2)
                    assert len(await relayed(net)) == 1, (net, await relayed(net))
                a_ran = set(a.cluster.running)
                # each process's /healthz shows every account: its own as it runs
                # them, the other's as that one last recorded
                web = asyncio.create_task(serve_web(b))
                while not b.services.web_url and not web.done():  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
                try:
                    async with aiohttp.ClientSession() as http, \
                            http.get(f"{b.services.web_url}/healthz?strict=1") as r:
                        health = await r.json()
                        assert r.status == 200, health
                finally:
                    web.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await web
                assert {n: h["health"] for n, h in health["adapters"].items()} == \
                    {"sb_lobby": "connected", "sb_garden": "connected"}
                assert [n for n, h in health["adapters"].items() if h.get("elsewhere")] == \
                    [n.split(":", 1)[1] for n in a_ran]
            # b stopped; what a ran was never marked stopped
            health = {acct: state for acct, _p, state, _d, _t in
                      await a.store.run(lambda tx: tx.health())}
            assert a_ran and all(health[n.split(":", 1)[1]] == "connected" for n in a_ran), \
                health
    finally:
        for n in nets.values():
            await n.stop()


async def burst(boxes: dict[str, Any], origin: dict[int, tuple[str, str]], start: int,
                n: int, between: float = 0.05) -> None:
    for i in range(start, start + n):
        net = NETS[i % len(NETS)]
        text = f"burst [f{i:04d}] from {net} #kmers"
        origin[i] = (net, text)
        await boxes[net].post_as_member(f"m{i % 5}", text)
        await asyncio.sleep(between)


@pytest.mark.timeout(300)
async def test_a_process_cut_off_from_the_database_hands_over_and_sends_nothing_twice(
        pg: PgServer, tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    """One of two processes loses the database (its connections go silent, as behind
    a dead middlebox) for 30 s, longer than failover_seconds: its accounts move to the
    other; when the database is back it takes its share again and does not send
    what the other sent meanwhile."""
    url = pg.create_database("cluster_partition")
    db = url.rsplit("/", 1)[1]
    proxy = FaultProxy("pg", "127.0.0.1", pg.port)
    await proxy.start()
    boxes: dict[str, Any] = {n: SandboxPlatform(str(tmp_path / "networks"), n) for n in NETS}
    for b in boxes.values():
        await b.start()
    direct, cut = tmp_path / "direct.toml", tmp_path / "cut.toml"
    write_config(direct, boxes, tmp_path / "data", {}, {},
                 bridge_options={"database": url, "failover_seconds": FAILOVER})
    write_config(cut, boxes, tmp_path / "data", {}, {}, bridge_options={
        "database": url.replace(f":{pg.port}/", f":{proxy.port}/"),
        "failover_seconds": FAILOVER})
    log = tmp_path / "bridge.log"
    procs.append(start_bridge(direct, log))
    procs.append(start_bridge(cut, log))
    a, b = procs[0].pid, procs[1].pid
    await wait_for("three accounts each", lambda: (
        (got := leases(pg, db)) and len(got) == 6
        and sorted(list(got.values()).count(p) for p in (a, b)) == [3, 3]), 60)

    origin: dict[int, tuple[str, str]] = {}
    await burst(boxes, origin, 0, 30)
    await proxy.set_mode(Mode.STALL)  # the second process is cut off
    cut_at = time.monotonic()
    await burst(boxes, origin, 30, 30)
    await wait_for("the cut-off process's accounts taken over", lambda: (
        (got := leases(pg, db)) and len(got) == 6 and set(got.values()) == {a}), 30)
    took = time.monotonic() - cut_at
    assert took < FAILOVER + 10, f"takeover took {took:.1f}s"
    await burst(boxes, origin, 60, 30)
    await asyncio.sleep(max(0.0, 30 - (time.monotonic() - cut_at)))  # cut for 30 s
    await proxy.set_mode(Mode.PASS)
    await wait_for("the returning process has its share again", lambda: (
        (got := leases(pg, db)) and len(got) == 6
        and sorted(list(got.values()).count(p) for p in (a, b)) == [3, 3]), 90)
    await burst(boxes, origin, 90, 30)

    await wait_complete(boxes, origin, set(), 120, set())
    await asyncio.sleep(2 * FAILOVER)
    snapshot = {n: await bx.messages() for n, bx in boxes.items()}
    check(snapshot, origin, set(), set(), log, set())
    assert sum(1 for msgs in snapshot.values() for m in msgs if m.by_bridge) == \
        120 * (len(NETS) - 1)
    for p in procs:
        await stop_bridge(p)
    await proxy.stop()
    for bx in boxes.values():
        await bx.stop()


@pytest.mark.timeout(300)
async def test_postgresql_restarted_mid_burst_under_two_processes(
        pg: PgServer, tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    """The database server crashes (immediate shutdown) and comes back mid-burst:
    the processes hold their writes, nothing is lost, nothing is sent twice, every
    channel keeps its order."""
    url = pg.create_database("cluster_restart")
    db = url.rsplit("/", 1)[1]
    boxes: dict[str, Any] = {n: SandboxPlatform(str(tmp_path / "networks"), n) for n in NETS}
    for b in boxes.values():
        await b.start()
    cfg = tmp_path / "bridge.toml"
    write_config(cfg, boxes, tmp_path / "data", {}, {},
                 bridge_options={"database": url, "failover_seconds": FAILOVER})
    log = tmp_path / "bridge.log"
    procs.extend(start_bridge(cfg, log) for _ in range(2))
    await wait_for("accounts shared", lambda: (
        (got := leases(pg, db)) and len(got) == 6 and len(set(got.values())) == 2), 60)
    origin: dict[int, tuple[str, str]] = {}
    await burst(boxes, origin, 0, 30)
    await asyncio.to_thread(pg.stop, "immediate")
    await burst(boxes, origin, 30, 30)  # read by nobody while the server is down
    await asyncio.sleep(3)
    await asyncio.to_thread(pg.start, pg.port)
    await burst(boxes, origin, 60, 30)
    await wait_complete(boxes, origin, set(), 150, set())
    await asyncio.sleep(2 * FAILOVER)
    snapshot = {n: await bx.messages() for n, bx in boxes.items()}
    check(snapshot, origin, set(), set(), log, set())
    assert sum(1 for msgs in snapshot.values() for m in msgs if m.by_bridge) == \
        90 * (len(NETS) - 1)
    assert all(p.poll() is None for p in procs), "a process died with the database"
    for p in procs:
        await stop_bridge(p)
    for bx in boxes.values():
        await bx.stop()


async def test_four_accounts_on_three_processes_end_two_one_one(pg: PgServer,
                                                                 tmp_path: Path) -> None:
    """The share evens out: no process is left idle while another holds more than
    its share (4 accounts on 3 processes: 2/1/1, not 2/2/0), however they started."""
    url = pg.create_database("cluster_balance")
    names = ("lobby", "garden", "porch", "attic")
    cfg = build_config(tmp_path, sandbox_channels(tmp_path, names),
                       bridge_options={"database": url, "failover_seconds": 3})
    async with running(cfg) as a:
        await wait_for("the first process holds all four", lambda: (
            a.cluster is not None and len(a.cluster.running) == 4), 30)
        async with running(cfg) as b, running(cfg) as c:
            bridges = (a, b, c)

            def spread() -> list[int]:
                return sorted(len(x.cluster.running) for x in bridges)  # type: ignore[union-attr]
            await wait_for("2/1/1", lambda: spread() == [1, 1, 2], 60)
            await asyncio.sleep(3 * 3)  # and it stays so
            assert spread() == [1, 1, 2]
            held = [n for x in bridges for n in x.cluster.running]  # type: ignore[union-attr]
            assert sorted(held) == sorted(f"account:sb_{n}" for n in names)


async def test_a_chat_event_is_announced_once_by_processes_racing(pg: PgServer,
                                                                   tmp_path: Path) -> None:
    """Every process runs the chat-event loop; two reaching the same announcement
    at the same moment post it once."""
    url = pg.create_database("cluster_events")
    weekly = {"id": "weekly", "title": "Weekly", "day": "wednesday", "time": "20:00",
              "timezone": "Europe/Paris", "duration_minutes": 60, "hosts": ["alice"]}
    cfg = build_config(tmp_path, sandbox_channels(tmp_path),
                       bridge_options={"database": url, "failover_seconds": 3},
                       community_options={"events": [weekly]})
    occ = occurrence_at(ChatEventConfig(**weekly), "20260325T190000Z")
    assert occ is not None
    nets = [SandboxPlatform(str(tmp_path / "networks"), n) for n in ("lobby", "garden")]
    async with running(cfg) as a, running(cfg) as b:
        for _ in range(3):
            await asyncio.gather(*(announce_due(x, occ.start.timestamp() + 10, base_url="",
                                                grace=900, transcript_of=None)
                                   for x in (a, b)))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            got = [len([m for m in await n.messages() if m.by_bridge]) for n in nets]
            if all(got):
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(2)
        posts = await a.store.run(lambda tx: tx.recent_posts("kmers", 100))
        assert len([p for p in posts if "Weekly starts now" in p.text.to_json()]) == 1
    for n in nets:
        texts = [m.text for m in await n.messages() if m.by_bridge]
        assert len(texts) == 1 and "Weekly starts now" in texts[0], texts
        await n.stop()
