"""``catchup_window`` on X: the first start searches from ``start_time`` = now − the
window; a position older than the 7 days recent search covers is clamped to them
(the emulator, as X, refuses an older ``start_time`` or ``since_id`` with a 400)."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
from catchupkit import first_start_relays_the_window
from test_adapter import CH, running
from twitter_support import Running, make_spec

from adapters.sandbox import SandboxPlatform
from adapters.twitter.emulator.state import snowflake_time
from adapters.twitter.inbound import RECENT_SEARCH_SECONDS, search_start
from adapters.twitter.sandbox import TwitterSandbox
from bridge.contract.model import Posted
from bridge.contract.testing import FakeContext
from bridge.daemon.harness import ChannelDef

DAY = 86400.0


async def test_catchup_window_relays_the_last_hour_at_first_start(
        xbox: TwitterSandbox, lobby: SandboxPlatform, tmp_path: Path) -> None:
    st = xbox.emulator.state

    async def post_at(author: str, text: str, at: float, reply_to: str | None) -> str:
        return st.create(st.user(author), f"{text} #{xbox.hashtag}", reply_to=reply_to,
                         at=at).id

    channel = ChannelDef("x", "twitter", xbox.account_config(),
                         {**xbox.channel_config(), "poll_seconds": 0.2})
    await first_start_relays_the_window(post_at, channel, lobby, tmp_path)


async def test_catchup_emulator_refuses_a_search_older_than_seven_days(xemu: Running) -> None:
    st = xemu.emu.state
    old = st.create(st.user("olga"), "eight days ago #kmers", at=time.time() - 8 * DAY)
    assert abs(snowflake_time(old.id) - (time.time() - 8 * DAY)) < 5
    headers = {"Authorization": f"Bearer {xemu.bot['bearer_token']}"}
    url = f"{xemu.base}/2/tweets/search/recent"
    eight_days = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 8 * DAY))
    six_days = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 6 * DAY))
    for params, status in (({"start_time": eight_days}, 400), ({"since_id": old.id}, 400),
                           ({"start_time": six_days}, 200)):
        async with aiohttp.ClientSession() as http, http.get(
                url, params={"query": "#kmers", **params}, headers=headers) as r:
            body = await r.json()
        assert r.status == status, body
        if status == 400:
            param = next(iter(params))
            assert body["errors"][0]["parameters"] == {param: [params[param]]}
            assert f"Invalid '{param}'" in body["errors"][0]["message"]


def test_catchup_search_start_keeps_within_seven_days() -> None:
    now = 1_800_000_000.0
    fresh = str(int((now - DAY) * 1000 - 1288834974657) << 22)
    stale = str(int((now - 8 * DAY) * 1000 - 1288834974657) << 22)
    assert search_start(fresh, now) == {"since_id": fresh}
    oldest = search_start(stale, now)["start_time"]
    assert oldest == search_start("t:2020-01-01T00:00:00Z", now)["start_time"]
    assert oldest > time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - RECENT_SEARCH_SECONDS))
    assert search_start("t:2027-01-14T00:00:00Z", now) == {"start_time": "2027-01-14T00:00:00Z"}


async def test_catchup_a_cursor_older_than_seven_days_resumes_instead_of_failing(
        xemu: Running) -> None:
    """The bridge was down 8 days: its since_id is older than recent search allows.
    Searching with it would fail (400) on every poll; the adapter reads from the
    oldest time allowed instead."""
    st = xemu.emu.state
    old = st.create(st.user("olga"), "before the outage #kmers", at=time.time() - 8 * DAY)
    spec = make_spec()
    ctx = FakeContext((spec,), name="x")
    ctx.cursors[f"since:{CH}"] = old.id
    new = st.create(st.user("hana"), "after the outage #kmers")
    async with running(xemu, ctx, channels=(spec,)) as (ad, ctx):
        assert await ad.poll_once(ad.channels[CH]) == 1
        assert [e.native_id for e in ctx.events if isinstance(e, Posted)] == [new.id]
        assert ctx.cursors[f"since:{CH}"] == new.id
