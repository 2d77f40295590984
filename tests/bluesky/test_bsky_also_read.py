"""``also_read`` on Bluesky, against the real PDS: the firehose filter takes the
related hashtag too, into the community's channel; such a post is relayed to the
other networks and never copied back onto Bluesky."""

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


async def _n(coro: Awaitable[list[Any]], n: int) -> list[Any] | None:
    got = await coro
    return got if len(got) >= n else None


async def test_also_read_tag_is_relayed_once_and_not_copied_back(
        bsky: BlueskySandbox, lobby: SandboxPlatform, tmp_path: Path) -> None:
    cfg = build_config(tmp_path, [*sandbox_channels(tmp_path, ["lobby"]),
                                  ChannelDef("bsky", "bluesky", bsky.account_config(),
                                             bsky.channel_config())],
                       community_options={"also_read": ["pkmchat"]})

    async def bridged() -> list[str]:
        return [m.text for m in await lobby.messages() if m.by_bridge]

    async with running(cfg) as bridge:
        await asyncio.wait_for(bridge.accounts["bsky"].connected_once.wait(), 60)
        await bsky.post_as_member("alice", "#pkmchat reading notes", tag=False)
        await eventually(lambda: _n(bridged(), 1), timeout=60, what="the #pkmchat post")
        await bsky.post_as_member("bob", "#kmers #pkmchat both tags", tag=False)
        await eventually(lambda: _n(bridged(), 2), timeout=60, what="the post with both")
        await lobby.post_as_member("dora", "from the lobby")
        await quiescent(bridge, timeout=60)
    await bsky.settled()
    texts = await bridged()
    assert len(texts) == 2 and "reading notes" in texts[0] and "both tags" in texts[1]
    copies = [m.text for m in await bsky.messages() if m.by_bridge and not m.deleted]
    assert len(copies) == 1 and "from the lobby" in copies[0]
