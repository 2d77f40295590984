"""The whole relay with every installed adapter against its local platform:
the Mastodon and X emulators, a real Synapse and the real mail servers when
their sandboxes can start (each factory's ``sandbox(workdir)``), plus a
``sandbox`` network as the source.

Figures:
  * throughput: a burst of posts on the source, until every target's send for
    every post has returned: posts/s through the whole relay, and CPU per post;
  * added latency p50/p99 per target at 10 and 100 posts/s.

How our time is separated from the platform's: the bench instruments the
running relay without changing it, by timestamping (1) ``Bridge.ingest``, the
moment an adapter hands an inbound event to the core, and (2) the start and the
end of each target adapter's ``send``.  *Added* latency is (2 start) - (1):
store, pipeline, rendering, the outbox and the worker's queue, including our
own pacing.  The platform's time is the ``send`` call itself (the HTTP/SMTP
round trip to the emulator or server, and the client library), printed as
``platform``.  The source platform's own delay (poll interval, stream) comes
before (1) and is not counted.

    python bench/e2e.py [--burst 50] [--seconds 3] [--timeout 45] [--rates 10,100] [--skip matrix]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import os
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._common import cpu_s, load_note, percentile, rss_mb
from bridge.contract.adapter import SendCreate, SendOp, SendResult
from bridge.contract.model import InboundEvent, Posted
from bridge.contract.sandbox import PlatformSandbox
from bridge.daemon.harness import ChannelDef, build_config, quiescent, running
from bridge.runtime.registry import load_factories

# The X adapter's spending guard (50 posts a day by default) would stop a
# benchmark after 50 posts: lifted here, the emulator charges nothing.
EXTRA_ACCOUNT: dict[str, dict[str, Any]] = {
    "sb_lobby": {"display_name": "Lobby"},
    "twitter": {"max_posts_per_day": 10**6, "max_usd_per_day": 10**6,
                "max_usd_per_month": 10**6},
}


class Probe:
    """Timestamps on the running relay: ingest, and each target send."""

    def __init__(self) -> None:
        self.ingested: dict[str, float] = {}
        self.sends: dict[str, dict[str, tuple[float, float]]] = defaultdict(dict)
        self.attempts: dict[str, list[tuple[float, float]]] = defaultdict(list)
        """Every send attempt per target (start, end): the channel's busy time."""
        self.paced: dict[str, list[tuple[float, float]]] = defaultdict(list)
        """The account's token-bucket waits (our pacing to the platform's limits)."""
        self.failures: Counter[str] = Counter()
        self.targets: list[str] = []
        self.buckets: dict[str, Any] = {}

    def attach(self, bridge: Any, source: str) -> None:
        ingest = bridge.ingest

        async def timed_ingest(account: str, events: list[InboundEvent],
                               cursor: tuple[str, str] | None) -> None:
            now = time.perf_counter()
            for ev in events:
                if isinstance(ev, Posted) and ev.channel == source:
                    self.ingested.setdefault(ev.native_id, now)
            await ingest(account, events, cursor)

        bridge.ingest = timed_ingest
        for name, rt in bridge.accounts.items():
            if rt.adapter is not None and name != "sb_lobby":
                self.targets.append(name)
                self._wrap(name, rt.adapter)
                self._wrap_bucket(name, rt.bucket)
                self.buckets[name] = rt.bucket

    def _wrap(self, target: str, adapter: Any) -> None:
        send = adapter.send

        async def timed_send(op: SendOp) -> SendResult:
            t0 = time.perf_counter()
            try:
                result = await send(op)
            except Exception:
                self.failures[target] += 1
                raise
            finally:
                self.attempts[target].append((t0, time.perf_counter()))
            if isinstance(op, SendCreate) and op.part == 0:
                self.sends[target].setdefault(op.post.origin_native_id,
                                              (t0, time.perf_counter()))
            return result

        adapter.send = timed_send  # workers look the method up per call

    def _wrap_bucket(self, target: str, bucket: Any) -> None:
        acquire = bucket.acquire

        async def timed_acquire() -> None:
            t0 = time.perf_counter()
            await acquire()
            if time.perf_counter() - t0 > 0.0005:
                self.paced[target].append((t0, time.perf_counter()))

        bucket.acquire = timed_acquire

    def done(self, ids: list[str]) -> bool:
        return all(i in self.ingested for i in ids) and all(
            i in self.sends[t] for t in self.targets for i in ids)

    def split(self, target: str, ids: list[str]) -> tuple[list[float], list[float],
                                                            list[float], list[float]]:
        """Per delivered post: (added, queued behind the platform, platform,
        paced to the platform's rate limit) seconds.

        A target's worker sends one message at a time (FIFO), so a post can
        wait for the platform to finish earlier sends.  *Added* counts from
        the later of its ingest and the end of the channel's previous send
        attempt up to its own send: the time the relay held it while the
        channel was free."""
        busy = sorted(self.attempts[target])
        ends = [e for _, e in busy]
        added, queued, platform, paced = [], [], [], []
        for i in ids:
            if i not in self.sends[target] or i not in self.ingested:
                continue
            start, end = self.sends[target][i]
            k = bisect.bisect_left([b for b, _ in busy], start)
            prev_end = max((e for e in ends[:k] if e <= start), default=0.0)
            free = max(self.ingested[i], prev_end)
            wait = sum(min(b, start) - max(a, free) for a, b in self.paced[target]
                       if b > free and a < start)
            added.append(start - free - wait)
            queued.append(free - self.ingested[i])
            platform.append(end - start)
            paced.append(wait)
        return added, queued, platform, paced


