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
from typing import Any, ClassVar

from bridge.contract.adapter import (
    AdapterFactory,
    Capabilities,
    ChannelSpec,
    Health,
    SendCreate,
    SendOp,
    SendResult,
    StrictModel,
)
from bridge.contract.model import ChannelKey, NativeId
from bridge.contract.services import Services
from bridge.runtime.registry import Registry, load_factories


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

    def __init__(self, adapters: dict[str, MemAdapter]) -> None:
        self.adapters = adapters

    def create(self, account: StrictModel, channels: tuple[ChannelSpec, ...],
               services: Services) -> MemAdapter:
        assert isinstance(account, MemAccount)
        return self.adapters.setdefault(account.display_name, MemAdapter())


def registry_with_memnet(adapters: dict[str, MemAdapter]) -> Registry:
    """The installed adapters plus ``memnet``, whose adapters land in *adapters*
    (by display name) as the bridge creates them."""
    return load_factories(extra={"memnet": MemFactory(adapters)})


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


