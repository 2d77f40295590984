"""Faults: a restart mid-burst (the firehose cursor catches up; creates are not
repeated), a 429 with its epoch reset, the write-points budget, a silent firehose."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from test_bsky_e2e import _n, bridged, config, connected, on_bsky

from adapters.bluesky.adapter import BlueskyAdapter
from adapters.bluesky.client import (
    APP_PASSWORD_HINT,
    Gone,
    WriteBudget,
    XrpcClient,
    map_error,
)
from adapters.bluesky.config import BlueskyAccount, BlueskyChannel
from adapters.bluesky.sandbox import BlueskySandbox
from adapters.bluesky.testserver import PdsServer, missing_reason, node_binary
from adapters.sandbox import SandboxPlatform
from bridge.contract.adapter import (
    AuthError,
    ChannelSpec,
    Health,
    PermanentError,
    TransientError,
)
from bridge.contract.model import ChannelKey
from bridge.contract.testing import FakeContext
from bridge.daemon.harness import (
    ChannelDef,
    build_config,
    eventually,
    quiescent,
    running,
    sandbox_channels,
)


async def test_restart_mid_burst_both_ways(bsky: BlueskySandbox, lobby: SandboxPlatform,
                                           tmp_path: Path) -> None:
    cfg = config(bsky, tmp_path)
    async with running(cfg) as bridge:
        await connected(bridge)
        for i in range(8):
            await lobby.post_as_member("dora", f"lobby burst {i}")
            await bsky.post_as_member("alice", f"#kmers bsky burst {i}")
        await asyncio.sleep(0.3)  # stop with work in flight
    for i in range(8, 12):  # while the bridge is down: read from the cursor on restart
        await lobby.post_as_member("dora", f"lobby burst {i}")
        await bsky.post_as_member("alice", f"#kmers bsky burst {i}")
    async with running(cfg) as bridge:
        await eventually(lambda: _n(on_bsky(bsky), 12), timeout=60)
        await eventually(lambda: _n(bridged(lobby), 12), timeout=60)
        await quiescent(bridge)
    texts = [m.text for m in await on_bsky(bsky)]
    order = [int(re.search(r"lobby burst (\d+)", t).group(1)) for t in texts]  # type: ignore[union-attr]
    assert order == list(range(12))  # each once, in order
    copies = [m.text for m in await bridged(lobby)]
    for i in range(12):
        assert sum(bool(re.search(rf"bsky burst {i}\b", t)) for t in copies) == 1


async def test_silent_firehose_reconnects_from_its_cursor(bsky: BlueskySandbox,
                                                          lobby: SandboxPlatform,
                                                          tmp_path: Path) -> None:
    box_cfg = bsky.account_config() | {"firehose_idle_timeout": 0.5}
    cfg = build_config(tmp_path, [*sandbox_channels(tmp_path, ["lobby"]),
                                  ChannelDef("bsky", "bluesky", box_cfg, bsky.channel_config())])
    async with running(cfg) as bridge:
        await connected(bridge)
        await asyncio.sleep(1.5)  # silent: reconnected at least twice
        await bsky.post_as_member("alice", "#kmers after the silence")
        await eventually(lambda: _n(bridged(lobby), 1))
        await quiescent(bridge)
    assert len(await bridged(lobby)) == 1


# ---------------------------------------------------------------- error mapping

async def _serve(handler: Any) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


def _jwt() -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return ".".join([part({"alg": "HS256", "typ": "JWT"}),
                     part({"exp": int(time.time()) + 3600, "iat": int(time.time()),
                           "scope": "com.atproto.appPass", "sub": "did:plc:bot"}), "sig"])


def _acct(url: str) -> BlueskyAccount:
    return BlueskyAccount(service=url, handle="bot.test", app_password="abcd-efgh-ijkl-mnop")


@pytest.mark.parametrize(("status", "error", "kind"), [
    (429, "RateLimitExceeded", TransientError), (500, "InternalServerError", TransientError),
    (502, "UpstreamFailure", TransientError), (401, "AuthenticationRequired", AuthError),
    (400, "InvalidRequest", PermanentError), (400, "RecordNotFound", Gone),
    (413, "PayloadTooLarge", PermanentError)])
async def test_xrpc_failures_map_to_the_core_kinds(status: int, error: str, kind: type) -> None:
    reset = int(time.time()) + 120

    async def handler(request: web.Request) -> web.Response:
        if request.path.endswith("createSession"):
            return web.json_response({"did": "did:plc:bot", "handle": "bot.test",
                                      "accessJwt": _jwt(), "refreshJwt": _jwt()})
        return web.json_response({"error": error, "message": "m"}, status=status, headers={
            "ratelimit-limit": "3000", "ratelimit-remaining": "0",
            "ratelimit-reset": str(reset), "ratelimit-policy": "3000;w=300"})

    runner, url = await _serve(handler)
    seen: list[Any] = []
    try:
        c = XrpcClient(_acct(url))
        c.on_rate = lambda *a: seen.append(a)
        await c.login()
        with pytest.raises(kind) as exc:
            await c.procedure("com.atproto.repo.createRecord", {"x": 1})
        await c.close()
    finally:
        await runner.cleanup()
    if status == 429:
        # ratelimit-reset is an epoch time in seconds, not a delta
        assert 110 < (exc.value.retry_after or 0) <= 120
        assert seen[-1] == (0, float(reset), 3000)


async def test_wrong_app_password_is_bad_credentials_with_a_hint() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"error": "AuthenticationRequired",
                                  "message": "Invalid identifier or password"}, status=401)

    runner, url = await _serve(handler)
    try:
        c = XrpcClient(_acct(url))
        with pytest.raises(AuthError) as exc:
            await c.login()
        await c.close()
    finally:
        await runner.cleanup()
    assert APP_PASSWORD_HINT in str(exc.value) and "abcd-efgh" not in str(exc.value)


async def test_server_down_is_transient() -> None:
    c = XrpcClient(_acct("http://127.0.0.1:9"))
    with pytest.raises(TransientError):
        await c.login()
    await c.close()
    assert isinstance(map_error(aiohttp.ClientError("x")), TransientError)


def test_write_budget_holds_creates_within_the_hour_and_day() -> None:
    now = [1_000_000.0]
    b = WriteBudget(clock=lambda: now[0])
    for _ in range(1666):  # 3 points each: 4,998 of 5,000
        assert b.wait_for("create") == 0
        b.spend("create")
    assert b.wait_for("delete") == 0  # 1 point still fits
    wait = b.wait_for("create")
    assert 3599 < wait <= 3600
    now[0] += 3601
    assert b.wait_for("create") == 0
    day = WriteBudget(per_hour=10**9, clock=lambda: now[0])
    for _ in range(35000 // 3):
        day.spend("create")
    assert day.wait_for("create") > 80000


async def test_wrong_app_password_in_the_relay_is_bad_credentials_never_logged(
        bsky: BlueskySandbox, lobby: SandboxPlatform, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    secret = "zq9x-canary-wrong-pass"
    table = bsky.account_config() | {"app_password": secret}
    cfg = build_config(tmp_path, [*sandbox_channels(tmp_path, ["lobby"]),
                                  ChannelDef("bsky", "bluesky", table, bsky.channel_config())])
    caplog.set_level(logging.DEBUG)
    async with running(cfg) as bridge:
        rt = bridge.accounts["bsky"]

        async def refused() -> bool:
            return rt.health == Health.BAD_CREDENTIALS

        await eventually(refused)
        assert "App passwords" in rt.detail
        await lobby.post_as_member("dora", "waits for good credentials")
        await asyncio.sleep(0.5)
    assert secret not in caplog.text
    assert "Invalid identifier or password" in caplog.text or "AuthenticationRequired" in \
        caplog.text


@pytest.fixture(scope="module")
def limited_pds(tmp_path_factory: pytest.TempPathFactory) -> Any:
    if node_binary() is None:
        pytest.skip(missing_reason())
    server = PdsServer(tmp_path_factory.mktemp("pds-limited"), rate_limits=True)
    server.start()
    yield server
    server.stop()


async def test_real_pds_429_resets_at_its_epoch(limited_pds: PdsServer) -> None:
    """The reference PDS with its rate limits on: 30 logins per 5 minutes per
    account; the 31st is a 429 whose ``ratelimit-reset`` is an epoch time."""
    acct = limited_pds.create_account(f"lim-{int(time.time()) % 10000}")
    pw = limited_pds.app_password(acct)
    account = BlueskyAccount(service=limited_pds.url, handle=acct.handle, app_password=pw)
    seen: list[Any] = []
    err: TransientError | None = None
    for _ in range(40):
        c = XrpcClient(account)
        c.on_rate = lambda *a: seen.append(a)
        try:
            await c.login()
        except TransientError as exc:
            err = exc
            break
        finally:
            await c.close()
    assert err is not None and "429" in str(err)
    assert err.retry_after is not None and 0 < err.retry_after <= 300


async def test_lost_answer_then_delete_leaves_no_copy(bsky: BlueskySandbox,
                                                      lobby: SandboxPlatform, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A create reaches the PDS but its answer is lost (a time-out); the post is
    deleted at its origin before the retry.  The copy must not stay on Bluesky."""
    real = BlueskyAdapter._create
    lost: list[str] = []

    async def answer_lost(self: BlueskyAdapter, op: Any) -> Any:
        result = await real(self, op)
        if not lost:
            lost.append(str(result.native_id))
            raise TransientError("read timed out", retry_after=2.0)
        return result

    monkeypatch.setattr(BlueskyAdapter, "_create", answer_lost)
    async with running(config(bsky, tmp_path)) as bridge:
        await connected(bridge)
        first = await lobby.post_as_member("dora", "[f0000] soon deleted")
        await eventually(lambda: asyncio.sleep(0, bool(lost)))
        await lobby.delete_as_member(first)
        await asyncio.sleep(3.0)  # past the retry
        await quiescent(bridge)
    assert [m.text for m in await on_bsky(bsky)] == []


