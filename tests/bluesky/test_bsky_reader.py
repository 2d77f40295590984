"""The firehose reader on recorded-shape frames (no network): what is decoded,
what becomes an event, the cursor committed with its events, consent followed on
profile updates, hostile records costing one rejection."""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp
import libipld
import pytest
from aiohttp import web
from bskyhelp import BOT, DID, PDS, commit_frame, info_frame, post, tagged
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.bluesky.adapter import (
    AUTHORS,
    CURSOR,
    FRAME_TRIES,
    FUTURE_CURSOR_TRIES,
    MAX_AUTHORS,
    BlueskyAdapter,
    Identity,
)
from adapters.bluesky.config import BlueskyAccount, BlueskyChannel
from adapters.bluesky.convert import Profile
from bridge.contract.adapter import ChannelSpec, TransientError
from bridge.contract.model import ChannelKey, Deleted, Edited, Posted, Rejected
from bridge.contract.testing import FakeContext
from bridge.contract.textconv import to_plain

P = "app.bsky.feed.post/"


def make(tags: tuple[str, ...] = ("kmers",), replies: tuple[bool, ...] = ()
         ) -> tuple[BlueskyAdapter, FakeContext]:
    """*replies*: each channel's ``relay_replies_to_bridge`` (default: true)."""
    acct = BlueskyAccount(service=PDS, handle="bot.test", app_password="x",
                          firehose="ws://localhost:1/xrpc/com.atproto.sync.subscribeRepos",
                          plc_directory="http://localhost:2")
    chans = tuple(ChannelSpec(key=ChannelKey(f"c/{i}"), community="c", hashtag=t,
                              direction="both", options=BlueskyChannel(
                                  hashtag=t, relay_replies_to_bridge=not replies or replies[i]))
                  for i, t in enumerate(tags))
    ad = BlueskyAdapter(acct, chans)
    ctx = FakeContext(chans)
    ad._ctx = ctx
    ad.client.did = BOT
    for did in (DID, "did:plc:other"):
        ad._idents[did] = Identity(did=did, handle="alice.test", pds=PDS, profile=Profile(),
                                   expires=time.monotonic() + 3600)
    return ad, ctx


async def test_matching_create_is_posted_with_its_cursor() -> None:
    ad, ctx = make()
    await ad.on_frame(commit_frame(7, DID, [("create", P + "3kaaaaaaaaaa2", tagged("hi #kmers"))]))
    [ev] = ctx.events
    assert isinstance(ev, Posted) and ev.native_id == f"at://{DID}/{P}3kaaaaaaaaaa2"
    assert ctx.cursors[CURSOR] == "7"
    assert DID in ctx.state.rows[AUTHORS]  # a known author now: their deletes are read


async def test_non_matching_commits_are_skipped_without_decoding() -> None:
    ad, ctx = make()
    frames = [commit_frame(1, "did:plc:x", [("create", P + "3kaaaaaaaaaa2", post("cats"))]),
              commit_frame(2, "did:plc:x", [("create", "app.bsky.feed.like/3kaaaaaaaaaa2",
                                             {"$type": "app.bsky.feed.like"})]),
              commit_frame(3, "did:plc:x", [("delete", P + "3kaaaaaaaaaa2", None)]),
              commit_frame(4, "did:plc:x", [("update", P + "3kaaaaaaaaaa2", tagged("#kmers"))])]
    for f in frames:
        await ad.on_frame(f)
    assert ctx.events == [] and ad.decoded == 0 and ad.frames == 4
    assert ctx.cursors[CURSOR] == "1"  # written at most every CURSOR_EVERY seconds
    await ad._flush_cursor(force=True)
    assert ctx.cursors[CURSOR] == "4"


async def test_tag_in_tags_field_only_and_other_case() -> None:
    ad, ctx = make()
    await ad.on_frame(commit_frame(1, DID, [("create", P + "3kaaaaaaaaaa2",
                                             post("hidden tag", tags=["KMERS"]))]))
    assert len(ctx.events) == 1


async def test_known_authors_updates_and_deletes_become_edits_and_deletes() -> None:
    ad, ctx = make()
    u = f"at://{DID}/{P}3kaaaaaaaaaa2"
    await ad.on_frame(commit_frame(1, DID, [("create", P + "3kaaaaaaaaaa2", tagged("a #kmers"))]))
    await ad.on_frame(commit_frame(2, DID, [("update", P + "3kaaaaaaaaaa2",
                                             tagged("b #kmers"))]))
    await ad.on_frame(commit_frame(3, DID, [("delete", P + "3kaaaaaaaaaa2", None)]))
    _, edited, deleted = ctx.events
    assert isinstance(edited, Edited) and edited.native_id == u
    assert edited.edited_at.year == 2026
    assert deleted == Deleted(channel=ChannelKey("c/0"), native_id=u)
    assert ctx.cursors[CURSOR] == "3"


