"""Run the real relay in-process: for end-to-end tests, the demo and benchmarks.

Typical use in a test::

    cfg = build_config(tmp_path, [
        ChannelDef("lobby", "sandbox", {"dir": str(tmp_path / "net")}, {"network": "lobby"}),
        ChannelDef("masto", "mastodon", masto_sandbox.account_config(),
                   masto_sandbox.channel_config()),
    ])
    async with running(cfg) as bridge:
        ... post through the sandboxes ...
        await quiescent(bridge)
        ... count what arrived on the platforms ...

Nothing here is a fake: the relay, store, workers and adapters are the real
ones; only the platforms are local.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.contract.services import Services
from bridge.daemon.supervisor import Bridge
from bridge.runtime.config import Config, parse
from bridge.runtime.registry import Registry, load_factories


@dataclass(frozen=True)
class ChannelDef:
    account: str
    platform: str
    account_table: Mapping[str, Any]
    channel_table: Mapping[str, Any]
    channel_options: Mapping[str, Any] = field(default_factory=dict)
    """Core channel keys (direction, split, on_edit...)."""


def build_config(workdir: str | Path, channels: Sequence[ChannelDef], *,
                 community: str = "kmers", hashtag: str = "kmers",
                 community_options: Mapping[str, Any] | None = None,
                 bridge_options: Mapping[str, Any] | None = None,
                 registry: Registry | None = None,
                 env: Mapping[str, str] | None = None) -> Config:
    """A validated config for one community over *channels* (raises ConfigError)."""
    accounts: dict[str, dict[str, Any]] = {}
    chans = []
    for c in channels:
        accounts.setdefault(c.account, {"platform": c.platform, **c.account_table})
        chans.append({"account": c.account, **c.channel_table, **c.channel_options})
    raw = {
        "bridge": {"data_dir": str(Path(workdir) / "data"), **(bridge_options or {})},
        "accounts": accounts,
        "communities": [{"name": community, "hashtag": hashtag, **(community_options or {}),
                         "channels": chans}],
    }
    return parse(raw, registry or load_factories(), env or {})


@contextlib.asynccontextmanager
async def running(config: Config, *, services: Services | None = None,
                  timeout: float = 30.0) -> AsyncIterator[Bridge]:
    """Start a :class:`Bridge`, yield it once its tasks run, cancel it after."""
    bridge = Bridge(config, services=services)
    task = asyncio.create_task(bridge.run(), name="bridge")
    try:
        async with asyncio.timeout(timeout):
            waiter = asyncio.create_task(bridge.ready.wait())
            done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                waiter.cancel()
                task.result()  # raises what stopped the bridge
                raise RuntimeError("bridge stopped before it was ready")
        yield bridge
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def pending_count(bridge: Bridge) -> int:
    return await bridge.store.run(lambda tx: tx.count_deliveries("pending"))


async def quiescent(bridge: Bridge, *, timeout: float = 30.0, settle: float = 0.3,
                    allow_deferred: bool = False) -> None:
    """Wait until nothing is pending in the outbox and nothing was ingested or
    delivered for *settle* seconds (inbound pollers had a chance to run)."""
    deadline = time.monotonic() + timeout
    quiet_since: float | None = None
    last = (-1, -1)
    while True:
        n = await pending_count(bridge)
        m = bridge.metrics
        activity = (sum(m.posts_in.values()) + sum(m.dropped.values()),
                    sum(m.posts_out.values()))
        now = time.monotonic()
        if (n == 0 or allow_deferred) and activity == last:
            quiet_since = quiet_since or now
            if now - quiet_since >= settle:
                return
        else:
            quiet_since = None
        last = activity
        if now > deadline:
            raise TimeoutError(f"not quiescent after {timeout}s: {n} deliveries pending")
        await asyncio.sleep(0.05)


def sandbox_channels(workdir: str | Path, names: Sequence[str] = ("lobby", "garden"),
                     **channel_options: Any) -> list[ChannelDef]:
    """Sandbox channels, one account each (``sb_<name>``), networks under *workdir*."""
    net_dir = str(Path(workdir) / "networks")
    return [ChannelDef(f"sb_{n}", "sandbox", {"dir": net_dir, "display_name": n.title()},
                       {"network": n}, channel_options) for n in names]


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 30.0,
                     what: str = "") -> Any:
    """Poll *check* until it returns something truthy, and return that; an
    AssertionError naming *what* (or the check) after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = await check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for "
                                 f"{what or getattr(check, '__name__', 'a condition')}")
        await asyncio.sleep(0.1)
