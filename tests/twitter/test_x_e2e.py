"""End to end: the real relay (bridge.daemon.harness) between a sandbox network and the
X emulator, both directions and every mode; counts are read on the platforms."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from adapters.sandbox import SandboxPlatform
from adapters.twitter.sandbox import TwitterSandbox
from bridge.daemon.harness import (
    ChannelDef,
    build_config,
    eventually,
    quiescent,
    running,
    sandbox_channels,
)


def config(box: TwitterSandbox, tmp: Path, **channel: Any) -> Any:
    acct = box.account_config()
    chan = {**box.channel_config(), "poll_seconds": 0.2, **channel}
    return build_config(tmp, [*sandbox_channels(tmp, ["lobby"]),
                              ChannelDef("x", "twitter", acct, chan)])


async def on_x(box: TwitterSandbox, *, by_bridge: bool = True) -> list[Any]:
    return [m for m in await box.messages() if m.by_bridge == by_bridge and not m.deleted]


async def bridged(net: SandboxPlatform) -> list[Any]:
    return [m for m in await net.messages() if m.by_bridge]


async def test_off_mode_reads_but_never_posts(xbox: TwitterSandbox, lobby: SandboxPlatform,
                                              tmp_path: Path) -> None:
    async with running(config(xbox, tmp_path, mode="off")) as bridge:
        await asyncio.sleep(0.5)
        await lobby.post_as_member("dora", "stays off X")
        await xbox.post_as_member("alice", "#kmers read me")
        await eventually(lambda: _n(bridged(lobby), 1))
        await quiescent(bridge, allow_deferred=True)
    assert await on_x(xbox) == []


async def test_digest_mode_posts_one_summary(xbox: TwitterSandbox, lobby: SandboxPlatform,
                                             tmp_path: Path) -> None:
    async with running(config(xbox, tmp_path, mode="digest", digest_minutes=0.03)) as bridge:
        for i in range(6):
            await lobby.post_as_member(f"member{i}", f"point number {i}")
        await quiescent(bridge)
        posts = await eventually(lambda: _n(on_x(xbox), 1))
        await asyncio.sleep(2.5)  # another digest period: nothing new, nothing posted
    assert len(await on_x(xbox)) == 1
    text = posts[0].text
    assert text.index("point number 5") < text.index("point number 4")


async def _n(coro: Awaitable[list[Any]], n: int) -> list[Any] | None:
    got = await coro
    return got if len(got) >= n else None


async def test_budget_past_the_daily_cap_holds_the_rest_and_status_says_why(
        xbox: TwitterSandbox, lobby: SandboxPlatform, tmp_path: Path) -> None:
    from bridge.daemon.harness import pending_count

    acct = {**xbox.account_config(), "max_posts_per_day": 3}
    cfg = build_config(tmp_path, [*sandbox_channels(tmp_path, ["lobby"]),
                                  ChannelDef("x", "twitter", acct, xbox.channel_config())])
    async with running(cfg) as bridge:
        for i in range(6):
            await lobby.post_as_member("dora", f"budget test {i}")
        await eventually(lambda: _n(on_x(xbox), 3))
        await quiescent(bridge, allow_deferred=True)
        assert len(await on_x(xbox)) == 3  # no post beyond the budget
        assert await pending_count(bridge) == 3  # nothing lost: still queued
        assert "budget spent: 3/3 posts today" in bridge.accounts["x"].detail


async def test_x_edit_reaches_the_sandbox_as_an_edit(xbox: TwitterSandbox,
                                                      lobby: SandboxPlatform,
                                                      tmp_path: Path) -> None:
    async with running(config(xbox, tmp_path)) as bridge:
        await asyncio.sleep(0.5)
        a = await xbox.post_as_member("alice", "#kmers meet at 8")
        await eventually(lambda: _n(bridged(lobby), 1))
        await xbox.edit_as_member(a, "#kmers meet at 9")
        await eventually(lambda: _state(lobby, lambda m: m[0].edited))
        await quiescent(bridge)
    [copy] = await bridged(lobby)
    assert "meet at 9" in copy.text
    [orig] = await on_x(xbox, by_bridge=False)
    assert orig.native_id == a and orig.edited


async def _state(net: SandboxPlatform, pred: Callable[[list[Any]], bool]) -> bool:
    msgs = await bridged(net)
    return bool(msgs) and pred(msgs)
