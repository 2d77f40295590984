"""Fault suite: the relay against every platform at once, killed with SIGKILL
at random points during a mixed burst of posts, edits and deletes.

The bridge runs as a real ``hashbridge run`` process; the platforms (every
registered network's sandbox that can run here: the Mastodon and X emulators,
Synapse and Dovecot when installed, and a sandbox network) run in the test
process.  Everything is counted on the platforms
themselves, never in the bridge's store:

* every surviving post reached every other network exactly once;
* copies from one network keep their order on every other network;
* edits reached the networks that can edit, deletes the ones that can delete;
* the outbox is empty at the end (nothing pending; dead items would be listed).

The default run is small (CI); ``-m soak`` runs the issue's 2,000 operations
with 5 kills.
"""

from __future__ import annotations

import asyncio
import random
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from scaffold import (
    ALL,
    DELETES,
    EDITS,
    check,
    start_boxes,
    start_bridge,
    stop_bridge,
    wait_complete,
    wait_connected,
    write_config,
)


async def run_scenario(tmp_path: Path, *, posts: int, kills: int, seed: int,
                       platforms: set[str], timeout: float, x_writes: bool = True) -> None:
    rng = random.Random(seed)
    # Each sandbox's own windows and budgets are lifted (start_boxes): a long burst
    # would otherwise be a rate-limit test (those have their own, in test_outages.py).
    boxes = await start_boxes(tmp_path, platforms)
    cfg = tmp_path / "bridge.toml"
    log = tmp_path / "bridge.log"
    # X allows 100 posts per 15 minutes per user: a long burst reads X but
    # does not write there (or it would wait for the window, as in production).
    channel_overrides: dict[str, dict[str, Any]] = {}
    if not x_writes and "twitter" in boxes:
        channel_overrides["twitter"] = {"direction": "in"}
    write_config(cfg, boxes, tmp_path / "data", {}, channel_overrides)
    read_only = set() if x_writes else {"twitter"} & set(boxes)
    names = list(boxes)
    proc = start_bridge(cfg, log)
    origin: dict[int, tuple[str, str]] = {}          # index -> (network, native id)
    edited: set[int] = set()
    deleted: set[int] = set()
    kill_at = sorted(rng.sample(range(posts // 5, posts), kills))
    try:
        # On a first start adapters relay from "now" on: post only once they are up.
        await wait_connected(tmp_path / "data" / "hashbridge.sqlite", set(names), 90)
        for i in range(posts):
            net = names[i % len(names)]
            nid = await boxes[net].post_as_member(f"m{i % 5}", f"[f{i:04d}] hello from {net}")
            origin[i] = (net, nid)
            # mixed operations on earlier posts of the same network
            if i >= 10 and rng.random() < 0.08:
                j = rng.choice([k for k in range(i - 10, i) if origin[k][0] == net] or [i])
                if net in EDITS and j not in deleted:
                    await boxes[net].edit_as_member(origin[j][1], f"[f{j:04d}] edited on {net}")
                    edited.add(j)
            if i >= 10 and rng.random() < 0.05 and net in DELETES:
                j = rng.choice([k for k in range(i - 10, i) if origin[k][0] == net] or [i])
                if j not in deleted:
                    await boxes[net].delete_as_member(origin[j][1])
                    deleted.add(j)
            if kill_at and i == kill_at[0]:
                kill_at.pop(0)
                await asyncio.sleep(rng.uniform(0.0, 1.5))  # with work in flight
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                proc = start_bridge(cfg, log)
            await asyncio.sleep(0.02)
        await wait_complete(boxes, origin, deleted, timeout, read_only)
        await asyncio.sleep(3.0)  # a late duplicate would show up now
    finally:
        await stop_bridge(proc, 20)
        snapshot = {n: await b.messages() for n, b in boxes.items()}
        for box in boxes.values():
            await box.stop()
    check(snapshot, origin, edited, deleted, log, read_only)
    pending = sqlite3.connect(tmp_path / "data" / "hashbridge.sqlite").execute(
        "SELECT channel, op, last_error FROM deliveries WHERE state IN ('pending', 'dead')"
    ).fetchall()
    assert pending == [], f"outbox not empty: {pending[:10]}"



async def test_sigkill_during_mixed_burst_across_all_platforms(tmp_path: Path) -> None:
    # 100 posts: X receives 80, inside its 100 posts per 15 minutes per user.
    await run_scenario(tmp_path, posts=100, kills=2, seed=7, platforms=ALL, timeout=240)


@pytest.mark.soak
@pytest.mark.timeout(3600)  # the suite's default (300 s) is for the short runs
async def test_soak_2000_operations_5_kills(tmp_path: Path) -> None:
    await run_scenario(tmp_path, posts=2000, kills=5, seed=11, platforms=ALL, timeout=3600,
                       x_writes=False)
