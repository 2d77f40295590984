"""``check --online`` for Matrix channels, against Synapse: each room as the homeserver
answers (resolved, joined or joinable, the power to post and redact), read-only."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from mxhelp import AS_TOKEN, Hs, Room, bot_account, make_room, member_client
from nio import RoomCreateResponse

from adapters.matrix import MatrixFactory
from adapters.matrix.config import MatrixAccount, MatrixChannel
from bridge.contract.adapter import ChannelCheck, ChannelSpec
from bridge.contract.model import ChannelKey
from bridge.contract.services import Services

BOT = "@bridgebot:test.local"


def spec(room: str, key: str = "kmers/mx", direction: str = "both") -> ChannelSpec:
    return ChannelSpec(key=ChannelKey(key), community="kmers", hashtag="kmers",
                       direction=direction,
                       options=MatrixChannel(room=room))


async def check(account: MatrixAccount, *specs: ChannelSpec) -> dict[ChannelKey, ChannelCheck]:
    async with aiohttp.ClientSession() as http:
        return await MatrixFactory().check_channels(account, specs, http, Services())


async def one(account: MatrixAccount, room: str, direction: str = "both") -> ChannelCheck:
    return (await check(account, spec(room, direction=direction)))[ChannelKey("kmers/mx")]


async def raw(hs: Hs, method: str, path: str, token: str, body: Any = None) -> dict[str, Any]:
    return await asyncio.to_thread(hs.server.request, method, path, token, body)


async def set_levels(hs: Hs, room: Room, **changes: Any) -> None:
    path = f"/_matrix/client/v3/rooms/{room.room_id}/state/m.room.power_levels/"
    pl = await raw(hs, "GET", path, room.alice.access_token)
    for k, v in changes.items():
        if k == "events":
            pl.setdefault("events", {}).update(v)
        else:
            pl[k] = v
    await raw(hs, "PUT", path, room.alice.access_token, pl)


async def bot_joins(hs: Hs, room_id: str) -> None:
    bot = await member_client(hs, "bridgebot")
    try:
        await bot.join(room_id)
    finally:
        await bot.close()


async def membership(hs: Hs, room: Room, user: str) -> str:
    got = await raw(hs, "GET", f"/_matrix/client/v3/rooms/{room.room_id}/state/"
                    f"m.room.member/{quote(user)}", room.alice.access_token)
    return str(got["membership"])


async def test_a_joined_room_says_members_and_power(synapse: Hs, room: Room) -> None:
    await bot_joins(synapse, room.room_id)
    alias = f"#chk-{room.room_id[1:9].lower()}:test.local"
    await raw(synapse, "PUT", f"/_matrix/client/v3/directory/room/{quote(alias)}",
              room.alice.access_token, {"room_id": room.room_id})
    got = await check(bot_account(synapse), spec(room.room_id),
                      spec(alias, key="kmers/alias"), spec("#nope:test.local", key="kmers/nope"))
    c = got[ChannelKey("kmers/mx")]
    assert c.ok and not c.warnings, c
    assert c.reads == f"room {room.room_id}, joined, 3 members"
    assert c.writes == f"posts as {BOT} (power 0, messages need 0)"
    assert got[ChannelKey("kmers/alias")].reads == f"room {alias} ({room.room_id}), joined, " \
                                                   "3 members"
    nope = got[ChannelKey("kmers/nope")]
    assert not nope.ok and nope.error == "no room #nope:test.local — create it or fix `room`"
    # The levels are the token's user's, whatever user_id says (check_online warns).
    c = await one(bot_account(synapse, user_id="@other:test.local"), room.room_id)
    assert c.ok and c.writes == f"posts as {BOT} (power 0, messages need 0)"


async def test_posting_and_deleting_need_power(synapse: Hs, room: Room) -> None:
    await bot_joins(synapse, room.room_id)
    await set_levels(synapse, room, events={"m.room.redaction": 50})
    c = await one(bot_account(synapse), room.room_id)
    assert c.ok and c.writes == f"posts as {BOT} (power 0, messages need 0)"
    assert c.warnings == (f"{BOT} has power 0 and redactions need 50: a post deleted on its "
                          "origin stays here (deletes will not follow)",)

    await set_levels(synapse, room, events_default=20)
    c = await one(bot_account(synapse), room.room_id)
    assert not c.ok and c.writes == f"posts as {BOT} (power 0, messages need 20)"
    assert c.error == (f"{BOT} may not post here (power 0, messages need 20): raise its "
                       "power level, or lower what messages need")
    # A channel that only reads does not post.
    c = await one(bot_account(synapse), room.room_id, direction="in")
    assert c.ok and not c.warnings and c.reads.endswith("joined, 3 members")

    await set_levels(synapse, room, users={BOT: 50})   # room v12: alice, its creator, is not listed
    c = await one(bot_account(synapse), room.room_id)
    assert c.ok and not c.warnings and "power 50, messages need 20" in c.writes


async def test_not_joined_rooms_say_whether_it_can_join(synapse: Hs, room: Room) -> None:
    acct = bot_account(synapse)
    invited = await one(acct, room.room_id)          # the fixture's room invites the bot
    assert invited.ok and invited.warnings == (f"not joined: it joins at start ({BOT} is "
                                               "invited)",)
    assert invited.reads == f"room {room.room_id}, not joined (join rule invite, 2 members)"
    assert invited.writes == f"posts as {BOT} once joined (power levels are readable once " \
                             "joined)"
    assert await membership(synapse, room, BOT) == "invite"     # read-only: still invited

    closed = await make_room(synapse, invite_bot=False)
    try:
        c = await one(acct, closed.room_id)
        assert not c.ok and c.error.startswith(f"{closed.room_id} is not visible to {BOT}")
        assert c.error.endswith("(invite-only and it is not invited, restricted to rooms "
                                f"it is not in, or it is banned): invite {BOT}, or fix `room`")

        r = await closed.alice.room_create(name="open", preset=_public())
        assert isinstance(r, RoomCreateResponse)
        c = await one(acct, r.room_id)
        assert c.ok and c.warnings == ("not joined: it joins at start (the room is public)",)
        assert c.reads == f"room {r.room_id}, not joined (join rule public, 1 member)"

        await closed.alice.room_ban(r.room_id, BOT, reason="test")
        c = await one(acct, r.room_id)
        assert not c.ok and c.error == f"{BOT} is banned from the room: unban it, or fix `room`"
    finally:
        await closed.alice.close()
        await closed.bob.close()


async def test_a_restricted_room_admits_members_of_another(synapse: Hs, room: Room) -> None:
    """Restricted: joinable when the bot is in a room it admits (read from the bot's
    joined rooms); not visible at all otherwise."""
    lobby = await room.alice.room_create(name="lobby", preset=_public())
    assert isinstance(lobby, RoomCreateResponse)
    rule = {"join_rule": "restricted",
            "allow": [{"type": "m.room_membership", "room_id": lobby.room_id}]}
    inner = await room.alice.room_create(name="inner", initial_state=[
        {"type": "m.room.join_rules", "state_key": "", "content": rule}])
    assert isinstance(inner, RoomCreateResponse)
    c = await one(bot_account(synapse), inner.room_id)
    assert not c.ok and "restricted to rooms it is not in" in c.error
    await bot_joins(synapse, lobby.room_id)
    c = await one(bot_account(synapse), inner.room_id)
    assert c.ok and c.reads.endswith("not joined (join rule restricted, 1 member)")
    assert c.warnings == (f"not joined: it joins at start (the room is restricted and {BOT} "
                          f"is in {lobby.room_id}, which it allows)",)


async def test_the_creator_of_a_v12_room_is_above_every_level(synapse: Hs) -> None:
    bot = await member_client(synapse, "bridgebot")
    try:
        r = await bot.room_create(name="own", power_level_override={"events_default": 50})
        assert isinstance(r, RoomCreateResponse), r
    finally:
        await bot.close()
    c = await one(bot_account(synapse), r.room_id)
    assert c.ok and not c.warnings
    assert c.writes == f"posts as {BOT} (power creator, messages need 50)"


async def test_encrypted_room_without_e2e_fails(synapse: Hs) -> None:
    room = await make_room(synapse, encrypted=True)
    try:
        c = await one(bot_account(synapse), room.room_id)
        assert not c.ok and c.reads.endswith("not joined (join rule invite, 2 members, "
                                             "encrypted)")
        assert "end-to-end encrypted and e2e is not configured" in c.error
        await bot_joins(synapse, room.room_id)
        c = await one(bot_account(synapse), room.room_id)
        assert not c.ok and "end-to-end encrypted" in c.error and "joined" in c.reads
    finally:
        await room.alice.close()
        await room.bob.close()


async def test_appservice_mode_reports_the_ghosts(synapse: Hs, room: Room) -> None:
    acct = synapse.appservice_account()
    sender = acct.user_id
    c = await one(acct, room.room_id)
    assert not c.ok and f"not visible to {sender}" in c.error     # not invited

    await raw(synapse, "POST", f"/_matrix/client/v3/rooms/{room.room_id}/invite",
              room.alice.access_token, {"user_id": sender})
    c = await one(acct, room.room_id)
    assert c.ok and c.warnings == (f"not joined: it joins at start ({sender} is invited)",)
    await raw(synapse, "POST", f"/_matrix/client/v3/join/{room.room_id}?user_id={quote(sender)}",
              AS_TOKEN, {})
    c = await one(acct, room.room_id)
    assert c.ok and not c.warnings, c
    assert c.reads == f"room {room.room_id}, joined, 3 members"
    assert c.writes == (f"posts as ghosts @hb_*:test.local (power 0, messages need 0); "
                        f"notices as {sender} (power 0)")

    await set_levels(synapse, room, invite=50)
    c = await one(acct, room.room_id)
    assert not c.ok and c.error == ("ghosts cannot join: the room's join rule is invite and "
                                    f"{sender} may not invite them (power 0, invites need 50): "
                                    "raise its power level, or make the room public")
    await set_levels(synapse, room, users={sender: 50},
                     events={"m.room.redaction": 10})
    c = await one(acct, room.room_id)
    assert c.ok and c.warnings == ("ghosts have power 0 (users_default) and redactions need "
                                   "10: a post deleted on its origin stays here (deletes will "
                                   "not follow)",)
    await set_levels(synapse, room, events_default=10)
    c = await one(acct, room.room_id)
    assert not c.ok and c.error.startswith("ghosts may not post here (users_default 0, "
                                           "messages need 10)")


async def test_a_password_login_is_not_checked() -> None:
    """It would have to log in, which creates a device: each channel says so, as the
    account's own check does ("password login: checked at first run"), and no request
    is made (the homeserver here does not exist)."""
    acct = MatrixAccount(homeserver="http://127.0.0.1:9", user_id=BOT, password="pw")
    c = await one(acct, "#kmers:test.local")
    assert c.ok and not c.reads and not c.writes
    assert c.warnings[0].startswith("not checked: a password login would create a device")


def test_the_cli_prints_each_channel(synapse: Hs, tmp_path: Path) -> None:
    room = asyncio.run(_cli_room(synapse))
    token = synapse.user("bridgebot").access_token
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"""
[accounts.mx]
platform = "matrix"
homeserver = "{synapse.url}"
user_id = "{BOT}"
access_token = "${{MX_TOKEN}}"

