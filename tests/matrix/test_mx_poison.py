"""Poison pills from Matrix, bot (sync) and appservice (transactions) modes,
against a real Synapse: an event the bridge cannot read costs that event only.

* sync: the poison and good messages arrive in one sync response; the good ones
  are emitted, the poison as a :class:`~bridge.contract.model.Rejected` with its reason,
  the sync token moves past it, the adapter keeps running and connected;
* appservice: a transaction holding poison among good events is acknowledged
  (200), not answered 500 and retried by the homeserver forever.

One converter is made to raise for one marked message (a unit test of "any
exception", whatever the converters will learn to handle); HTML nested a
thousand deep raises in today's converter (once it flattens nesting, the
message is emitted instead: it must be one or the other); an event over the
spec's 65,536 bytes (only a homeserver can send one: the test plays it) is
rejected as too large.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from mxhelp import Hs, Room, bot_account, start_adapter

from adapters.matrix import convert
from adapters.matrix.adapter import MAX_EVENT_BYTES
from bridge.contract.adapter import Health
from bridge.contract.model import Posted, Rejected, RejectKind

NESTED = "<p>" + "<b>" * 1000 + "deep nesting" + "</b>" * 1000 + "</p>"


@pytest.fixture
def raising_converter(monkeypatch: pytest.MonkeyPatch) -> None:
    """``parse_event`` raises for a message whose body is ``boom``."""
    real = convert.parse_event

    def parse_event(raw: Any, **kw: Any) -> Any:
        content = raw.get("content") if isinstance(raw, dict) else None
        if isinstance(content, dict) and content.get("body") == "boom":
            raise KeyError("a converter bug")
        return real(raw, **kw)

    monkeypatch.setattr(convert, "parse_event", parse_event)


def check(events: list[Any], good: list[str], boom: str, nested: str) -> None:
    posted = [e.native_id for e in events if isinstance(e, Posted)]
    assert [n for n in posted if n in good] == good
    rejected = {e.native_id: e for e in events if isinstance(e, Rejected)}
    assert rejected[boom].reason == "unreadable: KeyError: 'a converter bug'"
    assert (nested in rejected) != (nested in posted)


async def test_sync_page_with_poison_relays_the_rest(synapse: Hs, room: Room, tmp_path: Path,
                                                     raising_converter: None) -> None:
    run = await start_adapter(bot_account(synapse), room.room_id, tmp_path)
    try:
        # Sent while nothing reads: they come back in one sync response.
        ids = []
        for content in ({"msgtype": "m.text", "body": "good one"},
                        {"msgtype": "m.text", "body": "boom"},
                        {"msgtype": "m.text", "body": "nested", "format": convert.HTML_FORMAT,
                         "formatted_body": NESTED},
                        {"msgtype": "m.text", "body": "good two"}):
            r = await room.alice.room_send(room.room_id, "m.room.message", content)
            ids.append(r.event_id)
        events = await run.ctx.wait_for(4, timeout=30)
        check(events, [ids[0], ids[3]], ids[1], ids[2])
        token = run.ctx.cursors["next_batch"]
        # The reader is still there: the next message arrives too.
        later = await room.alice.room_send(room.room_id, "m.room.message",
                                           {"msgtype": "m.text", "body": "after"})
        events = await run.ctx.wait_for(5, timeout=30)
        assert later.event_id in [e.native_id for e in events]
        assert not run.task.done() and run.ctx.health == Health.CONNECTED
        assert run.ctx.cursors["next_batch"] != token
    finally:
        await run.stop()


async def test_appservice_transaction_with_poison_is_acknowledged(
        synapse: Hs, room: Room, tmp_path: Path, raising_converter: None) -> None:
    acct = synapse.appservice_account(sync_timeout_ms=2000)
    await asyncio.to_thread(synapse.server.request, "POST",
                            f"/_matrix/client/v3/rooms/{room.room_id}/invite",
                            room.alice.access_token, {"user_id": acct.user_id})
    run = await start_adapter(acct, room.room_id, tmp_path)
    synapse.forwarder.target = None        # only this test's transactions reach the adapter
    now = int(time.time() * 1000)

    def ev(eid: str, **content: Any) -> dict[str, Any]:
        return {"type": "m.room.message", "room_id": room.room_id, "event_id": eid,
                "sender": "@alice:test.local", "origin_server_ts": now, "content": content}

    events = [ev("$good1", msgtype="m.text", body="good one"),
              ev("$boom", msgtype="m.text", body="boom"),
              ev("$nested", msgtype="m.text", body="nested", format=convert.HTML_FORMAT,
                 formatted_body=NESTED),
              ev("$huge", msgtype="m.text", body="x" * MAX_EVENT_BYTES),
              ev("$good2", msgtype="m.text", body="good two")]
    url = f"http://{acct.as_listen}/_matrix/app/v1/transactions/t-poison"
    try:
        async with aiohttp.ClientSession() as http:
            r = await http.put(url, json={"events": events},
                               headers={"Authorization": f"Bearer {acct.hs_token}"})
            assert r.status == 200, await r.text()
        got = run.ctx.events
        check(got, ["$good1", "$good2"], "$boom", "$nested")
        huge = next(e for e in got if isinstance(e, Rejected) and e.native_id == "$huge")
        assert huge.kind == RejectKind.TOO_LARGE
        assert huge.reason.startswith("too large: ") and \
            huge.reason.endswith(" bytes (Matrix events are at most 65,536)")
        assert run.ctx.cursors["as_txn"] == "t-poison"
        assert not run.task.done()
    finally:
        await run.stop()
