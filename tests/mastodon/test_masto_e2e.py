"""End to end: the real relay (bridge.daemon.harness) between a sandbox network and the
Mastodon emulator, both directions; counts are read on the platforms."""

from __future__ import annotations

import asyncio
import re
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


async def test_sandbox_to_mastodon_post_reply_edit_delete(masto: MastodonSandbox,
                                                          lobby: SandboxPlatform,
                                                          tmp_path: Path) -> None:
    async with running(config(masto, tmp_path)) as bridge:
        first = await lobby.post_as_member("dora", "hello from the lobby @carol")
        await quiescent(bridge)
        reply = await lobby.post_as_member("eve", "a reply", reply_to=first)
        await quiescent(bridge)
        await lobby.edit_as_member(first, "hello, edited")
        await quiescent(bridge)
        await lobby.delete_as_member(reply)
        await quiescent(bridge)
    posts = [m for m in await masto.messages() if m.by_bridge]
    assert len(posts) == 2
    root, rep = posts
    assert "hello, edited" in root.text and root.edited and "#kmers" in root.text
    assert "Dora" in root.text and "@carol" not in root.text  # no pings to strangers
    assert rep.reply_to == root.native_id and rep.deleted and not root.deleted
    assert root.key and root.key != rep.key  # every create carried an Idempotency-Key


async def test_mastodon_to_sandbox_post_reply_edit_delete_no_echo(masto: MastodonSandbox,
                                                                  lobby: SandboxPlatform,
                                                                  tmp_path: Path) -> None:
    async with running(config(masto, tmp_path)) as bridge:
        await asyncio.sleep(0.5)
        a = await masto.post_as_member("alice", "#kmers hi from Mastodon")
        copies = await eventually(lambda: _n(bridged(lobby), 1))
        assert "hi from Mastodon" in copies[0].text
        await masto.post_as_member("bob", "#kmers welcome alice", reply_to=a)
        copies = await eventually(lambda: _n(bridged(lobby), 2))
        assert copies[1].reply_to == copies[0].native_id
        await masto.edit_as_member(a, "#kmers hi from Mastodon (edited)")
        await eventually(lambda: _has(lobby, "(edited)"))
        await masto.delete_as_member(a)
        await eventually(lambda: _gone(lobby, copies[0].native_id))
        await lobby.post_as_member("dora", "and back")
        await quiescent(bridge)
    # The bridge's public copy on the tag came back through the stream: not relayed again.
    assert len(await bridged(lobby)) == 2 and len(await on_masto(masto)) == 1


async def _has(net: SandboxPlatform, text: str) -> bool:
    return any(text in m.text for m in await net.messages() if not m.deleted)


async def _gone(net: SandboxPlatform, native_id: str) -> bool:
    msgs = await net.messages()
    return any(m.native_id == native_id and m.deleted for m in msgs) or \
        not any(m.native_id == native_id for m in msgs)


async def test_restart_mid_burst_both_ways(masto: MastodonSandbox, lobby: SandboxPlatform,
                                           tmp_path: Path) -> None:
    cfg = config(masto, tmp_path)
    async with running(cfg):
        await asyncio.sleep(0.5)
        for i in range(12):
            await lobby.post_as_member("dora", f"lobby burst {i}")
            await masto.post_as_member("alice", f"#kmers masto burst {i}")
        await asyncio.sleep(0.3)  # stop with work in flight
    for i in range(12, 16):
        await lobby.post_as_member("dora", f"lobby burst {i}")
        await masto.post_as_member("alice", f"#kmers masto burst {i}")
    async with running(cfg) as bridge:
        await eventually(lambda: _n(on_masto(masto), 16), timeout=40)
        await eventually(lambda: _n(bridged(lobby), 16), timeout=40)
        await quiescent(bridge)
    texts = [m.text for m in await on_masto(masto)]
    for i in range(16):
        assert sum(bool(re.search(rf"lobby burst {i}\b", t)) for t in texts) == 1
    copies = [m.text for m in await bridged(lobby)]
    for i in range(16):
        assert sum(bool(re.search(rf"masto burst {i}\b", t)) for t in copies) == 1


async def test_429_storm_and_stream_drop_lose_nothing(masto: MastodonSandbox,
                                                      lobby: SandboxPlatform,
                                                      tmp_path: Path) -> None:
    emu = masto.emulator
    async with running(config(masto, tmp_path)) as bridge:
        await asyncio.sleep(0.5)
        emu.storm(2.0)
        for i in range(6):
            await lobby.post_as_member("dora", f"storm {i}")
        emu.drop_streams()
        for i in range(6):
            await masto.post_as_member("alice", f"#kmers dropped {i}")
        await eventually(lambda: _n(on_masto(masto), 6), timeout=30)
        await eventually(lambda: _n(bridged(lobby), 6), timeout=30)
        await quiescent(bridge)
    texts = [m.text for m in await on_masto(masto)]
    order = [int(re.search(r"storm (\d)", t).group(1)) for t in texts]  # type: ignore[union-attr]
    assert order == list(range(6))  # all arrived, in order, once
    assert sorted(re.search(r"dropped (\d)", m.text).group(1)  # type: ignore[union-attr]
                  for m in await bridged(lobby)) == [str(i) for i in range(6)]


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
