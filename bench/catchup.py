"""Catch-up after an outage: posts queued while every target is down, then
the targets come back; how long the backlog takes to drain, against the
platforms' rate limits.

One community, four ``sandbox`` networks (SQLite files, counted on the
network itself): ``lobby`` is the source, ``t1..t3`` the targets, each on its
own account with ``rate_per_minute`` emulating the platform's limit and
``rate_burst`` (default: the core's, one second's worth), so the theoretical
drain time is (posts - burst) / rate.  The members' posts
are written into ``lobby`` before the relay starts, with the targets down
(``SandboxPlatform.set_down``); the relay ingests them all and its workers
back off; then the targets come up.

Figures:
  * detection delay: from "up" to the first copy on a target.  It is the
    worker's retry backoff (capped by ``retry_max_seconds``, 300 s by default:
    after a 30-minute outage expect up to that), not a throughput cost, so it
    is reported apart;
  * drain: first to last copy on each target, from the platform's own
    timestamps, against the theoretical posts / rate;
  * overhead = (drain - theoretical) / drain: the share of the time the relay,
    not the rate limit, was the bottleneck; and relay CPU per post.

Measured finding (fixed in the core since): ``TokenBucket.acquire`` used to
set ``tokens = 1.0`` after its sleep, losing every sleep overshoot, so a steady
backlog ran 18-34% under the configured rate; it now refills from the real
elapsed time (0% overhead in the same run).

    python bench/catchup.py [--posts 10000] [--rate-per-minute 24000] [--outage 0]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._common import cpu_s, load_note, rss_mb
from bridge.daemon.harness import ChannelDef, build_config, running

TARGETS = ["t1", "t2", "t3"]


def copies(path: str) -> tuple[int, float, float]:
    """(count, first, last created_at) of the bridge's messages on a network."""
    db = sqlite3.connect(path, timeout=30)
    try:
        n, first, last = db.execute("SELECT count(*), min(created_at), max(created_at) "
                                    "FROM messages WHERE by_bridge=1").fetchone()
    finally:
        db.close()
    return int(n), float(first or 0), float(last or 0)


async def main(posts: int, rate_per_minute: float, outage: float, retry_max: float,
               burst: int | None) -> None:
    from adapters.sandbox import SandboxPlatform

    with tempfile.TemporaryDirectory() as tmp:
        net_dir = os.path.join(tmp, "networks")
        boxes = {n: SandboxPlatform(net_dir, n) for n in ["lobby", *TARGETS]}
        for b in boxes.values():
            await b.start()
        lobby = boxes["lobby"].net
        lobby.db.execute("BEGIN")  # one transaction: the members' side is not measured
        for i in range(posts):
            lobby.db.execute("INSERT INTO messages (author, text, created_at) VALUES (?,?,?)",
                             (f"user{i % 50}", f"catch-up {i}: still counting k-mers #kmers",
                              time.time()))
            lobby.db.execute("INSERT INTO events (kind, message_id) VALUES ('posted', "
                             "last_insert_rowid())")
        lobby.db.execute("COMMIT")
        for n in TARGETS:
            boxes[n].set_down(True)
        per_s = rate_per_minute / 60
        burst = burst or max(1, int(per_s))  # the core's default burst
        opts = {"rate_per_minute": rate_per_minute, "rate_burst": burst}
        chans = [ChannelDef("sb_lobby", "sandbox", {"dir": net_dir, "display_name": "Lobby"},
                            {"network": "lobby"})]
        chans += [ChannelDef(f"sb_{n}", "sandbox",
                             {"dir": net_dir, "display_name": n, **opts}, {"network": n})
                  for n in TARGETS]
        cfg = build_config(tmp, chans, bridge_options={"retry_max_seconds": retry_max},
                           community_options={"author_rate_per_minute": 10**6,
                                              "duplicate_window": 600})
        async with running(cfg, timeout=60) as bridge:
            t_in = time.perf_counter()
            c_in = cpu_s()
            while sum(bridge.metrics.posts_in.values()) < posts:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            ingest = time.perf_counter() - t_in
            print(f"catchup_ingest_posts_per_s {posts / ingest:.0f}  ({posts} posts read from "
                  f"the source and queued for 3 targets while they were down, in "
                  f"{ingest:.1f} s, CPU {(cpu_s() - c_in) * 1000 / posts:.2f} ms/post)",
                  flush=True)
            await asyncio.sleep(outage)
            up = time.time()
            c0 = cpu_s()
            for n in TARGETS:
                boxes[n].set_down(False)
            paths = {n: os.path.join(net_dir, f"{n}.sqlite") for n in TARGETS}
            deadline = time.monotonic() + 60 + 2 * posts / per_s + retry_max
            while any(copies(p)[0] < posts for p in paths.values()):
                if time.monotonic() > deadline:
                    print("catchup failed: not drained in time: "
                          + ", ".join(f"{n} {copies(p)[0]}" for n, p in paths.items()))
                    return
                await asyncio.sleep(0.25)
            cpu = cpu_s() - c0
            rss = rss_mb()
        theoretical = max(0, posts - burst) / per_s
        stats = {n: copies(p) for n, p in paths.items()}
        detect = max(s[1] for s in stats.values()) - up
        drain = max(s[2] - s[1] for s in stats.values())
        total = max(s[2] for s in stats.values()) - up
        overhead = (drain - theoretical) / drain
        print(f"catchup_detection_s {detect:.2f}  (up to first copy on the slowest target; the "
              f"retry backoff, capped by retry_max_seconds={retry_max:g}; outage held "
              f"{outage + ingest:.0f} s)")
        print(f"catchup_drain_s {drain:.2f}  (theoretical {theoretical:.2f} s = ({posts} - burst "
              f"{burst}) posts / {per_s:g} per s per target; 3 targets in parallel; copies "
              f"{', '.join(f'{n} {s[0]}' for n, s in stats.items())}, exactly {posts} "
              "expected each)")
        print(f"catchup_overhead_pct {overhead * 100:.1f}  (target < 10; relay CPU "
              f"{cpu * 1000 / (3 * posts):.2f} ms per delivery, {cpu / total * 100:.0f}% of one "
              f"core over the {total:.1f} s from up to drained; rss {rss:.0f} MB; "
              f"{load_note()})")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--posts", type=int, default=10000)
    ap.add_argument("--rate-per-minute", type=float, default=24000,
                    help="per target account (the emulated platform limit)")
    ap.add_argument("--outage", type=float, default=0.0,
                    help="seconds the targets stay down after everything is queued")
    ap.add_argument("--retry-max-seconds", type=float, default=300.0)
    ap.add_argument("--burst", type=int, default=None, help="rate_burst per target account")
    a = ap.parse_args()
    asyncio.run(main(a.posts, a.rate_per_minute, a.outage, a.retry_max_seconds, a.burst))
