"""Failures the core must see as values: rate limits (with Synapse's DEFAULT limits),
bad credentials, encrypted rooms."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from mxhelp import Hs, bot_account, create_op, make_room, room_events, start_adapter

from bridge.contract.adapter import AuthError, Health, PermanentError, TransientError
from bridge.contract.services import Services

SOAK = [pytest.mark.soak, pytest.mark.timeout(1800)]   # 200 posts at 0.2/s: about 16 min


@pytest.mark.parametrize("n", [14, pytest.param(200, marks=SOAK)])
async def test_default_rate_limits_burst_arrives_in_order(
        synapse_default_limits: Hs, tmp_path: Path, n: int) -> None:
    """The loop below is what the core's delivery worker does: one attempt per call,
    wait the server's retry time on TransientError.  nio must not sleep by itself."""
    hs = synapse_default_limits
    room = await make_room(hs)
    run = await start_adapter(bot_account(hs), room.room_id, tmp_path)
    limited, slowest_attempt = 0, 0.0
    t0 = time.monotonic()
    try:
        for i in range(n):
            op = create_op(f"burst {i}")
            while True:
                t = time.monotonic()
                try:
                    await run.adapter.send(op)
                    break
                except TransientError as e:
                    limited += 1
                    assert e.retry_after and 0 < e.retry_after < 60
                    slowest_attempt = max(slowest_attempt, time.monotonic() - t)
                    await asyncio.sleep(e.retry_after)
        elapsed = time.monotonic() - t0
        evs = await room_events(hs, room.room_id, room.alice.access_token)
        bodies = [e["content"]["body"] for e in evs if (e["sender"] == run.ctx and False)
                  or e["sender"].startswith("@bridgebot:")]
        assert bodies == [f"burst {i}" for i in range(n)]
        assert limited > 0, "the default limits should have been hit"
        assert slowest_attempt < 5, "an attempt slept inside nio"
        print(f"\n{n} posts under default limits: {elapsed:.1f}s, {limited} rate-limited "
              f"attempts, slowest single attempt {slowest_attempt * 1000:.0f} ms")
    finally:
        await run.stop()
        await room.alice.close()
        await room.bob.close()


async def test_bad_token_marks_bad_credentials(synapse: Hs, tmp_path: Path) -> None:
    room = await make_room(synapse)
    acct = bot_account(synapse, access_token="syt_not_a_real_token")
    with pytest.raises(AuthError):
        await start_adapter(acct, room.room_id, tmp_path)
    await room.alice.close()
    await room.bob.close()


async def test_revoked_token_on_send_is_auth_error(synapse: Hs, tmp_path: Path) -> None:
    synapse.user("shortlived")
    room = await make_room(synapse)
    await asyncio.to_thread(synapse.server.request, "POST",
                            f"/_matrix/client/v3/rooms/{room.room_id}/invite",
                            room.alice.access_token, {"user_id": "@shortlived:test.local"})
    acct = bot_account(synapse, access_token="", password="pw-shortlived",
                       user_id="@shortlived:test.local")
    run = await start_adapter(acct, room.room_id, tmp_path)
    try:
        token = run.adapter.session.client.access_token  # type: ignore[union-attr]
        await asyncio.to_thread(synapse.server.request, "POST", "/_matrix/client/v3/logout",
                                token, {})
        with pytest.raises(AuthError):
            await run.adapter.send(create_op("after logout"))
        await asyncio.wait([run.task], timeout=10)   # the sync loop sees it too
        assert run.ctx.health == Health.BAD_CREDENTIALS
        assert isinstance(run.task.exception(), AuthError)
        with pytest.raises(AuthError):               # and sends keep saying so
            await run.adapter.send(create_op("still logged out"))
    finally:
        await run.stop()
        await room.alice.close()
        await room.bob.close()


async def test_encrypted_room_is_refused(synapse: Hs, tmp_path: Path) -> None:
    room = await make_room(synapse, encrypted=True)
    run = await start_adapter(bot_account(synapse), room.room_id, tmp_path)
    try:
        with pytest.raises(PermanentError, match="encrypted"):
            await run.adapter.send(create_op("secret"))
        evs = await room_events(synapse, room.room_id, room.alice.access_token)
        assert not [e for e in evs if e["sender"].startswith("@bridgebot:")]
    finally:
        await run.stop()
        await room.alice.close()
        await room.bob.close()


async def test_send_before_connected_is_transient(synapse: Hs) -> None:
    from adapters.matrix import MatrixFactory
    from adapters.matrix.config import MatrixChannel
    from bridge.contract.adapter import ChannelSpec
    from bridge.contract.model import ChannelKey

    spec = ChannelSpec(key=ChannelKey("kmers/mx"), community="kmers", hashtag="kmers",
                       direction="both", options=MatrixChannel(room="#x:test.local"))
    ad = MatrixFactory().create(bot_account(synapse), (spec,), Services())
    with pytest.raises(TransientError):
        await ad.send(create_op("early"))


async def test_check_online(synapse: Hs) -> None:
    import aiohttp

    from adapters.matrix import MatrixFactory

    f = MatrixFactory()
    async with aiohttp.ClientSession() as http:
        ok = await f.check_online(bot_account(synapse), http, Services())
        assert ok.ok and ok.identity == "@bridgebot:test.local" and not ok.warnings
        bad = await f.check_online(bot_account(synapse, access_token="nope"), http, Services())
        assert not bad.ok and "M_UNKNOWN_TOKEN" in bad.error
        wrong = await f.check_online(bot_account(synapse, user_id="@other:test.local"), http,
                                     Services())
        assert wrong.ok and wrong.warnings


async def test_wrong_password_is_auth_error(synapse: Hs, tmp_path: Path) -> None:
    room = await make_room(synapse)
    acct = bot_account(synapse, access_token="", password="wrong")
    with pytest.raises(AuthError):
        await start_adapter(acct, room.room_id, tmp_path)
    await room.alice.close()
    await room.bob.close()
