"""Latency of a post from one Matrix room through the relay into a second room, set
against Synapse's own send->sync time measured in the same run, plus memory.

    .venv/bin/python bench/matrix_latency.py [-n 50]

Needs the Synapse venv (SYNAPSE_PYTHON or .venv-synapse).  One line per figure.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from nio import AsyncClient, AsyncClientConfig, SyncResponse

from adapters.matrix.testserver import SynapseServer, synapse_python
from bridge.daemon.harness import ChannelDef, build_config, quiescent, running


def rss_self() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def client(srv: SynapseServer, name: str) -> AsyncClient:
    u = await asyncio.to_thread(srv.register, name)
    c = AsyncClient(srv.url, u.user_id, config=AsyncClientConfig(max_limit_exceeded=0))
    c.access_token, c.user_id, c.device_id = u.access_token, u.user_id, u.device_id
    return c


async def wait_for(observer: AsyncClient, room: str, marker: str, since: str) -> str:
    """Long-poll until *marker* shows up in *room*; return the new since token."""
    while True:
        r = await observer.sync(timeout=30000, since=since,
                                sync_filter={"room": {"rooms": [room]}})
        assert isinstance(r, SyncResponse), r
        since = r.next_batch
        info = r.rooms.join.get(room)
        if info and any(marker in str(e.source.get("content", {}).get("body", ""))
                        for e in info.timeline.events):
            return since


async def one(alice: AsyncClient, bob: AsyncClient, src: str, dst: str, label: str,
              since: str) -> tuple[float, str]:
    """ms from alice's send into *src* until bob's long-poll sees it in *dst*."""
    marker = f"{label}-{time.monotonic_ns()}"
    waiter = asyncio.create_task(wait_for(bob, dst, marker, since))
    await asyncio.sleep(0.05)                 # bob's long-poll is parked
    t0 = time.perf_counter()
    await alice.room_send(src, "m.room.message", {"msgtype": "m.text", "body": marker})
    since = await waiter
    return (time.perf_counter() - t0) * 1000, since


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


async def main(n: int) -> None:
    if synapse_python() is None:
        sys.exit("Synapse not installed (SYNAPSE_PYTHON or .venv-synapse)")
    with tempfile.TemporaryDirectory() as tmp:
        srv = SynapseServer(Path(tmp) / "hs")
        srv.spawn()
        await asyncio.to_thread(srv.wait_ready)
        print(f"synapse_startup_s {srv.startup_seconds:.2f}")
        try:
            alice, bob = await client(srv, "alice"), await client(srv, "bob")
            bot = await asyncio.to_thread(srv.register, "bridgebot")
            rooms = []
            for name in ("src", "dst", "ref"):
                r = await alice.room_create(name=name, invite=[bob.user_id, bot.user_id])
                await bob.join(r.room_id)
                rooms.append(r.room_id)
            src, dst, ref = rooms              # ref is not bridged: Synapse alone
            acct = {"homeserver": srv.url, "user_id": bot.user_id,
                    "access_token": bot.access_token, "catchup_window": 0}
            cfg = build_config(tmp, [ChannelDef("mx", "matrix", acct, {"room": src},
                                                {"name": "src"}),
                                     ChannelDef("mx", "matrix", acct, {"room": dst},
                                                {"name": "dst"})],
                               # one author posting fast is the benchmark, not spam
                               community_options={"author_rate_per_minute": 100000})
            r = await bob.sync(timeout=0)
            assert isinstance(r, SyncResponse)
            since = r.next_batch
            own: list[float] = []
            relayed: list[float] = []
            added: list[float] = []
            rss0 = rss_self()
            async with running(cfg) as bridge:
                await quiescent(bridge)
                # Interleaved, so both figures see the same load on a shared machine.
                for _ in range(n):
                    a, since = await one(alice, bob, ref, ref, "own", since)
                    b, since = await one(alice, bob, src, dst, "relay", since)
                    own.append(a)
                    relayed.append(b)
                    added.append(b - 2 * a)   # a relayed post crosses Synapse twice
                rss1 = rss_self()
            print(f"synapse_send_to_sync_ms median {statistics.median(own):.1f} "
                  f"p99 {pct(own, 99):.1f} n {n}")
            print(f"room_to_room_via_relay_ms median {statistics.median(relayed):.1f} "
                  f"p99 {pct(relayed, 99):.1f} n {n}")
            print(f"relay_added_ms median {statistics.median(added):.1f} "
                  f"p99 {pct(added, 99):.1f} (per pair: relayed - 2 x own hop)")
            print(f"bench_process_rss_mb {rss1 / 2**20:.1f} (bridge growth "
                  f"{(rss1 - rss0) / 2**20:+.1f})")
            print(f"synapse_rss_mb {srv.rss_bytes() / 2**20:.1f}")
        finally:
            await alice.close()
            await bob.close()
            await asyncio.to_thread(srv.stop)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=50, help="messages per measurement")
    asyncio.run(main(ap.parse_args().n))
