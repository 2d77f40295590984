"""End to end: the real relay (bridge.daemon.harness) between a sandbox network and
a real Bluesky PDS, both directions; counts are read on the platforms."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from adapters.bluesky.sandbox import BlueskySandbox
from adapters.sandbox import SandboxPlatform
from bridge.daemon.harness import (
    ChannelDef,
    build_config,
    eventually,
    quiescent,
    running,
    sandbox_channels,
)
from bridge.daemon.supervisor import Bridge


def config(box: BlueskySandbox, tmp: Path, channel: dict[str, Any] | None = None,
           **community: Any) -> Any:
    return build_config(tmp, [*sandbox_channels(tmp, ["lobby"]),
                              ChannelDef("bsky", "bluesky", box.account_config(),
                                         box.channel_config(), channel or {})],
                        community_options=community or None)


async def connected(bridge: Bridge) -> None:
    await asyncio.wait_for(bridge.accounts["bsky"].connected_once.wait(), 30)


async def on_bsky(box: BlueskySandbox, *, by_bridge: bool = True) -> list[Any]:
    return [m for m in await box.messages() if m.by_bridge == by_bridge and not m.deleted]


async def bridged(net: SandboxPlatform) -> list[Any]:
    return [m for m in await net.messages() if m.by_bridge]


async def _n(coro: Awaitable[list[Any]], n: int) -> list[Any] | None:
    got = await coro
    return got if len(got) >= n else None


async def test_sandbox_to_bluesky_post_reply_delete(bsky: BlueskySandbox,
                                                    lobby: SandboxPlatform,
                                                    tmp_path: Path) -> None:
    async with running(config(bsky, tmp_path)) as bridge:
        await connected(bridge)
        first = await lobby.post_as_member("dora", "hello from the lobby @carol")
        await quiescent(bridge)
        reply = await lobby.post_as_member("eve", "a reply", reply_to=first)
        await quiescent(bridge)
        await lobby.delete_as_member(reply)
        await quiescent(bridge)
    await bsky.settled()
    posts = [m for m in await bsky.messages() if m.by_bridge]
    assert len(posts) == 2, posts
    root, rep = posts
    assert "hello from the lobby" in root.text and "#kmers" in root.text
    assert "Dora" in root.text and "@carol" not in root.text  # no pings to strangers
    assert rep.reply_to == root.native_id and rep.deleted and not root.deleted
    assert root.key and root.key != rep.key


async def test_bluesky_to_sandbox_post_reply_edit_delete(bsky: BlueskySandbox,
                                                         lobby: SandboxPlatform,
                                                         tmp_path: Path) -> None:
    async with running(config(bsky, tmp_path)) as bridge:
        await connected(bridge)
        a = await bsky.post_as_member("alice", "#kmers hi from Bluesky")
        copies = await eventually(lambda: _n(bridged(lobby), 1))
        assert "hi from Bluesky" in copies[0].text
        assert "Alice (Bluesky)" in copies[0].text  # the profile's display name
        await bsky.post_as_member("bob", "#kmers welcome alice", reply_to=a)
        copies = await eventually(lambda: _n(bridged(lobby), 2))
        assert copies[1].reply_to == copies[0].native_id
        await bsky.edit_as_member(a, "#kmers hi from Bluesky (edited)")
        await eventually(lambda: _has(lobby, "(edited)"))
        await bsky.delete_as_member(a)

        async def gone() -> bool:
            return any(m.deleted for m in await lobby.messages() if m.by_bridge)

        await eventually(gone)
        await bsky.post_as_member("carol", "no tag here", tag=False)
        await quiescent(bridge)
    assert len(await bridged(lobby)) == 2  # the untagged post stayed on Bluesky


async def _has(net: SandboxPlatform, text: str) -> bool:
    return any(text in m.text for m in await net.messages())
