"""Shared helpers for the benchmark scripts: an in-memory platform, process
figures (RSS, CPU) and the machine's load, printed with every run.

The in-memory platform (``memnet``) is what ``bench/relay.py`` uses too, grown
to many channels per account: its ``send`` only timestamps, so what a run
measures is the relay's own cost (config, store, pipeline, rendering, workers).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from bridge.adapter import (
    AdapterFactory,
    Capabilities,
    ChannelSpec,
    Health,
    SendCreate,
    SendOp,
    SendResult,
    StrictModel,
)
from bridge.model import ChannelKey, NativeId
from bridge.registry import Registry, load_factories


class MemAccount(StrictModel):
    display_name: str = "Mem"


class MemChannel(StrictModel):
    spot: str


class MemAdapter:
    """Source: the benchmark feeds events through ``ctx``.  Target: counts and
    timestamps every send (keyed by the origin's native id)."""

    def __init__(self) -> None:
        self.ctx: Any = None
        self.ready = asyncio.Event()
        self.sent_at: dict[tuple[str, str], float] = {}
        self.n = 0

    async def run(self, ctx: Any) -> None:
        self.ctx = ctx
        # Workers wait (bounded) for their adapter's first connection.
        ctx.set_health(Health.CONNECTED)
        self.ready.set()
        await asyncio.Event().wait()

    async def send(self, op: SendOp) -> SendResult:
        self.n += 1
        if isinstance(op, SendCreate):
            self.sent_at[(op.channel, op.post.origin_native_id)] = time.perf_counter()
        return SendResult(native_id=NativeId(op.idempotency_key))

    def capabilities(self, channel: ChannelKey) -> Capabilities:
        return Capabilities(max_length=500, edit=True, delete=True)


class MemFactory(AdapterFactory):
    platform: ClassVar[str] = "memnet"
    display_name: ClassVar[str] = "Mem"
    account_model = MemAccount
    channel_model = MemChannel
    channel_locator = "spot"

    def create(self, account: StrictModel, channels: tuple[ChannelSpec, ...],
               services: Mapping[str, Any]) -> MemAdapter:
        assert isinstance(account, MemAccount)
        adapters: dict[str, MemAdapter] = services["memnet"]  # type: ignore[assignment]
        return adapters.setdefault(account.display_name, MemAdapter())


def registry_with_memnet() -> Registry:
    return load_factories(extra={"memnet": MemFactory()})


def rss_mb() -> float:
    """Resident set size now (not the peak), from /proc."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s() -> float:
    """CPU seconds of this process (all threads: the store works in one)."""
    t = os.times()
    return t.user + t.system


def load_note() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f}/{five:.2f} on {os.cpu_count()} cores"


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, max(0, int(len(sorted_values) * q) - 1))]


def use_proposed_token_bucket() -> None:
    """Experiment only: replace ``TokenBucket.acquire`` by the change proposed
    to the core, to measure what it does.  After sleeping, the bucket refills
    from the real elapsed time (capped at burst) instead of assuming exactly
    one token, so the event loop's sleep overshoot is credited, not lost."""
    from bridge import ratelimit

    async def acquire(self: ratelimit.TokenBucket) -> None:
        async with self._lock:
            while True:
                delay = self.paused_until - time.time()
                if delay <= 0:
                    break
                self.waited += delay
                await asyncio.sleep(min(delay, 60.0))
            if self.rate is None:
                return
            rate = self.rate

            def refill() -> None:
                now = time.monotonic()
                self.tokens = min(self.burst, self.tokens + (now - self.updated) * rate)
                self.updated = now

            refill()
            while self.tokens < 1:
                delay = (1 - self.tokens) / rate
                self.waited += delay
                await asyncio.sleep(delay)
                refill()
            self.tokens -= 1

    ratelimit.TokenBucket.acquire = acquire  # type: ignore[method-assign]
