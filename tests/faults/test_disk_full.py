"""Fault suite, issue #8 (c): the data dir's disk fills up.

The bridge runs as a real ``hashbridge run`` process with its data dir on a
small tmpfs this test mounts; a ballast file takes every free byte (written
until the kernel answers ENOSPC) while members keep posting, replying,
editing and deleting on every platform (the Mastodon and X emulators,
Synapse and Dovecot when installed, a sandbox network).  Counted on the
platforms themselves, never in the bridge's store:

* every post reached every other network exactly once, in order per source,
  replies threaded under their parent's copy, edits and deletes applied;
* the outbox holds nothing pending, dead items only with their reasons;
* the database passes ``PRAGMA integrity_check``.

And what the operator sees: one error line naming the data dir and "no space
left" (not a storm), ``hashbridge status`` and ``/healthz`` showing the
storage state, and a refusal to start on a full disk that names the data dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from diskspace import Ballast, SmallFs, small_fs
from scaffold import (
    ALL,
    CAN_DELETE_COPIES,
    CAN_EDIT_COPIES,
    DELETES,
    EDITS,
    ROOT,
    start_boxes,
    start_bridge,
    wait_connected,
    write_config,
)

from bridge.contract.sandbox import PlatformSandbox, SandboxMessage
from bridge.store.errors import StoreError

MARK = re.compile(r"\[d(\d{4})\]")
FULL_LINE = "cannot write to the data dir"


@pytest.fixture
def fs(tmp_path: Path) -> Iterator[SmallFs]:
    """The data dir's own 32 MiB filesystem."""
    with small_fs(tmp_path / "fs", "32m") as where:
        yield where


_QUERY = """
import json, sys
from bridge.store.backends import peek_sqlite
print(json.dumps([list(r) for r in peek_sqlite(sys.argv[1], sys.argv[2])]))
"""