async def test_bridge_own_posts_are_not_read() -> None:
    ad, ctx = make()
    await ad.on_frame(commit_frame(1, BOT, [("create", P + "3kaaaaaaaaaa2", tagged("c #kmers"))]))
    assert ctx.events == []


async def test_reply_to_the_bridge_without_tag_and_commands() -> None:
    ad, ctx = make()
    parent = {"uri": f"at://{BOT}/{P}3kbbbbbbbbbb2", "cid": "bafyreiazzv2mazmfng6eh2dxslbcjfil"}
    rec = post("!join thanks", reply={"root": parent, "parent": parent})
    await ad.on_frame(commit_frame(1, DID, [("create", P + "3kaaaaaaaaaa2", rec)]))
    [ev] = ctx.events
    assert isinstance(ev, Posted) and ev.command == "!join"
    assert ev.reply_to_native == parent["uri"]


@pytest.mark.parametrize(("replies", "to"), [((False, True), "c/1"), ((True, True), "c/0"),
                                             ((False, False), "c/0")])
async def test_an_untagged_reply_to_the_bridge_goes_to_one_channel(
        replies: tuple[bool, bool], to: str) -> None:
    """The first channel that relays replies to the bridge takes it (else the first
    reading channel: commands still reach the bridge); ``check --online`` names it."""
    ad, ctx = make(("kmers", "genomes"), replies)
    parent = {"uri": f"at://{BOT}/{P}3kbbbbbbbbbb2", "cid": "bafyreiazzv2mazmfng6eh2dxslbcjfil"}
    await ad.on_frame(commit_frame(1, DID, [("create", P + "3kaaaaaaaaaa2",
                                             post("thanks", reply={"root": parent,
                                                                   "parent": parent}))]))
    assert [e.channel for e in ctx.events] == [to]
    got = ad.addressed_channel()
    assert got is not None and got.key == to


async def test_each_channel_gets_its_own_tag() -> None:
    ad, ctx = make(("kmers", "genomes"))
    await ad.on_frame(commit_frame(1, DID, [("create", P + "3kaaaaaaaaaa2",
                                             tagged("x #genomes", "genomes"))]))
    assert [e.channel for e in ctx.events] == ["c/1"]


async def test_profile_update_on_the_firehose_changes_consent() -> None:
    ad, ctx = make()
    await ad.on_frame(commit_frame(1, DID, [("create", "app.bsky.actor.profile/self",
                                             {"$type": "app.bsky.actor.profile",
                                              "description": "please #nobridge"})]))
    await ad.on_frame(commit_frame(2, DID, [("create", P + "3kaaaaaaaaaa2", tagged("y #kmers"))]))
    [ev] = ctx.events
    assert isinstance(ev, Posted) and ev.author.opted_out


async def test_outdated_cursor_is_said_in_health() -> None:
    ad, ctx = make()
    await ad.on_frame(info_frame("OutdatedCursor"))
    assert "replay window" in ctx.health_detail and "replay window" in ad.gap_note


async def test_a_cursor_in_the_future_is_tried_again_before_reading_live() -> None:
    """A PDS's sequencer can lag the events its firehose just served: a cursor read off
    it a moment ago may be answered FutureCursor.  The same cursor is tried again; only
    when the answer stays (a relay reset) is the cursor dropped to read live."""
    ad, ctx = make()
    ctx.cursors[CURSOR] = "15"
    error = (libipld.encode_dag_cbor({"op": -1}) + libipld.encode_dag_cbor(
        {"error": "FutureCursor", "message": "Cursor in the future."}))
    for _ in range(FUTURE_CURSOR_TRIES - 1):
        with pytest.raises(TransientError, match="trying the same cursor again"):
            await ad.on_frame(error)
        assert ctx.cursors[CURSOR] == "15"
    with pytest.raises(TransientError, match="FutureCursor"):
        await ad.on_frame(error)
    assert ctx.cursors[CURSOR] == ""  # reset: the next connection starts from now


async def test_garbage_frames_cost_nothing_else() -> None:
    ad, ctx = make()
    for junk in (b"", b"\xff\x00", commit_frame(1, DID, [])[:20]):
        await ad.on_frame(junk)
    await ad.on_frame(commit_frame(5, DID, [("create", P + "3kaaaaaaaaaa2", tagged("ok #kmers"))]))
    assert len(ctx.events) == 1


