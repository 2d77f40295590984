"""The adapter with FakeContext against the emulator (Mastodon.py underneath)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from mastohelp import client

from adapters.mastodon.adapter import MastodonAdapter
from adapters.mastodon.config import MastodonAccount, MastodonChannel
from adapters.mastodon.emulator.server import MastodonEmulator
from adapters.mastodon.emulator.state import EmuMedia, snowflake
from bridge.contract.adapter import (
    AuthError,
    ChannelSpec,
    PermanentError,
    Rendered,
    SendCreate,
    SendDelete,
    SendEdit,
    TransientError,
)
from bridge.contract.media import MediaSource, host_entry
from bridge.contract.model import (
    Attachment,
    Author,
    ChannelKey,
    Deleted,
    DeliveryId,
    Edited,
    NativeId,
    Post,
    Posted,
    PostId,
)
from bridge.contract.richtext import RichText
from bridge.contract.services import Services
from bridge.contract.testing import FakeContext, MemoryAccountState
from bridge.contract.textconv import to_plain

CH = ChannelKey("kmers/masto")


@dataclass
class Env:
    emu: MastodonEmulator
    ctx: FakeContext
    adapter: MastodonAdapter
    http: aiohttp.ClientSession

    def spec(self) -> ChannelSpec:
        return self.ctx.channels[0]

    async def settle(self, count: int, timeout: float = 10.0) -> list[Any]:
        return await self.ctx.wait_for(count, timeout)


def make_adapter(emu: MastodonEmulator, *, token: str = "bridge-token",
                 visibility: str = "unlisted", **acc: Any) -> tuple[MastodonAdapter, ChannelSpec]:
    account = MastodonAccount(base_url=emu.url, access_token=token, **{
        "catchup_interval": 30.0, "stream_idle_timeout": 1.0, **acc})
    spec = ChannelSpec(key=CH, community="kmers", hashtag="kmers", direction="both",
                       options=MastodonChannel(hashtag="kmers", visibility=visibility))
    return MastodonAdapter(account, (spec,), name="test"), spec


@contextlib.asynccontextmanager
async def running(emu: MastodonEmulator, ctx_cursors: dict[str, str] | None = None,
                  state: MemoryAccountState | None = None, **acc: Any) -> AsyncIterator[Env]:
    """The adapter live, with the cursors (updated in place at the end) and the account
    state a previous run left."""
    adapter, spec = make_adapter(emu, **acc)
    async with aiohttp.ClientSession() as http:
        ctx = FakeContext([spec], http=http)
        ctx.cursors.update(ctx_cursors or {})
        if state is not None:
            ctx.state = state
        task = asyncio.create_task(adapter.run(ctx))
        try:
            # Streaming and cursor set: the adapter is live.
            async with asyncio.timeout(60):
                while not emu.state.subscribers or f"min_id:{CH}" not in ctx.cursors:
                    if task.done():
                        task.result()
                    await asyncio.sleep(0.02)
            yield Env(emu, ctx, adapter, http)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if ctx_cursors is not None:
                ctx_cursors.update(ctx.cursors)


@pytest.fixture
async def env(emulator: MastodonEmulator) -> AsyncIterator[Env]:
    async with running(emulator) as e:
        yield e


# ---------------------------------------------------------------- inbound

async def test_stream_posts_edits_deletes_cw_media(env: Env) -> None:
    alice = env.emu.member("alice", display_name="Alice")
    media = EmuMedia(id=snowflake(), account_id=alice.id, mime="image/png", data=b"png",
                     description="a cat on a mat")
    env.emu.state.media[media.id] = media
    first = env.emu.post("alice", "Hello #kmers", spoiler_text="food", media_ids=[media.id])
    reply = env.emu.post("alice", "and more #kmers", in_reply_to_id=first.id)
    env.emu.edit(first.id, "Hello, edited #kmers")
    env.emu.delete(reply.id)
    events = await env.settle(4)
    posted, posted2, edited, deleted = events
    assert isinstance(posted, Posted) and posted.native_id == first.id
    assert posted.author.handle == f"@alice@{env.emu.state.domain}"
    assert posted.content_warning == "food" and posted.public
    assert [a.alt_text for a in posted.attachments] == ["a cat on a mat"]
    assert isinstance(posted2, Posted) and posted2.reply_to_native == first.id
    assert isinstance(edited, Edited) and "edited" in to_plain(edited.text)
    assert isinstance(deleted, Deleted) and deleted.native_id == reply.id
    assert env.ctx.cursors[f"min_id:{CH}"] == reply.id


async def test_first_start_skips_history_then_catches_up_from_cursor(
        emulator: MastodonEmulator) -> None:
    old = emulator.post("alice", "history #kmers")
    async with running(emulator) as env:
        await asyncio.sleep(0.3)
        assert env.ctx.events == [] and env.ctx.cursors[f"min_id:{CH}"] == old.id
        cursors = dict(env.ctx.cursors)
    missed = [emulator.post("bob", f"while away {i} #kmers").id for i in range(45)]
    async with running(emulator, cursors) as env:
        await env.settle(45)
        await asyncio.sleep(0.3)
        assert [e.native_id for e in env.ctx.events] == missed  # in order, exactly once


@pytest.mark.parametrize("silent", [True, False])
async def test_stream_drop_mid_burst_loses_nothing(emulator: MastodonEmulator,
                                                   silent: bool) -> None:
    async with running(emulator) as env:
        ids = [emulator.post("alice", f"burst {i} #kmers").id for i in range(5)]
        await env.settle(5)
        emulator.drop_streams(silent=silent)
        ids += [emulator.post("bob", f"burst {i} #kmers").id for i in range(5, 12)]
        if silent:
            # The adapter notices the idle stream (1 s) and reconnects.
            await env.settle(12)
            emulator.state.faults.streams_silent = False
        ids += [emulator.post("carol", f"burst {i} #kmers").id for i in range(12, 15)]
        await env.settle(15)
        await asyncio.sleep(0.5)
        assert [e.native_id for e in env.ctx.events] == ids


async def test_own_and_non_public_posts_are_not_emitted_but_commands_are(env: Env) -> None:
    env.emu.post("kmbridge", "our own copy #kmers")
    env.emu.post("alice", "followers only #kmers", visibility="private")
    env.emu.post("alice", "quiet #kmers", visibility="unlisted")
    env.emu.member("dave", note="#nobot")
    cmd = env.emu.post("dave", "@kmbridge !join #kmers")
    last = env.emu.post("alice", "visible #kmers")
    events = await env.settle(2)
    await asyncio.sleep(0.3)
    assert [e.native_id for e in env.ctx.events] == [cmd.id, last.id]
    first = events[0]
    assert isinstance(first, Posted) and first.command == "!join" and first.author.reluctant


async def test_opted_out_author_is_flagged(env: Env) -> None:
    env.emu.member("erin", discoverable=False)
    env.emu.post("erin", "hi #kmers")
    (ev,) = await env.settle(1)
    assert isinstance(ev, Posted) and ev.author.reluctant == "discoverable: false"


async def test_post_with_nobridge_is_never_emitted(env: Env) -> None:
    env.emu.post("alice", "not for elsewhere #kmers #nobridge")
    last = env.emu.post("alice", "fine #kmers")
    (ev,) = await env.settle(1)
    await asyncio.sleep(0.3)
    assert ev.native_id == last.id and len(env.ctx.events) == 1


# ---------------------------------------------------------------- outbound

def _post(text: str = "hi", attachments: tuple[Attachment, ...] = ()) -> Post:
    return Post(id=PostId("01JPOST"), community="kmers", origin_channel=ChannelKey("kmers/mx"),
                origin_native_id=NativeId("$ev"), permalink="",
                author=Author(platform="matrix", handle="@a:m.org", display_name="A"),
                text=RichText.plain(text), attachments=attachments)


def media_from(env: Env, origin: str = "kmers/mx") -> None:
    """Let posts from *origin* carry media served by the emulator (the guarded
    fetch takes media only from the origin account's hosts)."""
    env.adapter._media.sources.register([origin], lambda: MediaSource(
        hosts=frozenset({host_entry(env.emu.url)}), allow_private=True))


def create(text: str, key: str = "d1:0", *, cw: str = "", reply_to: str | None = None,
           attachments: tuple[Attachment, ...] = ()) -> SendCreate:
    return SendCreate(delivery_id=DeliveryId(key), idempotency_key=key, channel=CH,
                      post=_post(text, attachments),
                      rendered=Rendered(text=RichText.plain(text), plain=text, html="",
                                        markdown="", content_warning=cw,
                                        attachments=attachments),
                      reply_to=NativeId(reply_to) if reply_to else None)


async def test_send_create_reply_edit_delete_cw_media(env: Env) -> None:
    a = env.adapter
    alice = env.emu.member("alice")
    pic = EmuMedia(id=snowflake(), account_id=alice.id, mime="image/png", data=b"\x89PNG",
                   description=None)
    env.emu.state.media[pic.id] = pic
    url = f"{env.emu.url}/system/media_attachments/files/{pic.id}/original/x.png"
    media_from(env)
    first = await a.send(create("A says hi @bob #kmers", cw="spoiler",
                                attachments=(Attachment(url=url, media_type="image/png",
                                                        alt_text="the alt"),)))
    st = env.emu.state.statuses[first.native_id or ""]
    assert st.visibility == "unlisted" and st.spoiler_text == "spoiler"
    assert st.idempotency_key == "d1:0" and "@bob" not in st.text  # neutralised
    assert env.emu.state.media[st.media_ids[0]].description == "the alt"
    assert first.permalink.endswith(st.id)
    second = await a.send(create("reply", "d2:0", reply_to=first.native_id))
    assert env.emu.state.statuses[second.native_id or ""].in_reply_to_id == first.native_id
    await a.send(SendEdit(delivery_id=DeliveryId("d3"), idempotency_key="d3", channel=CH,
                          post=_post(), native_id=NativeId(st.id),
                          rendered=Rendered(text=RichText.plain("x"), plain="edited text",
                                            html="", markdown="")))
    assert st.text == "edited text" and st.edited_at
    await a.send(SendDelete(delivery_id=DeliveryId("d4"), idempotency_key="d4", channel=CH,
                            post=_post(), native_id=NativeId(st.id)))
    assert st.deleted
    # Deleting again (a retry after a lost answer) is a success, not an error.
    await a.send(SendDelete(delivery_id=DeliveryId("d4"), idempotency_key="d4", channel=CH,
                            post=_post(), native_id=NativeId(st.id)))


async def test_idempotency_key_makes_a_retry_return_the_first_status(env: Env) -> None:
    one = await env.adapter.send(create("once", "same-key"))
    two = await env.adapter.send(create("once", "same-key"))
    assert one.native_id == two.native_id and len(env.emu.bridge_statuses()) == 1


async def test_error_mapping(env: Env) -> None:
    a = env.adapter
    reset = env.emu.storm(5)
    with pytest.raises(TransientError) as err:
        await a.send(create("x", "k429"))
    assert err.value.retry_after is not None and abs(err.value.retry_after - 5) < 1.5
    assert env.ctx.rate_limits[-1][0] == 0 and abs((env.ctx.rate_limits[-1][1] or 0) - reset) < 1
    env.emu.state.faults.storm_until = 0
    # only the send's call fails: the adapter's own stream, retrying after the
    # storm, must not take the one 500 first
    env.emu.fail(1, path="/api/v1/statuses")
    with pytest.raises(TransientError):
        await a.send(create("x", "k500"))
    with pytest.raises(PermanentError) as perm:
        await a.send(create("x" * 600, "k422"))
    assert "character limit" in str(perm.value)
    theirs = env.emu.post("alice", "not yours")
    with pytest.raises(AuthError):
        await a.send(SendDelete(delivery_id=DeliveryId("d"), idempotency_key="d", channel=CH,
                                post=_post(), native_id=NativeId(theirs.id)))
    with pytest.raises(PermanentError):
        await a.send(create("x", "kgone", reply_to="999"))


async def test_bad_token_is_auth_error(emulator: MastodonEmulator) -> None:
    adapter, spec = make_adapter(emulator, token="wrong")
    ctx = FakeContext([spec])
    with pytest.raises(AuthError):
        await adapter.run(ctx)


@pytest.mark.parametrize("limit", [500, 5000])
async def test_capabilities_follow_the_instance(limit: int) -> None:
    async with MastodonEmulator(max_characters=limit, characters_reserved_per_url=30) as emu:
        adapter, _ = make_adapter(emu)
        await adapter.send(create("hello", "c1"))
        caps = adapter.capabilities(CH)
        assert caps.max_length == limit and caps.edit and caps.delete and caps.needs_hashtag
        assert caps.count("see https://example.org/" + "x" * 80) == 4 + 30
        with pytest.raises(PermanentError):
            await adapter.send(create("y" * (limit + 1), "c2"))
        await adapter.send(create("y" * limit, "c3"))


async def test_storm_then_every_post_arrives_in_order(env: Env) -> None:
    """What the worker does with TransientError: wait for the reset, try again."""
    env.emu.storm(1.5)
    sent = []
    t0 = time.monotonic()
    for i in range(5):
        while True:
            try:
                sent.append((await env.adapter.send(create(f"m{i}", f"s{i}"))).native_id)
                break
            except TransientError as exc:
                await asyncio.sleep(exc.retry_after or 0.1)
    assert time.monotonic() - t0 >= 1.0
    assert [s.text for s in env.emu.bridge_statuses()] == [f"m{i}" for i in range(5)]


async def test_recorded_sse_bodies_are_consumed_verbatim(emulator: MastodonEmulator) -> None:
    """The real server's stream bytes (heartbeats, update, notification,
    status.update, delete, conversation) through the adapter's SSE reader."""
    from aiohttp import web
    from mastohelp import cassettes

    bodies = [it["response"]["body"]["string"] for it in cassettes()["test_stream_user_direct"]
              if "/streaming/" in it["request"]["uri"]]

    async def replay(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for body in bodies:
            await resp.write(body.encode())
        return resp

    app = web.Application()
    app.router.add_get("/api/v1/streaming/hashtag", replay)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        adapter, spec = make_adapter(emulator, streaming_url=f"http://127.0.0.1:{port}")
        async with aiohttp.ClientSession() as http:
            ctx = FakeContext([spec], http=http)
            ctx.cursors[f"min_id:{CH}"] = "0"
            adapter._ctx = ctx
            adapter._me = {"id": emulator.bridge.id, "acct": "kmbridge"}
            await adapter._stream(spec)
    finally:
        await runner.cleanup()
    kinds = [type(e).__name__ for e in ctx.events]
    assert kinds.count("Posted") >= 1 and "Edited" in kinds and "Deleted" in kinds
    expected = [(ev, data) for b in bodies for ev, data in _sse(b)
                if ev in ("update", "status.update", "delete")]
    public_updates = [d for ev, d in expected if ev == "update"
                      and '"visibility":"public"' in d]
    assert kinds.count("Posted") == len(public_updates)
    assert len(ctx.events) == len(public_updates) + sum(
        1 for ev, _ in expected if ev != "update")


def _sse(body: str) -> list[tuple[str, str]]:
    out, event = [], ""
    for line in body.splitlines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: ") and event:
            out.append((event, line[6:]))
            event = ""
    return out


async def test_check_online_warns_without_bot_flag() -> None:
    from adapters.mastodon import MastodonFactory

    async with MastodonEmulator(bridge_bot=False) as emu, aiohttp.ClientSession() as http:
        factory = MastodonFactory()
        ok = await factory.check_online(
            MastodonAccount(base_url=emu.url, access_token="bridge-token"), http, Services())
        assert ok.ok and "kmbridge" in ok.identity and "4.6.4" in ok.identity
        assert any("bot" in w for w in ok.warnings)
        bad = await factory.check_online(MastodonAccount(base_url=emu.url,
                                                         access_token="nope"), http, Services())
        assert not bad.ok and "AuthError" in bad.error
    async with MastodonEmulator() as emu, aiohttp.ClientSession() as http:
        ok = await MastodonFactory().check_online(
            MastodonAccount(base_url=emu.url, access_token="bridge-token"), http, Services())
        assert ok.ok and ok.warnings == ()


async def test_video_upload_waits_for_processing(env: Env) -> None:
    alice = env.emu.member("alice")
    clip = EmuMedia(id=snowflake(), account_id=alice.id, mime="video/mp4", data=b"mp4",
                    description=None)
    env.emu.state.media[clip.id] = clip
    url = f"{env.emu.url}/system/media_attachments/files/{clip.id}/original/c.mp4"
    media_from(env)
    res = await env.adapter.send(create("clip", "v1", attachments=(
        Attachment(url=url, media_type="video/mp4", alt_text="a short clip"),)))
    st = env.emu.state.statuses[res.native_id or ""]
    uploaded = env.emu.state.media[st.media_ids[0]]
    assert uploaded.mime == "video/mp4" and uploaded.description == "a short clip"
    assert ("GET", f"/api/v1/media/{uploaded.id}") in env.emu.state.requests  # polled


async def test_periodic_sweep_finds_posts_while_the_stream_is_silent(
        emulator: MastodonEmulator) -> None:
    # A long idle timeout: only the sweep can find what the silent stream hides.
    async with running(emulator, stream_idle_timeout=60.0, catchup_interval=0.3) as env:
        emulator.drop_streams(silent=True)
        ids = [emulator.post("alice", f"hidden {i} #kmers").id for i in range(3)]
        await env.settle(3, timeout=5)
        assert [e.native_id for e in env.ctx.events] == ids
        assert len(emulator.state.subscribers) == 1  # no reconnect was needed


# ---------------------------------------------------------------- visibility & bot etiquette

def test_channel_visibility_defaults_to_public_and_accepts_unlisted() -> None:
    assert MastodonChannel(hashtag="kmers").visibility == "public"
    assert MastodonChannel(hashtag="kmers", visibility="unlisted").visibility == "unlisted"
    with pytest.raises(ValueError, match="visibility"):
        MastodonChannel(hashtag="kmers", visibility="private")  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def default_channel(emu: MastodonEmulator) -> AsyncIterator[MastodonAdapter]:
    """An adapter whose channel sets no visibility (the default), running."""
    account = MastodonAccount(base_url=emu.url, access_token="bridge-token",
                              catchup_interval=30.0, stream_idle_timeout=1.0)
    spec = ChannelSpec(key=CH, community="kmers", hashtag="kmers", direction="both",
                       options=MastodonChannel(hashtag="kmers"))
    adapter = MastodonAdapter(account, (spec,), name="test")
    async with aiohttp.ClientSession() as http:
        ctx = FakeContext([spec], http=http)
        task = asyncio.create_task(adapter.run(ctx))
        try:
            async with asyncio.timeout(10):
                while not emu.state.subscribers or f"min_id:{CH}" not in ctx.cursors:
                    if task.done():
                        task.result()
                    await asyncio.sleep(0.02)
            yield adapter
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_default_copies_are_public_and_on_the_tag_timeline(
        emulator: MastodonEmulator) -> None:
    async with default_channel(emulator) as adapter:
        res = await adapter.send(create("Q1 from X #kmers", "v1"))
        st = emulator.state.statuses[res.native_id or ""]
        assert st.visibility == "public"
        # What a member following #kmers reads, through the API.
        m = client(emulator, "token-alice")
        emulator.member("alice")
        tag = await asyncio.to_thread(m.timeline_hashtag, "kmers")
        assert [s.id for s in tag] == [st.id]


async def test_unlisted_copies_stay_off_the_tag_timeline(env: Env) -> None:
    res = await env.adapter.send(create("quiet copy #kmers", "u1"))
    assert env.emu.state.statuses[res.native_id or ""].visibility == "unlisted"
    assert env.emu.state.hashtag_timeline("kmers") == []


async def test_a_reply_is_never_wider_than_its_parent(emulator: MastodonEmulator) -> None:
    emulator.member("alice")
    public_parent = emulator.post("alice", "public #kmers")
    unlisted_parent = emulator.post("alice", "unlisted #kmers", visibility="unlisted")
    own_private = emulator.post("kmbridge", "followers only", visibility="private")
    async with running(emulator) as env:  # the quiet option first: an unlisted copy
        old_copy = (await env.adapter.send(create("old copy #kmers", "o1"))).native_id
        quiet = await env.adapter.send(create("re", "o2", reply_to=public_parent.id))
        # unlisted configured: replying to a public post does not widen it either
        assert env.emu.state.statuses[quiet.native_id or ""].visibility == "unlisted"
    async with default_channel(emulator) as adapter:  # then switched to public
        got = {}
        for key, parent in (("r1", public_parent.id), ("r2", unlisted_parent.id),
                            ("r3", old_copy), ("r4", own_private.id)):
            res = await adapter.send(create("an answer #kmers", key, reply_to=parent))
            st = emulator.state.statuses[res.native_id or ""]
            assert st.in_reply_to_id == parent
            got[key] = st.visibility
        # the public reply's own copy is known without asking again
        n = len(emulator.state.requests)
        fresh = await adapter.send(create("and on", "r5", reply_to=(await adapter.send(
            create("x #kmers", "r6"))).native_id))
        assert emulator.state.statuses[fresh.native_id or ""].visibility == "public"
        assert not any(m == "GET" and p.startswith("/api/v1/statuses/")
                       for m, p in emulator.state.requests[n:])
    assert got == {"r1": "public", "r2": "unlisted", "r3": "unlisted", "r4": "private"}


async def test_a_reply_to_a_vanished_post_is_a_permanent_error(emulator: MastodonEmulator
                                                               ) -> None:
    parent = emulator.post("alice", "soon gone #kmers")
    emulator.delete(parent.id)
    async with default_channel(emulator) as adapter:
        with pytest.raises(PermanentError, match="gone"):
            await adapter.send(create("too late", "g1", reply_to=parent.id))


async def test_check_online_shows_the_instance_rules() -> None:
    from adapters.mastodon import MastodonFactory

    acc = {"access_token": "bridge-token"}
    async with MastodonEmulator() as emu, aiohttp.ClientSession() as http:
        emu.state.rules = [("Be excellent.", ""),
                           ("Bots must post unlisted.", "Automated accounts may not flood "
                                                        "the federated timeline.")]
        res = await MastodonFactory().check_online(
            MastodonAccount(base_url=emu.url, **acc), http, Services())
        assert res.ok
        assert res.notes == (f"instance rules ({emu.url}/about):", "  1. Be excellent.",
                             "  2. Bots must post unlisted. (Automated accounts may not "
                             "flood the federated timeline.)")
        [warning] = res.warnings
        assert "rule 2 " in warning and 'visibility = "unlisted"' in warning
        assert ("GET", "/api/v1/instance/rules") in emu.state.requests
        emu.state.rules = []
        res = await MastodonFactory().check_online(
            MastodonAccount(base_url=emu.url, **acc), http, Services())
        assert res.ok and res.warnings == () and "none published" in res.notes[0]
        emu.state.rules = None  # an instance older than 3.4: no such route
        res = await MastodonFactory().check_online(
            MastodonAccount(base_url=emu.url, **acc), http, Services())
        assert res.ok and "not available" in res.notes[0]


async def test_check_online_says_how_to_set_the_bot_flag() -> None:
    from adapters.mastodon import MastodonFactory

    async with MastodonEmulator(bridge_bot=False) as emu, aiohttp.ClientSession() as http:
        res = await MastodonFactory().check_online(
            MastodonAccount(base_url=emu.url, access_token="bridge-token"), http, Services())
        [warning] = res.warnings
        assert "not flagged as a bot" in warning and "This is an automated account" in warning
        assert "bot=true" in warning


@pytest.mark.parametrize("visibility", ["private", "direct"])
async def test_an_answer_to_a_followers_only_or_direct_post_stays_so_and_reaches_its_author(
        emulator: MastodonEmulator, visibility: str) -> None:
    alice = emulator.member("alice")
    ask = emulator.post("alice", "@kmbridge !join", visibility=visibility)
    async with default_channel(emulator) as adapter:
        res = await adapter.send(create("You are in: your posts with #kmers are relayed.",
                                        "c1", reply_to=ask.id))
    st = emulator.state.statuses[res.native_id or ""]
    assert st.visibility == visibility and st.in_reply_to_id == ask.id
    assert st.text.startswith("@alice You are in")
    assert emulator.state.can_see(st, alice)  # she is mentioned: she reads the answer
    assert not emulator.state.can_see(st, emulator.member("mallory"))