async def query(fs: SmallFs, db: Path, what: str) -> list[list[Any]]:
    """Read the bridge's database from a process that sees the small
    filesystem where the bridge does (SQLite cannot open it through /proc)."""
    proc = await asyncio.create_subprocess_exec(
        *fs.prefix, sys.executable, "-c", _QUERY, str(db), what,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode:
        raise StoreError(err.decode(errors="replace")[-800:])
    rows: list[list[Any]] = json.loads(out)
    return rows


async def _wind_up(proc: subprocess.Popen[bytes], fs: SmallFs, tmp_path: Path,
                   talk: Conversation, boxes: dict[str, PlatformSandbox]
                   ) -> tuple[int, dict[str, list[SandboxMessage]]]:
    """Stop the bridge and the platforms; what the platforms show at the end."""
    rc = await _stop(proc)
    _keep(fs, tmp_path)
    snapshot = await talk.snapshot()
    for box in boxes.values():
        await box.stop()
    return rc, snapshot


async def _assert_all_relayed(rc: int, talk: Conversation,
                              snapshot: dict[str, list[SandboxMessage]], fs: SmallFs, db: Path,
                              log: Path) -> None:
    """A clean stop, every copy exactly once on the platforms, an empty outbox."""
    assert rc == 0
    problems = talk.problems(snapshot)
    if problems:
        tail = (await asyncio.to_thread(log.read_text, errors="replace"))[-4000:]
        raise AssertionError("\n".join(problems[:30]) + "\n--- log tail:\n" + tail)
    pending, dead = await _outbox(fs, db)
    assert pending == [], f"outbox not empty: {pending[:10]}"
    assert all(reason for _c, _o, reason in dead), dead


def copies_by_mark(msgs: list[SandboxMessage]) -> dict[int, list[SandboxMessage]]:
    """The bridge's copies on one platform, by the index in their text."""
    out: dict[int, list[SandboxMessage]] = defaultdict(list)
    for m in msgs:
        found = MARK.search(m.text) if m.by_bridge else None
        if found:
            out[int(found.group(1))].append(m)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Conversation:
    """Members talking on every network; remembers what should arrive where."""

    def __init__(self, boxes: dict[str, PlatformSandbox], seed: int) -> None:
        self.boxes = boxes
        self.names = list(boxes)
        self.rng = random.Random(seed)
        self.origin: dict[int, tuple[str, str]] = {}
        self.parent: dict[int, int] = {}
        self.edited: set[int] = set()
        self.deleted: set[int] = set()
        self.count = 0

    async def say(self, *, no_deletes_on: frozenset[str] = frozenset()) -> None:
        """One post (a reply now and then), and sometimes an edit or a delete
        of an earlier post of the same network (not on *no_deletes_on*)."""
        i = self.count
        self.count += 1
        net = self.names[i % len(self.names)]
        box = self.boxes[net]
        earlier = [k for k in range(max(0, i - 12), i)
                   if self.origin[k][0] == net and k not in self.deleted]
        reply_to = None
        if earlier and self.rng.random() < 0.3:
            j = self.rng.choice(earlier)
            self.parent[i] = j
            reply_to = self.origin[j][1]
        nid = await box.post_as_member(f"m{i % 4}", f"[d{i:04d}] words from {net}",
                                       reply_to=reply_to)
        self.origin[i] = (net, nid)
        if earlier and net in EDITS and self.rng.random() < 0.12:
            j = self.rng.choice(earlier)
            await box.edit_as_member(self.origin[j][1], f"[d{j:04d}] edited on {net}")
            self.edited.add(j)
        # Parents of replies stay: their replies' threading is what we check.
        deletable = [k for k in earlier if k not in self.parent.values()]
        if deletable and net in DELETES - no_deletes_on and self.rng.random() < 0.08:
            j = self.rng.choice(deletable)
            await box.delete_as_member(self.origin[j][1])
            self.deleted.add(j)

    async def copies(self) -> int:
        """How many of the bridge's copies the platforms show now."""
        return sum(len(v) for msgs in (await self.snapshot()).values()
                   for v in copies_by_mark(msgs).values())

    async def snapshot(self) -> dict[str, list[SandboxMessage]]:
        return {n: await b.messages() for n, b in self.boxes.items()}

    async def wait_complete(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            missing = []
            for net, msgs in (await self.snapshot()).items():
                have = copies_by_mark(msgs)
                missing += [(net, i) for i, (src, _) in self.origin.items()
                            if src != net and i not in self.deleted and not have.get(i)]
                if net in CAN_DELETE_COPIES:
                    missing += [(net, -i) for i in self.deleted if self.origin[i][0] != net
                                and any(not m.deleted for m in have.get(i, []))]
                missing += [(net, i) for i in self.edited - self.deleted
                            if net in CAN_EDIT_COPIES and self.origin[i][0] != net
                            and not any("edited" in m.text for m in have.get(i, []))]
            if not missing:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(missing)} copies never arrived or were not "
                                     f"updated, e.g. {missing[:8]}")
            await asyncio.sleep(1.0)

    def problems(self, snapshot: dict[str, list[SandboxMessage]]) -> list[str]:
        """Exactly once, in order per source, replies threaded, edits and deletes
        applied: everything read from the platforms."""
        out: list[str] = []
        for net, msgs in snapshot.items():
            have = copies_by_mark(msgs)
            for i, (src, _) in self.origin.items():
                if src == net:
                    continue
                copies = have.get(i, [])
                live = [m for m in copies if not m.deleted]
                if i in self.deleted:
                    if net in CAN_DELETE_COPIES and live:
                        out.append(f"{net}: copy of deleted [d{i:04d}] still there")
                    if len(copies) > 1:
                        out.append(f"{net}: deleted [d{i:04d}] was copied {len(copies)} times")
                    continue
                if len(live) != 1:
                    out.append(f"{net}: [d{i:04d}] from {src} has {len(live)} copies")
                    continue
                if i in self.edited and net in CAN_EDIT_COPIES and "edited" not in live[0].text:
                    out.append(f"{net}: edit of [d{i:04d}] not applied: {live[0].text!r}")
                j = self.parent.get(i)
                if j is not None:
                    parent = [m for m in have.get(j, []) if not m.deleted]
                    if not parent or live[0].reply_to != parent[-1].native_id:
                        out.append(f"{net}: reply [d{i:04d}] not threaded under [d{j:04d}]: "
                                   f"reply_to={live[0].reply_to!r}, parent copy "
                                   f"{[m.native_id for m in parent]}")
            # Order of the copies that stay.  (A post deleted at its origin while
            # the bridge was held may be copied late and then deleted: the
            # Mastodon adapter replays the stream's buffered `update` after its
            # catch-up has passed; reported, and checked above to be deleted.)
            for source in self.boxes:
                seq = [i for m in msgs if m.by_bridge
                       for found in [MARK.search(m.text)] if found
                       for i in [int(found.group(1))]
                       if self.origin.get(i, ("", ""))[0] == source and i not in self.deleted]
                if seq != sorted(seq):
                    out.append(f"{net}: copies from {source} out of order: {seq[:20]}")
        return out


