"""``catchup_window`` on Bluesky: the firehose takes a sequence number, not a time,
so the first start finds the cursor of the window's start by probing
(``adapters/bluesky/seek.py``): on a simulated relay of days of events, on the real
PDS, and end to end (a post inside the window relayed, one outside not, threading
and order kept, a second start relaying nothing again)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from bskyhelp import DID, commit_frame, tagged
from test_bsky_reader import make

from adapters.bluesky.sandbox import BlueskySandbox
from adapters.bluesky.seek import seek, ws_probe
from adapters.bluesky.simrelay import SimulatedRelay
from adapters.sandbox import SandboxPlatform
from bridge.daemon.harness import (
    ChannelDef,
    build_config,
    eventually,
    quiescent,
    running,
    sandbox_channels,
)

HOUR = 3600.0


@pytest.mark.parametrize("first_kept", [1, 5_000_001])
async def test_catchup_seek_finds_the_cursor_on_a_simulated_relay(first_kept: int) -> None:
    now = time.time()
    async with SimulatedRelay(start=now - 72 * HOUR, rate=100.0, last_seq=25_920_000,
                              first_kept=first_kept) as relay, aiohttp.ClientSession() as http:
        probe = ws_probe(http, relay.url, wait=0.5)
        for window in (60.0, HOUR, 24 * HOUR):
            found = await seek(probe, now - window)
            assert found.cursor == relay.first_at_or_after(now - window) - 1, window
            assert found.probes <= 2 * 25 + 2          # about 2·log2(events)
            assert found.dropped == (first_kept > 1)
        reach = await seek(probe, now - 80 * HOUR)      # before the oldest kept
        assert reach.cursor == first_kept - 1 and reach.probes == 1


async def test_catchup_seek_finds_the_cursor_on_the_real_pds(bsky: BlueskySandbox) -> None:
    await bsky.member("olga")
    await bsky.post_as_member("olga", "#kmers before the moment")
    await asyncio.sleep(1.2)
    moment = time.time()
    await asyncio.sleep(1.2)
    await bsky.post_as_member("olga", "#kmers after the moment")
    async with aiohttp.ClientSession() as http:
        probe = ws_probe(http, bsky.server.firehose_url, wait=2.0)
        found = await seek(probe, moment)
        after = await probe(found.cursor)
        before = await probe(found.cursor - 1)
    assert after is not None and after[1] >= moment        # read from there: the window
    assert before is not None and before[0] == found.cursor and before[1] < moment


async def _bridged(lobby: SandboxPlatform, n: int) -> list[Any] | None:
    got = [m for m in await lobby.messages() if m.by_bridge]
    return got if len(got) >= n else None


async def test_catchup_window_relays_the_window_at_first_start(
        bsky: BlueskySandbox, lobby: SandboxPlatform, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    for who in ("olga", "hana", "ivan"):
        await bsky.member(who)       # accounts first: posting is then quick
    await bsky.post_as_member("olga", "#kmers too old to relay")
    old_at = time.time()
    await asyncio.sleep(5.0)
    q = await bsky.post_as_member("hana", "#kmers Q1 which tools")
    await bsky.post_as_member("ivan", "#kmers A1 a notebook", reply_to=q)
    # The window starts 2.5 s after the old post: the bridge starting up to 2.5 s
    # later still leaves Q1 inside it.
    window = time.time() - (old_at + 2.5)
    cfg = build_config(tmp_path, [*sandbox_channels(tmp_path, ["lobby"]),
                                  ChannelDef("bsky", "bluesky", bsky.account_config(),
                                             bsky.channel_config(),
                                             {"catchup_window": window})])
    caplog.set_level(logging.WARNING)
    async with running(cfg, timeout=60.0) as bridge:
        await eventually(lambda: _bridged(lobby, 2), 60.0, "Q1 and A1 relayed")
        await quiescent(bridge, timeout=60.0)
    first = [m for m in await lobby.messages() if m.by_bridge]
    assert ["Q1" in m.text for m in first] == [True, False] and "A1" in first[1].text, \
        [m.text for m in first]
    assert first[1].reply_to == first[0].native_id
    # The PDS keeps every event since seq 1: nothing to warn about.
    assert "firehose keeps events from" not in caplog.text
    await bsky.post_as_member("hana", "#kmers Q2 while the bridge was down")
    async with running(cfg, timeout=60.0) as bridge:
        await eventually(lambda: _bridged(lobby, 3), 60.0, "the post made while down")
        await quiescent(bridge, timeout=60.0)
    again = [m for m in await lobby.messages() if m.by_bridge]
    assert len(again) == 3 and "Q2" in again[2].text, [m.text for m in again]
    assert not any("too old" in m.text for m in again)


async def test_catchup_a_narrower_channel_window_keeps_its_own_history() -> None:
    """One firehose serves the account: the widest window is read; a channel with
    a narrower one does not get the history older than its own window."""
    ad, ctx = make(tags=("kmers", "pkm"))
    now = time.time()
    ad._started_at = now
    wide, narrow = ad._reading
    ad._reading = [dataclasses.replace(wide, catchup_window=2 * HOUR),
                   dataclasses.replace(narrow, catchup_window=600.0)]
    ad._cutoffs = {narrow.key: now - 600.0}        # what the first start's seek sets

    def iso(at: float) -> str:
        return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"

    old, recent = iso(now - HOUR), iso(now - 60)
    p = "app.bsky.feed.post/"
    await ad.on_frame(commit_frame(1, DID, [("create", p + "3kaaaaaaaaaa2",
                                             tagged("old #kmers", "kmers"))], time=old))
    await ad.on_frame(commit_frame(2, DID, [("create", p + "3kaaaaaaaaab2",
                                             tagged("old #pkm", "pkm"))], time=old))
    await ad.on_frame(commit_frame(3, DID, [("create", p + "3kaaaaaaaaac2",
                                             tagged("recent #pkm", "pkm"))], time=recent))
    got = [(e.channel, e.native_id.rsplit("/", 1)[1]) for e in ctx.events]
    assert got == [(wide.key, "3kaaaaaaaaaa2"), (narrow.key, "3kaaaaaaaaac2")]
    assert ad._cutoffs == {}        # past every window: no more filtering
