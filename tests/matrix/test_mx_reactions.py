"""Matrix reactions on a real Synapse: counted per post, taken back by their
redaction, and relayed natively between two rooms the same account serves (as
the bot, whose annotation goes when the last reactor it stands for takes theirs
back)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from mxhelp import Hs, Room, make_room, room_events
from nio import RoomRedactResponse, RoomSendResponse

from adapters.sandbox import SandboxPlatform
from bridge.daemon.harness import ChannelDef, build_config, eventually, running, sandbox_channels
from bridge.daemon.supervisor import Bridge


def _key(room: Room) -> str:
    return "kmers/mx-" + room.room_id.lstrip("!").split(":")[0]


def _config(hs: Hs, tmp: Path, a: Room, b: Room) -> Any:
    bot = hs.user("bridgebot")
    acct = {"homeserver": hs.url, "user_id": bot.user_id, "access_token": bot.access_token,
            "sync_timeout_ms": 1000}
    return build_config(tmp, [ChannelDef("mx", "matrix", acct, {"room": a.room_id}),
                              ChannelDef("mx", "matrix", acct, {"room": b.room_id}),
                              *sandbox_channels(tmp, ["lobby"])],
                        community_options={"author_rate_per_minute": 1000})


async def _react(who: Any, room_id: str, target: str, key: str) -> str:
    r = await who.room_send(room_id, "m.reaction", {"m.relates_to": {
        "rel_type": "m.annotation", "event_id": target, "key": key}})
    assert isinstance(r, RoomSendResponse), r
    return str(r.event_id)


async def _unreact(who: Any, room_id: str, reaction: str) -> None:
    r = await who.room_redact(room_id, reaction)
    assert isinstance(r, RoomRedactResponse), r


async def _counts(bridge: Bridge, post_id: str) -> dict[str, int]:
    got = await bridge.store.run(lambda tx: tx.reaction_counts([post_id]))
    return got.get(post_id, {})


async def _bot_reactions(hs: Hs, room: Room, target: str) -> list[tuple[str, str]]:
    """(key, event id) of the bot's live annotations of *target* in the room."""
    bot = hs.user("bridgebot")
    events = await room_events(hs, room.room_id, hs.user("alice").access_token,
                               types=("m.reaction",))
    return [(e["content"]["m.relates_to"]["key"], e["event_id"]) for e in events
            if e.get("sender") == bot.user_id and e.get("content", {}).get("m.relates_to", {})
            .get("event_id") == target]


async def test_reactions_counted_and_relayed_between_rooms(synapse: Hs, tmp_path: Path,
                                                           lobby: SandboxPlatform) -> None:
    hs = synapse
    a, b = await make_room(hs), await make_room(hs)
    A, B = _key(a), _key(b)
    try:
        async with running(_config(hs, tmp_path, a, b), timeout=60) as bridge:
            assert {A, B} <= {c.key for c in bridge.config.all_channels()}
            await asyncio.wait_for(bridge.accounts["mx"].connected_once.wait(), 60)
            sent = await a.alice.room_send(a.room_id, "m.room.message",
                                           {"msgtype": "m.text", "body": "Q1: react here"})
            assert isinstance(sent, RoomSendResponse)
            origin = sent.event_id

            async def copy_in_b() -> str | None:
                found = await bridge.store.run(lambda tx: tx.native_lookup(A, origin))
                if not found:
                    return None
                ids = await bridge.store.run(lambda tx: tx.copies(found[0], B))
                return ids[0].native_id if ids else None
            copy = await eventually(copy_in_b, timeout=60, what="the copy in room B")
            post_id = (await bridge.store.run(lambda tx: tx.native_lookup(A, origin)))[0]

            # bob reacts on the copy in room B, then alice's "bob" in room A does too
            r1 = await _react(b.bob, b.room_id, copy, "👍")
            r2 = await _react(b.alice, b.room_id, copy, "👍")

            async def counted(n: int) -> bool:
                return await _counts(bridge, post_id) == ({"matrix": n} if n else {})
            await eventually(lambda: counted(2), timeout=60, what="two reactions counted")
            # relayed natively to room A, once, by the bot
            await eventually(lambda: _bot_reactions(hs, a, origin), timeout=60,
                             what="the bot's reaction in room A")
            await asyncio.sleep(1)  # would a second annotation follow? (it must not)
            [(key, _)] = await _bot_reactions(hs, a, origin)
            assert key == "👍"
            # nothing was posted as a message anywhere
            assert [m for m in await lobby.messages() if m.by_bridge and "👍" in m.text] == []

            # one takes theirs back: the bot's stays (it still stands for the other)
            await _unreact(b.bob, b.room_id, r1)
            await eventually(lambda: counted(1), timeout=60, what="one redaction counted")
            assert len(await _bot_reactions(hs, a, origin)) == 1
            # the last one: the bot's annotation is redacted
            await _unreact(b.alice, b.room_id, r2)
            await eventually(lambda: counted(0), timeout=60, what="both redactions counted")

            async def bot_gone() -> bool:
                return not await _bot_reactions(hs, a, origin)
            await eventually(bot_gone, timeout=60, what="the bot's reaction redacted")
    finally:
        for r in (a, b):
            await r.alice.close()
            await r.bob.close()


