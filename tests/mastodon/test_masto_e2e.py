"""End to end: the real relay (bridge.daemon.harness) between a sandbox network and the
Mastodon emulator, both directions; counts are read on the platforms."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest

from adapters.mastodon.sandbox import MastodonSandbox
from adapters.sandbox import SandboxPlatform
from bridge.daemon.harness import (
    ChannelDef,
    build_config,
    eventually,
    quiescent,
    running,
    sandbox_channels,
)


def config(box: MastodonSandbox, tmp: Path, **community: Any) -> Any:
    return build_config(tmp, [*sandbox_channels(tmp, ["lobby"]),
                              ChannelDef("masto", "mastodon", box.account_config(),
                                         box.channel_config())],
                        community_options=community or None)


async def on_masto(box: MastodonSandbox, *, by_bridge: bool = True) -> list[Any]:
    return [m for m in await box.messages() if m.by_bridge == by_bridge and not m.deleted]


async def bridged(net: SandboxPlatform) -> list[Any]:
    return [m for m in await net.messages() if m.by_bridge]


async def _n(coro: Awaitable[list[Any]], n: int) -> list[Any] | None:
    got = await coro
    return got if len(got) >= n else None


async def test_consent_on_mastodon(masto: MastodonSandbox, lobby: SandboxPlatform,
                                   tmp_path: Path) -> None:
    emu = masto.emulator
    emu.member("nora", note="I prefer #nobridge")
    emu.member("quiet", indexable=False)
    async with running(config(masto, tmp_path, consent="opt-in")) as bridge:
        await asyncio.sleep(0.5)
        await masto.post_as_member("nora", "#kmers please keep me here")
        await masto.post_as_member("quiet", "#kmers me too")
        await masto.post_as_member("alice", "#kmers before joining")
        await masto.post_as_member("alice", "@kmbridge !join")
        await eventually(lambda: _n(on_masto(masto), 1))  # the bridge answers once
        await masto.post_as_member("alice", "#kmers after joining")
        await eventually(lambda: _n(bridged(lobby), 1))
        await quiescent(bridge)
    copies = [m.text for m in await bridged(lobby)]
    assert len(copies) == 1 and "after joining" in copies[0]
    answers = await on_masto(masto)
    assert len(answers) == 1 and "!leave" in answers[0].text


@pytest.mark.parametrize("limit", [500, 5000])
async def test_long_post_fits_each_instance(tmp_path: Path, lobby: SandboxPlatform,
                                            limit: int) -> None:
    box = MastodonSandbox(str(tmp_path), max_characters=limit, heartbeat=0.5)
    await box.start()
    try:
        words = " ".join(f"w{i:04d}" for i in range(300))  # 1799 characters
        async with running(config(box, tmp_path)) as bridge:
            await lobby.post_as_member("dora", words)
            await quiescent(bridge)
        posts = await on_masto(box)
        assert posts, "nothing arrived"
        joined = " ".join(p.text for p in posts)
        from adapters.mastodon.convert import status_length

        assert all(status_length(p.text) <= limit for p in posts)
        if limit == 5000:
            assert len(posts) == 1 and "w0299" in posts[0].text  # whole, in one status
        else:
            # Split or cut by the core's channel policy, never refused by the server.
            assert "w0000" in joined and len(posts[0].text) > 400
    finally:
        await box.stop()


async def test_join_by_plain_mention_without_the_tag(masto: MastodonSandbox,
                                                     lobby: SandboxPlatform,
                                                     tmp_path: Path) -> None:
    """The usual way to opt in: '@kmbridge !join', no hashtag, even followers-only."""
    emu = masto.emulator
    async with running(config(masto, tmp_path, consent="opt-in")) as bridge:
        await asyncio.sleep(0.5)
        emu.post("alice", "@kmbridge !join", visibility="private")
        await eventually(lambda: _n(on_masto(masto), 1))  # answered once
        await masto.post_as_member("alice", "#kmers now relayed")
        await eventually(lambda: _n(bridged(lobby), 1))
        emu.post("alice", "@kmbridge !leave")
        await eventually(lambda: _n(on_masto(masto), 2))
        await masto.post_as_member("alice", "#kmers no longer relayed")
        await quiescent(bridge, settle=2.5)  # a mentions sweep ran in between
    copies = [m.text for m in await bridged(lobby)]
    assert len(copies) == 1 and "now relayed" in copies[0]
    answers = [m.text for m in await on_masto(masto)]
    assert len(answers) == 2 and "!leave" in answers[0] and "!join" in answers[1]


async def test_reply_to_a_bridged_copy_without_the_tag_is_relayed(masto: MastodonSandbox,
                                                                  lobby: SandboxPlatform,
                                                                  tmp_path: Path) -> None:
    emu = masto.emulator
    async with running(config(masto, tmp_path)) as bridge:
        await asyncio.sleep(0.5)
        root = await lobby.post_as_member("dora", "question for everyone")
        copy = (await eventually(lambda: _n(on_masto(masto), 1)))[0]
        emu.post("alice", "@kmbridge my answer", in_reply_to_id=copy.native_id)
        emu.post("alice", "@kmbridge a secret", in_reply_to_id=copy.native_id,
                 visibility="private")
        emu.post("alice", "unrelated, no tag, no mention")
        replies = await eventually(lambda: _n(bridged(lobby), 1))
        await quiescent(bridge, settle=2.5)
    replies = await bridged(lobby)
    assert len(replies) == 1 and "my answer" in replies[0].text
    assert replies[0].reply_to == root
