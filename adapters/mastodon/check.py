"""``hashbridge check --online`` for Mastodon channels: what each will read and
write, asked of the instance, read-only (nothing is posted, followed or changed).

Asked once per account: the account (``verify_credentials``: suspended? limited?),
the instance (``/api/v2/instance``: the character limit, the hashtag feeds) and the
token's app (``/api/v1/apps/verify_credentials``: its scopes, shown since 4.3).
Asked per reading channel: the hashtag timeline's newest post (``limit=1``, local
only when configured), the same call the adapter starts from.

The verdicts are pure functions of those answers (:func:`read_verdict`,
:func:`write_verdict`); :func:`check_channels` does the I/O.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from mastodon import MastodonError

from adapters.mastodon.adapter import MastodonAdapter
from adapters.mastodon.config import MastodonAccount, MastodonChannel
from adapters.mastodon.convert import InstanceLimits
from bridge.contract.adapter import (
    AdapterError,
    AuthError,
    ChannelCheck,
    ChannelSpec,
    PermanentError,
)
from bridge.contract.model import ChannelKey

TOKEN_HOWTO = ("create an application with the scopes read and write under Preferences > "
               "Development on the instance, logged in as the bridge's account, and put its "
               "access token in access_token")
"""How to get a token that can do what the adapter does (one place, every fix)."""

READ_SCOPES = ("read:statuses", "read:notifications")
"""What reading needs: the hashtag stream (read:statuses since Mastodon 4.2) and the
bridge's mentions (commands, replies to its copies)."""
WRITE_SCOPES = ("write:statuses", "write:media")
"""What writing needs: posts, edits and deletes, and attachments."""


def covers(scopes: tuple[str, ...], needed: str) -> bool:
    """Whether granted *scopes* include *needed* (``write`` covers ``write:media``)."""
    return needed in scopes or needed.split(":", 1)[0] in scopes


def age(seconds: float) -> str:
    """A duration as the operator reads it: ``40 s``, ``12 min``, ``5 h``, ``3 days``."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


def _when(value: Any) -> float | None:
    """A status's ``created_at`` (Mastodon.py gives a datetime; the wire an ISO string)."""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def _scope_text(scopes: tuple[str, ...] | None) -> str:
    if scopes is None:
        return "the token's scopes are not shown by this instance (Mastodon before 4.3)"
    return "the token's app has the scopes " + (" ".join(scopes) or "(none)")


def _missing(scopes: tuple[str, ...] | None, needed: tuple[str, ...]) -> list[str]:
    return [] if scopes is None else [s for s in needed if not covers(scopes, s)]


def read_verdict(opts: MastodonChannel, newest: list[Any], limits: InstanceLimits,
                 scopes: tuple[str, ...] | None, now: float) -> ChannelCheck:
    """What a reading channel reads: the tag timeline's newest post (*newest*, the
    answer to ``limit=1``) and whether the token's scopes let the adapter follow it."""
    where = f"#{opts.hashtag}" + (" (this instance's posts only)" if opts.local_only else "")
    first = newest[0] if newest else None
    when = _when(first.get("created_at")) if isinstance(first, Mapping) else None
    if first is None:
        reads = f"{where}: no posts yet"
    elif when is None:
        reads = f"{where}: newest post at an unknown time"
    else:
        reads = f"{where}: newest post {age(now - when)} ago"
    warnings = []
    if not opts.local_only and limits.hashtag_feed_access == "disabled":
        warnings.append("this instance serves no other servers' posts on hashtag feeds "
                        "(timelines_access.hashtag_feeds.remote = disabled): only its own "
                        f"posts with #{opts.hashtag} are read")
    missing = _missing(scopes, READ_SCOPES)
    if missing:
        return ChannelCheck(ok=False, reads=reads, warnings=tuple(warnings), error=(
            f"{_scope_text(scopes)}, without {' and '.join(missing)}: the hashtag stream "
            "needs read:statuses and the bridge reads its mentions with "
            f"read:notifications; {TOKEN_HOWTO}"))
    return ChannelCheck(ok=True, reads=reads, warnings=tuple(warnings))


