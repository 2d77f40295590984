"""Scaffolding shared by the cross-platform fault suites: the sandboxes of
every platform, the bridge as a real ``hashbridge run`` process with a config
written for them, and checks that count on the platforms themselves (never in
the bridge's store).

Messages are recognised by a mark in their text (``[f0042]`` by default, each
suite may pass its own pattern whose first group is the message's index).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from bridge.contract.sandbox import PlatformSandbox, SandboxMessage
from bridge.runtime.registry import load_factories

ROOT = Path(__file__).parents[2]
EDITS = {"lobby", "mastodon", "matrix"}     # member edits the test makes (and copies follow)
DELETES = {"lobby", "mastodon", "twitter", "matrix"}
CAN_DELETE_COPIES = {"lobby", "mastodon", "twitter", "matrix"}   # email cannot unsend
CAN_EDIT_COPIES = {"lobby", "mastodon", "matrix"}
MARK = re.compile(r"\[f(\d{4})\]")


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(type(v))


def write_config(path: Path, boxes: dict[str, PlatformSandbox], data: Path,
                 overrides: dict[str, dict[str, Any]],
                 channel_overrides: dict[str, dict[str, Any]], *,
                 bridge_options: dict[str, Any] | None = None) -> None:
    """The bridge's config: one account and one channel of the ``kmers``
    community per sandbox; *overrides* replace account keys (an address that
    goes through a fault proxy), *channel_overrides* channel keys."""
    bridge = {"data_dir": str(data), "log_level": "warning", **(bridge_options or {})}
    lines = ["[bridge]", *(f"{k} = {toml_value(v)}" for k, v in bridge.items()), ""]
    for name, box in boxes.items():
        table = {"platform": box.platform, **box.account_config(), **overrides.get(name, {})}
        lines.append(f"[accounts.{name}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in table.items()]
        lines.append("")
    lines += ["[[communities]]", 'name = "kmers"', 'hashtag = "kmers"',
              "author_rate_per_minute = 100000", "duplicate_window = 0", ""]
    for name, box in boxes.items():
        lines += ["[[communities.channels]]", f"account = {toml_value(name)}"]
        table = {**box.channel_config(), **channel_overrides.get(name, {})}
        lines += [f"{k} = {toml_value(v)}" for k, v in table.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    path.chmod(0o600)


def start_bridge(cfg: Path, log: Path, prefix: Sequence[str] = ()
                 ) -> subprocess.Popen[bytes]:
    """``hashbridge run -c cfg`` as a process, its output appended to *log*;
    *prefix* runs it inside something (a namespace holding its filesystem)."""
    return subprocess.Popen([*prefix, sys.executable, "-m", "bridge.cli", "run", "-c", str(cfg)],
                            stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


async def stop_bridge(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """SIGTERM, and SIGKILL if it has not stopped within *timeout* seconds; waited
    for in a thread, so the sandboxes on this loop keep answering meanwhile."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.to_thread(proc.wait, timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


async def start_boxes(tmp: Path, platforms: set[str]) -> dict[str, PlatformSandbox]:
    reg = load_factories()
    boxes: dict[str, PlatformSandbox] = {}
    lobby: Any = reg.factories["sandbox"].sandbox(str(tmp / "networks"))
    lobby.network = "lobby"
    boxes["lobby"] = lobby
    for name in ("mastodon", "twitter", "matrix", "email"):
        if name not in platforms:
            continue
        box = reg.factories[name].sandbox(str(tmp / name))
        if box is not None:
            boxes[name] = box
    for box in boxes.values():
        await box.start()
    return boxes


async def _read(db: Path, sql: str) -> list[Any]:
    return sqlite3.connect(db).execute(sql).fetchall()


async def wait_connected(db: Path, accounts: set[str], timeout: float, *,
                         read: Callable[[Path, str], Awaitable[list[Any]]] = _read) -> None:
    """Until every account's health in the bridge's database says connected;
    *read* runs a query (from another process where the database is only seen
    there)."""
    deadline = time.monotonic() + timeout
    up: set[str] = set()
    while up != accounts:
        if time.monotonic() > deadline:
            raise AssertionError(f"adapters not connected: {accounts - up}")
        await asyncio.sleep(0.5)
        try:
            rows = await read(db, "SELECT account, state FROM health")
        except sqlite3.Error:
            continue
        up = {a for a, state in rows if state == "connected"}


def copies_by_mark(msgs: list[SandboxMessage], mark: re.Pattern[str] = MARK
                   ) -> dict[int, list[SandboxMessage]]:
    out: dict[int, list[SandboxMessage]] = defaultdict(list)
    for m in msgs:
        if m.by_bridge:
            found = mark.search(m.text)
            if found:
                out[int(found.group(1))].append(m)
    return out


async def wait_complete(boxes: dict[str, PlatformSandbox], origin: dict[int, tuple[str, str]],
                        deleted: set[int], timeout: float, read_only: set[str],
                        mark: re.Pattern[str] = MARK) -> None:
    deadline = time.monotonic() + timeout
    while True:
        missing = []
        for net, box in boxes.items():
            have = copies_by_mark(await box.messages(), mark)
            missing += [(net, i) for i, (src, _) in origin.items()
                        if src != net and i not in deleted and not have.get(i)
                        and net not in read_only]
            if net in CAN_DELETE_COPIES:  # deletes still to be applied
                missing += [(net, -i) for i in deleted if origin[i][0] != net
                            and any(not m.deleted for m in have.get(i, []))]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(missing)} copies never arrived, e.g. {missing[:8]}")
        await asyncio.sleep(1.0)


def check(snapshot: dict[str, list[SandboxMessage]], origin: dict[int, tuple[str, str]],
          edited: set[int], deleted: set[int], log: Path, read_only: set[str],
          mark: re.Pattern[str] = MARK) -> None:
    problems: list[str] = []
    for net, msgs in snapshot.items():
        have = copies_by_mark(msgs, mark)
        for i, (src, _) in origin.items():
            if src == net or net in read_only:
                continue
            live = [m for m in have.get(i, []) if not m.deleted]
            if i in deleted:
                if net in CAN_DELETE_COPIES and live:
                    problems.append(f"{net}: copy of deleted #{i} still there")
                if len(have.get(i, [])) > 1:
                    problems.append(f"{net}: #{i} copied {len(have[i])} times")
                continue
            if len(live) != 1:
                problems.append(f"{net}: #{i} from {src} has {len(live)} copies")
            elif i in edited and net in CAN_EDIT_COPIES and "edited" not in live[0].text:
                problems.append(f"{net}: edit of #{i} not applied: {live[0].text!r}")
        # order: copies from one source keep their order here
        for src in snapshot:
            seq = [int(mark.search(m.text).group(1)) for m in msgs  # type: ignore[union-attr]
                   if m.by_bridge and mark.search(m.text) and origin.get(
                       int(mark.search(m.text).group(1)), ("", ""))[0] == src]  # type: ignore[union-attr]
            if seq != sorted(seq):
                problems.append(f"{net}: copies from {src} out of order: {seq[:20]}")
    assert not problems, "\n".join(problems[:30]) + "\n--- bridge log tail:\n" + \
        log.read_text()[-3000:]


