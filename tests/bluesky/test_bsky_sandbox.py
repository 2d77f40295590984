"""The Bluesky sandbox as the conformance kit and the fault suites use it, on its own
real PDS: every request of the bridge's account crosses the fault proxy (also after
login, when the SDK follows the DID document), and what members' posts show (mentions
as pings, images with alt text) is read back from the PDS."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from bskyhelp import account_model

from adapters.bluesky.client import XrpcClient
from adapters.bluesky.sandbox import BlueskySandbox
from adapters.bluesky.testserver import missing_reason, node_binary
from bridge.conformance.faultproxy import FORWARD, HttpRequest, HttpResponse, Mode
from bridge.conformance.faults import Faults
from bridge.contract.adapter import TransientError

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 12


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def own(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BlueskySandbox]:
    """A sandbox with its own PDS (and so its front door), as the kit makes it."""
    if node_binary() is None:
        pytest.skip(missing_reason())
    box = BlueskySandbox(str(tmp_path_factory.mktemp("own")))
    await box.start()
    try:
        yield box
    finally:
        await box.stop()


pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_every_request_of_the_account_crosses_the_fault_proxy(
        own: BlueskySandbox) -> None:
    faults = Faults(own)
    await faults.start()
    client = XrpcClient(account_model(faults.account_config(5.0)))
    try:
        await client.login()
        pds = faults.proxies["pds"]
        seen: list[str] = []

        def count(req: HttpRequest) -> HttpResponse:
            seen.append(req.path)
            return FORWARD

        await pds.set_mode(Mode.ERROR, http=count)
        await client.query("com.atproto.server.getSession")
        assert seen == ["/xrpc/com.atproto.server.getSession"], seen
        # the URL of the account's DID document (where the SDK goes after login, and
        # where the adapter reads authors' profiles and images) leads there too
        assert own.bot is not None
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{own.server.plc_url}/{own.bot.did}") as r:
                doc = await r.json(content_type=None)
            [endpoint] = [s["serviceEndpoint"] for s in doc["service"]]
            async with http.get(f"{endpoint}/xrpc/_health") as r:
                assert r.status == 200
            assert seen[-1] == "/xrpc/_health", "the DID document's URL goes around it"
            await pds.set_mode(Mode.REFUSE)
            with pytest.raises(aiohttp.ClientError):
                async with http.get(f"{endpoint}/xrpc/_health") as r:
                    pass
        with pytest.raises(TransientError):
            await client.query("com.atproto.server.getSession")
        await faults.inject("ratelimit", time.time() + 2)
        with pytest.raises(TransientError) as exc:
            await client.query("com.atproto.server.getSession")
        assert "RateLimitExceeded" in str(exc.value) and exc.value.retry_after
    finally:
        await client.close()
        await faults.stop()
    # the plain account table leads to the PDS again
    again = XrpcClient(account_model(own.account_config()))
    try:
        await again.login()
        await again.query("com.atproto.server.getSession")
    finally:
        await again.close()


async def test_failures_are_the_pds_answers(own: BlueskySandbox) -> None:
    until = time.time() + 2.5
    limited = own.failure("pds", "ratelimit", 1, until)
    assert limited is not None and limited.status == 429
    assert json.loads(limited.body) == {"error": "RateLimitExceeded",
                                        "message": "Rate Limit Exceeded"}
    assert int(limited.headers["RateLimit-Reset"]) == int(until)   # epoch seconds, floored
    assert limited.headers["Retry-After"] == "3"
    assert own.failure("firehose", "ratelimit", 1, until) is None
    first, second = (own.failure("pds", "error", n, until) for n in (1, 2))
    assert first is not None and json.loads(first.body)["error"] == "InternalServerError"
    assert second is not None and second.status == 502


async def test_mentions_are_pings_and_images_keep_their_alt_text(own: BlueskySandbox) -> None:
    bob = await own.member("bob")
    await own.post_as_member("alice", f"hi @{bob.account.handle}")
    img = await own.post_with_media("alice", "look", PNG, "image/png", "a grey gradient")
    cmd = await own.command_as_member("olive", "!join")
    shown = {m.native_id: m for m in await own.messages()}
    pinged = [m for m in shown.values() if m.text.startswith("hi @")]
    assert [m.pings for m in pinged] == [(bob.account.handle,)]
    assert [(a.media_type, a.alt_text) for a in shown[img].media] == [
        ("image/png", "a grey gradient")]
    assert shown[img].pings == ()
    assert cmd not in shown   # untagged: on the network, not in the conversation
