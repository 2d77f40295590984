"""Outages of the real PDS, through the fault suite's proxy: the PDS names the
proxy's port in its DID documents (where the bridge goes after login) and
listens behind it.  A 5xx storm, a 429 storm with Bluesky's epoch reset, the PDS
gone, and a stalled firehose: every post arrives once, in order, afterwards."""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_bsky_e2e import _n, bridged, connected, on_bsky

from adapters.bluesky.sandbox import BlueskySandbox
from adapters.bluesky.testserver import PdsServer, missing_reason, node_binary
from adapters.matrix.testserver import free_port
from adapters.sandbox import SandboxPlatform
from bridge.conformance.faultproxy import FaultProxy, HttpRequest, HttpResponse, Mode
from bridge.daemon.harness import (
    ChannelDef,
    build_config,
    eventually,
    quiescent,
    running,
    sandbox_channels,
)

FIREHOSE = "/xrpc/com.atproto.sync.subscribeRepos"


@pytest.fixture(scope="module")
def proxied_pds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PdsServer]:
    if node_binary() is None:
        pytest.skip(missing_reason())
    server = PdsServer(tmp_path_factory.mktemp("pds-proxied"), public_port=free_port(),
                       listen_port=free_port())
    server.start()
    yield server
    server.stop()


async def _proxy(name: str, server: PdsServer, port: int, kind: Any) -> FaultProxy:
    listen = int(server.listen_url.rsplit(":", 1)[1])
    proxy = FaultProxy(name, "127.0.0.1", listen, kind=kind)
    proxy.port = port
    await proxy.start()
    return proxy


def _errors(req: HttpRequest) -> HttpResponse:
    if "500" in req.target or int(time.monotonic() * 10) % 2:
        return HttpResponse(500, b'{"error":"InternalServerError",'
                                 b'"message":"Internal Server Error"}')
    return HttpResponse(502, b"<html>Bad Gateway</html>", content_type="text/html")


def _limited(until: float) -> Any:
    def answer(req: HttpRequest) -> HttpResponse:
        return HttpResponse(429, json.dumps({"error": "RateLimitExceeded",
                                             "message": "Rate Limit Exceeded"}).encode(),
                            headers={"ratelimit-limit": "3000", "ratelimit-remaining": "0",
                                     "ratelimit-reset": str(math.ceil(until)),
                                     "ratelimit-policy": "3000;w=300"})
    return answer


@pytest.mark.parametrize("fault", ["5xx", "429", "down"])
async def test_pds_outage_loses_nothing(proxied_pds: PdsServer, tmp_path: Path,
                                        lobby: SandboxPlatform, fault: str) -> None:
    port = int(proxied_pds.url.rsplit(":", 1)[1])
    proxy = await _proxy("pds", proxied_pds, port, "http")
    box = BlueskySandbox(str(tmp_path), server=proxied_pds)
    await box.start()
    try:
        cfg = build_config(tmp_path, [*sandbox_channels(tmp_path, ["lobby"]),
                                      ChannelDef("bsky", "bluesky", box.account_config(),
                                                 box.channel_config())],
                           bridge_options={"retry_max_seconds": 2.0})
        async with running(cfg) as bridge:
            await connected(bridge)
            await lobby.post_as_member("dora", "[f0000] before")
            await eventually(lambda: _n(on_bsky(box), 1))
            until = time.time() + 4
            if fault == "5xx":
                await proxy.set_mode(Mode.ERROR, http=_errors)
            elif fault == "429":
                await proxy.set_mode(Mode.ERROR, http=_limited(until))
            else:
                await proxy.set_mode(Mode.REFUSE)
            for i in range(1, 7):
                await lobby.post_as_member("dora", f"[f{i:04d}] during the outage")
            await asyncio.sleep(max(0.0, until - time.time()))
            rt = bridge.accounts["bsky"]
            assert proxy.stats or fault == "down"
            await proxy.set_mode(Mode.PASS)
            await eventually(lambda: _n(on_bsky(box), 7), timeout=60)
            await quiescent(bridge)

            async def back() -> bool:  # the firehose reconnects too (with its backoff)
                return rt.health.value == "connected"

            await eventually(back, timeout=60)
        texts = [m.text for m in await on_bsky(box)]
        order = [int(re.search(r"\[f(\d{4})\]", t).group(1)) for t in texts]  # type: ignore[union-attr]
        assert order == list(range(7)), texts  # each once, in order
    finally:
        await box.stop()
        await proxy.stop()


