"""Relay core benchmark: ingest → outbox → delivery to 4 targets, SQLite store.

Prints one line per figure:
  * throughput: inbound posts/s fanned out to 4 targets (pages of 100, as a
    catch-up reads them, and one event per emit, as a stream delivers them);
  * added latency p50/p99 at a steady 100 posts/s (and 10 posts/s): from the
    moment the adapter hands the event to the relay to the moment the target
    adapter's send() is called;
  * RSS after the run.

Targets are in-memory adapters, so the figures are the relay's own cost (store,
pipeline, rendering, workers), which is what hashbridge adds to a platform's.

    python bench/relay.py [--posts 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._common import MemAdapter, registry_with_memnet
from bridge.contract.model import Author, ChannelKey, NativeId, Posted
from bridge.contract.richtext import RichText
from bridge.daemon.harness import ChannelDef, build_config, quiescent, running

NAMES = ["src", "t1", "t2", "t3", "t4"]


def event(i: int, tag: str) -> Posted:
    return Posted(channel=ChannelKey("kmers/src"), native_id=NativeId(f"{tag}{i}"),
                  author=Author(platform="bench", handle=f"user{i % 50}",
                                display_name=f"User {i % 50}"),
                  text=RichText.plain(f"message {tag}{i}: what got you into k-mer counting? "
                                      "#kmers"))


async def main(posts: int, phases: str = "all") -> None:
    adapters: dict[str, MemAdapter] = {}
    registry = registry_with_memnet(adapters)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = build_config(tmp, [ChannelDef(n, "memnet", {"display_name": n}, {"spot": n})
                                 for n in NAMES], registry=registry,
                           community_options={"author_rate_per_minute": 10**9,
                                              "duplicate_window": 600})
        async with running(cfg) as bridge:
            src = adapters["src"]
            await src.ready.wait()
            targets = [adapters[n] for n in NAMES[1:]]

            async def drained(n: int) -> None:
                while min(t.n for t in targets) < n:  # noqa: ASYNC110 - a plain counter
                    await asyncio.sleep(0.002)

            # --- throughput, pages of 100 (catch-up)
            cpu0 = time.process_time()
            t0 = time.perf_counter()
            for start in range(0, posts, 100):
                page = [event(i, "p") for i in range(start, min(posts, start + 100))]
                await src.ctx.emit_many(page, cursor=("bench", str(start)))
            t_ingest = time.perf_counter() - t0
            await drained(posts)
            elapsed = time.perf_counter() - t0
            cpu = time.process_time() - cpu0
            print(f"throughput_paged_posts_per_s {posts / elapsed:.0f}  "
                  f"(ingest alone {posts / t_ingest:.0f}/s; {posts} posts x 4 targets = "
                  f"{4 * posts / elapsed:.0f} deliveries/s; CPU {cpu * 1000 / posts:.2f} ms "
                  f"per post fanned out, i.e. {posts / cpu:.0f} posts per CPU-second)")

            if phases == "paged":
                return
            # --- throughput, one event per emit, 64 concurrent emitters (streams)
            n2 = posts // 2
            t0 = time.perf_counter()
            sem = asyncio.Semaphore(64)

            async def one(i: int) -> None:
                async with sem:
                    await src.ctx.emit(event(i, "s"))

            await asyncio.gather(*(one(i) for i in range(n2)))
            await drained(posts + n2)
            elapsed = time.perf_counter() - t0
            print(f"throughput_single_posts_per_s {n2 / elapsed:.0f}  ({n2} posts x 4 targets)")
            await quiescent(bridge, timeout=120, settle=0.2)

            # --- added latency at a steady rate
            for rate, count in ((10, 200), (100, 2000)):
                sent: dict[str, float] = {}
                tag = f"r{rate}_"
                interval = 1 / rate
                t_start = time.perf_counter()
                for i in range(count):
                    due = t_start + i * interval
                    delay = due - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    sent[f"{tag}{i}"] = time.perf_counter()
                    await src.ctx.emit(event(i, tag))
                await quiescent(bridge, timeout=120, settle=0.2)
                lat = sorted((t.sent_at[(key, k)] - v) * 1000
                             for key, t in zip([f"kmers/{n}" for n in NAMES[1:]], targets,
                                               strict=True)
                             for k, v in sent.items())
                p50 = statistics.median(lat)
                p99 = lat[int(len(lat) * 0.99) - 1]
                print(f"latency_ms_at_{rate}_per_s p50 {p50:.2f} p99 {p99:.2f} max {lat[-1]:.2f}"
                      f"  (n={len(lat)}, ingest to target send)")
            st = bridge.store
            print(f"store_group_commit units {st.units} commits {st.commits} "
                  f"({st.units / max(1, st.commits):.1f} units per commit)")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"rss_max_mb {rss:.0f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--posts", type=int, default=20000)
    ap.add_argument("--phases", choices=("all", "paged"), default="all",
                    help="'paged': only the paged throughput (for profiling)")
    args = ap.parse_args()
    asyncio.run(main(args.posts, args.phases))
