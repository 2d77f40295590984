"""Bluesky likes on the real PDS's firehose: a like of the bridge's copy or of an
original it relayed is counted, and taken back with the like's delete; a like
of someone whose profile says #nobridge, or of another post, is not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from test_bsky_e2e import bridged, config, connected, on_bsky

from adapters.bluesky.sandbox import BlueskySandbox
from adapters.sandbox import SandboxPlatform
from bridge.daemon.harness import eventually, running
from bridge.daemon.supervisor import Bridge


async def _counts(bridge: Bridge, post_id: str) -> dict[str, int]:
    got = await bridge.store.run(lambda tx: tx.reaction_counts([post_id]))
    return got.get(post_id, {})


async def _becomes(bridge: Bridge, post_id: str, want: dict[str, int], what: str) -> None:
    async def check() -> bool:
        return await _counts(bridge, post_id) == want
    await eventually(check, timeout=60, what=what)


async def test_likes_counted_and_taken_back(bsky: BlueskySandbox, lobby: SandboxPlatform,
                                            tmp_path: Path) -> None:
    await bsky.set_profile("nora", description="please #nobridge")
    async with running(config(bsky, tmp_path)) as bridge:
        await connected(bridge)
        await lobby.post_as_member("dora", "Q1: like the copy")

        async def copy() -> Any:
            got = await on_bsky(bsky)
            return got[0] if got else None
        ours = await eventually(copy, timeout=60, what="the copy on Bluesky")
        copy_of = (await bridge.store.run(
            lambda tx: tx.native_lookup("kmers/bsky", ours.native_id)))[0]

        original = await bsky.post_as_member("bob", "A1: like the original")
        await eventually(lambda: bridged(lobby), timeout=60, what="bob's post relayed")
        original_of = (await bridge.store.run(
            lambda tx: tx.native_lookup("kmers/bsky", original)))[0]
        other = await bsky.post_as_member("erin", "not tagged, not relayed", tag=False)

        liked = await bsky.like_as_member("alice", ours.native_id)
        await bsky.like_as_member("nora", ours.native_id)  # #nobridge: not counted
        await bsky.like_as_member("carol", original)
        await bsky.like_as_member("alice", other)
        await _becomes(bridge, copy_of, {"bluesky": 1}, "alice's like of the copy")
        await _becomes(bridge, original_of, {"bluesky": 1}, "carol's like of the original")

        await bsky.unlike_as_member("alice", liked)
        await _becomes(bridge, copy_of, {}, "alice's like taken back")
        assert await _counts(bridge, original_of) == {"bluesky": 1}


def _like(subject: str) -> dict[str, Any]:
    return {"$type": "app.bsky.feed.like", "createdAt": "2026-12-07T05:36:53.828Z",
            "subject": {"uri": subject, "cid": "bafyreib"}}


async def test_other_likes_are_skipped_before_decoding() -> None:
    """The firehose carries every like on Bluesky: only those on a copy of ours or
    on a known author's post are decoded (a byte search for the subject's DID)."""
    from bskyhelp import BOT, DID, commit_frame
    from test_bsky_reader import make

    from bridge.contract.model import Reacted

    ad, ctx = make()
    ctx.own.add((ad._reading[0].key, f"at://{BOT}/app.bsky.feed.post/3kcopycopyco2"))
    like = "app.bsky.feed.like/3klikelikeli2"
    await ad.on_frame(commit_frame(1, "did:plc:stranger", [
        ("create", like, _like("at://did:plc:someone/app.bsky.feed.post/3kaaaaaaaaaa2"))]))
    await ad.on_frame(commit_frame(2, "did:plc:stranger", [("delete", like, None)]))
    assert ctx.events == [] and ad.decoded == 0
    # a like of the bridge's copy: decoded and counted, the like remembered
    await ad.on_frame(commit_frame(3, DID, [
        ("create", like, _like(f"at://{BOT}/app.bsky.feed.post/3kcopycopyco2"))]))
    [ev] = ctx.events
    assert isinstance(ev, Reacted) and ev.added and ad.decoded == 1
    assert ev.reaction_id == f"at://{DID}/{like}" and ev.reactor.account_id == DID
    # the same member's delete of another like of theirs is not read
    await ad.on_frame(commit_frame(4, DID, [("delete", "app.bsky.feed.like/3kother22222a",
                                             None)]))
    assert len(ctx.events) == 1
    # its delete names only the like: read because that like was counted, not decoded
    await ad.on_frame(commit_frame(5, DID, [("delete", like, None)]))
    gone = ctx.events[-1]
    assert isinstance(gone, Reacted) and not gone.added and gone.reaction_id == ev.reaction_id
    assert ad.decoded == 1 and ctx.state.rows.get("likes", {}) == {}
