"""Outage suite: each platform made unavailable for a while, in each way a
platform goes away, while the relay runs against all of them at once.

The bridge is a real ``hashbridge run`` process; every account reaches its
platform (the Mastodon and X emulators, a real Synapse, real Dovecot IMAP and
the aiosmtpd list) through a :class:`~bridge.conformance.faultproxy.FaultProxy`.  Per test: a
burst of posts from every network (replies and deletes among them); a third of
the way in, one platform's proxies switch to the mode under test for a few
seconds while members keep posting; then back to ``pass``.  Counted on the
platforms themselves:

* every post reached every other network exactly once, deleted ones are gone
  where the platform can delete;
* copies from one network keep their order on every other network;
* replies are threaded under the parent's copy;
* the outbox holds nothing pending and nothing dead;
* the health table showed the platform's account as disconnected during the
  outage and it is connected again at the end (``hashbridge status --json``).

The sandboxes and the bridge are started once per module (Synapse alone takes
seconds); each test tags its messages (``[t07-012]``) and counts only those.  The
default run has the Matrix first-sync case here; every network in every mode runs
through the conformance kit (``tests/conformance``, scenario ``outage_storm``), and the
all-at-once variants below with ``-m soak``.
Client timeouts are configured short (5 s) so a stall is noticed in seconds;
the defaults are what ``config/example.toml`` documents.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from scaffold import (
    ALL,
    CAN_DELETE_COPIES,
    ROOT,
    check,
    copies_by_mark,
    start_boxes,
    start_bridge,
    stop_bridge,
    wait_complete,
    wait_connected,
    write_config,
)

from bridge.conformance.faultproxy import FORWARD, HttpRequest, HttpResponse, Mode
from bridge.conformance.faults import MODES, Faults
from bridge.contract.sandbox import PlatformSandbox, SandboxMessage

PLATFORMS = sorted(ALL)
"""Every registered network with a sandbox here; each one's sandbox says how it fails
(its endpoints, its 5xx bodies, its 429 headers): nothing per platform in this file."""
CLIENT_TIMEOUT = 5.0
OUTAGE = 4.0
POSTS = 15
STORM_CALLS = 6
"""Calls a platform may get during a 429 storm: about one per loop that calls it."""
LOG_DIR = os.environ.get("OUTAGE_LOG_DIR", "")
"""When set, each test writes the bridge's log lines of its outage there."""


# ---------------------------------------------------------------- the world
@dataclass
class HealthLog:
    """The health table, read every 0.1 s: (monotonic time, account, state, detail)."""

    db: Path
    seen: list[tuple[float, str, str, str]] = field(default_factory=list)
    _last: dict[str, tuple[str, str]] = field(default_factory=dict)

    async def run(self) -> None:
        while True:
            try:
                con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=1)
                try:
                    rows = con.execute("SELECT account, state, detail FROM health").fetchall()
                finally:
                    con.close()
            except sqlite3.Error:
                rows = []
            now = time.monotonic()
            for account, state, detail in rows:
                if self._last.get(account) != (state, detail):
                    self._last[account] = (state, detail)
                    self.seen.append((now, account, state, detail))
            await asyncio.sleep(0.1)


