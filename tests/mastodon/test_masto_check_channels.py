"""``check --online`` per Mastodon channel (``MastodonFactory.check_channels``), against
the emulator: what each channel reads (the tag timeline's newest post, local only when
configured), what it writes (as whom, which visibility, how long), and why it cannot
(the token's scopes, a suspended account, a refused timeline), with GETs only."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from mastodon import MastodonError
from mastohelp import client
from sandboxconfig import two_sandboxes

from adapters.mastodon import MastodonFactory
from adapters.mastodon.adapter import MastodonAdapter
from adapters.mastodon.check import read_failure, write_verdict
from adapters.mastodon.config import MastodonAccount, MastodonChannel
from adapters.mastodon.convert import parse_instance
from adapters.mastodon.emulator.server import MastodonEmulator
from bridge.contract.adapter import AdapterError, ChannelSpec
from bridge.contract.model import ChannelKey
from bridge.contract.services import Services


def spec(key: str, tag: str = "kmers", direction: str = "both", **opts: Any) -> ChannelSpec:
    return ChannelSpec(key=ChannelKey(key), community="kmers", hashtag="kmers",
                       direction=direction,  # type: ignore[arg-type]
                       options=MastodonChannel(hashtag=tag, **opts))


async def check(emu: MastodonEmulator, *specs: ChannelSpec, token: str = "bridge-token"
                ) -> dict[ChannelKey, Any]:
    acct = MastodonAccount(base_url=emu.url, access_token=token)
    return await MastodonFactory().check_channels(acct, specs, None, Services())  # type: ignore[arg-type]


def aged(emu: MastodonEmulator, username: str, text: str, seconds: float) -> None:
    emu.post(username, text).created_at = time.time() - seconds


async def test_each_channel_says_what_it_reads_and_writes(emulator: MastodonEmulator) -> None:
    """The tag's newest post (a remote one for the whole feed, the local one for a
    local-only channel), an empty tag, the visibility and the instance's length; the
    check only reads."""
    emu = emulator
    aged(emu, "alice", "three hours ago #kmers", 3 * 3600)
    aged(emu, "zoe@remote.example", "ten minutes ago #kmers", 600)
    before = len(emu.state.statuses)
    found = await check(emu, spec("kmers/all"), spec("kmers/local", direction="in",
                                                     local_only=True),
                        spec("kmers/quiet", tag="quiet", direction="out",
                             visibility="unlisted"),
                        spec("kmers/empty", tag="nothingyet", direction="in"))
    everything, local = found[ChannelKey("kmers/all")], found[ChannelKey("kmers/local")]
    assert everything.ok and everything.reads == "#kmers: newest post 10 min ago"
    assert everything.writes == (
        "posts as @kmbridge, public: the copies show on the #kmers timeline; at most 500 "
        "characters a post (a link counts 23); the token's app has the scopes read write")
    assert local.ok and local.reads == "#kmers (this instance's posts only): newest post 3 h ago"
    quiet = found[ChannelKey("kmers/quiet")]
    assert quiet.ok and quiet.writes.startswith(
        "posts as @kmbridge, unlisted: the copies stay off the #quiet and public timelines")
    assert found[ChannelKey("kmers/empty")].reads == "#nothingyet: no posts yet"
    assert all(c.warnings == () and c.error == "" for c in found.values())
    assert len(emu.state.statuses) == before
    assert {m for m, _ in emu.state.requests} == {"GET"}
    tag_reads = [p for _, p in emu.state.requests if p.startswith("/api/v1/timelines/tag/")]
    assert tag_reads == ["/api/v1/timelines/tag/kmers", "/api/v1/timelines/tag/kmers",
                         "/api/v1/timelines/tag/nothingyet"]  # none for the writing-only one


async def test_the_instance_length_is_the_instances() -> None:
    async with MastodonEmulator(max_characters=5000, characters_reserved_per_url=30) as emu:
        got = (await check(emu, spec("kmers/m", direction="out")))[ChannelKey("kmers/m")]
    assert "at most 5000 characters a post (a link counts 30)" in got.writes


async def test_scopes_without_write_fail_the_writing_channels(
        emulator: MastodonEmulator) -> None:
    """The app's scopes (``/api/v1/apps/verify_credentials``) decide, and the emulator
    refuses the post the check predicts would be refused."""
    emu = emulator
    emu.bridge.scopes = ("read",)
    found = await check(emu, spec("kmers/both"), spec("kmers/in", direction="in"))
    both, reading = found[ChannelKey("kmers/both")], found[ChannelKey("kmers/in")]
    assert not both.ok and both.reads == "#kmers: no posts yet"
    assert both.error == (
        "the token's app has the scopes read, without write:statuses and write:media: posting "
        "needs write:statuses and attachments write:media; create an application with the "
        "scopes read and write under Preferences > Development on the instance, logged in as "
        "the bridge's account, and put its access token in access_token")
    assert reading.ok and reading.error == ""
    with pytest.raises(MastodonError, match="outside the authorized scopes"):
        await asyncio.to_thread(client(emu).status_post, "would be refused #kmers")


async def test_scopes_without_read_fail_the_reading_channels(
        emulator: MastodonEmulator) -> None:
    emu = emulator
    emu.bridge.scopes = ("write", "read:statuses", "read:accounts")
    found = await check(emu, spec("kmers/in", direction="in"), spec("kmers/out",
                                                                    direction="out"))
    reading = found[ChannelKey("kmers/in")]
    assert not reading.ok
    assert reading.error.startswith(
        "the token's app has the scopes write read:statuses read:accounts, without "
        "read:notifications: the "
        "hashtag stream needs read:statuses and the bridge reads its mentions with "
        "read:notifications; create an application")
    assert found[ChannelKey("kmers/out")].ok
    with pytest.raises(MastodonError, match="403"):
        await asyncio.to_thread(client(emu).notifications)


async def test_a_limited_account_warns_and_still_posts(emulator: MastodonEmulator) -> None:
    emulator.bridge.limited = True
    found = await check(emulator, spec("kmers/pub", direction="out"),
                        spec("kmers/quiet", direction="out", visibility="unlisted"))
    pub, quiet = found[ChannelKey("kmers/pub")], found[ChannelKey("kmers/quiet")]
    assert pub.ok and pub.warnings == (
        "@kmbridge is limited by the instance's moderators: its posts are shown only to its "
        "followers, not on the hashtag timeline; ask the moderators to lift the limit (or "
        "run the bridge from another account)",)
    assert quiet.ok and "shown only to its followers; ask" in quiet.warnings[0]


def test_a_suspended_account_cannot_post() -> None:
    got = write_verdict(MastodonChannel(hashtag="kmers"), {"acct": "kmbridge",
                                                           "suspended": True},
                        parse_instance({}), ("read", "write"))
    assert not got.ok and got.error.startswith(
        "@kmbridge is suspended by the instance's moderators and cannot post")


async def test_remote_feeds_disabled_is_said_per_channel(emulator: MastodonEmulator,
                                                         monkeypatch: Any) -> None:
    from adapters.mastodon.emulator import instance

    real = instance.instance_v2

    def closed(st: Any) -> dict[str, Any]:
        body = real(st)
        body["configuration"]["timelines_access"]["hashtag_feeds"] = {
            "local": "public", "remote": "disabled"}
        return body

    monkeypatch.setattr(instance, "instance_v2", closed)
    found = await check(emulator, spec("kmers/all", direction="in"),
                        spec("kmers/local", direction="in", local_only=True))
    assert found[ChannelKey("kmers/all")].warnings == (
        "this instance serves no other servers' posts on hashtag feeds "
        "(timelines_access.hashtag_feeds.remote = disabled): only its own posts with #kmers "
        "are read",)
    assert found[ChannelKey("kmers/local")].warnings == ()


async def _refusal(emu: MastodonEmulator, call: str, *args: Any, token: str = "bridge-token",
                   base: str = "") -> AdapterError:
    acct = MastodonAccount(base_url=base or emu.url, access_token=token)
    adapter = MastodonAdapter(acct, ())
    with pytest.raises(AdapterError) as err:
        await adapter._call(getattr(adapter.client, call), *args)
    return err.value


async def test_a_refused_tag_timeline_is_failed_with_the_fix(
        emulator: MastodonEmulator) -> None:
    """401, 403 and 404 as Mastodon.py raises them from the emulator's answers, each
    into its own fix; an outage is "not checked", never a pass."""
    emu, opts = emulator, MastodonChannel(hashtag="kmers")
    got = read_failure(await _refusal(emu, "timeline_hashtag", "kmers", token="revoked"),
                       opts, emu.url)
    assert got.error.startswith("the instance refused the access token reading #kmers "
                                "(401): create an application")
    emu.bridge.scopes = ("write",)
    own = emu.post("kmbridge", "mine #kmers")
    got = read_failure(await _refusal(emu, "status", own.id), opts, emu.url)
    assert got.error.startswith("the instance refuses reading #kmers (forbidden (403): This "
                                "action is outside the authorized scopes): the token needs "
                                "read:statuses; ")
    got = read_failure(await _refusal(emu, "timeline_hashtag", "kmers",
                                      base=emu.url + "/mastodon"), opts, emu.url + "/mastodon")
    assert got.error == (f"{emu.url}/mastodon has no hashtag timeline (404 on "
                         "/api/v1/timelines/tag/kmers): base_url must be the Mastodon "
                         "instance itself (https://host, no path)")
    emu.storm(60)
    got = read_failure(await _refusal(emu, "timeline_hashtag", "kmers"), opts, emu.url)
    assert not got.ok and got.error == ("not checked: reading #kmers failed for now (rate "
                                        "limited (429)); run the check again")


async def test_an_outage_during_the_check_is_not_a_pass(emulator: MastodonEmulator) -> None:
    emulator.fail(10)
    found = await check(emulator, spec("kmers/m"))
    got = found[ChannelKey("kmers/m")]
    assert not got.ok and got.error.startswith("the account could not be read: "
                                               "TransientError: server or network error")


async def test_check_online_prints_each_channel_and_fails_on_one_that_cannot_post(
        tmp_path: Path) -> None:
    async with MastodonEmulator() as emu:
        aged(emu, "alice", "earlier #kmers", 7200)
        cfg = tmp_path / "c.toml"
        cfg.write_text(two_sandboxes() + f"""
[accounts.masto]
platform = "mastodon"
base_url = "{emu.url}"
access_token = "${{MASTODON_TOKEN}}"

[[communities.channels]]
account = "masto"
hashtag = "kmers"
visibility = "unlisted"
""")
        cfg.chmod(0o600)

        def run() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "bridge.cli", "check", "-c", str(cfg), "--online"],
                cwd=tmp_path, capture_output=True, text=True, timeout=120,
                env={**os.environ, "MASTODON_TOKEN": "bridge-token"})

        res = await asyncio.to_thread(run)
        out = res.stdout
        assert res.returncode == 0, out + res.stderr
        assert "  kmers/masto: will read and write kmers\n" \
               "    reads: #kmers: newest post 2 h ago\n" \
               "    writes: posts as @kmbridge, unlisted: the copies stay off the #kmers and " \
               "public timelines; at most 500 characters a post (a link counts 23); the " \
               "token's app has the scopes read write\n" in out
        emu.bridge.scopes = ("read",)
        res = await asyncio.to_thread(run)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "    FAILED: the token's app has the scopes read, without write:statuses and " \
           "write:media" in res.stdout
    assert "bridge-token" not in res.stdout + res.stderr