async def test_stalled_firehose_catches_up_from_its_cursor(proxied_pds: PdsServer,
                                                           tmp_path: Path,
                                                           lobby: SandboxPlatform) -> None:
    hose = await _proxy("firehose", proxied_pds, free_port(), "tcp")
    pds = await _proxy("pds", proxied_pds, int(proxied_pds.url.rsplit(":", 1)[1]), "http")
    box = BlueskySandbox(str(tmp_path), server=proxied_pds)
    await box.start()
    try:
        table = box.account_config() | {
            "firehose": f"ws://127.0.0.1:{hose.port}{FIREHOSE}", "firehose_idle_timeout": 1.0,
            "request_timeout": 3.0}
        cfg = build_config(tmp_path, [*sandbox_channels(tmp_path, ["lobby"]),
                                      ChannelDef("bsky", "bluesky", table, box.channel_config())])
        async with running(cfg) as bridge:
            await connected(bridge)
            await box.post_as_member("alice", "#kmers [f0000] before")
            await eventually(lambda: _n(bridged(lobby), 1))
            await hose.set_mode(Mode.STALL)  # open, silent: only the idle timeout notices
            for i in range(1, 6):
                await box.post_as_member("alice", f"#kmers [f{i:04d}] while stalled")
            await asyncio.sleep(2.5)
            assert len(await bridged(lobby)) == 1
            await hose.set_mode(Mode.PASS)
            await eventually(lambda: _n(bridged(lobby), 6), timeout=60)
            await quiescent(bridge)
        texts = [m.text for m in await bridged(lobby)]
        order = [int(re.search(r"\[f(\d{4})\]", t).group(1)) for t in texts]  # type: ignore[union-attr]
        assert order == list(range(6)), texts
    finally:
        await box.stop()
        await hose.stop()
        await pds.stop()


async def test_a_post_made_while_a_first_start_reconnects_is_read(
        proxied_pds: PdsServer, tmp_path: Path, lobby: SandboxPlatform) -> None:
    """A first start from now (``catchup_window = 0``) whose firehose connection is
    cut before any frame came: the reconnect resumes from the start's cursor, so a
    post made meanwhile is read (reading live again would lose it)."""
    hose = await _proxy("firehose", proxied_pds, free_port(), "tcp")
    pds = await _proxy("pds", proxied_pds, int(proxied_pds.url.rsplit(":", 1)[1]), "http")
    box = BlueskySandbox(str(tmp_path), server=proxied_pds)
    await box.start()
    try:
        table = box.account_config() | {
            "firehose": f"ws://127.0.0.1:{hose.port}{FIREHOSE}", "request_timeout": 3.0}
        cfg = build_config(tmp_path, [*sandbox_channels(tmp_path, ["lobby"]),
                                      ChannelDef("bsky", "bluesky", table, box.channel_config(),
                                                 {"catchup_window": 0})])
        # The member's account exists before the start: its creation's frames are
        # history, and the post below is quick (no account to create first).
        await box.member("alice")
        async with running(cfg) as bridge:
            await connected(bridge)
            await hose.set_mode(Mode.REFUSE)   # cut before any frame came
            await box.post_as_member("alice", "#kmers [f0000] while the firehose is cut")
            await hose.set_mode(Mode.PASS)
            await eventually(lambda: _n(bridged(lobby), 1), timeout=60)
            await quiescent(bridge)
        texts = [m.text for m in await bridged(lobby)]
        assert len(texts) == 1 and "[f0000]" in texts[0], texts
    finally:
        await box.stop()
        await hose.stop()
        await pds.stop()
