"""``also_read`` on Mastodon, against the emulator: a related hashtag is read
through one more stream (and catch-up) into the community's channel; its posts
are relayed to the other networks and never copied back onto Mastodon."""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path
from typing import Any

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


async def _n(coro: Awaitable[list[Any]], n: int) -> list[Any] | None:
    got = await coro
    return got if len(got) >= n else None


async def test_also_read_hashtag_is_relayed_but_not_copied_back(
        masto: MastodonSandbox, lobby: SandboxPlatform, tmp_path: Path) -> None:
    cfg = build_config(tmp_path, [*sandbox_channels(tmp_path, ["lobby"]),
                                  ChannelDef("masto", "mastodon", masto.account_config(),
                                             masto.channel_config()),
                                  # a second Mastodon channel, write-only: the network
                                  # a #pkmchat post was read from all the same
                                  ChannelDef("masto", "mastodon", masto.account_config(),
                                             {**masto.channel_config(), "hashtag": "kmout"},
                                             {"direction": "out"})],
                       community_options={"also_read": ["pkmchat"]})

    async def bridged() -> list[str]:
        return [m.text for m in await lobby.messages() if m.by_bridge]

    async def copies_on_masto() -> list[str]:
        return [m.text for m in await masto.messages() if m.by_bridge and not m.deleted]

    async with running(cfg) as bridge:
        async def started() -> bool:
            names = ("min_id:kmers/masto-kmers", "min_id:kmers/masto-kmers#pkmchat")
            got = await bridge.store.run(
                lambda tx: [tx.get_cursor("masto", n) for n in names])
            return all(v is not None for v in got)

        # Both tags' first catch-up set their cursors: from here on nothing is history.
        await eventually(started, timeout=60, what="the two hashtags' cursors")
        emu = masto.emulator
        emu.member("alice", display_name="Alice")
        emu.member("bob", display_name="Bob")
        emu.post("alice", "reading notes #pkmchat")  # without #kmers
        await eventually(lambda: _n(bridged(), 1), timeout=60, what="the #pkmchat post")
        emu.post("bob", "both tags #kmers #pkmchat")
        await masto.post_as_member("carol", "just ours #kmers")
        await eventually(lambda: _n(bridged(), 3), timeout=60, what="the #kmers posts")
        await lobby.post_as_member("dora", "from the lobby")
        await eventually(lambda: _n(copies_on_masto(), 2), timeout=60,
                         what="the lobby's post on Mastodon")
        await quiescent(bridge, timeout=60)
    texts = await bridged()
    assert len(texts) == 3  # each once: the post with both tags is one post
    assert any("reading notes" in t for t in texts)
    # The #pkmchat post was read from Mastodon: never copied back there, not even
    # to the community's other Mastodon channel (the #kmers posts are).
    on_masto = await copies_on_masto()
    assert [t for t in on_masto if "reading notes" in t] == []
    assert sum("from the lobby" in t for t in on_masto) == 2  # one per channel
    assert sum("both tags" in t for t in on_masto) == 1  # on the other channel