def write_verdict(opts: MastodonChannel, me: Mapping[str, Any], limits: InstanceLimits,
                  scopes: tuple[str, ...] | None) -> ChannelCheck:
    """What a writing channel writes: as whom, with which visibility, how long a
    post may be; refused when the account is suspended or the scopes lack writing."""
    acct = f"@{me.get('acct')}"
    shown = ("public: the copies show on the #{tag} timeline" if opts.visibility == "public"
             else "unlisted: the copies stay off the #{tag} and public timelines")
    writes = (f"posts as {acct}, {shown.format(tag=opts.hashtag)}; at most "
              f"{limits.max_characters} characters a post (a link counts "
              f"{limits.url_weight}); {_scope_text(scopes)}")
    warnings = []
    if me.get("limited"):
        warnings.append(f"{acct} is limited by the instance's moderators: its posts are "
                        "shown only to its followers"
                        + (", not on the hashtag timeline" if opts.visibility == "public"
                           else "") + "; ask the moderators to lift the limit (or run the "
                        "bridge from another account)")
    if me.get("suspended"):
        return ChannelCheck(ok=False, writes=writes, warnings=tuple(warnings), error=(
            f"{acct} is suspended by the instance's moderators and cannot post: ask them "
            "to lift it, or run the bridge from another account"))
    missing = _missing(scopes, WRITE_SCOPES)
    if missing:
        return ChannelCheck(ok=False, writes=writes, warnings=tuple(warnings), error=(
            f"{_scope_text(scopes)}, without {' and '.join(missing)}: posting needs "
            f"write:statuses and attachments write:media; {TOKEN_HOWTO}"))
    return ChannelCheck(ok=True, writes=writes, warnings=tuple(warnings))


def merge(read: ChannelCheck | None, write: ChannelCheck | None) -> ChannelCheck:
    """One channel's check from its reading and writing halves."""
    halves = [h for h in (read, write) if h is not None]
    errors = [h.error for h in halves if not h.ok]
    return ChannelCheck(ok=not errors, reads=read.reads if read else "",
                        writes=write.writes if write else "",
                        warnings=tuple(w for h in halves for w in h.warnings),
                        error="; and ".join(errors))


def _status(exc: AdapterError) -> int:
    cause = exc.__cause__
    if isinstance(cause, MastodonError) and len(cause.args) > 1 \
            and isinstance(cause.args[1], int):
        return cause.args[1]
    return 0


def read_failure(exc: AdapterError, opts: MastodonChannel, base_url: str) -> ChannelCheck:
    """The tag timeline refused: what it means and what to fix."""
    tag, status = opts.hashtag, _status(exc)
    if status == 401:
        error = (f"the instance refused the access token reading #{tag} (401): "
                 f"{TOKEN_HOWTO}")
    elif status == 403:
        error = (f"the instance refuses reading #{tag} ({exc}): the token needs "
                 f"read:statuses; {TOKEN_HOWTO}")
    elif status == 404:
        error = (f"{base_url} has no hashtag timeline (404 on /api/v1/timelines/tag/{tag}): "
                 "base_url must be the Mastodon instance itself (https://host, no path)")
    elif isinstance(exc, AuthError | PermanentError):
        error = f"the instance refuses reading #{tag}: {exc}"
    else:
        error = (f"not checked: reading #{tag} failed for now ({exc}); run the check "
                 "again")
    return ChannelCheck(ok=False, error=error)


async def check_channels(account: MastodonAccount, channels: tuple[ChannelSpec, ...]
                         ) -> dict[ChannelKey, ChannelCheck]:
    """Each channel's :class:`ChannelCheck`, asked of the instance (GETs only)."""
    adapter = MastodonAdapter(account, ())
    try:
        me = await adapter._call(adapter.client.account_verify_credentials)
        limits = await adapter._ensure_instance()
    except AdapterError as exc:
        failed = ChannelCheck(ok=False, error=f"the account could not be read: "
                                              f"{type(exc).__name__}: {exc}")
        return {spec.key: failed for spec in channels}
    scopes: tuple[str, ...] | None
    try:
        app = await adapter._call(adapter.client.app_verify_credentials)
        got = app.get("scopes") if isinstance(app, Mapping) else None
        scopes = tuple(str(s) for s in got) if isinstance(got, list) else None
    except AdapterError:  # before 4.3 it needs the read scope; not a verdict either way
        scopes = None
    out: dict[ChannelKey, ChannelCheck] = {}
    for spec in channels:
        assert isinstance(spec.options, MastodonChannel)
        opts = spec.options
        read = write = None
        if spec.direction != "out":
            try:
                newest = await adapter._call(adapter.client.timeline_hashtag, opts.hashtag,
                                             local=opts.local_only, limit=1)
            except AdapterError as exc:
                read = read_failure(exc, opts, account.base_url)
            else:
                read = read_verdict(opts, list(newest or []), limits, scopes, time.time())
        if spec.direction != "in":
            write = write_verdict(opts, me, limits, scopes)
        out[spec.key] = merge(read, write)
    return out
