"""End to end against the real PDS, continued: long posts split into a reply
thread, edits (correction reply or in place), consent (profile #nobridge, #nobot,
opt-in with !join), images with alt text both ways through Mastodon, a retried
create that cannot post twice, and ``check --online``."""

from __future__ import annotations

import asyncio
import base64
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from bskyhelp import account_model, info_frame
from test_bsky_e2e import _n, bridged, config, connected, on_bsky

from adapters.bluesky import BlueskyFactory
from adapters.bluesky.adapter import SESSION, SESSION_KEY, BlueskyAdapter
from adapters.bluesky.compose import post_length, rkey_for
from adapters.bluesky.config import BlueskyChannel
from adapters.bluesky.convert import cid_str
from adapters.bluesky.sandbox import BlueskySandbox
from adapters.mastodon.emulator.state import EmuMedia, snowflake
from adapters.mastodon.sandbox import MastodonSandbox
from adapters.sandbox import SandboxPlatform
from bridge.contract.adapter import ChannelSpec, Rendered, SendCreate
from bridge.contract.model import (
    Author,
    ChannelKey,
    DeliveryId,
    NativeId,
    Post,
    PostId,
    utcnow,
)
from bridge.contract.richtext import RichText
from bridge.contract.testing import FakeContext
from bridge.daemon.harness import ChannelDef, build_config, eventually, quiescent, running

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwAD"
                       "hgGAWjR9awAAAABJRU5ErkJggg==")


async def test_long_post_splits_into_a_reply_thread(bsky: BlueskySandbox,
                                                    lobby: SandboxPlatform,
                                                    tmp_path: Path) -> None:
    words = " ".join(f"w{i:03d}" for i in range(200))  # 999 characters
    async with running(config(bsky, tmp_path)) as bridge:
        await connected(bridge)
        await lobby.post_as_member("dora", words)
        await quiescent(bridge)
    parts = await on_bsky(bsky)
    assert len(parts) >= 4
    assert all(post_length(p.text) <= 300 for p in parts)
    assert parts[0].reply_to is None
    assert [p.reply_to for p in parts[1:]] == [p.native_id for p in parts[:-1]]
    joined = " ".join(p.text for p in parts)
    assert all(f"w{i:03d}" in joined for i in range(200))


async def test_long_post_truncates_when_the_channel_says_so(bsky: BlueskySandbox,
                                                            lobby: SandboxPlatform,
                                                            tmp_path: Path) -> None:
    words = " ".join(f"w{i:03d}" for i in range(200))
    async with running(config(bsky, tmp_path, {"split": "truncate"})) as bridge:
        await connected(bridge)
        await lobby.post_as_member("dora", words)
        await quiescent(bridge)
    [only] = await on_bsky(bsky)
    assert post_length(only.text) <= 300 and "w000" in only.text


@pytest.mark.parametrize("mode", ["update", "correct", "in place"])
async def test_edits_follow_on_edit(bsky: BlueskySandbox, lobby: SandboxPlatform,
                                    tmp_path: Path, mode: str) -> None:
    channel: dict[str, Any] = {"on_edit": "update", "edit_in_place": True} \
        if mode == "in place" else {"on_edit": mode}
    async with running(config(bsky, tmp_path, channel)) as bridge:
        await connected(bridge)
        first = await lobby.post_as_member("dora", "the first version")
        await quiescent(bridge)
        await lobby.edit_as_member(first, "the second version")
        await quiescent(bridge)
    await bsky.settled()
    posts = await on_bsky(bsky)
    if mode == "update":  # Bluesky's app shows no edits: by default they are not relayed
        assert [p.text for p in posts if "version" in p.text] == [posts[0].text]
        assert "first version" in posts[0].text and not posts[0].edited
    elif mode == "correct":
        assert len(posts) == 2 and "first version" in posts[0].text
        assert "second version" in posts[1].text and posts[1].reply_to == posts[0].native_id
    else:
        [p] = posts
        assert "second version" in p.text and p.edited


async def test_consent_profile_signals_and_opt_in(bsky: BlueskySandbox, lobby: SandboxPlatform,
                                                  tmp_path: Path) -> None:
    await bsky.set_profile("nora", description="I prefer #nobridge")
    await bsky.set_profile("quiet", description="hi", labels=("!no-unauthenticated",))
    async with running(config(bsky, tmp_path, consent="opt-in")) as bridge:
        await connected(bridge)
        await bsky.post_as_member("nora", "#kmers please keep me here")
        await bsky.post_as_member("quiet", "#kmers me too")
        await bsky.post_as_member("alice", "#kmers before joining")
        bot = bsky.bot.handle  # type: ignore[union-attr]
        await bsky.post_as_member("alice", f"@{bot} !join", tag=False)
        await eventually(lambda: _n(on_bsky(bsky), 1))  # the bridge answers once
        await bsky.post_as_member("alice", "#kmers after joining")
        await bsky.post_as_member("quiet", f"@{bot} !join", tag=False)
        await eventually(lambda: _n(on_bsky(bsky), 2))
        await bsky.post_as_member("quiet", "#kmers joined now")
        await eventually(lambda: _n(bridged(lobby), 2))
        await quiescent(bridge)
    copies = [m.text for m in await bridged(lobby)]
    assert len(copies) == 2 and "after joining" in copies[0] and "joined now" in copies[1]