[[communities]]
name = "kmers"
hashtag = "kmers"
[[communities.channels]]
name = "mx"
account = "mx"
room = "{room}"
[[communities.channels]]
name = "gone"
account = "mx"
room = "#gone:test.local"
""")
    cfg.chmod(0o600)
    res = subprocess.run([sys.executable, "-m", "bridge.cli", "check", "-c", str(cfg),
                          "--online"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120, env={**os.environ, "MX_TOKEN": token,
                                                      "PYTHONPATH": str(Path(__file__).parents[2])})
    out = res.stdout
    assert res.returncode == 1, out + res.stderr
    assert f"  kmers/mx: will read and write {room}\n"\
           f"    reads: room {room}, not joined (join rule invite, 2 members)\n"\
           f"    writes: posts as {BOT} once joined (power levels are readable once joined)\n"\
           f"    warning: not joined: it joins at start ({BOT} is invited)\n" in out
    assert "  kmers/gone: will read and write #gone:test.local\n"\
           "    FAILED: no room #gone:test.local — create it or fix `room`\n" in out
    assert token not in out


async def _cli_room(hs: Hs) -> str:
    room = await make_room(hs)
    await room.alice.close()
    await room.bob.close()
    return room.room_id


def _public() -> Any:
    from nio import RoomPreset

    return RoomPreset.public_chat

