"""Hostile input, media, threads and a homeserver outage, against real Synapse."""

from __future__ import annotations

import asyncio
import io
import urllib.error
from pathlib import Path

import aiohttp
from aiohttp import web
from mxhelp import (
    Hs,
    Room,
    bot_account,
    create_op,
    eventually,
    make_room,
    member_client,
    need_synapse,
    rendered,
    room_events,
    start_adapter,
)
from nio import UploadResponse

from adapters.matrix.testserver import SynapseServer
from bridge.contract.adapter import Health, SendCreate, TransientError
from bridge.contract.model import Attachment, Posted
from bridge.contract.textconv import to_plain

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082")


async def test_hostile_events_from_a_raw_client(synapse: Hs, room: Room, tmp_path: Path) -> None:
    run = await start_adapter(bot_account(synapse), room.room_id, tmp_path)
    token = room.alice.access_token
    nasty = [
        {"msgtype": "m.text"},
        {"msgtype": ["x"], "body": 5},
        {"body": {"nested": 1}},
        {"msgtype": "m.text", "body": "x", "m.relates_to": "garbage"},
        {"msgtype": "m.text", "body": "x", "m.relates_to": {"rel_type": "m.replace",
                                                            "event_id": 7}},
        {"msgtype": "m.image", "body": "x", "url": "https://evil.example/a.png"},
        {"msgtype": "org.custom.type", "body": "x", "info": [1, 2]},
        {"msgtype": "m.text", "body": "* x", "m.new_content": 5,
         "m.relates_to": {"rel_type": "m.replace", "event_id": "$nope"}},
        {"msgtype": "m.file", "body": "f", "url": "mxc://x/../../etc", "info": {"size": -1}},
        {"msgtype": "m.text", "body": "@room look \u202egnp.exe\u200b",
         "format": "org.matrix.custom.html",
         "formatted_body": "<script>alert(1)</script><a href='javascript:x()'>@room</a>"
                           + "<b>big</b>" * 5000},
    ]
    try:
        accepted = []
        for i, c in enumerate(nasty):
            try:
                await asyncio.to_thread(
                    synapse.server.request, "PUT",
                    f"/_matrix/client/v3/rooms/{room.room_id}/send/m.room.message/nasty{i}",
                    token, c)
                accepted.append(i)
            except urllib.error.HTTPError as e:
                assert e.code == 400      # the server validated this one itself
        assert len(accepted) >= 6, accepted   # Synapse itself refuses some shapes
        await room.alice.room_send(room.room_id, "m.room.message",
                                   {"msgtype": "m.text", "body": "after the storm"})
        evs = await eventually(lambda: _texts(run.ctx.events, "after the storm"))
        assert not run.task.done() and run.ctx.health == Health.CONNECTED
        relayed = [to_plain(e.text) for e in evs if isinstance(e, Posted)]
        hostile = next(t for t in relayed if "room" in t and "big" in t)
        assert "alert" not in hostile and "javascript" not in hostile
        assert "\u202e" not in hostile and "\u200b" not in hostile
        # outbound: @room and 64 KiB through the server, no ping, no refusal
        r = await run.adapter.send(create_op("@room " + "ping " * 13000))
        ev = next(e for e in await room_events(synapse, room.room_id, token)
                  if e["event_id"] == r.native_id)
        assert ev["content"]["m.mentions"] == {}
    finally:
        await run.stop()


async def _texts(events: list, needle: str) -> list | None:
    return events if any(isinstance(e, Posted) and needle in to_plain(e.text)
                         for e in events) else None