async def test_hung_firehose_is_told_from_a_quiet_one_by_its_missing_pong() -> None:
    """A firehose that accepted the connection then hung (or whose NAT dropped it
    silently) answers no ping: the reader fails within seconds (health disconnected,
    reconnect from the cursor) although the idle timeout, meant for a quiet PDS, is a
    minute.  A quiet PDS that answers pings keeps its connection."""
    async def serve(request: web.Request, answers_pings: bool) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=answers_pings)
        await ws.prepare(request)
        # sends nothing, ever; the quiet one reads (and so answers pings)
        async for _ in ws:
            pass
        return ws

    async def hung(request: web.Request) -> web.WebSocketResponse:
        return await serve(request, False)

    async def quiet(request: web.Request) -> web.WebSocketResponse:
        return await serve(request, True)

    app = web.Application()
    app.router.add_get("/hung/xrpc/com.atproto.sync.subscribeRepos", hung)
    app.router.add_get("/quiet/xrpc/com.atproto.sync.subscribeRepos", quiet)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    ch = ChannelSpec(key=ChannelKey("c/1"), community="c", hashtag="kmers", direction="both",
                     options=BlueskyChannel(hashtag="kmers"))
    try:
        async with aiohttp.ClientSession() as http:
            for path, hangs in (("hung", True), ("quiet", False)):
                acct = BlueskyAccount(
                    service="http://127.0.0.1:1", handle="bot.test", app_password="x",
                    firehose=f"ws://127.0.0.1:{port}/{path}/xrpc/com.atproto.sync.subscribeRepos",
                    request_timeout=1.0, firehose_idle_timeout=60.0)
                ad = BlueskyAdapter(acct, (ch,))
                ad._ctx = FakeContext((ch,), http=http)
                started = time.monotonic()
                if hangs:
                    with pytest.raises(TransientError):
                        await asyncio.wait_for(ad._read_firehose(), 10)
                    assert time.monotonic() - started < 5
                else:
                    with pytest.raises(TimeoutError):   # still reading when we stop it
                        await asyncio.wait_for(ad._read_firehose(), 4)
    finally:
        await runner.cleanup()