def watchdog(loop: asyncio.AbstractEventLoop, seconds: float) -> None:
    """The figures are printed; if stopping the relay and the sandboxes hangs,
    say which tasks are stuck (a shutdown bug to report) and exit anyway."""

    def watch() -> None:
        time.sleep(seconds)
        stuck = [t for t in asyncio.all_tasks(loop) if not t.done()]
        print(f"e2e_note shutdown hung for {seconds:g} s; {len(stuck)} tasks left:",
              file=sys.stderr, flush=True)
        for t in stuck:
            frames = t.get_stack(limit=3)
            where = " <- ".join(f"{f.f_code.co_filename.rsplit('/', 2)[-1]}:{f.f_lineno}"
                                for f in frames)
            print(f"  {t.get_name()}: {where}", file=sys.stderr, flush=True)
        os._exit(3)

    threading.Thread(target=watch, daemon=True).start()


async def start_boxes(workdir: str, skip: set[str]) -> list[tuple[str, PlatformSandbox]]:
    registry = load_factories()
    boxes: list[tuple[str, PlatformSandbox]] = []
    lobby: Any = registry.factories["sandbox"].sandbox(os.path.join(workdir, "networks"))
    lobby.network = "lobby"
    boxes.append(("sb_lobby", lobby))
    for platform, factory in sorted(registry.factories.items()):
        if platform == "sandbox" or platform in skip:
            continue
        try:
            box = factory.sandbox(os.path.join(workdir, platform))
            if box is None:
                print(f"e2e_note {platform}: no local sandbox here; skipped", flush=True)
                continue
            t0 = time.perf_counter()
            await box.start()
            print(f"e2e_note {platform}: sandbox {type(box).__name__} started in "
                  f"{time.perf_counter() - t0:.1f} s", flush=True)
        except Exception as e:
            print(f"e2e_note {platform}: sandbox failed: {e}; skipped", flush=True)
            continue
        boxes.append((platform, box))
    await lobby.start()
    return boxes


def pause_note(bucket: Any) -> str:
    """The platform's rate-limit headers can pause an account until their reset."""
    left = bucket.paused_until - time.time()
    return f"; held by the platform's rate limit for {left:.0f} s more" if left > 0 else ""


def fmt(values: list[float]) -> str:
    v = sorted(x * 1000 for x in values)
    return f"p50 {percentile(v, 0.5):.1f} p99 {percentile(v, 0.99):.1f}"


