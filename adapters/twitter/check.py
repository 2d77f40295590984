"""``hashbridge check --online`` for X channels: what each will read and write,
asked of X, read-only and without billed reads.

Asked once per account: who the credentials post as (``GET /2/users/me``) and,
with the app's Bearer Token, the project's read quota (``GET /2/usage/tweets``:
``project_usage`` of ``project_cap``, ``cap_reset_day``).  The recent search itself
is never called: on pay-per-use every post it returns is billed.  What has been
spent today is in the adapter's ledger, which lives in the running bridge's
database (``hashbridge status`` shows it), so it is left out here.

The verdicts are pure functions of those answers (:func:`read_verdict`,
:func:`write_verdict`); :func:`check_channels` does the I/O.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import tweepy

from adapters.twitter.client import XClient, problem_body
from adapters.twitter.compose import MAX_WEIGHTED
from adapters.twitter.config import TwitterAccount, TwitterChannel
from bridge.contract.adapter import (
    AdapterError,
    AuthError,
    ChannelCheck,
    ChannelSpec,
    TransientError,
)
from bridge.contract.model import ChannelKey

log = logging.getLogger("hashbridge.adapter.twitter.check")

NEARLY_SPENT = 0.9
"""The share of the project's monthly reads from which the check warns."""
CONSOLE = "the developer console (console.x.com)"
ACCESS_HOWTO = (f"attach the app to a Project whose access includes recent search "
                f"(pay-per-use, or the Basic or Pro plan) in {CONSOLE}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """What ``GET /2/usage/tweets`` says of the project's reads."""

    used: int
    cap: int
    reset_day: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageRefused:
    """Why the usage could not be read, and whether that makes reading impossible."""

    fatal: bool
    why: str


def parse_usage(body: Any) -> Usage | None:
    """``GetUsageResponse`` into :class:`Usage`; None when it lacks the counts.  The
    spec gives ``project_usage``/``project_cap`` as strings (an older docs example
    as numbers: both are read)."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        return None

    def count(v: Any) -> int | None:
        if isinstance(v, int) and not isinstance(v, bool):
            return v
        return int(v) if isinstance(v, str) and v.strip().isdigit() else None

    used, cap = count(data.get("project_usage")), count(data.get("project_cap"))
    if used is None or cap is None:
        return None
    return Usage(used=used, cap=cap, reset_day=count(data.get("cap_reset_day")))


def usage_refusal(exc: AdapterError) -> UsageRefused:
    """A failed usage call, read: X's 403 ``client-not-enrolled`` (the access level
    lacks the v2 routes the channel reads with) and a refused Bearer Token make
    reading impossible; a rate limit or an outage leaves it unknown."""
    cause = exc.__cause__
    body = problem_body(cause) if isinstance(cause, tweepy.HTTPException) else {}
    reason, kind = str(body.get("reason") or ""), str(body.get("type") or "")
    if reason == "client-not-enrolled" or kind.endswith("/client-forbidden"):
        needs = str(body.get("required_enrollment") or "")
        return UsageRefused(fatal=True, why=(
            f"X refuses this app's project its v2 reads (403 {reason or 'client-forbidden'}"
            + (f", it needs '{needs}'" if needs else "") + f"): the recent search this channel "
            f"reads with is not in its access level; {ACCESS_HOWTO}"))
    if isinstance(cause, tweepy.Unauthorized):
        return UsageRefused(fatal=True, why=(
            "X refused the bearer_token (401), which this account's searches use: copy the "
            f"app's Bearer Token again from {CONSOLE} (Keys and tokens)"))
    if isinstance(exc, TransientError):
        return UsageRefused(fatal=False, why=f"not checked: {exc}; run the check again")
    if isinstance(exc, AuthError):
        return UsageRefused(fatal=True, why=f"X refuses the app's Bearer Token: {exc}")
    return UsageRefused(fatal=False, why=f"not checked: {exc}")


def read_verdict(opts: TwitterChannel, account: TwitterAccount, me: str,
                 usage: Usage | UsageRefused | None) -> ChannelCheck:
    """What a reading channel reads: the search as the adapter runs it and the
    project's monthly quota (*usage*; None without a Bearer Token)."""
    query = opts.query
    if f"from:{me}".lower() not in query.lower():
        query += f" -from:{me}"  # the adapter's own addition: its copies are never billed
    reads = (f"recent search \"{query}\", every {opts.poll_seconds:g} s or slower, at most "
             f"{opts.max_pages * opts.max_results} posts a poll and "
             f"{account.monthly_read_budget:,} a month (monthly_read_budget)")
    warnings: list[str] = []
    if account.monthly_read_budget == 0:
        warnings.append("monthly_read_budget = 0: the adapter never searches (nothing is "
                        "read)")
    if usage is None:
        warnings.append("the X project's read quota is not checked: GET /2/usage/tweets "
                        "takes only the app's Bearer Token; set bearer_token on this account "
                        "to see it here")
        return ChannelCheck(ok=True, reads=reads, warnings=tuple(warnings))
    if isinstance(usage, UsageRefused):
        if usage.fatal:
            return ChannelCheck(ok=False, reads=reads, warnings=tuple(warnings),
                                error=usage.why)
        return ChannelCheck(ok=False, reads=reads, warnings=tuple(warnings),
                            error=f"the X project's read quota is {usage.why}")
    day = f"day {usage.reset_day}" if usage.reset_day else "its reset day"
    reads += (f"; X project: {usage.used:,} of {usage.cap:,} posts read this month, resets "
              f"on {day}")
    if usage.cap <= 0:
        return ChannelCheck(ok=False, reads=reads, warnings=tuple(warnings), error=(
            "the X project may read no posts (project_cap 0): its access level has no "
            f"recent search; {ACCESS_HOWTO}"))
    if usage.used >= usage.cap:
        warnings.append(f"the X project's monthly read cap is reached ({usage.used:,} of "
                        f"{usage.cap:,}): X refuses every search until {day}")
    elif usage.used >= NEARLY_SPENT * usage.cap:
        warnings.append(f"the X project has read {usage.used / usage.cap:.0%} of its "
                        f"monthly cap ({usage.used:,} of {usage.cap:,}): searches stop at "
                        f"the cap until {day} (every app of the project counts)")
    return ChannelCheck(ok=True, reads=reads, warnings=tuple(warnings))


