"""Appservice (puppet) mode against Synapse with the generated registration loaded."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import yaml
from mxhelp import Hs, Room, create_op, delete_op, edit_op, post, room_events, start_adapter

from adapters.matrix import generate_registration
from adapters.matrix.appservice import ghost_localpart
from bridge.contract.model import Author, Posted


def test_registration_is_valid_yaml_with_exclusive_namespace(synapse: Hs) -> None:
    reg = yaml.safe_load(generate_registration(synapse.appservice_account()))
    assert reg["url"].startswith("http://127.0.0.1:") and reg["sender_localpart"] == "hbbot"
    assert reg["rate_limited"] is False
    assert reg["namespaces"]["users"] == [{"exclusive": True, "regex": r"@hb_.*:test\.local"}]


def test_ghost_localparts_are_valid_and_distinct() -> None:
    a = ghost_localpart("hb_", Author(platform="mastodon", handle="@Carol@masto.example"))
    b = ghost_localpart("hb_", Author(platform="twitter", handle="carol"))
    c = ghost_localpart("hb_", Author(platform="email", handle="Zoë <z@x.org>"))
    assert a == "hb_mastodon_carol=40masto.example" and b == "hb_twitter_carol"
    assert a != b and all(ch.isascii() and not ch.isspace() for ch in c)


async def test_ghosts_post_edit_delete_and_are_not_echoed(
        synapse: Hs, room: Room, tmp_path: Path) -> None:
    acct = synapse.appservice_account(sync_timeout_ms=2000)
    await asyncio.to_thread(synapse.server.request, "POST",
                            f"/_matrix/client/v3/rooms/{room.room_id}/invite",
                            room.alice.access_token, {"user_id": acct.user_id})
    run = await start_adapter(acct, room.room_id, tmp_path)
    try:
        carol = post("hello from mastodon")
        res = await run.adapter.send(create_op("hello from mastodon", p=carol))
        reply = await run.adapter.send(create_op("second", p=carol, reply_to=res.native_id))
        await run.adapter.send(edit_op(res.native_id, "hello, edited", p=carol))
        await run.adapter.send(delete_op(reply.native_id, p=carol))
        notice = await run.adapter.send(create_op("bridge notice", notice=True))
        await room.alice.room_send(room.room_id, "m.room.message",
                                   {"msgtype": "m.text", "body": "hi carol"})
        await run.ctx.wait_for(1)
        await asyncio.sleep(1.0)
        assert [type(e) for e in run.ctx.events] == [Posted]   # ghosts are never echoed

        ghost = "@hb_mastodon_carol=40masto.example:test.local"
        evs = await room_events(synapse, room.room_id, room.alice.access_token)
        by_id = {e["event_id"]: e for e in evs}
        assert by_id[res.native_id]["sender"] == ghost
        assert by_id[notice.native_id]["sender"] == acct.user_id
        assert by_id[notice.native_id]["content"]["msgtype"] == "m.notice"
        assert by_id[reply.native_id]["content"] == {}
        edit = [e for e in evs if e["content"].get("m.relates_to", {}).get("rel_type")
                == "m.replace"]
        assert edit[0]["sender"] == ghost
        member = await asyncio.to_thread(
            synapse.server.request, "GET",
            f"/_matrix/client/v3/rooms/{room.room_id}/state/m.room.member/{ghost}",
            room.alice.access_token)
        assert member["membership"] == "join" and member["displayname"] == "Carol (Mastodon)"
    finally:
        await run.stop()


async def test_transaction_resend_is_acknowledged_once_and_token_checked(
        synapse: Hs, room: Room, tmp_path: Path) -> None:
    acct = synapse.appservice_account(sync_timeout_ms=2000)
    await asyncio.to_thread(synapse.server.request, "POST",
                            f"/_matrix/client/v3/rooms/{room.room_id}/invite",
                            room.alice.access_token, {"user_id": acct.user_id})
    run = await start_adapter(acct, room.room_id, tmp_path)
    synapse.forwarder.target = None        # only this test's requests reach the adapter
    url = f"http://{acct.as_listen}/_matrix/app/v1/transactions/t-1"
    ev = {"type": "m.room.message", "room_id": room.room_id, "event_id": "$resent",
          "sender": "@alice:test.local", "origin_server_ts": int(time.time() * 1000),
          "content": {"msgtype": "m.text", "body": "once"}}
    try:
        async with aiohttp.ClientSession() as http:
            bad = await http.put(url, json={"events": [ev]},
                                 headers={"Authorization": "Bearer wrong"})
            assert bad.status == 403
            for _ in range(3):
                r = await http.put(url, json={"events": [ev]},
                                   headers={"Authorization": f"Bearer {acct.hs_token}"})
                assert r.status == 200
            junk = await http.put(url.replace("t-1", "t-2"), data=b"not json",
                                  headers={"Authorization": f"Bearer {acct.hs_token}"})
            assert junk.status == 400
        assert [e.native_id for e in run.ctx.events] == ["$resent"]
        assert run.ctx.cursors["as_txn"] == "t-1"
    finally:
        await run.stop()


async def test_events_pushed_while_down_arrive_after_restart_once(
        synapse: Hs, room: Room, tmp_path: Path) -> None:
    """Synapse keeps an unacknowledged transaction and resends it: nothing lost while the
    bridge was down, nothing doubled."""
    acct = synapse.appservice_account(sync_timeout_ms=2000)
    await asyncio.to_thread(synapse.server.request, "POST",
                            f"/_matrix/client/v3/rooms/{room.room_id}/invite",
                            room.alice.access_token, {"user_id": acct.user_id})
    run = await start_adapter(acct, room.room_id, tmp_path)
    ctx = run.ctx
    first = await room.alice.room_send(room.room_id, "m.room.message",
                                       {"msgtype": "m.text", "body": "before"})
    await ctx.wait_for(1)
    await run.stop()
    sent = [first.event_id]
    for i in range(3):
        r = await room.alice.room_send(room.room_id, "m.room.message",
                                       {"msgtype": "m.text", "body": f"while down {i}"})
        sent.append(r.event_id)
    await asyncio.sleep(0.5)
    run = await start_adapter(acct, room.room_id, tmp_path, ctx=ctx)
    try:
        await ctx.wait_for(4, timeout=60)     # after Synapse's retry backoff
        await asyncio.sleep(1.0)
        assert [e.native_id for e in ctx.events if isinstance(e, Posted)] == sent
    finally:
        await run.stop()