async def test_429_waits_for_retry_after_when_the_reset_is_rounded_down() -> None:
    """The PDS's rate limiter sends ``RateLimit-Reset`` rounded down to the second and
    ``Retry-After`` rounded up (xrpc-server's rate-limiter-http): the wait is the later
    of the two, never a retry up to a second early into another 429."""
    left = 1.8
    until = time.time() + left

    async def handler(request: web.Request) -> web.Response:
        if request.path.endswith("createSession"):
            return web.json_response({"did": "did:plc:bot", "handle": "bot.test",
                                      "accessJwt": _jwt(), "refreshJwt": _jwt()})
        return web.json_response(
            {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"}, status=429,
            headers={"RateLimit-Limit": "3000", "RateLimit-Remaining": "0",
                     "RateLimit-Reset": str(math.floor(until)),
                     "RateLimit-Policy": "3000;w=300",
                     "Retry-After": str(math.ceil(until - time.time()))})

    runner, url = await _serve(handler)
    seen: list[Any] = []
    try:
        c = XrpcClient(_acct(url))
        c.on_rate = lambda *a: seen.append(a)
        await c.login()
        asked = time.time()
        with pytest.raises(TransientError) as exc:
            await c.procedure("com.atproto.repo.createRecord", {"x": 1})
        await c.close()
    finally:
        await runner.cleanup()
    assert exc.value.retry_after is not None
    assert asked + exc.value.retry_after >= until - 0.05, (exc.value.retry_after, until - asked)
    remaining, reset_at, limit = seen[-1]
    assert remaining == 0 and limit == 3000 and reset_at >= until - 0.05