async def test_media_both_directions(synapse: Hs, room: Room, tmp_path: Path) -> None:
    async def cat(_: web.Request) -> web.Response:
        return web.Response(body=PNG, content_type="image/png")

    app = web.Application()
    app.router.add_get("/cat.png", cat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    run = await start_adapter(bot_account(synapse), room.room_id, tmp_path)
    try:
        # inbound: an image from alice becomes an attachment that resolves to its bytes
        up, _ = await room.alice.upload(io.BytesIO(PNG), content_type="image/png",
                                        filename="dot.png", filesize=len(PNG))
        assert isinstance(up, UploadResponse)
        await room.alice.room_send(room.room_id, "m.room.message", {
            "msgtype": "m.image", "body": "dot.png", "url": up.content_uri,
            "info": {"mimetype": "image/png", "size": len(PNG)}})
        (ev,) = await run.ctx.wait_for(1)
        assert isinstance(ev, Posted) and ev.attachments[0].media_type == "image/png"
        async with aiohttp.ClientSession() as http, http.get(
                ev.attachments[0].url,
                headers={"Authorization": f"Bearer {room.bob.access_token}"}) as resp:
            assert resp.status == 200 and await resp.read() == PNG
        # outbound: an attachment is uploaded to the content repository and posted
        from bridge.contract.media import MediaSource
        run.adapter.media.sources.register(["kmers/masto"], lambda: MediaSource(
            hosts=frozenset({f"127.0.0.1:{port}"}), allow_private=True))
        base = create_op("look at this")
        att = Attachment(url=f"http://127.0.0.1:{port}/cat.png", media_type="image/png",
                         alt_text="a cat", filename="cat.png")
        op = SendCreate(**{**{f: getattr(base, f) for f in base.__slots__},
                           "rendered": rendered("look at this").__class__(
                               **{**{f: getattr(rendered("look at this"), f)
                                     for f in rendered("x").__slots__},
                                  "attachments": (att,)})})
        res = await run.adapter.send(op)
        assert len(res.extra_native_ids) == 1
        evs = {e["event_id"]: e for e in await room_events(synapse, room.room_id,
                                                            room.alice.access_token)}
        img = evs[res.extra_native_ids[0]]["content"]
        assert img["msgtype"] == "m.image" and img["url"].startswith("mxc://")
        assert img["info"] == {"mimetype": "image/png", "size": len(PNG)}
        assert evs[res.native_id]["content"]["body"] == "look at this"
    finally:
        await run.stop()
        await runner.cleanup()


async def test_threads_when_the_channel_asks(synapse: Hs, room: Room, tmp_path: Path) -> None:
    run = await start_adapter(bot_account(synapse), room.room_id, tmp_path, threads=True)
    try:
        root = await run.adapter.send(create_op("root"))
        child = await run.adapter.send(create_op("child", reply_to=root.native_id,
                                                 thread_root=root.native_id))
        evs = {e["event_id"]: e for e in await room_events(synapse, room.room_id,
                                                            room.alice.access_token)}
        rel = evs[child.native_id]["content"]["m.relates_to"]
        assert rel["rel_type"] == "m.thread" and rel["event_id"] == root.native_id
        # and a member's thread reply comes in as a reply to the root
        await room.bob.room_send(room.room_id, "m.room.message", {
            "msgtype": "m.text", "body": "in thread", "m.relates_to": {
                "rel_type": "m.thread", "event_id": root.native_id, "is_falling_back": True,
                "m.in_reply_to": {"event_id": child.native_id}}})
        (ev,) = await run.ctx.wait_for(1)
        assert isinstance(ev, Posted) and ev.reply_to_native == root.native_id
    finally:
        await run.stop()


async def test_homeserver_outage_is_transient_and_recovers(tmp_path: Path) -> None:
    need_synapse()
    srv = SynapseServer(tmp_path / "hs")
    srv.spawn()
    await asyncio.to_thread(srv.wait_ready)
    hs = Hs(srv, forwarder=None)  # type: ignore[arg-type]
    try:
        room = await make_room(hs)
        run = await start_adapter(bot_account(hs), room.room_id, tmp_path)
        try:
            await asyncio.to_thread(srv.stop)
            try:
                await run.adapter.send(create_op("while down"))
                raise AssertionError("send while the homeserver is down succeeded")
            except TransientError:
                pass
            await eventually(lambda: _is(run, Health.DISCONNECTED))
            srv.spawn()
            await asyncio.to_thread(srv.wait_ready)
            alice = await member_client(hs, "alice")
            await alice.room_send(room.room_id, "m.room.message",
                                  {"msgtype": "m.text", "body": "back again"})
            await eventually(lambda: _texts(run.ctx.events, "back again"), timeout=90)
            assert run.ctx.health == Health.CONNECTED
            await run.adapter.send(create_op("delivered after the outage"))
            await alice.close()
        finally:
            await run.stop()
            await room.alice.close()
            await room.bob.close()
    finally:
        await asyncio.to_thread(srv.stop)


async def _is(run, health: Health) -> bool:  # type: ignore[no-untyped-def]
    return run.ctx.health == health