def write_verdict(opts: TwitterChannel, account: TwitterAccount, me: str,
                  writers: int = 1) -> ChannelCheck:
    """What a writing channel writes: as whom, how (each message or a digest), and
    the daily budget the adapter holds it to (the account's, shared by its *writers*
    writing channels)."""
    if opts.mode == "off":
        return ChannelCheck(ok=True, writes="nothing: mode = \"off\" (this channel only "
                                            "reads)")
    p = account.prices
    how = ("one post per message" if opts.mode == "each"
           else f"one digest post every {opts.digest_minutes:g} min")
    writes = (f"posts as @{me}, {how}, up to "
              f"{25_000 if account.premium else MAX_WEIGHTED:,} weighted characters; at most "
              f"{account.max_posts_per_day} posts a day, spending at most "
              f"${account.max_usd_per_day:.2f} a day and ${account.max_usd_per_month:.2f} a "
              f"month, reads included (${p.post:.3f} a post, ${p.post_with_url:.3f} with a "
              "link)" + (f", shared by the account's {writers} writing channels"
                         if writers > 1 else "") + "; what is spent today: hashbridge status")
    fix = "raise it, or set mode = \"off\" on a channel that should only read"
    if account.max_posts_per_day == 0:
        return ChannelCheck(ok=False, writes=writes,
                            error=f"max_posts_per_day = 0: nothing will be posted; {fix}")
    cheapest = min(p.post, p.post_with_url)
    for key, cap in (("max_usd_per_day", account.max_usd_per_day),
                     ("max_usd_per_month", account.max_usd_per_month)):
        if cap + 1e-9 < cheapest:
            return ChannelCheck(ok=False, writes=writes, error=(
                f"{key} = {cap:g} is below the price of one post (${cheapest:.3f}): "
                f"nothing will be posted; {fix}"))
    return ChannelCheck(ok=True, writes=writes)


def merge(read: ChannelCheck | None, write: ChannelCheck | None) -> ChannelCheck:
    """One channel's check from its reading and writing halves."""
    halves = [h for h in (read, write) if h is not None]
    errors = [h.error for h in halves if not h.ok]
    return ChannelCheck(ok=not errors, reads=read.reads if read else "",
                        writes=write.writes if write else "",
                        warnings=tuple(w for h in halves for w in h.warnings),
                        error="; and ".join(errors))


async def _usage_page(client: Any) -> Any:
    """``GET /2/usage/tweets`` with the app's Bearer Token (its only auth in the
    spec), the three fields the check reads."""
    resp = await client.request("GET", "/2/usage/tweets", params={
        "usage.fields": "cap_reset_day,project_cap,project_usage"}, user_auth=False)
    return await resp.json()


async def check_channels(account: TwitterAccount, channels: tuple[ChannelSpec, ...]
                         ) -> dict[ChannelKey, ChannelCheck]:
    """Each channel's :class:`ChannelCheck`, asked of X (no post read, none written)."""
    client = XClient(consumer_key=account.consumer_key,
                     consumer_secret=account.consumer_secret,
                     access_token=account.access_token,
                     access_token_secret=account.access_token_secret,
                     bearer_token=account.bearer_token, api_base=account.api_base,
                     logger=log, timeout=account.request_timeout)
    usage: Usage | UsageRefused | None = None
    try:
        try:
            r = await client.call("users/me", lambda c: c.get_me(user_auth=True))
        except AdapterError as exc:
            failed = ChannelCheck(ok=False, error=f"who the credentials post as could not "
                                                  f"be read: {exc}")
            return {spec.key: failed for spec in channels}
        me = str(r.data.username)
        if account.bearer_token and any(s.direction != "out" for s in channels):
            try:
                usage = parse_usage(await client.call_raw("usage", _usage_page)) \
                    or UsageRefused(fatal=False, why="not checked: X answered without "
                                    "project_usage and project_cap")
            except AdapterError as exc:
                usage = usage_refusal(exc)
    finally:
        await client.close()
    writers = sum(1 for s in channels if s.direction != "in"
                  and isinstance(s.options, TwitterChannel) and s.options.mode != "off")
    out: dict[ChannelKey, ChannelCheck] = {}
    for spec in channels:
        assert isinstance(spec.options, TwitterChannel)
        read = (read_verdict(spec.options, account, me, usage)
                if spec.direction != "out" else None)
        write = (write_verdict(spec.options, account, me, writers)
                 if spec.direction != "in" else None)
        out[spec.key] = merge(read, write)
    return out
