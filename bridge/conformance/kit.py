"""One network under test, the lobby opposite it, and the real relay between them.

A :class:`Kit` starts the network's sandbox (from its factory in the registry) and a
``sandbox`` network, the lobby, then runs the real bridge over both in this process
(:mod:`bridge.daemon.harness`).  Scenarios (:mod:`bridge.conformance.scenarios`) post as
members on either side and count what arrived on the platforms.  One kit serves many
scenarios: each marks its messages with its own tag (``[k07-3]``) and counts only those.
A scenario that needs another configuration (opt-in consent, a fault proxy, a real
process to kill) restarts the bridge on the same store, so cursors carry over and
nothing old is read again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from bridge.conformance.fleet import copy_capabilities
from bridge.contract.adapter import Capabilities, Health
from bridge.contract.sandbox import PlatformSandbox, SandboxMessage
from bridge.daemon.harness import ChannelDef, build_config, quiescent, running
from bridge.daemon.supervisor import Bridge
from bridge.runtime.config import Config
from bridge.runtime.registry import Registry, load_factories

log = logging.getLogger("hashbridge.conformance")

LOBBY = "lobby"
NET = "net"
"""Account names: the lobby and the network under test."""


class Unsupported(Exception):
    """The network lacks what a scenario needs (the message says what): skipped."""


class Kit:
    def __init__(self, platform: str, workdir: str | Path,
                 registry: Registry | None = None) -> None:
        self.platform = platform
        self.workdir = Path(workdir)
        self.registry = registry or load_factories()
        if platform not in self.registry.factories:
            raise Unsupported(f"no adapter {platform!r} is registered")
        lobby = self.registry.factories["sandbox"].sandbox(str(self.workdir / "networks"))
        assert lobby is not None, "the sandbox platform always has a sandbox"
        lobby.network = LOBBY  # type: ignore[attr-defined]
        self.lobby: PlatformSandbox = lobby
        if platform == "sandbox":   # a second network next to the lobby
            box = self.registry.factories["sandbox"].sandbox(str(self.workdir / "networks"))
            box.network = "garden"  # type: ignore[union-attr]
        else:
            box = self.registry.factories[platform].sandbox(str(self.workdir / platform))
        if box is None:
            raise Unsupported(f"{platform} has no sandbox that can run here (its factory "
                              "logged why)")
        self.box: PlatformSandbox = box
        self.bridge: Bridge | None = None
        self.extra: dict[str, PlatformSandbox] = {}
        self._run: contextlib.AbstractAsyncContextManager[Bridge] | None = None
        self._tags = 0
        self.timeout = 60.0

    # ------------------------------------------------------------ life cycle
    async def start(self) -> None:
        await self.lobby.start()
        try:
            await self.box.start()
        except BaseException:
            await self.lobby.stop()
            raise
        # Dozens of scenarios through one account: the platform's real windows and
        # budgets would make every scenario after the first few a rate-limit test.
        self.box.unthrottle()

    async def stop(self) -> None:
        await self.stop_bridge()
        for box in (*self.extra.values(), self.box, self.lobby):
            try:
                await box.stop()
            except Exception:
                log.exception("stopping the %s sandbox", box.platform)

    def config(self, *, community: Mapping[str, Any] | None = None,
               accounts: Mapping[str, Mapping[str, Any]] | None = None,
               bridge_options: Mapping[str, Any] | None = None,
               boxes: Mapping[str, PlatformSandbox] | None = None) -> Config:
        """The bridge's config over *boxes* (default: the lobby and the network), one
        channel each in the ``kmers`` community; *accounts* replace account tables."""
        boxes = boxes or {LOBBY: self.lobby, NET: self.box}
        chans = [ChannelDef(name, box.platform,
                            (accounts or {}).get(name) or box.account_config(),
                            box.channel_config()) for name, box in boxes.items()]
        return build_config(self.workdir, chans,
                            community_options={"author_rate_per_minute": 100000,
                                               "duplicate_window": 0, **(community or {})},
                            bridge_options=bridge_options, registry=self.registry)

    async def start_bridge(self, config: Config | None = None, *, warm: bool = True) -> Bridge:
        """Run the relay (stopping one that runs); wait until every adapter is connected
        and, with *warm*, until a probe crossed each way (inbound reading has begun)."""
        await self.stop_bridge()
        config = config or self.config()
        self._run = running(config, timeout=self.timeout)
        self.bridge = await self._run.__aenter__()
        await self.connected()
        if warm:
            await self.warm()
        return self.bridge

    async def stop_bridge(self) -> None:
        run, self._run, self.bridge = self._run, None, None
        if run is not None:
            await run.__aexit__(None, None, None)

    async def connected(self, timeout: float | None = None) -> None:
        bridge = self._need_bridge()
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            down = {n: rt.health for n, rt in bridge.accounts.items()
                    if rt.health != Health.CONNECTED}
            if not down:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"adapters not connected: {down}")
            await asyncio.sleep(0.1)

    async def warm(self) -> None:
        """Probes until one crossed from each side: a post made before an adapter first
        read its channel is history, which adapters do not relay."""
        bridge = self._need_bridge()
        names = {n: box for n, box in (((LOBBY, self.lobby), (NET, self.box),
                                         *self.extra.items())) if n in bridge.accounts}
        for name, box in names.items():
            others = [b for n, b in names.items() if n != name]
            deadline = time.monotonic() + self.timeout
            while True:
                tag = self.tag()
                await box.post_as_member("prober", f"[{tag}-0] probe from {name}")
                try:
                    for other in others:
                        await self.until(other, tag, {0}, timeout=8)
                    break
                except AssertionError:
                    if time.monotonic() > deadline:
                        raise

    def _need_bridge(self) -> Bridge:
        if self.bridge is None:
            raise RuntimeError("start_bridge() first")
        return self.bridge

    # ------------------------------------------------------------ what scenarios use
    def tag(self) -> str:
        self._tags += 1
        return f"k{self._tags:03d}"

    @staticmethod
    def mark(tag: str) -> re.Pattern[str]:
        return re.compile(rf"\[{tag}-(\d+)\]")

    def caps(self, account: str = NET) -> Capabilities:
        """What the bridge's copies can do on *account*'s channel (its adapter says: the
        running one's, else one built from the default config, without I/O)."""
        bridge = self.bridge
        if bridge is None:
            return copy_capabilities(self.config())[account]
        adapter = bridge.accounts[account].adapter
        assert adapter is not None
        key = next(ch.key for ch in bridge.config.all_channels() if ch.account == account)
        return adapter.capabilities(key)

    async def copies(self, box: PlatformSandbox, tag: str) -> dict[int, list[SandboxMessage]]:
        """The bridge's copies on *box* marked with *tag*, by index (deleted ones too)."""
        out: dict[int, list[SandboxMessage]] = {}
        pattern = self.mark(tag)
        for m in await box.messages():
            found = pattern.search(m.text) if m.by_bridge else None
            if found:
                out.setdefault(int(found.group(1)), []).append(m)
        return out

    async def until(self, box: PlatformSandbox, tag: str, indexes: set[int], *,
                    timeout: float | None = None,
                    ready: Callable[[SandboxMessage], bool] = lambda m: not m.deleted
                    ) -> dict[int, list[SandboxMessage]]:
        """Until a copy of each of *indexes* on *box* satisfies *ready*; the copies."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            have = await self.copies(box, tag)
            missing = {i for i in indexes if not any(ready(m) for m in have.get(i, []))}
            if not missing:
                return have
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{box.platform}: no copy of {sorted(missing)} [{tag}] after "
                    f"{timeout or self.timeout:g}s; copies there: "
                    f"{[(i, [m.text[:60] for m in ms]) for i, ms in have.items()]}")
            await asyncio.sleep(0.1)

    async def eventually(self, check: Callable[[], Awaitable[Any]], what: str,
                         timeout: float | None = None) -> Any:
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            got = await check()
            if got:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.1)

    async def settle(self) -> None:
        """Nothing pending and nothing read for a moment."""
        await quiescent(self._need_bridge(), timeout=self.timeout, settle=0.5)
