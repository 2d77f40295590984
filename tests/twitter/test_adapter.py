"""The X adapter driven by FakeContext against the emulator, tweepy in between."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from twitter_support import Running, make_create, make_spec

from adapters.twitter import TwitterFactory
from adapters.twitter.adapter import TwitterAdapter
from adapters.twitter.budget import next_cap_reset
from adapters.twitter.config import TwitterAccount
from bridge.contract.adapter import (
    AuthError,
    Health,
    PermanentError,
    SendDelete,
    SendEdit,
    TransientError,
)
from bridge.contract.model import ChannelKey, DeliveryId, NativeId, Posted
from bridge.contract.services import Services
from bridge.contract.testing import FakeContext

CH = ChannelKey("kmers/x")


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0  # 2027-01-15, mid-day UTC

    def __call__(self) -> float:
        return self.now


@contextlib.asynccontextmanager
async def running(x: Running, ctx: FakeContext | None = None, *, clock: Clock | None = None,
                  channels: tuple[Any, ...] | None = None,
                  **account: Any) -> AsyncIterator[tuple[TwitterAdapter, FakeContext]]:
    chans = channels or (make_spec(direction="out"),)
    acct = TwitterAccount(**{k: v for k, v in x.bot.items() if k != "bearer_token"},
                          api_base=x.base, **account)
    adapter = TwitterFactory().create(acct, chans, Services())
    assert isinstance(adapter, TwitterAdapter)
    if clock:
        adapter.clock = adapter.client.clock = clock
    ctx = ctx or FakeContext(chans, name="x")
    ctx.channels = chans
    task = asyncio.create_task(adapter.run(ctx))
    async with asyncio.timeout(60):
        await adapter._ready.wait()
    try:
        yield adapter, ctx
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def bot_posts(x: Running) -> list[Any]:
    st = x.emu.state
    bot = st.user("kmbridge")
    return [t for t in st.tweets.values() if t.author_id == bot.id and not t.deleted]


async def test_inbound_posts_once_each_with_persisted_since_id(xemu: Running) -> None:
    st = xemu.emu.state
    async with running(xemu) as (ad, ctx):
        spec = ad.channels[CH]
        assert await ad.poll_once(spec) == 0  # first run starts now: no backfill
        alice = st.user("alice", "Alice A")
        a = st.create(alice, "hello #kmers @kmbridge see https://example.org/x")
        st.create(st.user("kmbridge"), "#kmers bridged copy")  # our own: not read at all
        st.create(st.user("eve"), "#kmers rt", retweet_of=a.id)
        reads_before = st.reads
        assert await ad.poll_once(spec) == 1
        ev = ctx.events[0]
        assert isinstance(ev, Posted) and ev.native_id == a.id
        assert ev.author.handle == "@alice" and ev.author.display_name == "Alice A"
        assert ev.permalink == f"https://x.com/alice/status/{a.id}"
        assert ctx.cursors[f"since:{CH}"] == a.id
        assert st.reads - reads_before == 1  # own post and repost excluded by the query
        assert await ad.poll_once(spec) == 0
        assert len(ctx.events) == 1
        assert ad.ledger.reads_month == 1 and ad.ledger.usd_month == pytest.approx(0.005)


async def test_each_mode_posts_replies_deletes_and_refuses_edits(xemu: Running) -> None:
    st = xemu.emu.state
    async with running(xemu) as (ad, _ctx):
        r = await ad.send(make_create("Alice (Mastodon): hi all #kmers", "d1"))
        assert r.native_id and st.tweets[r.native_id].text == "Alice (Mastodon): hi all #kmers"
        assert r.permalink.endswith(f"/kmbridge/status/{r.native_id}")
        asked = st.create(st.user("dave"), "@kmbridge is tonight on? #kmers")
        plain = st.create(st.user("carol"), "chatting #kmers")
        r2 = await ad.send(make_create("Bob: yes at 8", "d2", reply_to=asked.id))
        assert st.tweets[r2.native_id].reply_to == asked.id
        r3 = await ad.send(make_create("Bob: nice", "d3", reply_to=plain.id))
        assert st.tweets[r3.native_id].reply_to is None  # X forbids it: standalone
        with pytest.raises(PermanentError, match="cannot be edited"):
            await ad.send(SendEdit(delivery_id=DeliveryId("e"), idempotency_key="e",
                                   channel=CH, post=make_create("x", "e").post,
                                   native_id=NativeId(r.native_id),
                                   rendered=make_create("x", "e").rendered))
        await ad.send(SendDelete(delivery_id=DeliveryId("x"), idempotency_key="x", channel=CH,
                                 post=make_create("x", "x").post, native_id=r.native_id))
        assert st.tweets[r.native_id].deleted
        # deleting again (a retried delete) is not an error
        await ad.send(SendDelete(delivery_id=DeliveryId("x"), idempotency_key="x", channel=CH,
                                 post=make_create("x", "x").post, native_id=r.native_id))
        caps = ad.capabilities(CH)
        assert caps.max_length == 280 and not caps.edit and caps.delete and caps.links_cost
        assert caps.count("漢字") == 4


async def test_reply_rule_learned_from_x_when_unknown(xemu: Running,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    st = xemu.emu.state
    async with running(xemu) as (ad, _):
        plain = st.create(st.user("carol"), "no summons here #kmers")
        ad._summoned[plain.id] = True  # stale belief: X must still have the last word
        with pytest.raises(TransientError, match="standalone"):
            await ad.send(make_create("Bob: hm", "d9", reply_to=plain.id))
        with caplog.at_level(logging.INFO, "hashbridge.adapter.twitter"):
            r = await ad.send(make_create("Bob: hm", "d9", reply_to=plain.id))
        assert st.tweets[r.native_id].reply_to is None
        assert "standalone" in caplog.text


async def test_off_mode_is_read_only(xemu: Running) -> None:
    async with running(xemu, channels=(make_spec(mode="off"),)) as (ad, _):
        with pytest.raises(PermanentError, match="read-only"):
            await ad.send(make_create("nope", "o1"))
        assert bot_posts(xemu) == []


async def test_digest_mode_summarises_newest_first(xemu: Running) -> None:
    spec = make_spec(mode="digest", digest_minutes=60)
    async with running(xemu, channels=(spec,)) as (ad, ctx):
        ids = []
        for i in range(12):
            r = await ad.send(make_create(f"msg {i}", f"g{i}", author=f"user{i}",
                                          channel=CH))
            ids.append(r.native_id)
        assert bot_posts(xemu) == [] and all(i.startswith("digest:") for i in ids)
        await ad.send(SendDelete(delivery_id=DeliveryId("z"), idempotency_key="z", channel=CH,
                                 post=make_create("x", "x").post, native_id=NativeId(ids[3])))
        pid = await ad.flush_digest(CH)
        [post] = bot_posts(xemu)
        assert post.id == pid
        assert post.text.startswith("User11: msg 11\nUser10: msg 10")
        assert "User3:" not in post.text and post.text.endswith("#kmers")
        assert await ad.flush_digest(CH) is None  # nothing new: no post
        assert json.loads(ctx.cursors[f"digest:{CH}"])["items"] == []
        assert ad.capabilities(CH).reply is False


async def test_digest_survives_a_crash_between_marking_and_posting(xemu: Running) -> None:
    spec = make_spec(mode="digest")
    ctx = FakeContext((spec,), name="x")
    async with running(xemu, ctx, channels=(spec,)) as (ad, _):
        for i in range(3):
            await ad.send(make_create(f"m{i}", f"k{i}", channel=CH))
        xemu.emu.slow(1.0, route="/2/tweets")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await ad.flush_digest(CH)  # killed while X is creating the post
    await asyncio.sleep(1.0)
    assert len(bot_posts(xemu)) == 1  # X did create it
    async with running(xemu, ctx, channels=(spec,)) as (ad, _):
        pid = await ad.flush_digest(CH)
        assert pid == bot_posts(xemu)[0].id and len(bot_posts(xemu)) == 1
        assert await ad.flush_digest(CH) is None
        assert json.loads(ctx.cursors["inflight"]) == {}
        # a later reply to one of the digested messages threads under the digest
        r = await ad._reply_target(ad.channels[CH], NativeId("digest:k1"))
        assert r == pid


async def test_budget_burst_stops_posting_keeps_queue_and_says_why(xemu: Running) -> None:
    clock = Clock()
    xemu.emu.state.clock = clock
    queue = [make_create(f"Alice: message {i}", f"b{i}") for i in range(8)]
    async with running(xemu, clock=clock, max_posts_per_day=5) as (ad, ctx):
        refused: list[TransientError] = []
        for op in list(queue):  # the core's worker: one attempt, keep it on transient
            try:
                await ad.send(op)
                queue.remove(op)
            except TransientError as e:
                refused.append(e)
        assert len(bot_posts(xemu)) == 5 and len(queue) == 3
        assert all("budget spent: 5/5 posts today" in str(e) for e in refused)
        assert refused[0].retry_after == pytest.approx(
            86400 - (clock.now % 86400), abs=1)
        assert "budget spent" in ctx.health_detail
        clock.now += refused[0].retry_after or 0
        for op in list(queue):
            await ad.send(op)
            queue.remove(op)
        assert len(bot_posts(xemu)) == 8 and "budget spent" not in ctx.health_detail


async def test_usd_budget_counts_url_posts_at_their_price(xemu: Running) -> None:
    async with running(xemu, max_usd_per_day=0.45) as (ad, ctx):
        await ad.send(make_create("see https://example.org/1", "u1"))
        await ad.send(make_create("see https://example.org/2", "u2"))
        with pytest.raises(TransientError, match=r"budget spent: \$0.400 of \$0.45 today"):
            await ad.send(make_create("see https://example.org/3", "u3"))
        await ad.send(make_create("no link, cheap", "u4"))  # 0.40 + 0.015 fits
        assert json.loads(ctx.cursors["budget"])["posts_today"] == 3


async def test_restart_mid_post_does_not_post_twice(xemu: Running) -> None:
    ctx = FakeContext((make_spec(direction="out"),), name="x")
    op = make_create("Alice: only once please", "r1")
    async with running(xemu, ctx) as (ad, _):
        xemu.emu.slow(0.8, route="/2/tweets")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await ad.send(op)  # the process dies here; X still creates the post
    await asyncio.sleep(0.8)
    assert len(bot_posts(xemu)) == 1
    assert "r1" in json.loads(ctx.cursors["inflight"])
    seen = len(xemu.emu.exchanges)
    async with running(xemu, ctx) as (ad, _):
        r = await ad.send(op)  # the worker retries with the same key
    assert [t.id for t in bot_posts(xemu)] == [r.native_id]
    # found by looking, not by bumping into X's duplicate refusal
    after = xemu.emu.exchanges[seen:]
    assert not any(e["method"] == "POST" and e["path"] == "/2/tweets" for e in after)
    assert json.loads(ctx.cursors["inflight"]) == {}


async def test_duplicate_403_without_a_record_finds_the_copy(xemu: Running) -> None:
    async with running(xemu) as (ad, _):
        first = await ad.send(make_create("Alice: same words", "s1"))
        again = await ad.send(make_create("Alice: same words", "s2"))
        assert again.native_id == first.native_id and len(bot_posts(xemu)) == 1


async def test_restart_mid_burst_reads_nothing_twice(xemu: Running) -> None:
    st = xemu.emu.state
    spec = make_spec()
    ctx = FakeContext((spec,), name="x")
    async with running(xemu, ctx, channels=(spec,)) as (ad, _):
        await ad.poll_once(spec)
        for i in range(150):
            st.create(st.user(f"m{i % 7}"), f"#kmers burst {i}")
        await ad.poll_once(spec)
    reads = st.reads
    for i in range(5):
        st.create(st.user("late"), f"#kmers after restart {i}")
    async with running(xemu, ctx, channels=(spec,)) as (ad, _):
        await ad.poll_once(ad.channels[CH])
        await ad.poll_once(ad.channels[CH])
    ids = [e.native_id for e in ctx.events]
    assert len(ids) == len(set(ids)) == 155
    assert st.reads - reads == 5


async def test_errors_map_to_the_three_kinds(xemu: Running) -> None:
    clock = Clock()
    xemu.emu.state.clock = clock
    async with running(xemu, clock=clock) as (ad, _):
        xemu.emu.fail(503, route="/2/tweets")
        with pytest.raises(TransientError, match="server error 503"):
            await ad.send(make_create("a", "e1"))
        xemu.emu.rate_limit_storm(120, route="/2/tweets")
        with pytest.raises(TransientError) as err:
            await ad.send(make_create("b", "e2"))
        assert err.value.retry_after == pytest.approx(120, abs=2)
        xemu.emu.state.faults.clear()
        xemu.emu.state.read_cap = 0
        with pytest.raises(TransientError, match="usage cap") as err:
            await ad.poll_once(ad.channels[CH])
        # without the app's Bearer token the reset day cannot be asked: next month
        assert err.value.retry_after == pytest.approx(
            datetime(2027, 2, 1, tzinfo=UTC).timestamp() - clock.now, abs=2)
        with pytest.raises(PermanentError, match="too long"):
            await ad._post("e3", "x" * 300, None, 0.0)
    bad = dict(xemu.bot, access_token_secret="wrong")
    acct = TwitterAccount(**{k: v for k, v in bad.items() if k != "bearer_token"},
                          api_base=xemu.base)
    ad2 = TwitterFactory().create(acct, (make_spec(),), Services())
    ctx = FakeContext((make_spec(),), name="x")
    with pytest.raises(AuthError):
        await ad2.run(ctx)
    check = await TwitterFactory().check_online(acct, xemu.session, Services())
    assert not check.ok and "credentials" in check.error


async def test_poll_loop_runs_and_reports_health(xemu: Running) -> None:
    spec = make_spec(poll_seconds=0.05)
    async with running(xemu, channels=(spec,)) as (ad, ctx):
        ad.poll_interval = lambda ch: 0.05  # type: ignore[method-assign]
        await asyncio.sleep(0.1)
        st = xemu.emu.state
        st.create(st.user("alice"), "#kmers live")
        await ctx.wait_for(1, timeout=5)
        assert ctx.health is Health.CONNECTED and "posts today 0/50" in ctx.health_detail


def test_poll_interval_respects_window_and_read_pace() -> None:
    acct = TwitterAccount(consumer_key="a", consumer_secret="b", access_token="c",
                          access_token_secret="d", monthly_read_budget=1000)
    spec = make_spec(poll_seconds=1)
    ad = TwitterAdapter(acct, (spec,))
    assert ad.poll_interval(spec) == pytest.approx(6.0)  # 900 s / (300 * 0.5)
    ad.ledger = ad.ledger.charge(ad.clock(), usd=0, reads=999)
    assert ad.poll_interval(spec) == 900.0


async def test_deleted_on_x_is_found_by_the_recheck_and_propagated(xemu: Running) -> None:
    from bridge.contract.model import Deleted

    clock = Clock()
    st = xemu.emu.state
    st.clock = clock
    spec = make_spec(recheck_after_hours=2)
    async with running(xemu, clock=clock, channels=(spec,)) as (ad, ctx):
        spec = ad.channels[CH]
        await ad.poll_once(spec)
        clock.now += 5
        posts = [st.create(st.user("alice"), f"#kmers number {i}") for i in range(3)]
        await ad.poll_once(spec)
        st.tweets[posts[1].id].deleted = True
        assert await ad.recheck_deletions(spec) == 0  # not due yet: no reads spent
        reads = st.reads
        clock.now += 2 * 3600
        assert await ad.recheck_deletions(spec) == 1
        assert ctx.events[-1] == Deleted(channel=CH, native_id=posts[1].id)
        assert st.reads - reads == 2  # the two live posts were read again, once
        assert await ad.recheck_deletions(spec) == 0
        assert json.loads(ctx.cursors[f"relayed:{CH}"]) == []


async def test_images_are_uploaded_with_alt_text_and_read_back(xemu: Running) -> None:
    from dataclasses import replace

    from aiohttp import web

    from adapters.twitter.convert import parse_page
    from bridge.contract.model import Attachment
    from bridge.contract.textconv import to_plain

    app = web.Application()
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 2048

    async def cat(_: web.Request) -> web.Response:
        return web.Response(body=png, content_type="image/png")

    async def huge(_: web.Request) -> web.Response:
        return web.Response(body=b"\0" * (5 * 2**20 + 10), content_type="image/png")

    app.router.add_get("/cat.png", cat)
    app.router.add_get("/huge.png", huge)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"
    try:
        async with running(xemu) as (ad, _):
            from bridge.contract.media import MediaSource
            ad.media.sources.register(["kmers/masto"], lambda: MediaSource(
                hosts=frozenset({f"127.0.0.1:{port}"}), allow_private=True))
            op = make_create("Alice: look", "m1")
            atts = (Attachment(url=f"{base}/cat.png", media_type="image/png",
                               alt_text="a cat on a keyboard"),
                    Attachment(url=f"{base}/huge.png", media_type="image/png"),
                    Attachment(url=f"{base}/clip.mp4", media_type="video/mp4"))
            op = replace(op, rendered=replace(op.rendered, attachments=atts))
            r = await ad.send(op)
            c = xemu.client()
            page = await c.get_tweet(r.native_id, expansions=["attachments.media_keys",
                                                              "author_id"],
                                     media_fields=["url", "alt_text"],
                                     tweet_fields=["entities", "author_id", "attachments"],
                                     user_auth=True)
        raw = {"data": page.data.data,
               "includes": {k: [o.data for o in v] for k, v in page.includes.items()}}
        [ev] = parse_page(raw, CH).events
        assert [a.alt_text for a in ev.attachments] == ["a cat on a keyboard"]
        # the pic link stands for the image; the one over 5 MB is named instead
        posted = "Alice: look\n\n[image not relayed: too large]"
        assert to_plain(ev.text) == posted
        assert "t.co" in page.data.text
        again = await ad.find_own_copy(posted, since=None)
        assert again == r.native_id  # recognised despite the appended media link
    finally:
        await runner.cleanup()


async def test_edits_on_x_arrive_as_edits_of_the_relayed_post(xemu: Running) -> None:
    from bridge.contract.model import Edited
    from bridge.contract.textconv import to_plain

    st = xemu.emu.state
    spec = make_spec()
    async with running(xemu, channels=(spec,)) as (ad, ctx):
        spec = ad.channels[CH]
        await ad.poll_once(spec)
        a = st.create(st.user("alice"), "#kmers typo here")
        await ad.poll_once(spec)
        st.edit(a.id, "#kmers typo fixed")
        later = st.edit(st.tweets[a.id].history[-1], "#kmers typo fixed twice")
        assert await ad.poll_once(spec) == 1  # search returns the latest version only
        ev = ctx.events[-1]
        assert isinstance(ev, Edited) and ev.native_id == a.id
        assert to_plain(ev.text) == "#kmers typo fixed twice"
        assert later.id != a.id
        # an edit of a post from before the bridge started is relayed as a post
        old = st.create(st.user("bob"), "#kmers before", )
        ctx.cursors[f"emitted:{CH}"] = "[]"
        st.edit(old.id, "#kmers after an edit")
        await ad.poll_once(spec)
        # under its first id, followed by its edit: the core, which may know the
        # post though this reader's list of emitted posts was lost (a stop on a
        # full disk), takes the new text from the edit; else drops it as unchanged
        posted, edited = ctx.events[-2:]
        assert isinstance(posted, Posted) and posted.native_id == old.id
        assert isinstance(edited, Edited) and edited.native_id == old.id
        assert to_plain(edited.text) == to_plain(posted.text) == "#kmers after an edit"


async def test_a_post_edited_before_it_was_read_keeps_its_place_and_its_replies(
        xemu: Running) -> None:
    """A post edited before any search found it (the bridge was down, or busy), with
    a later post and a reply to it, read on one page: it is relayed under its first
    id (the one the reply names), before the posts that came after it."""
    from bridge.contract.textconv import to_plain

    st = xemu.emu.state
    spec = make_spec()
    async with running(xemu, channels=(spec,)) as (ad, ctx):
        spec = ad.channels[CH]
        await ad.poll_once(spec)
        q = st.create(st.user("alice"), "#kmers Q1 tpyo")
        later = st.create(st.user("bob"), "#kmers an unrelated post")
        answer = st.create(st.user("carol"), "#kmers A1", reply_to=q.id)
        st.edit(q.id, "#kmers Q1 typo fixed")  # no await since q was created: unread
        await ad.poll_once(spec)  # (or the adapter's own poll loop read them first)
        got = [e for e in ctx.events if isinstance(e, Posted)
               and e.native_id in (q.id, later.id, answer.id)]
        assert [e.native_id for e in got] == [q.id, later.id, answer.id]
        assert "typo fixed" in to_plain(got[0].text)
        assert got[2].reply_to_native == q.id


def test_recorded_edited_page_marks_the_chain() -> None:
    from twitter_support import LOCAL, load_jsonl

    from adapters.twitter.convert import parse_page

    page = load_jsonl(LOCAL / "edited.jsonl")[0]
    parsed = parse_page(page, CH)
    assert parsed.edits == {"1576994789110992896": ("1576994746135764992",)}


async def test_a_usage_cap_is_waited_out_until_the_projects_reset_day(xemu: Running) -> None:
    clock = Clock()
    xemu.emu.state.clock = clock
    async with running(xemu, clock=clock, channels=(make_spec(),),
                       bearer_token=xemu.bot["bearer_token"]) as (ad, _):
        xemu.emu.state.read_cap, xemu.emu.state.cap_reset_day = 0, 20
        with pytest.raises(TransientError, match="usage cap") as err:
            await ad.poll_once(ad.channels[CH])
    # asked of GET /2/usage/tweets (app-only, not billed), not the 1st of next month
    reset = datetime(2027, 1, 20, tzinfo=UTC).timestamp()
    assert err.value.retry_after == pytest.approx(reset - clock.now, abs=2)


@pytest.mark.parametrize(("now", "day", "reset"), [
    ("2027-01-15T12:00", 20, "2027-01-20"),
    ("2027-01-15T12:00", 15, "2027-02-15"),   # today's midnight has passed
    ("2027-01-31T08:00", 31, "2027-02-28"),   # a short month resets on its last day
    ("2027-12-31T08:00", 5, "2028-01-05"),
    ("2027-01-15T12:00", None, "2027-02-01"),  # unknown: the 1st of next month
])
def test_cap_reset_day(now: str, day: int | None, reset: str) -> None:
    at = datetime.fromisoformat(now).replace(tzinfo=UTC).timestamp()
    assert next_cap_reset(at, day) == datetime.fromisoformat(reset).replace(
        tzinfo=UTC).timestamp()