async def _outbox(fs: SmallFs, db: Path) -> tuple[list[Any], list[Any]]:
    [[ok]] = await query(fs, db, "integrity")
    assert ok == "ok", f"database damaged: {ok}"
    pending = await query(fs, db, "pending deliveries")
    dead = await query(fs, db, "dead deliveries")
    return pending, dead


async def _cli(fs: SmallFs, *args: str, timeout: float = 120) -> tuple[int, str, str]:
    """``hashbridge ARGS`` as a subprocess, without blocking the emulators' loop."""
    proc = await asyncio.create_subprocess_exec(
        *fs.prefix, sys.executable, "-m", "bridge.cli", *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


async def _status(fs: SmallFs, cfg: Path) -> tuple[int, dict[str, Any], str]:
    rc, out, err = await _cli(fs, "status", "-c", str(cfg), "--json", timeout=60)
    try:
        parsed = json.loads(out)
    except json.JSONDecodeError:
        parsed = {}
    return rc, parsed, err


async def _healthz(port: int) -> tuple[int, dict[str, Any]]:
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s, \
                s.get(f"http://127.0.0.1:{port}/healthz") as r:
            return r.status, await r.json()
    except (aiohttp.ClientError, TimeoutError):
        return 0, {}


async def _stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    """SIGTERM, then wait (the emulators keep answering meanwhile)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait(10)
            raise AssertionError(f"the bridge did not stop within {timeout:.0f} s of SIGTERM")
        await asyncio.sleep(0.1)
    return proc.returncode


async def _setup(tmp_path: Path, fs: SmallFs, *, web_port: int | None = None
                 ) -> tuple[dict[str, PlatformSandbox], Path, Path, Path]:
    boxes = await start_boxes(tmp_path, ALL)
    cfg = tmp_path / "bridge.toml"
    data = fs.inner / "data"
    bridge: dict[str, Any] = {"log_level": "info", "retry_max_seconds": 5.0}
    if web_port is not None:
        bridge["web"] = {"listen": f"127.0.0.1:{web_port}"}
    write_config(cfg, boxes, data, {}, {}, bridge_options=bridge)
    return boxes, cfg, data, tmp_path / "bridge.log"


def _keep(fs: SmallFs, tmp_path: Path) -> None:
    """A copy of the data dir where it outlives the small filesystem (to look
    into when a check fails)."""
    with contextlib.suppress(OSError):
        shutil.copytree(fs.path / "data", tmp_path / "data-copy", dirs_exist_ok=True)


def _log_lines(log: Path, needle: str) -> list[str]:
    return [ln for ln in log.read_text(errors="replace").splitlines() if needle in ln]


async def test_disk_fills_mid_burst_then_is_freed(tmp_path: Path, fs: SmallFs) -> None:
    port = _free_port()
    boxes, cfg, data, log = await _setup(tmp_path, fs, web_port=port)
    db = data / "hashbridge.sqlite"
    talk = Conversation(boxes, seed=8)
    ballast = Ballast(fs.path)
    proc = start_bridge(cfg, log, fs.prefix)
    try:
        await wait_connected(db, set(boxes), 90, read=functools.partial(query, fs))
        for _ in range(12):  # a burst ...
            await talk.say()
            await asyncio.sleep(0.05)
        ballast.fill()  # ... fills the disk with deliveries in flight
        full_since = time.monotonic()
        noticed = None
        status_seen: dict[str, Any] = {}
        copies_at_notice = 0
        # Kept full while members go on talking everywhere: at least 10 s after
        # the bridge noticed, 30 posts in all.
        while talk.count < 42 or noticed is None or time.monotonic() - noticed < 10:
            assert time.monotonic() - full_since < 120, "the bridge never noticed the full disk"
            await talk.say()
            await asyncio.sleep(0.3)
            ballast.top_up()
            assert proc.poll() is None, "the bridge exited on a full disk"
            if noticed is None:
                code, health = await _healthz(port)
                if code == 503 and health.get("status") == "storage":
                    noticed = time.monotonic()
                    assert health["storage"]["state"] == "full", health
                    assert "no space left" in health["storage"]["detail"], health
                    rc, status_seen, err = await _status(fs, cfg)
                    assert rc == 0, err
                    copies_at_notice = await talk.copies()
        copies_while_full = await talk.copies() - copies_at_notice
        # Reported, not asserted: sends already under way finish, and until the
        # worker waits for the store (see docs), a planned batch may go on.
        print(f"disk full {time.monotonic() - full_since:.1f} s; copies that reached a "
              f"platform after the bridge reported it: {copies_while_full}")
        assert status_seen["storage"]["state"] == "full", status_seen
        assert status_seen["storage"]["data_dir"] == str(data)
        # While full, nothing new reached the other networks unrecorded:
        # what arrives now must still be exactly once after the recovery.
        ballast.free()
        for _ in range(8):
            await talk.say()
            await asyncio.sleep(0.1)
        await talk.wait_complete(180)  # under the test timeout: say what is missing
        await asyncio.sleep(3.0)  # a late duplicate would show up now
        code, health = await _healthz(port)
        assert code == 200 and health["storage"]["state"] == "ok", health
        assert proc.poll() is None, "the bridge did not keep running"
    finally:
        ballast.free()
        rc, snapshot = await _wind_up(proc, fs, tmp_path, talk, boxes)
    await _assert_all_relayed(rc, talk, snapshot, fs, db, log)
    full = _log_lines(log, FULL_LINE)
    assert len(full) == 1, full  # one clear line, not a storm
    assert f"{FULL_LINE} {data}: no space left on device" in full[0]
    assert _log_lines(log, "writes go through again")


async def test_start_on_a_full_disk_is_refused_then_catches_up(
        tmp_path: Path, fs: SmallFs) -> None:
    boxes, cfg, data, log = await _setup(tmp_path, fs)
    db = data / "hashbridge.sqlite"
    talk = Conversation(boxes, seed=9)
    ballast = Ballast(fs.path)
    proc = start_bridge(cfg, log, fs.prefix)
    try:
        await wait_connected(db, set(boxes), 90, read=functools.partial(query, fs))
        for _ in range(10):
            await talk.say()
        await talk.wait_complete(120)
        assert await _stop(proc) == 0
        before = {p.name: p.read_bytes() for p in (fs.path / "data").glob("hashbridge.sqlite*")}
        ballast.fill()
        for _ in range(10):  # the conversation goes on while the bridge is down
            # (Some adapters never see a delete made while the bridge is down, full
            # disk or not: their sandboxes say so.  Not what this test is about.)
            await talk.say(no_deletes_on=frozenset(
                n for n, b in boxes.items() if not b.features.deletes_seen_after_downtime))
        code, _out, err = await _cli(fs, "run", "-c", str(cfg))
        assert code == 74, err[-2000:]
        assert f"data dir {data}: no space left on device" in err, err
        assert "Traceback" not in err, err
        after = {p.name: p.read_bytes() for p in (fs.path / "data").glob("hashbridge.sqlite*")}
        assert after == before, "a refused start changed the database"
        rc, status, err = await _status(fs, cfg)  # status still answers, and says why
        assert rc == 0 and status["storage"]["state"] == "full", (rc, status, err)
        ballast.free()
        proc = start_bridge(cfg, log, fs.prefix)
        await talk.wait_complete(180)  # under the test timeout: say what is missing
        await asyncio.sleep(3.0)
    finally:
        ballast.free()
        rc, snapshot = await _wind_up(proc, fs, tmp_path, talk, boxes)
    await _assert_all_relayed(rc, talk, snapshot, fs, db, log)


async def test_stopped_while_full_then_restarted_loses_and_doubles_nothing(
        tmp_path: Path, fs: SmallFs) -> None:
    boxes, cfg, data, log = await _setup(tmp_path, fs)
    db = data / "hashbridge.sqlite"
    talk = Conversation(boxes, seed=10)
    ballast = Ballast(fs.path)
    proc = start_bridge(cfg, log, fs.prefix)
    try:
        await wait_connected(db, set(boxes), 90, read=functools.partial(query, fs))
        for _ in range(10):
            await talk.say()
            await asyncio.sleep(0.05)
        ballast.fill()
        for _ in range(15):
            # A delete read while nothing can be saved and lost with the stop is,
            # for a network that announces deletes only live, one made while the
            # bridge is down: such sandboxes say so (docs/operations.md).
            await talk.say(no_deletes_on=frozenset(
                n for n, b in boxes.items() if not b.features.deletes_seen_after_downtime))
            await asyncio.sleep(0.3)
            ballast.top_up()
        assert proc.poll() is None
        started = time.monotonic()
        assert await _stop(proc, timeout=30) == 0  # stopping must not wait for space
        assert time.monotonic() - started < 30
        ballast.free()
        proc = start_bridge(cfg, log, fs.prefix)
        for _ in range(5):
            await talk.say()
        await talk.wait_complete(180)  # under the test timeout: say what is missing
        await asyncio.sleep(3.0)
    finally:
        ballast.free()
        rc, snapshot = await _wind_up(proc, fs, tmp_path, talk, boxes)
    await _assert_all_relayed(rc, talk, snapshot, fs, db, log)
