"""Edits and deletes made while the stream was not read follow (adapters/mastodon/recheck.py):
the relayed posts of the last 48 h are asked again when the stream (re)connects."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from test_masto_adapter import CH, running

from adapters.mastodon import recheck
from adapters.mastodon.emulator.server import MastodonEmulator
from bridge.contract.model import Deleted, Edited
from bridge.contract.testing import MemoryAccountState
from bridge.contract.textconv import to_plain


async def read_three(emu: MastodonEmulator, cursors: dict[str, str],
                     state: MemoryAccountState) -> list[str]:
    async with running(emu, cursors, state) as env:
        ctx = env.ctx
        ids = [emu.post("alice", f"post {i} #kmers").id for i in range(3)]
        await ctx.wait_for(3, 30)
        assert [e.native_id for e in ctx.events] == ids
    return ids


@pytest.mark.parametrize("version", ["4.6.4", "4.2.10"])
async def test_edits_and_deletes_made_while_stopped_follow_at_the_next_start(
        emulator: MastodonEmulator, version: str) -> None:
    """4.3+ asks twenty ids a call (GET /api/v1/statuses?id[]=); older servers one GET
    each.  The untouched post gives nothing."""
    emulator.state.version = version
    cursors: dict[str, str] = {}
    state = MemoryAccountState()
    async with running(emulator, cursors, state):
        pass  # the first start: cursor at the newest post
    a, b, _ = await read_three(emulator, cursors, state)
    emulator.edit(a, "post 0, edited while away #kmers")
    emulator.delete(b)
    async with running(emulator, cursors, state) as env:
        ctx = env.ctx
        events = await ctx.wait_for(2, 30)
        await asyncio.sleep(0.3)
        assert len(ctx.events) == 2, ctx.events
    by_kind = {type(e): e for e in events}
    assert by_kind[Deleted].native_id == b
    edited = by_kind[Edited]
    assert isinstance(edited, Edited) and edited.native_id == a
    assert "edited while away" in to_plain(edited.text)


async def test_a_dropped_stream_rechecks_and_nothing_is_followed_twice(
        emulator: MastodonEmulator) -> None:
    """An edit made while the stream was down follows when it reconnects; a delete seen
    live is not emitted again by a later re-check."""
    cursors: dict[str, str] = {}
    state = MemoryAccountState()
    async with running(emulator, cursors, state):
        pass
    a, b, _ = await read_three(emulator, cursors, state)
    async with running(emulator, cursors, state) as env:
        adapter, ctx = env.adapter, env.ctx
        emulator.delete(b)  # seen live
        await ctx.wait_for(1, 30)
        assert isinstance(ctx.events[0], Deleted) and ctx.events[0].native_id == b
        assert adapter._recheck is not None
        adapter._recheck._next.clear()  # the 10 s gap between re-checks is not waited here
        emulator.drop_streams(silent=True)  # open, delivering nothing: the edit is missed
        emulator.edit(a, "post 0, edited while the stream was down #kmers")
        emulator.drop_streams()
        await ctx.wait_for(2, 30)
        await asyncio.sleep(0.5)
        kinds = [(type(e).__name__, e.native_id) for e in ctx.events]
        assert kinds.count(("Deleted", b)) == 1, kinds
        assert ("Edited", a) in kinds, kinds


async def test_recheck_is_rate_limited_and_forgets_old_posts(
        emulator: MastodonEmulator) -> None:
    """At most one re-check per MIN_GAP (or five times its own length); posts older
    than 48 h are no longer asked and their rows go."""
    now = [1_000_000.0]
    state = MemoryAccountState()
    r = recheck.Recheck(state, clock=lambda: now[0])
    await r.remember(CH, [("1", ""), ("2", "5.000")])
    assert await r.known(CH) == {"1": "", "2": "5.000"}
    assert r.due(CH)
    r.ran(CH, took=4.0)
    now[0] += recheck.MIN_GAP
    assert not r.due(CH)  # 5 x 4 s = 20 s
    now[0] += 10
    assert r.due(CH)
    now[0] += recheck.WINDOW + 1
    assert await r.known(CH) == {}
    assert await state.items(recheck.NAMESPACE) == []


def test_stamps_agree_between_the_stream_and_the_rest_api() -> None:
    from datetime import UTC, datetime
    assert recheck.stamp("2026-12-07T10:00:00.000Z") == recheck.stamp(
        datetime(2026, 12, 7, 10, 0, tzinfo=UTC)) != ""
    assert recheck.stamp(None) == "" and recheck.version("4.3.0+glitch") == (4, 3, 0)


async def test_the_emulator_serves_many_statuses_as_mastodon_does(
        emulator: MastodonEmulator) -> None:
    """In the order asked, the missing left out; over twenty ids a 422 (Mastodon's
    check_statuses_limit); no such route before 4.3."""
    ids = [emulator.post("alice", f"s{i} #kmers").id for i in range(3)]
    emulator.delete(ids[1])
    async with aiohttp.ClientSession() as http:
        url = f"{emulator.url}/api/v1/statuses"
        async with http.get(url, params=[("id[]", ids[2]), ("id[]", ids[1]),
                                         ("id[]", ids[0])]) as r:
            assert r.status == 200
            assert [s["id"] for s in await r.json()] == [ids[2], ids[0]]
        async with http.get(url, params=[("id[]", str(i)) for i in range(21)]) as r:
            assert r.status == 422
        emulator.state.version = "4.2.10"
        async with http.get(url, params=[("id[]", ids[0])]) as r:
            assert r.status == 404