async def test_profile_nobridge_in_opt_out_mode(bsky: BlueskySandbox, lobby: SandboxPlatform,
                                                tmp_path: Path) -> None:
    await bsky.set_profile("nora", description="#NoBridge thanks")
    async with running(config(bsky, tmp_path)) as bridge:
        await connected(bridge)
        await bsky.post_as_member("nora", "#kmers not me")
        await bsky.post_as_member("alice", "#kmers me")
        await eventually(lambda: _n(bridged(lobby), 1))
        await quiescent(bridge)
        await bsky.set_profile("alice", description="changed my mind #nobridge")
        await asyncio.sleep(0.5)  # the profile update arrives on the firehose
        await bsky.post_as_member("alice", "#kmers after opting out")
        await quiescent(bridge)
    assert [m.text for m in await bridged(lobby)] == [(await bridged(lobby))[0].text]
    assert "me" in (await bridged(lobby))[0].text


def masto_config(bsky: BlueskySandbox, masto: MastodonSandbox, tmp: Path) -> Any:
    return build_config(tmp, [ChannelDef("masto", "mastodon", masto.account_config(),
                                         masto.channel_config()),
                              ChannelDef("bsky", "bluesky", bsky.account_config(),
                                         bsky.channel_config())])


async def test_images_with_alt_text_both_ways(bsky: BlueskySandbox, tmp_path: Path) -> None:
    masto = MastodonSandbox(str(tmp_path), heartbeat=0.5)
    await masto.start()
    try:
        emu = masto.emulator
        async with running(masto_config(bsky, masto, tmp_path)) as bridge:
            await connected(bridge)
            # Bluesky -> Mastodon: the blob is fetched from the author's PDS
            await bsky.post_as_member("alice", "#kmers a dot", images=((PNG, "a red dot"),))

            async def masto_copy() -> Any:
                return [s for s in emu.state.statuses.values()
                        if s.account is emu.bridge and s.media_ids]

            [copy] = await eventually(masto_copy)
            media = emu.state.media[copy.media_ids[0]]
            assert media.description == "a red dot" and media.data == PNG
            # Mastodon -> Bluesky: uploadBlob with the alt text
            alice = emu.member("mara")
            pic = EmuMedia(id=snowflake(), account_id=alice.id, mime="image/png", data=PNG,
                           description="the alt")
            emu.state.media[pic.id] = pic
            emu.post("mara", "#kmers from mastodon", media_ids=[pic.id])
            await eventually(lambda: _n(on_bsky(bsky), 1))
            await quiescent(bridge)
        [mine] = await on_bsky(bsky)
        rec = bsky._log.last[mine.native_id]
        [img] = rec["embed"]["images"]
        assert img["alt"] == "the alt" and img["image"]["mimeType"] == "image/png"
        async with aiohttp.ClientSession() as h, h.get(
                f"{bsky.server.url}/xrpc/com.atproto.sync.getBlob",
                params={"did": bsky.bot.did,  # type: ignore[union-attr]
                        "cid": _cid(img["image"]["ref"])}) as r:
            assert r.status == 200 and await r.read() == PNG
    finally:
        await masto.stop()


def _cid(ref: Any) -> str:
    return cid_str(ref)


async def test_a_retried_create_cannot_post_twice(bsky: BlueskySandbox, tmp_path: Path) -> None:
    """The record key comes from the delivery's idempotency key: a create sent again
    (after a crash, or when the answer was lost) finds its record and is done."""
    ch = ChannelSpec(key=ChannelKey("kmers/bsky"), community="kmers", hashtag="kmers",
                     direction="out", options=BlueskyChannel(hashtag="kmers"))
    acct = account_model(bsky.account_config())
    post = Post(id=PostId("01J0000000000000000000000"), community="kmers",
                origin_channel=ChannelKey("kmers/lobby"), origin_native_id=NativeId("1"),
                permalink="", author=Author(platform="sandbox", handle="dora"),
                text=RichText.plain("once only"))
    op = SendCreate(delivery_id=DeliveryId("d1"), idempotency_key="d1.0", channel=ch.key,
                    post=post, rendered=Rendered(text=post.text, plain="once only #kmers"))
    results = []
    async with aiohttp.ClientSession() as http:
        for _ in range(2):  # two processes, the second after a crash
            ad = BlueskyAdapter(acct, (ch,))
            ad._ctx = FakeContext((ch,), http=http)
            results.append(await ad.send(op))
            await ad.close()
    assert results[0].native_id == results[1].native_id
    await bsky.settled()
    assert [m.text for m in await on_bsky(bsky)] == ["once only #kmers"]


