"""``catchup_window`` on Matrix: at a channel's first start the room's recent history
is relayed back to the window (events dated by the homeserver: the appservice's own
user posts with ``?ts=``, as a bridge importing history does); a later start resumes
from the sync token, the window no longer applies."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from mxhelp import AS_TOKEN, Hs, Room, bot_account, start_adapter

from adapters.matrix.testserver import SERVER_NAME
from bridge.contract.model import Posted


async def _as_post(hs: Hs, room_id: str, body: str, at: float,
                   reply_to: str | None = None) -> str:
    """Post as the appservice's own user, dated *at* (Unix seconds)."""
    content: dict[str, Any] = {"msgtype": "m.text", "body": body}
    if reply_to:
        content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
    url = (f"{hs.url}/_matrix/client/v3/rooms/{quote(room_id)}/send/m.room.message/"
           f"{secrets.token_hex(8)}?ts={int(at * 1000)}")
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {AS_TOKEN}"}) as http, \
            http.put(url, json=content) as r:
        body_json = await r.json()
        assert r.status == 200, body_json
        return str(body_json["event_id"])


async def test_catchup_window_relays_history_at_first_start_only(
        synapse: Hs, room: Room, tmp_path: Path) -> None:
    asuser = f"@hbbot:{SERVER_NAME}"
    await room.alice.room_invite(room.room_id, asuser)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {AS_TOKEN}"}) as http, \
            http.post(f"{synapse.url}/_matrix/client/v3/join/{quote(room.room_id)}") as r:
        assert r.status == 200, await r.text()
    now = time.time()
    await _as_post(synapse, room.room_id, "too old to relay", now - 7200)
    q = await _as_post(synapse, room.room_id, "Q1 which tools", now - 1800)
    a = await _as_post(synapse, room.room_id, "A1 a notebook", now - 1200, reply_to=q)
    await _as_post(synapse, room.room_id, "too old, sent late", now - 7200)
    run = await start_adapter(bot_account(synapse), room.room_id, tmp_path)
    try:
        await run.ctx.wait_for(2, timeout=30)
    finally:
        await run.stop()
    posted = [e for e in run.ctx.events if isinstance(e, Posted)]
    assert [e.native_id for e in posted] == [q, a]
    assert posted[1].reply_to_native == q
    # Down for longer than the window: what was said meanwhile is relayed (the
    # window no longer applies), nothing is relayed twice.
    ctx = run.ctx
    down = await _as_post(synapse, room.room_id, "Q2 while the bridge was down", now - 5400)
    run = await start_adapter(bot_account(synapse), room.room_id, tmp_path, ctx=ctx)
    try:
        await ctx.wait_for(3, timeout=30)
    finally:
        await run.stop()
    assert [e.native_id for e in ctx.events if isinstance(e, Posted)] == [q, a, down]