# ---------------------------------------------------------------- hostile records

_json = st.recursive(st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.text(max_size=20),
                     lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c,
                                                                         max_size=4),
                     max_leaves=20)
_offset = st.integers(-5, 60) | st.just(2**31) | st.text(max_size=3) | st.none()
_facet = st.fixed_dictionaries({
    "index": st.fixed_dictionaries({"byteStart": _offset, "byteEnd": _offset}),
    "features": st.lists(st.fixed_dictionaries({
        "$type": st.sampled_from(["app.bsky.richtext.facet#tag", "app.bsky.richtext.facet#link",
                                  "app.bsky.richtext.facet#mention", "x"]),
        "tag": st.text(max_size=10) | _json, "uri": st.text(max_size=30) | _json,
        "did": st.text(max_size=10) | _json}), max_size=3)}) | _json
_record = st.fixed_dictionaries({
    "$type": st.just("app.bsky.feed.post"),
    "text": st.text(max_size=60).map(lambda t: t + " #kmers") | _json,
    "facets": st.lists(_facet, max_size=6) | _json,
    "tags": st.just(["kmers"]),
    "reply": _json, "embed": _json, "langs": _json, "labels": _json, "createdAt": _json})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(record=_record)
async def test_hostile_record_costs_at_most_one_rejection(record: dict[str, Any]) -> None:
    ad, ctx = make()
    await ad.on_frame(commit_frame(1, DID, [("create", P + "3kaaaaaaaaaa2", record)]))
    await ad.on_frame(commit_frame(2, DID, [("create", P + "3kcccccccccc2", tagged("ok #kmers"))]))
    assert len(ctx.events) in (1, 2)
    assert isinstance(ctx.events[-1], Posted) and ctx.events[-1].native_id.endswith("3kcccccccccc2")
    assert all(isinstance(e, Posted | Rejected) for e in ctx.events)
    assert ctx.cursors[CURSOR] == "2"


@pytest.mark.parametrize("n", [5000, 200_000])
async def test_huge_facet_lists_and_texts_are_one_rejection(n: int) -> None:
    ad, ctx = make()
    rec = post("x #kmers", tags=["kmers"],
               facets=[{"index": {"byteStart": 0, "byteEnd": 1}, "features": []}] * n)
    if n > 100_000:
        rec = tagged("y" * n + " #kmers")
    await ad.on_frame(commit_frame(1, DID, [("create", P + "3kaaaaaaaaaa2", rec)]))
    [ev] = ctx.events
    assert isinstance(ev, Rejected) and "too large" in ev.reason


async def test_invalid_utf8_spans_do_not_break_the_text() -> None:
    ad, ctx = make()
    text = "ñandú 🎉 #kmers"
    facets = [{"index": {"byteStart": s, "byteEnd": e},
               "features": [{"$type": "app.bsky.richtext.facet#link", "uri": "https://x.y"}]}
              for s in range(len(text.encode())) for e in range(s + 1, s + 4)]
    await ad.on_frame(commit_frame(1, DID, [("create", P + "3kaaaaaaaaaa2",
                                             post(text, facets=facets, tags=["kmers"]))]))
    [ev] = ctx.events
    assert isinstance(ev, Posted)
    # every character where it was, none cut: the facets fell on whole characters
    assert to_plain(ev.text, links=False) == text


# ---------------------------------------------------------------- unresolvable authors