async def test_check_online(bsky: BlueskySandbox) -> None:
    f = BlueskyFactory()
    good = account_model(bsky.account_config())
    async with aiohttp.ClientSession() as http:
        ok = await f.check_online(good, http, {})
        assert ok.ok and bsky.bot is not None and bsky.bot.did in ok.identity, ok
        assert not ok.warnings
        bad = good.model_copy(update={"app_password": "wrong-pass-word-1234"})
        no = await f.check_online(bad, http, {})
        main = good.model_copy(update={"app_password": bsky.bot.password})
        warned = await f.check_online(main, http, {})
    assert not no.ok and no.error.startswith("bad_credentials")
    assert "App passwords" in no.error and "wrong-pass" not in no.error
    assert warned.ok and any("main password" in w for w in warned.warnings)


def test_rkeys_differ_per_part() -> None:
    now = utcnow()
    assert len({rkey_for(f"d.{i}", now) for i in range(50)}) == 50
    assert re.fullmatch(r"[a-z2-7]{13}", rkey_for("d.0", now))


async def test_gap_past_replay_rereads_known_authors(bsky: BlueskySandbox) -> None:
    """Past the firehose's replay window the known authors' repos are read again
    (listRecords on their own PDS): their tagged posts come back, the rest not."""
    kept = await bsky.post_as_member("alice", "#kmers said while we were away")
    await bsky.post_as_member("alice", "untagged while away", tag=False)
    ch = ChannelSpec(key=ChannelKey("kmers/bsky"), community="kmers", hashtag="kmers",
                     direction="both", options=BlueskyChannel(hashtag="kmers"))
    async with aiohttp.ClientSession() as http:
        ad = BlueskyAdapter(account_model(bsky.account_config()), (ch,))
        ctx = FakeContext((ch,), http=http)
        ad._ctx = ctx
        await ad.login()
        alice = (await bsky.member("alice")).account.did
        ad._authors[alice] = None
        await ad.on_frame(info_frame("OutdatedCursor"))
        await ad.close()
    assert [e.native_id for e in ctx.events] == [kept]
    assert "replay window" in ctx.health_detail


async def test_session_is_kept_in_the_store_and_resumed(bsky: BlueskySandbox) -> None:
    ch = ChannelSpec(key=ChannelKey("kmers/bsky"), community="kmers", hashtag="kmers",
                     direction="out", options=BlueskyChannel(hashtag="kmers"))
    acct = account_model(bsky.account_config())
    async with aiohttp.ClientSession() as http:
        first = BlueskyAdapter(acct, (ch,))
        ctx = FakeContext((ch,), http=http)
        first._ctx = ctx
        await first.login()
        await first.close()
        stored = ctx.state.rows[SESSION][SESSION_KEY]
        assert "session" not in ctx.cursors
        assert bsky.bot_app_password not in stored  # tokens, never the password
        # a restart with the stored session needs no password (createSession is limited)
        second = BlueskyAdapter(acct.model_copy(update={"app_password": "not-the-password"}),
                                (ch,))
        second._ctx = ctx
        await second.login()
        assert second.client.did == first.client.did
        got = await second.client.query("com.atproto.server.getSession")
        await second.close()
    assert got["did"] == first.client.did


async def test_session_kept_as_a_cursor_by_an_earlier_version_is_resumed_once(
        bsky: BlueskySandbox) -> None:
    """An upgrade does not log in again: the session an earlier version kept as the
    ``session`` cursor is resumed and moved to the account's state."""
    ch = ChannelSpec(key=ChannelKey("kmers/bsky"), community="kmers", hashtag="kmers",
                     direction="out", options=BlueskyChannel(hashtag="kmers"))
    acct = account_model(bsky.account_config())
    async with aiohttp.ClientSession() as http:
        first = BlueskyAdapter(acct, (ch,))
        first._ctx = FakeContext((ch,), http=http)
        await first.login()
        await first.close()
        old = FakeContext((ch,), http=http)
        old.cursors[SESSION] = first._ctx.state.rows[SESSION][SESSION_KEY]
        upgraded = BlueskyAdapter(acct.model_copy(update={"app_password": "not-the-password"}),
                                  (ch,))
        upgraded._ctx = old
        await upgraded.login()
        got = await upgraded.client.query("com.atproto.server.getSession")
        await upgraded.close()
    assert got["did"] == first.client.did
    assert old.state.rows[SESSION][SESSION_KEY], "moved to the account's state"
    assert not old.cursors[SESSION], "and no longer kept as a cursor"
