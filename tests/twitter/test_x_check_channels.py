"""``check --online`` per X channel (``TwitterFactory.check_channels``), against the
emulator: the project's read quota from ``GET /2/usage/tweets`` (never the billed
search), a project whose access has no search, and the daily post budget each writing
channel is held to, as whom."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from sandboxconfig import two_sandboxes
from twitter_support import Running, make_spec

from adapters.twitter import TwitterFactory
from adapters.twitter.config import TwitterAccount
from bridge.contract.model import ChannelKey
from bridge.contract.services import Services

BOTH, OUT, IN = ChannelKey("kmers/x"), ChannelKey("kmers/xd"), ChannelKey("kmers/xi")


def account(x: Running, *, bearer: bool = True, **keys: Any) -> TwitterAccount:
    creds: dict[str, Any] = dict(x.bot) if bearer else {
        k: v for k, v in x.bot.items() if k != "bearer_token"}
    return TwitterAccount(**{**creds, **keys}, api_base=x.base)


async def check(x: Running, acct: TwitterAccount, *specs: Any) -> dict[ChannelKey, Any]:
    specs = specs or (make_spec(), make_spec("kmers/xd", direction="out", mode="digest"),
                      make_spec("kmers/xi", direction="in"))
    return await TwitterFactory().check_channels(acct, specs, x.session, Services())


async def test_the_quota_comes_from_the_usage_endpoint_not_a_search(xemu: Running) -> None:
    """"N of M posts read this month, resets on day D", a warning from 90 %, and no
    post read (or billed) to find it out."""
    st = xemu.emu.state
    st.read_cap, st.reads, st.cap_reset_day = 20_000, 18_500, 12
    for i in range(3):
        st.create(st.user("alice"), f"#kmers {i}")
    found = await check(xemu, account(xemu))
    both, reading, digest = found[BOTH], found[IN], found[OUT]
    assert both.ok and reading.ok and digest.ok
    assert both.reads == (
        'recent search "#kmers -is:retweet -from:kmbridge", every 60 s or slower, at most '
        "500 posts a poll and 10,000 a month (monthly_read_budget); X project: 18,500 of "
        "20,000 posts read this month, resets on day 12")
    assert both.warnings == reading.warnings == (
        "the X project has read 92% of its monthly cap (18,500 of 20,000): searches stop at "
        "the cap until day 12 (every app of the project counts)",)
    assert digest.reads == "" and digest.warnings == ()
    assert digest.writes == (
        "posts as @kmbridge, one digest post every 15 min, up to 280 weighted characters; at "
        "most 50 posts a day, spending at most $2.00 a day and $30.00 a month, reads included "
        "($0.015 a post, $0.200 with a link), shared by the account's 2 writing channels; "
        "what is spent today: hashbridge status")
    assert st.reads == 18_500
    assert [(e["method"], e["path"]) for e in xemu.emu.exchanges] == [
        ("GET", "/2/users/me"), ("GET", "/2/usage/tweets")]
    assert xemu.emu.exchanges[-1]["query"] == {
        "usage.fields": "cap_reset_day,project_cap,project_usage"}


async def test_under_90_percent_no_warning_and_a_spent_cap_says_until_when(
        xemu: Running) -> None:
    st = xemu.emu.state
    st.read_cap, st.reads = 10_000, 8_999
    got = (await check(xemu, account(xemu), make_spec()))[BOTH]
    assert got.ok and got.warnings == ()
    st.reads = 10_000
    got = (await check(xemu, account(xemu), make_spec()))[BOTH]
    assert got.ok and got.warnings == (
        "the X project's monthly read cap is reached (10,000 of 10,000): X refuses every "
        "search until day 1",)


async def test_a_project_without_search_fails_its_reading_channels(xemu: Running) -> None:
    """X's 403 client-not-enrolled, and a project that may read nothing: the reading
    channels are FAILED with the fix, a writing-only channel is still usable."""
    xemu.emu.state.not_enrolled = {"search", "usage"}
    found = await check(xemu, account(xemu))
    fix = ("X refuses this app's project its v2 reads (403 client-not-enrolled, it needs "
           "'Appropriate Level of API Access'): the recent search this channel reads with "
           "is not in its access level; attach the app to a Project whose access includes "
           "recent search (pay-per-use, or the Basic or Pro plan) in the developer console "
           "(console.x.com)")
    assert not found[BOTH].ok and found[BOTH].error == fix
    assert not found[IN].ok and found[IN].error == fix
    assert found[OUT].ok
    xemu.emu.state.not_enrolled = set()
    xemu.emu.state.read_cap = 0
    got = (await check(xemu, account(xemu)))[IN]
    assert not got.ok and got.error.startswith(
        "the X project may read no posts (project_cap 0): its access level has no recent "
        "search; attach the app")


async def test_without_a_bearer_token_the_quota_is_not_checked(xemu: Running) -> None:
    got = (await check(xemu, account(xemu, bearer=False), make_spec()))[BOTH]
    assert got.ok and got.warnings == (
        "the X project's read quota is not checked: GET /2/usage/tweets takes only the "
        "app's Bearer Token; set bearer_token on this account to see it here",)
    assert [e["path"] for e in xemu.emu.exchanges] == ["/2/users/me"]


async def test_a_refused_bearer_token_fails_reading(xemu: Running) -> None:
    acct = account(xemu, bearer=False, bearer_token="AAAA-revoked")
    found = await check(xemu, acct)
    assert not found[IN].ok and found[IN].error.startswith(
        "X refused the bearer_token (401), which this account's searches use: copy the app's "
        "Bearer Token again")
    assert found[OUT].ok


async def test_a_usage_outage_is_not_a_pass(xemu: Running) -> None:
    xemu.emu.fail(503, route="/2/usage")
    got = (await check(xemu, account(xemu), make_spec()))[BOTH]
    assert not got.ok and got.error == (
        "the X project's read quota is not checked: usage: X server error 503; run the "
        "check again")


async def test_the_writing_budget_and_who_posts(xemu: Running) -> None:
    acct = account(xemu, max_posts_per_day=20, max_usd_per_day=0.5, max_usd_per_month=9.0,
                   premium=True)
    found = await check(xemu, acct, make_spec(direction="out"),
                        make_spec("kmers/off", mode="off"))
    assert found[BOTH].writes == (
        "posts as @kmbridge, one post per message, up to 25,000 weighted characters; at most "
        "20 posts a day, spending at most $0.50 a day and $9.00 a month, reads included "
        "($0.015 a post, $0.200 with a link); what is spent today: hashbridge status")
    off = found[ChannelKey("kmers/off")]
    assert off.ok and off.writes == 'nothing: mode = "off" (this channel only reads)'
    assert not any(e["path"].startswith("/2/tweets") for e in xemu.emu.exchanges)


async def test_a_budget_that_allows_no_post_fails_writing(xemu: Running) -> None:
    got = (await check(xemu, account(xemu, max_posts_per_day=0),
                       make_spec(direction="out")))[BOTH]
    assert not got.ok and got.error == (
        'max_posts_per_day = 0: nothing will be posted; raise it, or set mode = "off" on a '
        "channel that should only read")
    got = (await check(xemu, account(xemu, max_usd_per_day=0.01),
                       make_spec(direction="out")))[BOTH]
    assert not got.ok and got.error.startswith(
        "max_usd_per_day = 0.01 is below the price of one post ($0.015): nothing will be "
        "posted")


async def test_bad_credentials_fail_every_channel(xemu: Running) -> None:
    acct = account(xemu, bearer=False, access_token_secret="wrong")
    found = await check(xemu, acct)
    assert set(found) == {BOTH, OUT, IN}
    assert all(not c.ok and c.error.startswith("who the credentials post as could not be "
                                               "read: users/me: X refused the credentials")
               for c in found.values())


async def test_check_online_prints_the_quota_and_the_budget(xemu: Running,
                                                            tmp_path: Path) -> None:
    st = xemu.emu.state
    st.read_cap, st.reads, st.cap_reset_day = 15_000, 14_000, 3
    cfg = tmp_path / "c.toml"
    cfg.write_text(two_sandboxes() + f"""