async def _plc(status: int) -> tuple[web.AppRunner, str]:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"message": "nope"}, status=status)

    app = web.Application()
    app.router.add_get("/{did}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


def _with_plc(url: str, private: bool = True) -> tuple[BlueskyAdapter, FakeContext]:
    ad, ctx = make()
    acct = ad._acc.model_copy(update={"plc_directory": url,
                                      "allow_private_media_hosts": private})
    ad._acc = acct
    ad._idents.clear()
    return ad, ctx


async def test_an_author_whose_did_is_gone_costs_one_rejection() -> None:
    runner, url = await _plc(404)
    try:
        async with aiohttp.ClientSession() as http:
            ad, ctx = _with_plc(url)
            ctx._http = http
            await ad.on_frame(commit_frame(1, "did:plc:gone", [
                ("create", P + "3kaaaaaaaaaa2", tagged("x #kmers"))]))
            ad._idents[DID] = Identity(did=DID, handle="a.test", pds=PDS, profile=Profile(),
                                       expires=time.monotonic() + 60)
            await ad.on_frame(commit_frame(2, DID, [("create", P + "3kbbbbbbbbbb2",
                                                     tagged("y #kmers"))]))
    finally:
        await runner.cleanup()
    bad, good = ctx.events
    assert isinstance(bad, Rejected) and "did:plc:gone" in bad.native_id
    assert isinstance(good, Posted) and ctx.cursors[CURSOR] == "2"


async def test_a_directory_that_keeps_failing_is_retried_then_rejected() -> None:
    runner, url = await _plc(503)
    frame = commit_frame(9, "did:plc:slow", [("create", P + "3kaaaaaaaaaa2", tagged("x #kmers"))])
    try:
        async with aiohttp.ClientSession() as http:
            ad, ctx = _with_plc(url)
            ctx._http = http
            for _ in range(FRAME_TRIES - 1):  # each time the firehose reconnects and re-reads
                with pytest.raises(TransientError):
                    await ad.on_frame(frame)
                assert ctx.events == [] and CURSOR not in ctx.cursors
            await ad.on_frame(frame)
    finally:
        await runner.cleanup()
    [ev] = ctx.events
    assert isinstance(ev, Rejected) and ctx.cursors[CURSOR] == "9"


async def test_did_web_on_a_private_address_is_not_fetched() -> None:
    async with aiohttp.ClientSession() as http:
        ad, ctx = _with_plc("https://plc.invalid", private=False)
        ctx._http = http
        await ad.on_frame(commit_frame(1, "did:web:127.0.0.1", [
            ("create", P + "3kaaaaaaaaaa2", tagged("x #kmers"))]))
    [ev] = ctx.events
    assert isinstance(ev, Rejected) and "127.0.0.1" in ev.reason


_op = st.fixed_dictionaries({"action": st.sampled_from(["create", "update", "delete"]) | _json,
                             "path": st.sampled_from([P + "3kaaaaaaaaaa2",
                                                      "app.bsky.actor.profile/self"]) | _json,
                             "cid": _json | st.binary(max_size=40)}) | _json


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(_op, max_size=4) | _json, repo=st.just(DID) | _json,
       blocks=st.binary(max_size=64) | _json, seq=st.integers(1, 10) | _json)
async def test_hostile_commit_bodies_cost_at_most_one_rejection(ops: Any, repo: Any,
                                                                blocks: Any, seq: Any) -> None:
    ad, ctx = make()
    ad._authors[DID] = None
    body = {"ops": ops, "repo": repo, "blocks": blocks, "seq": seq, "time": "x"}
    await ad.on_frame(libipld.encode_dag_cbor({"t": "#commit", "op": 1})
                      + libipld.encode_dag_cbor(body))
    await ad.on_frame(commit_frame(20, DID, [("create", P + "3kcccccccccc2",
                                              tagged("ok #kmers"))]))
    assert isinstance(ctx.events[-1], Posted)
    assert sum(isinstance(e, Rejected) for e in ctx.events) <= 1
    assert ctx.cursors[CURSOR] == "20"


async def test_known_authors_live_in_account_state_and_an_old_cursor_list_moves_there(
        monkeypatch: pytest.MonkeyPatch) -> None:
    ad, ctx = make()
    # an earlier version kept the known authors as one cursor holding a JSON list
    ctx.cursors[AUTHORS] = json.dumps(["did:plc:gone", DID])
    await ad._load_authors()
    assert list(ctx.state.rows[AUTHORS]) == ["did:plc:gone", DID]
    assert not ctx.cursors[AUTHORS], "the old cursor list is moved, not kept twice"
    # known: the author's delete is read (unknown authors' deletes are skipped)
    await ad.on_frame(commit_frame(9, DID, [("delete", P + "3kaaaaaaaaaa2", None)]))
    assert [type(e) for e in ctx.events] == [Deleted]
    # a restart reads them back from the state alone
    again, ctx2 = make()
    ctx2.state = ctx.state
    await again._load_authors()
    assert list(again._authors) == ["did:plc:gone", DID]
    # the oldest are forgotten, in the state too, past MAX_AUTHORS
    monkeypatch.setattr("adapters.bluesky.adapter.MAX_AUTHORS", 2)
    await again._remember("did:plc:other")
    assert list(ctx.state.rows[AUTHORS]) == [DID, "did:plc:other"]
    assert MAX_AUTHORS > 2


async def test_unreadable_old_author_list_is_dropped_with_a_warning() -> None:
    ad, ctx = make()
    ctx.cursors[AUTHORS] = "{not json"
    await ad._load_authors()
    assert ad._authors == {} and not ctx.cursors[AUTHORS]
