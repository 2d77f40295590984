"""A running bridge with its web view on three sandbox networks, for the web tests.

Everything is real: relay, store, workers, sandbox adapters, the aiohttp server
started by ``serve_web`` exactly as ``hashbridge run`` starts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.sandbox import SandboxPlatform
from bridge.daemon.harness import build_config, quiescent, running, sandbox_channels
from bridge.daemon.harness import eventually as eventually  # for the web tests
from bridge.daemon.supervisor import Bridge
from bridge.web import serve_web

NETWORKS = ("lobby", "garden", "porch")
ADMIN_TOKEN = "admin-token-for-tests-7f3a"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web"


@dataclass
class Live:
    bridge: Bridge
    url: str
    nets: dict[str, SandboxPlatform]
    workdir: Path
    web: asyncio.Task[None] | None = None

    async def settle(self, timeout: float = 20.0) -> None:
        await quiescent(self.bridge, timeout=timeout)

    async def post_ids(self) -> list[str]:
        posts = await self.bridge.store.run(lambda tx: tx.recent_posts("kmers", 1000))
        return [p.id for p in posts]

    async def post_id_of(self, needle: str) -> str:
        posts = await self.bridge.store.run(lambda tx: tx.recent_posts("kmers", 1000))
        return next(p.id for p in posts if needle in str(p.text.to_json()))


@contextlib.asynccontextmanager
async def live_bridge(workdir: Path, *, events: list[Mapping[str, Any]] | None = None,
                      admin_token: str = ADMIN_TOKEN,
                      community: Mapping[str, Any] | None = None,
                      listen: str = "127.0.0.1:0",
                      web_options: Mapping[str, Any] | None = None) -> AsyncIterator[Live]:
    web = {"listen": listen, "admin_token": admin_token, **(web_options or {})}
    opts: dict[str, Any] = {"author_rate_per_minute": 1000, **(community or {})}
    if events:
        opts["events"] = list(events)
    cfg = build_config(workdir, sandbox_channels(workdir, NETWORKS),
                       bridge_options={"web": web}, community_options=opts)
    nets = {n: SandboxPlatform(str(workdir / "networks"), n) for n in NETWORKS}
    async with running(cfg) as bridge:
        lv = Live(bridge, "", nets, workdir)
        lv.web = await start_web(bridge)
        lv.url = bridge.services.web_url
        try:
            yield lv
        finally:
            await stop_web(lv.web)
            for n in nets.values():
                await n.stop()


async def start_web(bridge: Bridge) -> asyncio.Task[None]:
    """Start ``serve_web`` as ``hashbridge run`` does; return once it serves."""
    bridge.services.web_url = ""
    task = asyncio.create_task(serve_web(bridge), name="web")
    async with asyncio.timeout(15):
        while not bridge.services.web_url:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
    return task


async def stop_web(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def chromium_missing() -> str:
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} is not installed (apt-get install chromium; CI installs it)"
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed"
    return ""
