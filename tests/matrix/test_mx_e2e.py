"""End to end: the real relay (bridge.daemon.harness) between a sandbox network and a room
on a real Synapse, both directions; counts are read on the platforms themselves."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from mxhelp import Hs, Room, eventually, room_events

from adapters.sandbox import SandboxPlatform
from bridge.daemon.harness import ChannelDef, build_config, quiescent, running, sandbox_channels


def config(hs: Hs, room: Room, tmp: Path) -> Any:
    bot = hs.user("bridgebot")
    mx = ChannelDef("mx", "matrix", {"homeserver": hs.url, "user_id": bot.user_id,
                                     "access_token": bot.access_token,
                                     "sync_timeout_ms": 2000}, {"room": room.room_id})
    return build_config(tmp, [*sandbox_channels(tmp, ["lobby"]), mx],
                        community_options={"author_rate_per_minute": 1000})


def lobby(tmp: Path) -> SandboxPlatform:
    return SandboxPlatform(str(tmp / "networks"), "lobby")


async def bot_events(hs: Hs, room: Room) -> list[dict[str, Any]]:
    return [e for e in await room_events(hs, room.room_id, room.alice.access_token)
            if e["sender"] == hs.user("bridgebot").user_id]


async def test_sandbox_reply_threads_to_the_right_event(
        synapse: Hs, room: Room, tmp_path: Path) -> None:
    net = lobby(tmp_path)
    await net.start()
    async with running(config(synapse, room, tmp_path)) as bridge:
        first = await net.post_as_member("dora", "root")
        await quiescent(bridge)
        await net.post_as_member("eve", "child", reply_to=first)
        await quiescent(bridge)
    msgs = [e for e in await bot_events(synapse, room) if e["type"] == "m.room.message"]
    assert msgs[1]["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == \
        msgs[0]["event_id"]
    await net.stop()


async def _bridged(net: SandboxPlatform, n: int = 1) -> Any:
    msgs = [m for m in await net.messages() if m.by_bridge]
    return msgs if len(msgs) >= n else None


async def test_appservice_mode_through_the_relay(
        synapse: Hs, room: Room, tmp_path: Path) -> None:
    acct = synapse.appservice_account(sync_timeout_ms=2000)
    await asyncio.to_thread(synapse.server.request, "POST",
                            f"/_matrix/client/v3/rooms/{room.room_id}/invite",
                            room.alice.access_token, {"user_id": acct.user_id})
    table = acct.model_dump(exclude_defaults=True)
    cfg = build_config(tmp_path, [*sandbox_channels(tmp_path, ["lobby"]),
                                  ChannelDef("mx", "matrix", table, {"room": room.room_id})],
                       community_options={"author_rate_per_minute": 1000})
    net = lobby(tmp_path)
    await net.start()
    async with running(cfg) as bridge:
        await net.post_as_member("dora", "as a ghost")
        await quiescent(bridge)
        await room.alice.room_send(room.room_id, "m.room.message",
                                   {"msgtype": "m.text", "body": "to the lobby"})
        await eventually(lambda: _bridged(net))
        await quiescent(bridge)
    evs = [e for e in await room_events(synapse, room.room_id, room.alice.access_token)
           if e["type"] == "m.room.message"]
    ghost_msgs = [e for e in evs if e["sender"].startswith("@hb_")]
    assert len(ghost_msgs) == 1 and "as a ghost" in ghost_msgs[0]["content"]["body"]
    lobby_copies = [m.text for m in await net.messages() if m.by_bridge]
    assert len(lobby_copies) == 1 and "to the lobby" in lobby_copies[0]
    await net.stop()


async def test_formatted_nobridge_is_not_relayed(synapse: Hs, room: Room, tmp_path: Path) -> None:
    net = lobby(tmp_path)
    await net.start()
    async with running(config(synapse, room, tmp_path)) as bridge:
        await room.alice.room_send(room.room_id, "m.room.message", {
            "msgtype": "m.text", "body": "**private** #nobridge",
            "format": "org.matrix.custom.html",
            "formatted_body": "<strong>private</strong> #nobridge"})
        await room.alice.room_send(room.room_id, "m.room.message",
                                   {"msgtype": "m.text", "body": "public"})
        await eventually(lambda: _bridged(net))
        await quiescent(bridge)
    assert [m.text.rsplit(": ", 1)[-1] for m in await net.messages() if m.by_bridge] == [
        "public"]
    await net.stop()


async def test_leave_command_stops_relaying_that_member(
        synapse: Hs, room: Room, tmp_path: Path) -> None:
    net = lobby(tmp_path)
    await net.start()
    async with running(config(synapse, room, tmp_path)) as bridge:
        await room.alice.room_send(room.room_id, "m.room.message",
                                   {"msgtype": "m.text", "body": "!leave"})
        await room.alice.room_send(room.room_id, "m.room.message",
                                   {"msgtype": "m.text", "body": "alice after leaving"})
        await room.bob.room_send(room.room_id, "m.room.message",
                                 {"msgtype": "m.text", "body": "bob is still in"})
        await eventually(lambda: _bridged(net))
        await quiescent(bridge)
    copied = [m.text for m in await net.messages() if m.by_bridge]
    assert len(copied) == 1 and "bob is still in" in copied[0], copied
    await net.stop()