@dataclass
class World:
    tmp: Path
    boxes: dict[str, PlatformSandbox]
    faults: dict[str, Faults]
    cfg: Path
    log: Path
    db: Path
    proc: subprocess.Popen[bytes] | None = None
    tests: int = 0

    def ensure_bridge(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = start_bridge(self.cfg, self.log)

    async def stop_bridge(self) -> None:
        if self.proc is None:
            return
        await stop_bridge(self.proc)
        self.proc = None

    async def settle(self, timeout: float = 90) -> None:
        """Every proxy passes, the bridge runs, every adapter is connected and
        nothing is pending: the previous test cannot leak into the next."""
        for f in self.faults.values():
            await f.restore()
        self.ensure_bridge()
        await self.connected(timeout)
        deadline = time.monotonic() + timeout
        while pending(self.db):
            assert time.monotonic() < deadline, f"outbox not drained: {pending(self.db)[:5]}"
            await asyncio.sleep(0.5)

    async def connected(self, timeout: float) -> None:
        """Every adapter connected; fails at once if the bridge exited."""
        waiting = asyncio.create_task(wait_connected(self.db, set(self.boxes), timeout))
        while not waiting.done():
            if self.proc is not None and self.proc.poll() is not None:
                waiting.cancel()
                raise AssertionError(f"the bridge exited ({self.proc.returncode}):\n"
                                     + self.log.read_text()[-3000:])
            await asyncio.wait([waiting], timeout=0.5)
        await waiting

    def status(self) -> dict[str, Any]:
        out = subprocess.run([sys.executable, "-m", "bridge.cli", "status", "-c",
                              str(self.cfg), "--json"], capture_output=True, timeout=60,
                             env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
        return json.loads(out.stdout)  # type: ignore[no-any-return]


def pending(db: Path) -> list[tuple[str, str, str]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute("SELECT channel, op, last_error FROM deliveries "
                           "WHERE state IN ('pending', 'dead')").fetchall()
    finally:
        con.close()


async def build_world(tmp: Path) -> World:
    boxes = await start_boxes(tmp, ALL)   # each one's own rate limits lifted: injected here
    faults = {name: Faults(box) for name, box in boxes.items() if box.endpoints()}
    for f in faults.values():
        await f.start()
    cfg = tmp / "bridge.toml"
    data = tmp / "data"
    write_config(cfg, boxes, data, {}, {},
                 accounts={n: f.account_config(CLIENT_TIMEOUT) for n, f in faults.items()},
                 bridge_options={"log_level": "info", "send_timeout_seconds": 2 * CLIENT_TIMEOUT,
                                 "retry_max_seconds": 10.0})
    return World(tmp=tmp, boxes=boxes, faults=faults, cfg=cfg, log=tmp / "bridge.log",
                 db=data / "hashbridge.sqlite")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world() -> AsyncIterator[World]:
    # Not under pytest's basetemp: Dovecot runs as nobody and needs +x on every
    # ancestor, and any other pytest session on the machine resets
    # /tmp/pytest-of-<user> to 0700 (the mailbox then fails with "Internal error").
    tmp = Path(tempfile.mkdtemp(prefix="hashbridge-outages-"))
    w = await build_world(tmp)
    try:
        w.ensure_bridge()
        await w.connected(120)
        yield w
    finally:
        await w.stop_bridge()
        for f in w.faults.values():
            await f.stop()
        for box in w.boxes.values():
            await box.stop()
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- one outage
def thread_problems(snapshot: dict[str, list[SandboxMessage]], mark: re.Pattern[str],
                    origin: dict[int, tuple[str, str]], parents: dict[int, int],
                    deleted: set[int], needs_mention: set[str]) -> list[str]:
    """Each reply's copy answers the parent's copy (or the parent itself where
    it was posted), on every network."""
    problems = []
    for net, msgs in snapshot.items():
        have = copies_by_mark(msgs, mark)
        for child, parent in parents.items():
            if origin[child][0] == net or child in deleted or parent in deleted:
                continue
            copies = [m for m in have.get(child, []) if not m.deleted]
            if not copies:
                continue  # counted by check()
            if origin[parent][0] == net:
                want = {origin[parent][1]}
            else:
                want = {m.native_id for m in have.get(parent, [])}
            got = copies[0].reply_to
            if net in needs_mention and origin[parent][0] == net and got is None:
                continue  # the bot may answer only posts that mention it (X): standalone
            if got not in want:
                problems.append(f"{net}: reply #{child} answers {got!r}, not the copy of "
                                f"#{parent} ({sorted(want)})")
    return problems


async def run_outage(world: World, platform: str, mode: str, *, posts: int = POSTS,
                     outage: float = OUTAGE, timeout: float = 120) -> None:
    await world.settle()
    world.tests += 1
    tag = f"t{world.tests:02d}"
    mark = re.compile(rf"\[{tag}-(\d{{3}})\]")
    names = list(world.boxes)
    health = HealthLog(world.db)
    monitor = asyncio.create_task(health.run())
    log_start = world.log.stat().st_size
    origin: dict[int, tuple[str, str]] = {}
    parents: dict[int, int] = {}
    deleted: set[int] = set()
    fault_at = posts // 3
    fault_started = restored = 0.0
    injected = 0
    try:
        for i in range(posts):
            net = names[i % len(names)]
            if i == fault_at:
                fault_started = time.monotonic()
                injected = world.faults[platform].injected()
                await world.faults[platform].inject(mode, time.time() + outage)
            reply_to = None
            earlier = [k for k in origin if origin[k][0] == net and k not in deleted]
            if i % 4 == 3 and earlier:  # a member answers an earlier post of their network
                parents[i] = earlier[-1]
                reply_to = origin[earlier[-1]][1]
            nid = await world.boxes[net].post_as_member(
                f"m{i % 3}", f"[{tag}-{i:03d}] hello from {net}", reply_to=reply_to)
            origin[i] = (net, nid)
            # deletes: one before the outage, one during it (never a parent)
            if i in (fault_at - 1, fault_at + 2):
                cands = [k for k in origin if origin[k][0] in CAN_DELETE_COPIES
                         and world.boxes[origin[k][0]].features.deletes_noticed_seconds <= 2
                         and k not in parents.values()
                         and k not in deleted and k != i]
                if cands:
                    await world.boxes[origin[cands[-1]][0]].delete_as_member(
                        origin[cands[-1]][1])
                    deleted.add(cands[-1])
            if fault_started and not restored and time.monotonic() - fault_started >= outage:
                await _restore(world, platform)
                restored = time.monotonic()
                injected = world.faults[platform].injected() - injected
            await asyncio.sleep(0.25)
        if not restored:
            await asyncio.sleep(max(0.0, outage - (time.monotonic() - fault_started)))
            await _restore(world, platform)
            restored = time.monotonic()
            injected = world.faults[platform].injected() - injected
        await wait_complete(world.boxes, origin, deleted, timeout, set(), mark)
        await asyncio.sleep(2.0)  # a late duplicate would show up now
        while any(rows[2] != "connected" for rows in _states(health, platform)[-1:]):
            await asyncio.sleep(0.2)  # bounded by the test's timeout
            if time.monotonic() - restored > timeout:
                break
    finally:
        monitor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await monitor
        for f in world.faults.values():
            await f.restore()
        _keep_log(world, platform, mode, log_start, f"injected answers: {injected}")
    snapshot = {n: await b.messages() for n, b in world.boxes.items()}
    check(snapshot, origin, set(), deleted, world.log, set(), mark)
    problems = thread_problems(snapshot, mark, origin, parents, deleted,
                               {n for n, b in world.boxes.items()
                                if b.features.replies_need_mention})
    assert not problems, "\n".join(problems)
    assert pending(world.db) == [], f"outbox not empty: {pending(world.db)[:10]}"
    # The outage was visible, and it is over.  The table is sampled (an API
    # blip can be shorter than the sampling); every change is also logged.
    during = [(t - fault_started, s, d) for t, a, s, d in health.seen
              if a == platform and t >= fault_started]
    logged = re.findall(rf"hashbridge\.adapter\.{platform}\.{platform}: health: "
                        rf"disconnected \((.*)\)", _log_since(world, log_start))
    assert logged or any(s == "disconnected" for _, s, _ in during), \
        f"{platform} never showed the {mode} outage in its health: {during}"
    if mode == "ratelimit":
        # Every loop (sends, polls, sweeps, syncs) waits for the reset it was
        # told: a handful of refused calls per storm, not a stream of them.
        assert injected <= STORM_CALLS, f"{injected} calls refused with 429 during the storm"
    status = world.status()
    states = {a["account"]: a["health"] for a in status["adapters"]}
    assert states[platform] == "connected", status["adapters"]
    assert status["dead"] == [], status["dead"]
    assert all(q.get("pending", 0) == 0 for q in status["queues"].values()), status["queues"]


def _states(health: HealthLog, account: str) -> list[tuple[float, str, str, str]]:
    return [row for row in health.seen if row[1] == account]


async def _restore(world: World, platform: str) -> None:
    await world.faults[platform].restore()


def _log_since(world: World, start: int) -> str:
    with world.log.open("rb") as f:
        f.seek(start)
        return f.read().decode("utf-8", "replace")


def _keep_log(world: World, platform: str, mode: str, start: int, note: str) -> None:
    if LOG_DIR:
        os.makedirs(LOG_DIR, exist_ok=True)
        Path(LOG_DIR, f"{platform}-{mode}.log").write_text(
            _log_since(world, start) + f"# {note}\n")


# ---------------------------------------------------------------- the tests
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.mark.soak
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("platform", PLATFORMS)
async def test_outage(world: World, platform: str, mode: str) -> None:
    """Every network in every mode with all the others connected at once.  The default
    run has each network in every mode through the conformance kit instead
    (``outage_storm``: the lobby opposite, replies, deletes, health and the 429 budget
    checked the same way); this variant, minutes long, runs with ``-m soak``."""
    await run_outage(world, platform, mode)


@pytest.mark.soak
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("platform", PLATFORMS)
async def test_long_outage(world: World, platform: str, mode: str) -> None:
    """Two minutes down, sixty posts: backoff reaches its cap and recovery
    must not wait for it."""
    await run_outage(world, platform, mode, posts=60, outage=120.0, timeout=600)


async def test_matrix_start_with_first_sync_stalled(world: World) -> None:
    """The first /sync after a start asks for the full state, which matrix-nio
    sends with no client timeout at all: a homeserver that accepted it and
    never answered kept Matrix down until the bridge was restarted.  Now it is
    abandoned after ``request_timeout`` and made again."""
    await world.settle()
    await world.stop_bridge()
    stalled: list[str] = []

    def answer(req: HttpRequest) -> HttpResponse | None:
        if req.path.endswith("/sync") and "full_state=true" in req.target and not stalled:
            stalled.append(req.target)
            return None
        return FORWARD

    if "matrix" not in world.faults:
        pytest.skip("no Matrix sandbox here (Synapse missing)")
    await world.faults["matrix"].proxies["homeserver"].set_mode(Mode.ERROR, http=answer)
    world.ensure_bridge()
    await world.connected(6 * CLIENT_TIMEOUT)
    assert stalled, "the first sync never reached the homeserver"
    world.tests += 1
    mark = re.compile(rf"\[t{world.tests:02d}-(\d{{3}})\]")
    nid = await world.boxes["matrix"].post_as_member("m0", f"[t{world.tests:02d}-000] after")
    await wait_complete(world.boxes, {0: ("matrix", nid)}, set(), 60, set(), mark)