[accounts.x]
platform = "twitter"
api_base = "{xemu.base}"
bearer_token = "${{X_BEARER}}"
consumer_key = "${{X_CK}}"
consumer_secret = "${{X_CS}}"
access_token = "${{X_AT}}"
access_token_secret = "${{X_ATS}}"

[[communities.channels]]
account = "x"
query = "#kmers -is:retweet"
""")
    cfg.chmod(0o600)
    b = xemu.bot
    env = {**os.environ, "X_BEARER": b["bearer_token"], "X_CK": b["consumer_key"],
           "X_CS": b["consumer_secret"], "X_AT": b["access_token"],
           "X_ATS": b["access_token_secret"]}
    res = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "bridge.cli", "check", "-c", str(cfg),
                         "--online"], cwd=tmp_path, capture_output=True, text=True,
        timeout=120, env=env)
    out = res.stdout
    assert res.returncode == 0, out + res.stderr
    assert "  kmers/x: will read and write #kmers -is:retweet\n" \
           '    reads: recent search "#kmers -is:retweet -from:kmbridge", every 60 s or ' \
           "slower, at most 500 posts a poll and 10,000 a month (monthly_read_budget); X " \
           "project: 14,000 of 15,000 posts read this month, resets on day 3\n" \
           "    writes: posts as @kmbridge, one post per message" in out
    assert "    warning: the X project has read 93% of its monthly cap" in out
    assert not any(e["path"].startswith("/2/tweets") for e in xemu.emu.exchanges)
    for secret in (b["bearer_token"], b["access_token_secret"], b["consumer_secret"]):
        assert secret not in out + res.stderr