async def main(burst: int, seconds: float, rates: list[float], skip: set[str],
               timeout: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        boxes = await start_boxes(tmp, skip)
        try:
            await measure(tmp, boxes, burst, seconds, rates, timeout)
        finally:
            for _, box in boxes:
                with contextlib.suppress(Exception):
                    await box.stop()


async def measure(tmp: str, boxes: list[tuple[str, PlatformSandbox]], burst: int,
                  seconds: float, rates: list[float], timeout: float) -> None:
    channels = [ChannelDef(name, box.platform, {**box.account_config(),
                                                **EXTRA_ACCOUNT.get(name, {})},
                           box.channel_config()) for name, box in boxes]
    cfg = build_config(tmp, channels, community_options={"author_rate_per_minute": 10**6})
    lobby: Any = boxes[0][1]
    targets = [n for n, _ in boxes[1:]]
    probe = Probe()
    async with running(cfg, timeout=120) as bridge:
        probe.attach(bridge, cfg.channel("kmers/sb_lobby").key)
        await asyncio.sleep(3)  # adapters connect (streams, IMAP IDLE, sync)

        async def wait_all(ids: list[str]) -> bool:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if probe.done(ids):
                    return True
                await asyncio.sleep(0.05)
            return False

        # --- throughput: a burst
        c0, w0 = cpu_s(), time.perf_counter()
        ids = [await lobby.post_as_member(f"m{i % 9}", f"burst {i}: bloom filters or "
                                           f"count-min sketches? #kmers") for i in range(burst)]
        ok = await wait_all(ids)
        wall, cpu = time.perf_counter() - w0, cpu_s() - c0
        got = {t: sum(1 for i in ids if i in probe.sends[t]) for t in targets}
        slowest = {t: max((probe.sends[t][i][1] for i in ids if i in probe.sends[t]),
                          default=w0) - w0 for t in targets}
        print(f"e2e_throughput_posts_per_s {burst / wall:.1f}  ({burst} posts from a sandbox "
              f"network to {len(targets)} targets ({', '.join(targets)}) in {wall:.1f} s"
              f"{'' if ok else ' (TIMED OUT)'}; delivered {got}; per target posts/s "
              f"{ {t: round(got[t] / max(slowest[t], 1e-9), 1) for t in targets} }; failed sends "
              f"{dict(probe.failures)}; CPU {cpu * 1000 / burst:.1f} ms per post, all "
              f"targets; {load_note()})", flush=True)
        with contextlib.suppress(TimeoutError):
            await quiescent(bridge, timeout=timeout, settle=1.0)

        # --- added latency at steady rates
        for rate in rates:
            n = int(rate * seconds)
            ids = []
            t_start = time.perf_counter()
            for i in range(n):
                delay = t_start + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                ids.append(await lobby.post_as_member(f"m{i % 9}", f"r{rate:g} {i}: how do "
                                                      f"you pick k? #kmers"))
            ok = await wait_all(ids)
            for t in targets:
                added, queued, platform, paced = probe.split(t, ids)
                print(f"e2e_added_latency_ms_at_{rate:g}_per_s {t} {fmt(added)}  (platform "
                      f"send {fmt(platform)}; queued behind the platform's earlier sends "
                      f"{fmt(queued)}; paced to its rate limit {fmt(paced)}; "
                      f"{len(added)}/{n} delivered{pause_note(probe.buckets[t])}"
                      f"{'' if ok else ', TIMED OUT'}; {load_note()})", flush=True)
            if rate != rates[-1]:
                with contextlib.suppress(TimeoutError):
                    await quiescent(bridge, timeout=timeout, settle=1.0)
        print(f"e2e_rss_mb {rss_mb():.0f}  (relay and the in-process emulators together)",
              flush=True)
        watchdog(asyncio.get_running_loop(), 30.0)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--burst", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=3.0, help="per steady rate")
    ap.add_argument("--rates", default="10,100")
    ap.add_argument("--skip", default="", help="platforms to leave out, comma-separated")
    ap.add_argument("--timeout", type=float, default=45.0,
                    help="seconds to wait for every copy after each phase")
    a = ap.parse_args()
    asyncio.run(main(a.burst, a.seconds, [float(r) for r in a.rates.split(",")],
                     set(filter(None, a.skip.split(","))), a.timeout))
