"""Restarts and idempotency against a real Synapse: nothing lost, nothing duplicated,
counted in the room itself."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from mxhelp import Hs, Room, bot_account, create_op, room_events, start_adapter

from bridge.contract.adapter import SendCreate, TransientError
from bridge.contract.model import Posted
from bridge.contract.testing import FakeContext
from bridge.contract.textconv import to_plain


async def _say(room: Room, n: int, prefix: str) -> list[str]:
    ids = []
    for i in range(n):
        r = await room.alice.room_send(room.room_id, "m.room.message",
                                       {"msgtype": "m.text", "body": f"{prefix} {i}"})
        ids.append(r.event_id)
    return ids


async def test_inbound_restart_between_messages_and_after_a_gap(
        synapse: Hs, room: Room, tmp_path: Path) -> None:
    # timeline_limit 5 forces a `limited` sync after the outage: the gap is backfilled
    acct = bot_account(synapse, timeline_limit=5)
    run = await start_adapter(acct, room.room_id, tmp_path)
    ctx = run.ctx
    first = await _say(room, 3, "before")
    await ctx.wait_for(3)
    await run.stop()
    during = await _say(room, 30, "during")        # the bridge is down
    run = await start_adapter(acct, room.room_id, tmp_path, ctx=ctx)
    after = await _say(room, 2, "after")
    try:
        await ctx.wait_for(35)
        await asyncio.sleep(1.0)                   # anything duplicated would show by now
        got = [e.native_id for e in ctx.events if isinstance(e, Posted)]
        assert got == first + during + after
    finally:
        await run.stop()


async def test_inbound_restart_mid_burst_no_loss_no_dup(
        synapse: Hs, room: Room, tmp_path: Path) -> None:
    acct = bot_account(synapse, timeline_limit=10)
    ctx: FakeContext | None = None
    sent: list[str] = []
    burst = asyncio.create_task(_say(room, 60, "burst"))
    for _ in range(4):                             # four restarts while the burst runs
        run = await start_adapter(acct, room.room_id, tmp_path, ctx=ctx)
        ctx = run.ctx
        await asyncio.sleep(0.3)
        await run.stop()
    sent = await burst
    run = await start_adapter(acct, room.room_id, tmp_path, ctx=ctx)
    try:
        assert ctx is not None
        await ctx.wait_for(60, timeout=30)
        await asyncio.sleep(1.0)
        got = [e.native_id for e in ctx.events if isinstance(e, Posted)]
        assert got == sent
        assert [to_plain(e.text) for e in ctx.events if isinstance(e, Posted)] == [
            f"burst {i}" for i in range(60)]
    finally:
        await run.stop()


async def test_retried_send_is_not_duplicated(synapse: Hs, room: Room, tmp_path: Path) -> None:
    run = await start_adapter(bot_account(synapse), room.room_id, tmp_path)
    try:
        op = create_op("only once")
        a = await run.adapter.send(op)
        b = await run.adapter.send(op)
        assert a.native_id == b.native_id
    finally:
        await run.stop()
    # and after a restart of the adapter (same device: same transaction scope)
    run = await start_adapter(bot_account(synapse), room.room_id, tmp_path)
    try:
        c = await run.adapter.send(op)
        assert c.native_id == a.native_id
    finally:
        await run.stop()
    evs = await room_events(synapse, room.room_id, room.alice.access_token)
    assert [e["content"].get("body") for e in evs].count("only once") == 1


async def test_outbound_restart_mid_burst(synapse: Hs, room: Room, tmp_path: Path) -> None:
    """Kill the adapter while sends are in flight; the 'worker' retries every op it has
    no confirmation for with the same idempotency key after a restart, with a password
    login whose saved token keeps the device (and so the transaction scope)."""
    synapse.user("pwbot")
    acct = bot_account(synapse, access_token="", password="pw-pwbot",
                       user_id="@pwbot:test.local")
    await asyncio.to_thread(synapse.server.request, "POST",
                            f"/_matrix/client/v3/rooms/{room.room_id}/invite",
                            room.alice.access_token, {"user_id": "@pwbot:test.local"})
    ops: list[SendCreate] = [create_op(f"out {i}") for i in range(40)]
    done: dict[str, str] = {}
    ctx: FakeContext | None = None
    progress: list[int] = []
    for attempt in range(20):
        run = await start_adapter(acct, room.room_id, tmp_path, ctx=ctx)
        ctx = run.ctx

        async def pump(run=run) -> None:
            for op in ops:
                if op.idempotency_key in done:
                    continue
                with contextlib.suppress(TransientError):
                    r = await run.adapter.send(op)
                    assert r.native_id
                    done[op.idempotency_key] = r.native_id
        task = asyncio.create_task(pump())
        await asyncio.wait([task], timeout=0.25 if attempt < 3 else 30)
        progress.append(len(done))
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await run.stop()
        if len(done) == len(ops):
            break
    assert len(done) == len(ops)
    assert len(progress) > 1 and 0 < progress[0] < len(ops)  # really cut mid-burst
    evs = await room_events(synapse, room.room_id, room.alice.access_token)
    bodies = [e["content"]["body"] for e in evs if e["sender"] == "@pwbot:test.local"]
    assert bodies == [f"out {i}" for i in range(40)]
    assert (tmp_path / "matrix-mx.json").exists()
