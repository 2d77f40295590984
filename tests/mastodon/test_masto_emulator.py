"""The emulator against the real thing: the OpenAPI spec, the recorded bodies,
and Mastodon.py itself as the client."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import aiohttp
import pytest
from mastodon import (
    MastodonAPIError,
    MastodonNotFoundError,
    MastodonRatelimitError,
    MastodonServerError,
    MastodonUnauthorizedError,
    StreamListener,
)
from mastohelp import client, key_types, recorded_bodies
from openapi_core.testing import MockRequest, MockResponse

from adapters.mastodon.emulator.server import MastodonEmulator
from adapters.mastodon.emulator.state import Limits

AUTH = {"Authorization": "Bearer bridge-token"}


async def exchange(emu: MastodonEmulator, method: str, path: str, **kw: Any
                   ) -> tuple[int, dict[str, str], Any]:
    async with aiohttp.ClientSession() as http, \
            http.request(method, emu.url + path, **kw) as resp:
        body = await resp.read()
        try:
            data = json.loads(body)
        except ValueError:
            data = body.decode()
        return resp.status, dict(resp.headers), data


def validate(openapi: Any, method: str, path: str, status: int, headers: dict[str, str],
             body: Any, pattern: str) -> None:
    # Shims for the two documented spec/server mismatches: Mastodon.py's trailing
    # slash on /instance/, and DELETE answering the status with ``text``, no ``content``.
    path = path.split("?")[0].rstrip("/")
    if method == "DELETE" and isinstance(body, dict) and "content" not in body:
        body = {**body, "content": ""}
    req = MockRequest("http://localhost", method.lower(), path, path_pattern=pattern)
    resp = MockResponse(json.dumps(body).encode(), status_code=status,
                        headers={k: v for k, v in headers.items() if k.startswith("X-Rate")})
    openapi.validate_response(req, resp)


async def test_responses_validate_against_openapi_spec(emulator: MastodonEmulator,
                                                       openapi: Any) -> None:
    emu = emulator
    alice = emu.member("alice", note="hello #kmers", fields=[("web", "https://a.example")])
    emu.post("alice", "first #kmers post @kmbridge https://example.org/x")
    cases: list[tuple[str, str, str, dict[str, Any]]] = [
        ("GET", "/api/v1/apps/verify_credentials", "/api/v1/apps/verify_credentials", {}),
        ("GET", "/api/v1/accounts/verify_credentials", "/api/v1/accounts/verify_credentials", {}),
        ("GET", f"/api/v1/accounts/{alice.id}", "/api/v1/accounts/{id}", {}),
        ("GET", "/api/v1/accounts/lookup?acct=alice", "/api/v1/accounts/lookup", {}),
        ("GET", "/api/v1/instance/", "/api/v1/instance", {}),
        ("GET", "/api/v2/instance/", "/api/v2/instance", {}),
        ("GET", "/api/v2/instance", "/api/v2/instance", {}),
        ("GET", "/api/v1/instance/rules", "/api/v1/instance/rules", {}),
        ("POST", "/api/v1/statuses", "/api/v1/statuses",
         {"data": {"status": "relay #kmers", "spoiler_text": "cw", "visibility": "unlisted"}}),
        ("GET", "/api/v1/timelines/tag/kmers?limit=5", "/api/v1/timelines/tag/{hashtag}", {}),
        ("POST", "/api/v1/statuses", "/api/v1/statuses", {"data": {"status": ""}}),  # 422
        ("GET", "/api/v1/statuses/0", "/api/v1/statuses/{id}", {}),  # 404
        ("GET", "/api/v1/notifications?types[]=mention", "/api/v1/notifications", {}),
    ]
    for method, path, pattern, kw in cases:
        status, headers, body = await exchange(emu, method, path, headers=AUTH, **kw)
        if pattern == "/api/v1/notifications":
            assert status == 200 and body and body[0]["type"] == "mention"
        assert "X-RateLimit-Reset" in headers
        validate(openapi, method, path, status, headers, body, pattern)
    own = emu.bridge_statuses()[0].id
    form = aiohttp.FormData()
    form.add_field("file", b"\x89PNG fake", filename="a.png", content_type="image/png")
    form.add_field("description", "a red square")
    for method, path, pattern, kw in [
        ("GET", f"/api/v1/statuses/{own}", "/api/v1/statuses/{id}", {}),
        ("PUT", f"/api/v1/statuses/{own}", "/api/v1/statuses/{id}",
         {"data": {"status": "edited #kmers"}}),
        ("POST", "/api/v2/media", "/api/v2/media", {"data": form}),
        ("DELETE", f"/api/v1/statuses/{own}", "/api/v1/statuses/{id}", {}),
    ]:
        status, headers, body = await exchange(emu, method, path, headers=AUTH, **kw)
        assert status == 200, body
        validate(openapi, method, path, status, headers, body, pattern)
    status, headers, body = await exchange(emu, "GET", "/api/v1/accounts/verify_credentials",
                                           headers={"Authorization": "Bearer nope"})
    assert status == 401 and "WWW-Authenticate" in headers
    validate(openapi, "GET", "/api/v1/accounts/verify_credentials", status, headers, body,
             "/api/v1/accounts/verify_credentials")


@pytest.mark.parametrize(("method", "part", "ours"), [
    ("POST", "/api/v1/statuses", "status"), ("DELETE", "/api/v1/statuses/", "deleted"),
    ("GET", "/api/v1/accounts/verify_credentials", "credentials"),
    ("GET", "/api/v2/instance", "instance"),
])
async def test_golden_shapes_match_recordings(emulator: MastodonEmulator, method: str,
                                              part: str, ours: str) -> None:
    """Every key a real 4.6.4 server sent is there, with the same JSON type
    (null aside: a recorded null says nothing about the type)."""
    recorded = recorded_bodies(method, part)
    assert recorded, f"no recording for {method} {part}"
    st = emulator.state
    status = emulator.post("kmbridge", "hi #kmers")
    mine = {"status": lambda: st.status_json(status),
            "deleted": lambda: st.status_json(status, deleted_form=True),
            "credentials": lambda: st.account_json(emulator.bridge, credentials=True),
            "instance": None}[ours]
    if mine is None:
        _, _, body = await exchange(emulator, "GET", "/api/v2/instance")
    else:
        body = mine()
    for rec in recorded[:3]:
        want, got = key_types(rec), key_types(body)
        if ours == "instance":  # the emulator leaves out branding (icons, vapid...) on purpose
            want = {k: want[k] for k in ("domain", "version", "configuration", "usage")}
        missing = set(want) - set(got)
        assert not missing, missing
        for k, t in want.items():
            if t != "NoneType" and got[k] != "NoneType":
                assert got[k] == t, (k, got[k], t)
    if ours == "deleted":
        assert "content" not in body and body["text"] == "hi #kmers"


async def test_mastodon_py_round_trip(emulator: MastodonEmulator) -> None:
    m = client(emulator)
    run = asyncio.to_thread
    first = await run(m.status_post, "hello #kmers", idempotency_key="delivery-1",
                      visibility="public", spoiler_text="a cw")
    again = await run(m.status_post, "something else", idempotency_key="delivery-1")
    assert again.id == first.id and len(emulator.bridge_statuses()) == 1
    reply = await run(m.status_post, "reply", in_reply_to_id=first.id)
    assert reply.in_reply_to_id == first.id
    edited = await run(m.status_update, first.id, "hello again #kmers")
    assert edited.edited_at is not None and "hello again" in edited.content
    media = await run(m.media_post, b"GIF89a....", mime_type="image/png", description="alt!")
    with_media = await run(m.status_post, "pic", media_ids=[media.id])
    assert with_media.media_attachments[0].description == "alt!"
    deleted = await run(m.status_delete, first.id)
    assert deleted.text == "hello again #kmers"
    with pytest.raises(MastodonNotFoundError):
        await run(m.status, first.id)
    with pytest.raises(MastodonAPIError) as err:
        await run(m.status_post, "x" * 501)
    assert err.value.args[1] == 422 and "500" in err.value.args[3]
    with pytest.raises(MastodonUnauthorizedError):
        await run(client(emulator, "wrong").account_verify_credentials)
    rules = await run(m.instance_rules)
    assert [(r.id, r.text, r.hint) for r in rules] == [
        ("1", "Be kind to each other.", ""),
        ("2", "No spam or advertising.", "Promotional posts are removed.")]
    emulator.state.rules = None  # an instance before 3.4
    with pytest.raises(MastodonNotFoundError):
        await run(m.instance_rules)
    alice = emulator.member("alice")
    with pytest.raises(MastodonAPIError) as err:
        await run(m.status_delete, emulator.post("alice", "mine").id)
    assert err.value.args[1] == 403 and alice.username == "alice"


async def test_url_weight_and_5000_instances() -> None:
    async with MastodonEmulator(max_characters=5000) as big:
        m = client(big)
        await asyncio.to_thread(m.status_post, "y" * 5000)
        with pytest.raises(MastodonAPIError):
            await asyncio.to_thread(m.status_post, "y" * 5001)
    async with MastodonEmulator(max_characters=500) as small:
        m = client(small)
        url = "https://example.org/" + "p" * 200
        # The URL weighs 23, so 477 other characters fit; 478 do not.
        await asyncio.to_thread(m.status_post, "z" * 476 + " " + url)
        with pytest.raises(MastodonAPIError):
            await asyncio.to_thread(m.status_post, "z" * 477 + " " + url)


async def test_tag_timeline_pages_with_link_headers(emulator: MastodonEmulator) -> None:
    ids = [emulator.post("alice", f"n{i} #kmers").id for i in range(7)]
    emulator.post("alice", "private #kmers", visibility="unlisted")
    m = client(emulator)
    page = await asyncio.to_thread(m.timeline_hashtag, "kmers", limit=3)
    assert [s.id for s in page] == ids[::-1][:3]
    older = await asyncio.to_thread(m.fetch_next, page)
    assert [s.id for s in older] == ids[::-1][3:6]
    forward = await asyncio.to_thread(m.timeline_hashtag, "kmers", min_id=ids[1], limit=2)
    assert [s.id for s in forward] == [ids[3], ids[2]]
    newer = await asyncio.to_thread(m.fetch_previous, forward)
    assert [s.id for s in newer] == [ids[5], ids[4]]
    since = await asyncio.to_thread(m.timeline_hashtag, "kmers", since_id=ids[1], limit=2)
    assert [s.id for s in since] == [ids[6], ids[5]]


async def test_rate_limits_and_faults() -> None:
    async with MastodonEmulator(limits=Limits(overall=(6, 60), deletes=(2, 600))) as emu:
        m = client(emu)
        ids = [(await asyncio.to_thread(m.status_post, f"p{i}")).id for i in range(3)]
        assert m.ratelimit_limit == 6 and m.ratelimit_remaining == 3
        await asyncio.to_thread(m.status_delete, ids[0])
        assert m.ratelimit_limit == 2 and m.ratelimit_remaining == 1  # the closest limit
        await asyncio.to_thread(m.status_delete, ids[1])
        with pytest.raises(MastodonRatelimitError):
            await asyncio.to_thread(m.status_delete, ids[2])
        assert m.ratelimit_reset > time.time()
    async with MastodonEmulator() as emu:
        m = client(emu)
        reset = emu.storm(30)
        with pytest.raises(MastodonRatelimitError):
            await asyncio.to_thread(m.status_post, "x")
        assert abs(m.ratelimit_reset - reset) < 2
        emu.state.faults.storm_until = 0
        emu.fail(1)
        with pytest.raises(MastodonServerError):
            await asyncio.to_thread(m.status_post, "x")
        emu.slow(0.3)
        t0 = time.monotonic()
        await asyncio.to_thread(m.status_post, "x")
        assert time.monotonic() - t0 >= 0.3


class _Collect(StreamListener):
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.got = threading.Event()

    def on_update(self, status: Any) -> None:
        self.events.append(("update", status.id))
        self.got.set()

    def on_status_update(self, status: Any) -> None:
        self.events.append(("status.update", status.id))
        self.got.set()

    def on_delete(self, status_id: Any) -> None:
        self.events.append(("delete", str(status_id)))
        self.got.set()


async def test_hashtag_stream_with_mastodon_py(emulator: MastodonEmulator) -> None:
    m, listener = client(emulator), _Collect()
    handle = await asyncio.to_thread(m.stream_hashtag, "kmers", listener, run_async=True)
    try:
        for _ in range(50):
            if emulator.state.subscribers:
                break
            await asyncio.sleep(0.05)
        st = emulator.post("alice", "streamed #KMERS")
        emulator.post("alice", "other tag #cats")
        emulator.edit(st.id, "streamed, edited #kmers")
        emulator.delete(st.id)
        for _ in range(100):
            if len(listener.events) >= 3:
                break
            await asyncio.sleep(0.05)
        assert listener.events == [("update", st.id), ("status.update", st.id),
                                   ("delete", st.id)]
    finally:
        # Close our side first: requests blocks in close() while its reader thread
        # waits on the socket.
        emulator.drop_streams()
        await asyncio.to_thread(handle.close)


async def test_scopes_remote_accounts_and_limits_follow_the_spec(emulator: MastodonEmulator,
                                                                  openapi: Any) -> None:
    """The app's scopes (``/api/v1/apps/verify_credentials``), a limited account, the
    tag timeline's ``local``/``remote`` with an account of another server, and the 403
    a token outside its scopes gets: each answer validates against the spec."""
    emu = emulator
    zoe = emu.post("zoe@remote.example", "from afar #kmers")
    alice = emu.post("alice", "at home #kmers")
    emu.bridge.limited = True
    emu.bridge.scopes = ("profile", "read:statuses", "write:statuses")
    answers = {}
    for path, pattern in [
            ("/api/v1/apps/verify_credentials", "/api/v1/apps/verify_credentials"),
            ("/api/v1/accounts/verify_credentials", "/api/v1/accounts/verify_credentials"),
            ("/api/v1/timelines/tag/kmers", "/api/v1/timelines/tag/{hashtag}"),
            ("/api/v1/timelines/tag/kmers?local=true", "/api/v1/timelines/tag/{hashtag}"),
            ("/api/v1/timelines/tag/kmers?remote=true", "/api/v1/timelines/tag/{hashtag}")]:
        status, headers, body = await exchange(emu, "GET", path, headers=AUTH)
        assert status == 200, body
        validate(openapi, "GET", path, status, headers, body, pattern)
        answers[path] = body
    assert answers["/api/v1/apps/verify_credentials"]["scopes"] == [
        "profile", "read:statuses", "write:statuses"]
    assert answers["/api/v1/accounts/verify_credentials"]["limited"] is True
    assert [s["id"] for s in answers["/api/v1/timelines/tag/kmers"]] == [alice.id, zoe.id]
    assert [s["id"] for s in answers["/api/v1/timelines/tag/kmers?local=true"]] == [alice.id]
    remote = answers["/api/v1/timelines/tag/kmers?remote=true"]
    assert [s["id"] for s in remote] == [zoe.id]
    assert remote[0]["account"]["acct"] == "zoe@remote.example"
    assert "limited" not in answers["/api/v1/timelines/tag/kmers"][0]["account"]
    form = aiohttp.FormData()
    form.add_field("file", b"\x89PNG fake", filename="a.png", content_type="image/png")
    status, _, body = await exchange(emu, "POST", "/api/v2/media", headers=AUTH, data=form)
    assert (status, body) == (403, {"error": "This action is outside the authorized scopes"})
    emu.bridge.scopes = ("write",)
    path = "/api/v1/accounts/verify_credentials"
    status, headers, body = await exchange(emu, "GET", path, headers=AUTH)
    assert status == 403
    validate(openapi, "GET", path, status, headers, body, path)


async def test_local_hashtag_stream_leaves_out_other_servers_and_needs_read(
        emulator: MastodonEmulator) -> None:
    emu = emulator
    async with aiohttp.ClientSession() as http:
        async with http.get(emu.url + "/api/v1/streaming/hashtag/local",
                            params={"tag": "kmers"}, headers=AUTH) as resp:
            assert resp.status == 200
            await resp.content.readline()  # the ":)" that opens it
            emu.post("zoe@remote.example", "from afar #kmers")
            mine = emu.post("alice", "at home #kmers")
            async with asyncio.timeout(5):
                event = await resp.content.readline()
                data = await resp.content.readline()
        assert event == b"event: update\n"
        assert json.loads(data.decode().removeprefix("data: "))["id"] == mine.id
        emu.bridge.scopes = ("write",)
        async with http.get(emu.url + "/api/v1/streaming/hashtag",
                            params={"tag": "kmers"}, headers=AUTH) as resp:
            assert resp.status == 401
            assert await resp.json() == {
                "error": "Access token does not have the required scopes"}
