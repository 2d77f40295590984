"""Scaling with the number of communities: 1, 10, 100, 1,000 communities of 4
channels each in ONE relay process; RSS and CPU at idle and under load.

Each size runs in its own fresh subprocess (so RSS is that size's, not the
peak of a bigger earlier run).  Channels are on the in-memory ``memnet``
platform (``bench/_common.py``): 4 accounts, one per stand-in network, each
serving one channel of every community, which is how one bot account per
platform serves many communities.  ``--platform sandbox`` uses the SQLite
``sandbox`` platform instead, whose per-channel pollers show what a polling
adapter costs at idle.

Load: a fixed rate of inbound posts (``--rate``), round-robin over the
communities, each fanned out to the community's 3 other channels.

    python bench/scale.py [--sizes 1,10,100,1000] [--idle 10] [--load 10] [--rate 50]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._common import (
    MemAdapter,
    cpu_s,
    load_note,
    percentile,
    registry_with_memnet,
    rss_mb,
)
from bridge.contract.model import Author, ChannelKey, NativeId, Posted
from bridge.contract.richtext import RichText
from bridge.daemon.harness import quiescent, running
from bridge.runtime.config import parse

NETS = ["n0", "n1", "n2", "n3"]


def raw_config(workdir: str, communities: int, platform: str) -> dict[str, Any]:
    if platform == "memnet":
        accounts = {n: {"platform": "memnet", "display_name": n} for n in NETS}
        loc = "spot"
    else:
        accounts = {n: {"platform": "sandbox", "dir": os.path.join(workdir, "networks"),
                        "display_name": n} for n in NETS}
        loc = "network"
    comms = [{"name": f"c{i}", "hashtag": f"tag{i}", "author_rate_per_minute": 10**6,
              "channels": [{"account": n, loc: f"{n}-c{i}"} for n in NETS]}
             for i in range(communities)]
    return {"bridge": {"data_dir": os.path.join(workdir, "data")},
            "accounts": accounts, "communities": comms}


def event(i: int, communities: int) -> Posted:
    c = i % communities
    return Posted(channel=ChannelKey(f"c{c}/n0"), native_id=NativeId(f"p{i}"),
                  author=Author(platform="memnet", handle=f"user{i % 50}",
                                display_name=f"User {i % 50}"),
                  text=RichText.plain(f"message {i}: what got you into k-mer counting? #tag{c}"))


async def one_size(n: int, platform: str, idle: float, load: float, rate: float) -> None:
    rss_base = rss_mb()
    with tempfile.TemporaryDirectory() as tmp:
        adapters: dict[str, MemAdapter] = {}
        # Lists the installed adapters; parsing the config imports the one it uses.
        registry = registry_with_memnet(adapters)
        rss_reg = rss_mb()
        t0 = time.perf_counter()
        cfg = parse(raw_config(tmp, n, platform), registry, {})
        t_parse = time.perf_counter() - t0
        rss_cfg = rss_mb()
        t0 = time.perf_counter()
        async with running(cfg, timeout=300) as bridge:
            t_start = time.perf_counter() - t0
            tasks = len(asyncio.all_tasks())
            await asyncio.sleep(1.0)  # adapters connect, workers find empty queues
            gc.collect()
            rss_idle0 = rss_mb()
            c0, w0 = cpu_s(), time.perf_counter()
            await asyncio.sleep(idle)
            idle_cpu = (cpu_s() - c0) / (time.perf_counter() - w0)
            rss_idle = rss_mb()
            print(f"scale_{n}_idle rss_mb {rss_idle:.1f} cpu_pct {idle_cpu * 100:.2f}  "
                  f"({platform}; {n} communities x 4 channels = {4 * n} channels, "
                  f"{tasks} asyncio tasks; python+core {rss_base:.1f} MB, +adapter registry "
                  f"{rss_reg - rss_base:.1f} MB, +config and the adapter package it uses "
                  f"{rss_cfg - rss_reg:.1f} MB, "
                  f"+running relay "
                  f"{rss_idle0 - rss_cfg:.1f} MB; config parse {t_parse:.2f} s, "
                  f"start {t_start:.2f} s; {load_note()})", flush=True)
            if platform != "memnet":
                return
            src: MemAdapter = adapters["n0"]
            targets: list[MemAdapter] = [adapters[x] for x in NETS[1:]]
            posts = int(rate * load)
            sent: dict[str, float] = {}
            c0, w0 = cpu_s(), time.perf_counter()
            for i in range(posts):
                delay = w0 + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent[f"p{i}"] = time.perf_counter()
                await src.ctx.emit(event(i, n))
            await quiescent(bridge, timeout=300, settle=0.2)
            wall = time.perf_counter() - w0 - 0.2
            cpu = cpu_s() - c0
            delivered = sum(t.n for t in targets)
            lat = sorted((t.sent_at[(ch, nid)] - sent[nid]) * 1000
                         for t in targets for (ch, nid) in t.sent_at)
            print(f"scale_{n}_load rss_mb {rss_mb():.1f} cpu_pct {cpu / wall * 100:.1f} "
                  f"cpu_ms_per_post {cpu * 1000 / max(1, posts):.2f}  ({posts} posts at "
                  f"{rate:g}/s over {n} communities, {delivered} deliveries "
                  f"(expected {3 * posts}); added latency p50 {percentile(lat, 0.5):.1f} ms "
                  f"p99 {percentile(lat, 0.99):.1f} ms; {load_note()})", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1,10,100,1000")
    ap.add_argument("--platform", choices=["memnet", "sandbox"], default="memnet")
    ap.add_argument("--idle", type=float, default=10.0, help="idle seconds measured")
    ap.add_argument("--load", type=float, default=10.0, help="seconds of load")
    ap.add_argument("--rate", type=float, default=50.0, help="inbound posts/s under load")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one is not None:
        asyncio.run(one_size(a.one, a.platform, a.idle, a.load, a.rate))
        return
    for n in (int(x) for x in a.sizes.split(",")):
        # A fresh process per size: RSS is that size's own, not an earlier peak.
        r = subprocess.run([sys.executable, __file__, "--one", str(n), "--platform", a.platform,
                            "--idle", str(a.idle), "--load", str(a.load), "--rate", str(a.rate)],
                           check=False)
        if r.returncode:
            print(f"scale_{n} failed (exit {r.returncode})", flush=True)


if __name__ == "__main__":
    main()
