"""The adapter against a real Synapse: both directions, with a FakeContext."""

from __future__ import annotations

import asyncio
from pathlib import Path

from mxhelp import (
    Hs,
    Room,
    bot_account,
    create_op,
    delete_op,
    edit_op,
    room_events,
    start_adapter,
)

from bridge.contract.model import Deleted, Edited, Posted
from bridge.contract.textconv import to_plain


async def test_inbound_post_reply_edit_delete(synapse: Hs, room: Room, tmp_path: Path) -> None:
    run = await start_adapter(bot_account(synapse), room.room_id, tmp_path)
    try:
        a = await room.alice.room_send(room.room_id, "m.room.message",
                                       {"msgtype": "m.text", "body": "hello *world*",
                                        "format": "org.matrix.custom.html",
                                        "formatted_body": "hello <em>world</em>"})
        b = await room.bob.room_send(room.room_id, "m.room.message", {
            "msgtype": "m.text", "body": "> <@alice:test.local> hello\n\nagreed",
            "format": "org.matrix.custom.html",
            "formatted_body": "<mx-reply><blockquote>hello</blockquote></mx-reply>agreed",
            "m.relates_to": {"m.in_reply_to": {"event_id": a.event_id}}})
        await room.alice.room_send(room.room_id, "m.room.message", {
            "msgtype": "m.text", "body": "* hello world!",
            "m.new_content": {"msgtype": "m.text", "body": "hello world!"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": a.event_id}})
        # bob may not edit alice's message: must not be relayed
        await room.bob.room_send(room.room_id, "m.room.message", {
            "msgtype": "m.text", "body": "* hijack",
            "m.new_content": {"msgtype": "m.text", "body": "hijack"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": a.event_id}})
        await room.alice.room_send(room.room_id, "m.room.message",
                                   {"msgtype": "m.notice", "body": "a bot notice"})
        await room.bob.room_redact(room.room_id, b.event_id, reason="oops")
        evs = await run.ctx.wait_for(4)
        await asyncio.sleep(0.5)
        evs = run.ctx.events
        assert [type(e) for e in evs] == [Posted, Posted, Edited, Deleted]
        p1, p2, ed, de = evs
        assert isinstance(p1, Posted) and isinstance(p2, Posted)
        assert p1.native_id == a.event_id and p1.author.handle == "@alice:test.local"
        assert to_plain(p1.text) == "hello world"
        assert p1.permalink.startswith("https://matrix.to/#/")
        assert p2.reply_to_native == a.event_id and to_plain(p2.text) == "agreed"
        assert isinstance(ed, Edited) and to_plain(ed.text) == "hello world!"
        assert isinstance(de, Deleted) and de.native_id == b.event_id
        assert run.ctx.cursors["next_batch"]
    finally:
        await run.stop()


async def test_outbound_post_reply_edit_delete(synapse: Hs, room: Room, tmp_path: Path) -> None:
    run = await start_adapter(bot_account(synapse), room.room_id, tmp_path)
    try:
        ad = run.adapter
        first = await ad.send(create_op("from <b>mastodon</b> @room"))
        assert first.native_id and first.permalink.endswith(first.native_id)
        reply = await ad.send(create_op("a reply", reply_to=first.native_id))
        notice = await ad.send(create_op("bridge notice", notice=True))
        await ad.send(edit_op(first.native_id, "edited text"))
        await ad.send(delete_op(reply.native_id))
        evs = await room_events(synapse, room.room_id, room.alice.access_token)
        by_id = {e["event_id"]: e for e in evs}
        c1 = by_id[first.native_id]["content"]
        assert c1["msgtype"] == "m.text" and c1["m.mentions"] == {}
        assert "<b>" not in c1.get("formatted_body", "") and "&lt;b&gt;" in c1["formatted_body"]
        assert by_id[notice.native_id]["content"]["msgtype"] == "m.notice"
        assert by_id[reply.native_id]["content"] == {}  # redacted
        edits = [e for e in evs if e["content"].get("m.relates_to", {}).get("rel_type")
                 == "m.replace"]
        assert len(edits) == 1 and edits[0]["content"]["m.new_content"]["body"] == "edited text"
        redactions = [e for e in evs if e["type"] == "m.room.redaction"]
        assert len(redactions) == 1
        # nothing the bridge sent came back as an inbound event
        await asyncio.sleep(0.5)
        assert run.ctx.events == []
    finally:
        await run.stop()


async def test_catchup_window_bounds_history_not_live_events(
        synapse: Hs, room: Room, tmp_path: Path) -> None:
    await room.alice.room_send(room.room_id, "m.room.message",
                               {"msgtype": "m.text", "body": "old history"})
    run = await start_adapter(bot_account(synapse), room.room_id, tmp_path, catchup_window=0)
    try:
        live = await room.alice.room_send(room.room_id, "m.room.message",
                                          {"msgtype": "m.text", "body": "live"})
        await run.ctx.wait_for(1)
        await asyncio.sleep(0.5)
        assert [e.native_id for e in run.ctx.events] == [live.event_id]
    finally:
        await run.stop()
