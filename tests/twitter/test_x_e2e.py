"""End to end: the real relay (bridge.daemon.harness) between a sandbox network and the
X emulator, both directions and every mode; counts are read on the platforms."""

from __future__ import annotations

import asyncio
import re
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


async def test_sandbox_to_x_post_reply_edit_delete(xbox: TwitterSandbox,
                                                   lobby: SandboxPlatform,
                                                   tmp_path: Path) -> None:
    async with running(config(xbox, tmp_path)) as bridge:
        first = await lobby.post_as_member("dora", "hello from the lobby")
        await quiescent(bridge)
        reply = await lobby.post_as_member("eve", "a reply", reply_to=first)
        await quiescent(bridge)
        await lobby.edit_as_member(first, "hello, edited")
        await quiescent(bridge)
        await lobby.delete_as_member(reply)
        await quiescent(bridge)
    posts = [m for m in await xbox.messages() if m.by_bridge]
    assert len(posts) == 2  # post + reply; the edit made nothing, never a duplicate
    root, rep = posts
    assert "hello from the lobby" in root.text and "#kmers" in root.text
    assert "Dora" in root.text
    assert rep.reply_to == root.native_id  # threaded under the bot's own post
    assert rep.deleted and not root.deleted


async def test_x_to_sandbox_post_reply_delete_and_no_echo(xbox: TwitterSandbox,
                                                          lobby: SandboxPlatform,
                                                          tmp_path: Path) -> None:
    cfg = config(xbox, tmp_path, recheck_after_hours=0.002)  # re-checked at 7 s
    async with running(cfg) as bridge:
        await asyncio.sleep(0.5)  # the first poll fixes "now" as the start
        a = await xbox.post_as_member("alice", "#kmers hi from X @kmbridge")
        copies = await eventually(lambda: _n(bridged(lobby), 1))
        assert "hi from X" in copies[0].text
        await xbox.post_as_member("bob", "#kmers welcome alice", reply_to=a)
        copies = await eventually(lambda: _n(bridged(lobby), 2))
        assert copies[1].reply_to == copies[0].native_id
        await xbox.delete_as_member(a)
        await eventually(lambda: _gone(lobby, copies[0].native_id), timeout=30)
        await quiescent(bridge)
    assert await on_x(xbox) == []  # nothing echoed back to X


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


async def test_restart_mid_burst_both_ways(xbox: TwitterSandbox, lobby: SandboxPlatform,
                                           tmp_path: Path) -> None:
    cfg = config(xbox, tmp_path)
    async with running(cfg):
        await asyncio.sleep(0.5)
        for i in range(12):
            await lobby.post_as_member("dora", f"lobby burst {i}")
            await xbox.post_as_member("alice", f"#kmers x burst {i}")
        await asyncio.sleep(0.3)  # stop with work in flight
    for i in range(12, 16):
        await lobby.post_as_member("dora", f"lobby burst {i}")
        await xbox.post_as_member("alice", f"#kmers x burst {i}")
    async with running(cfg) as bridge:
        await eventually(lambda: _n(on_x(xbox), 16), timeout=40)
        await eventually(lambda: _n(bridged(lobby), 16), timeout=40)
        await quiescent(bridge)
    texts = [m.text for m in await on_x(xbox)]
    for i in range(16):
        assert sum(bool(re.search(rf"lobby burst {i}\b", t)) for t in texts) == 1
    copies = [m.text for m in await bridged(lobby)]
    for i in range(16):
        assert sum(bool(re.search(rf"x burst {i}\b", t)) for t in copies) == 1
    assert xbox.emulator.state.reads == 16  # every X post read exactly once


async def _n(coro: Awaitable[list[Any]], n: int) -> list[Any] | None:
    got = await coro
    return got if len(got) >= n else None


async def _gone(net: SandboxPlatform, native_id: str) -> bool:
    return any(m.native_id == native_id and m.deleted for m in await net.messages()) or \
        not any(m.native_id == native_id for m in await net.messages())


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


async def test_x_faults_lose_and_duplicate_nothing(xbox: TwitterSandbox,
                                                   lobby: SandboxPlatform,
                                                   tmp_path: Path) -> None:
    emu = xbox.emulator
    async with running(config(xbox, tmp_path)) as bridge:
        await asyncio.sleep(0.5)
        emu.fail(503, count=3, route="/2/tweets", method="POST")
        emu.rate_limit_storm(2.0, route="/2/tweets/search")
        emu.slow(0.5, count=2)
        for i in range(5):
            await lobby.post_as_member("dora", f"storm {i}")
            await xbox.post_as_member("alice", f"#kmers weather {i}")
        await eventually(lambda: _n(on_x(xbox), 5), timeout=60)
        await eventually(lambda: _n(bridged(lobby), 5), timeout=60)
        await quiescent(bridge)
    assert sorted(m.text.split(": ", 1)[1] for m in await on_x(xbox)) == [
        f"storm {i} #kmers" for i in range(5)]
    assert len(await bridged(lobby)) == 5
    assert emu.state.faults == []  # every injected fault was served


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