async def test_appservice_mode_reacts_as_the_reactors_ghost(synapse: Hs,
                                                            tmp_path: Path) -> None:
    hs = synapse
    a, b = await make_room(hs, invite_bot=False), await make_room(hs, invite_bot=False)
    acct = hs.appservice_account(sync_timeout_ms=1000)
    for r in (a, b):
        await asyncio.to_thread(hs.server.request, "POST",
                                f"/_matrix/client/v3/rooms/{r.room_id}/invite",
                                r.alice.access_token, {"user_id": acct.user_id})
    table = acct.model_dump(exclude_defaults=True)
    cfg = build_config(tmp_path, [ChannelDef("mx", "matrix", table, {"room": a.room_id}),
                                  ChannelDef("mx", "matrix", table, {"room": b.room_id})],
                       community_options={"author_rate_per_minute": 1000})
    A, B = _key(a), _key(b)
    try:
        async with running(cfg, timeout=60) as bridge:
            await asyncio.wait_for(bridge.accounts["mx"].connected_once.wait(), 60)
            sent = await b.bob.room_send(b.room_id, "m.room.message",
                                         {"msgtype": "m.text", "body": "A1: an answer"})
            assert isinstance(sent, RoomSendResponse)
            origin = sent.event_id

            async def copy_in_a() -> str | None:
                found = await bridge.store.run(lambda tx: tx.native_lookup(B, origin))
                ids = await bridge.store.run(lambda tx: tx.copies(found[0], A)) \
                    if found else []
                return ids[0].native_id if ids else None
            copy = await eventually(copy_in_a, timeout=60, what="the copy in room A")
            reaction = await _react(a.alice, a.room_id, copy, "🎉")

            async def ghost_reaction() -> list[dict[str, Any]]:
                events = await room_events(hs, b.room_id, b.alice.access_token,
                                           types=("m.reaction",))
                return [e for e in events if e["sender"].startswith("@hb_")
                        and e.get("content", {}).get("m.relates_to", {}).get("key") == "🎉"]
            [ours] = await eventually(ghost_reaction, timeout=60, what="the ghost's reaction")
            assert ours["content"]["m.relates_to"]["event_id"] == origin
            await _unreact(a.alice, a.room_id, reaction)

            async def gone() -> bool:
                return not await ghost_reaction()
            await eventually(gone, timeout=60, what="the ghost's reaction redacted")
    finally:
        for r in (a, b):
            await r.alice.close()
            await r.bob.close()


def test_reaction_events_convert() -> None:
    from adapters.matrix.convert import parse_event
    from bridge.contract.adapter import Unsupported, UnsupportedKind
    from bridge.contract.model import ChannelKey, Reacted

    def read(content: Any) -> Any:
        return parse_event({"type": "m.reaction", "event_id": "$r", "sender": "@bob:hs",
                            "origin_server_ts": 1, "content": content},
                           channel=ChannelKey("kmers/mx"), room_id="!r:hs",
                           homeserver="https://hs", display_name="Bob")

    ev = read({"m.relates_to": {"rel_type": "m.annotation", "event_id": "$p", "key": "👍"}})
    assert isinstance(ev, Reacted) and (ev.native_id, ev.key, ev.reaction_id) == \
        ("$p", "👍", "$r")
    assert ev.reactor.handle == "@bob:hs" and ev.reactor.identity == "matrix:@bob:hs"
    long = read({"m.relates_to": {"rel_type": "m.annotation", "event_id": "$p", "key": "x" * 500}})
    assert isinstance(long, Reacted) and len(long.key) == 64
    for bad, kind in [({"m.relates_to": {"rel_type": "m.reference", "event_id": "$p"}},
                       UnsupportedKind.IGNORED),
                      ({"m.relates_to": {"rel_type": "m.annotation", "event_id": "$p"}},
                       UnsupportedKind.MALFORMED),
                      ({"m.relates_to": {"rel_type": "m.annotation", "key": "👍"}},
                       UnsupportedKind.MALFORMED),
                      ({}, UnsupportedKind.IGNORED)]:
        got = read(bad)
        assert isinstance(got, Unsupported) and got.kind is kind, bad
