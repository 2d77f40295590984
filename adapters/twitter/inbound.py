"""Inbound half of the X adapter: recent-search polling and the deletion re-check.

* One search per channel with a persisted ``since_id``: no post is read (or
  billed) twice, across restarts too.  The bot's own posts are excluded in the
  query itself (``-from:bot``) so they are not even billed.
* Interval: the configured one, never faster than ``search_share`` of the
  15-minute window allows across our channels; up to ``max_poll_seconds`` (and
  one page per poll) when the month's reads run ahead of the read budget's pace.
* Deletion compliance: every relayed post is looked up once more when it is
  ``recheck_after_hours`` old (before X's 24-hour deadline); the ones X reports
  missing become ``Deleted`` events.  This costs one more read per relayed post.
  The same lookup brings each post's ``like_count`` (``public_metrics``): the
  post's X likes, counted on the live page and transcripts, with no read added.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from adapters.twitter.budget import Caps, Ledger, next_month
from adapters.twitter.convert import like_counts, missing_ids, parse_page
from bridge.contract.adapter import (
    INLINE_MAX_BYTES,
    AdapterContext,
    ChannelSpec,
    Health,
    PermanentError,
    TransientError,
)
from bridge.contract.model import Deleted, Edited, NativeId, Posted, Reacted, Rejected
from bridge.contract.richtext import Mention, iter_inlines

if TYPE_CHECKING:
    from adapters.twitter.client import XClient
    from adapters.twitter.config import TwitterAccount, TwitterChannel

EXPANSIONS = ["author_id", "referenced_tweets.id", "referenced_tweets.id.author_id",
              "attachments.media_keys", "attachments.poll_ids"]
TWEET_FIELDS = ["author_id", "created_at", "conversation_id", "entities", "referenced_tweets",
                "attachments", "note_tweet", "lang", "in_reply_to_user_id"]
USER_FIELDS = ["username", "name", "description", "profile_image_url"]
MEDIA_FIELDS = ["url", "preview_image_url", "alt_text", "type", "variants"]
POLL_FIELDS = ["options", "end_datetime", "voting_status"]


RECENT_SEARCH_SECONDS = 7 * 86400.0
"""How far back ``search/recent`` reaches: its ``start_time`` (and a ``since_id``'s
post) must be within the last 7 days, else X answers 400 to every search."""
_MARGIN = 120.0
"""Kept inside those 7 days: our clock and X's differ, and a page is read later."""
SNOWFLAKE_EPOCH_MS = 1288834974657
"""X's snowflake epoch: an id is milliseconds from it << 22 (plus a sequence)."""


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def search_start(cursor: str, now: float) -> dict[str, str]:
    """The search's ``since_id`` or ``start_time`` for a saved *cursor* (a post id,
    or ``t:`` and a time), kept within what recent search covers: a position
    older than 7 days (the bridge was down that long) becomes the oldest
    ``start_time`` allowed, instead of a 400 on every search."""
    oldest = now - RECENT_SEARCH_SECONDS + _MARGIN
    if cursor.isdigit():
        if ((int(cursor) >> 22) + SNOWFLAKE_EPOCH_MS) / 1000 >= oldest:
            return {"since_id": cursor}
        return {"start_time": _iso(oldest)}
    start = cursor.removeprefix("t:")
    try:
        at = datetime.fromisoformat(start.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return {"start_time": _iso(oldest)}
    return {"start_time": start if at >= oldest else _iso(oldest)}


class Inbound:
    account: TwitterAccount
    channels: dict[str, ChannelSpec]
    client: XClient
    ctx: AdapterContext | None
    ledger: Ledger
    budget_note: str
    log: logging.Logger
    _summoned: OrderedDict[str, bool]
    _poll_locks: dict[str, asyncio.Lock]

    clock: Callable[[], float]

    # Provided by the adapter class this is mixed into.
    def _opts(self, ch: ChannelSpec) -> TwitterChannel:
        raise NotImplementedError

    def _caps(self) -> Caps:
        raise NotImplementedError

    def status_detail(self) -> str:
        raise NotImplementedError

    async def whoami(self) -> tuple[str, str]:
        raise NotImplementedError

    async def _save_ledger(self, **charge: Any) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ inbound
    async def _poll_loop(self, ch: ChannelSpec) -> None:
        assert self.ctx is not None
        backoff = 5.0
        while True:
            try:
                await self.poll_once(ch)
                backoff = 5.0
                self.ctx.set_health(Health.CONNECTED, self.status_detail())
                delay = self.poll_interval(ch)
            except TransientError as e:
                self.ctx.set_health(Health.DISCONNECTED, str(e))
                delay = e.retry_after if e.retry_after is not None else backoff
                # A failed search is not billed: after an outage of minutes, look
                # again within a minute, not after max_poll_seconds (15 min).
                backoff = min(backoff * 2, self._opts(ch).max_poll_seconds, 60.0)
            except PermanentError as e:  # a query X refuses: say so, keep trying slowly
                self.log.error("search on %s refused: %s", ch.key, e)
                self.ctx.set_health(Health.CONNECTED, f"search refused: {e}")
                delay = self._opts(ch).max_poll_seconds
            await asyncio.sleep(delay)

    def _above_read_pace(self) -> bool:
        now = self.clock()
        led = self.ledger.rolled(now)
        start = datetime.fromtimestamp(now, UTC).replace(day=1, hour=0, minute=0, second=0,
                                                         microsecond=0).timestamp()
        frac = (now - start) / max(1.0, next_month(now) - start)
        return led.reads_month > self.account.monthly_read_budget * max(frac, 0.02)

    def poll_interval(self, ch: ChannelSpec) -> float:
        """Seconds to the next search: the configured interval, no faster than
        half the rate window allows across our channels, slower when the reads
        run ahead of the monthly budget's pace or the window is used up."""
        opts, now = self._opts(ch), self.clock()
        inbound = sum(1 for c in self.channels.values() if c.direction != "out") or 1
        lim = self.client.limits_for("GET", "/2/tweets/search/recent")
        window = (lim.limit if lim and lim.limit else (450 if self.client.app_search else 300))
        delay = max(opts.poll_seconds, 900 / (window * self.account.search_share) * inbound)
        if lim and lim.remaining is not None and lim.remaining <= inbound and lim.reset_at:
            delay = max(delay, lim.reset_at - now + 1)
        if self._above_read_pace():
            delay = max(delay, opts.max_poll_seconds)
        return delay

    async def poll_once(self, ch: ChannelSpec) -> int:
        """One search for *ch*; emits new posts with the new since_id.  Returns
        how many posts were emitted."""
        # One search per channel at a time: two concurrent ones would read the
        # same since_id and emit (and pay for) the same posts twice.
        async with self._poll_locks.setdefault(ch.key, asyncio.Lock()):
            return await self._poll_once(ch)

    async def _poll_once(self, ch: ChannelSpec) -> int:
        assert self.ctx is not None
        ctx, opts, now = self.ctx, self._opts(ch), self.clock()
        if not self.ledger.reads_allowed(now, self._caps()):
            self.budget_note = "read budget spent for this month: not searching"
            ctx.set_health(Health.CONNECTED, self.status_detail())
            return 0
        me_id, me_name = await self.whoami()
        name = f"since:{ch.key}"
        cur = await ctx.get_cursor(name)
        query = opts.query
        if f"from:{me_name}".lower() not in query.lower():
            query += f" -from:{me_name}"
        kw: dict[str, Any] = dict(query=query, max_results=opts.max_results,
                                  expansions=EXPANSIONS, tweet_fields=TWEET_FIELDS,
                                  user_fields=USER_FIELDS, media_fields=MEDIA_FIELDS,
                                  poll_fields=POLL_FIELDS,
                                  user_auth=not self.client.app_search)
        first = not cur
        if not cur:
            # First start: the channel's window back (reads cost money: at most
            # max_pages pages of max_results), or from now with a window of 0.
            cur = "t:" + _iso(now - min(ch.catchup_window, RECENT_SEARCH_SECONDS))
            await ctx.set_cursor(name, cur)
            if ch.catchup_window > 0:
                self.log.info("%s: first start, relaying the last %ds", ch.key,
                              min(ch.catchup_window, RECENT_SEARCH_SECONDS))
        kw.update(search_start(cur, now))
        if not first and kw.get("start_time", cur) != cur.removeprefix("t:"):
            self.log.warning("%s: the saved position is older than the 7 days X's recent "
                             "search covers; reading from %s (older posts are out of "
                             "reach)", ch.key, kw["start_time"])
        pages = 1 if self._above_read_pace() else opts.max_pages
        events: list[Posted] = []
        rejected: list[Rejected] = []
        edits: dict[str, tuple[str, ...]] = {}
        newest: int | None = None
        token = None
        for _ in range(pages):
            raw = _raw_page(await self.client.call_raw(
                "search", functools.partial(_search_page, kw, token)))
            read = len(raw.get("data") or [])
            await self._save_ledger(usd=read * self.account.prices.read, reads=read)
            # A page of long posts is read in a worker thread: no page stalls the loop.
            if _text_size(raw) > INLINE_MAX_BYTES:
                parsed = await asyncio.to_thread(parse_page, raw, ch.key, own_user_id=me_id)
            else:
                parsed = parse_page(raw, ch.key, own_user_id=me_id)
            events += parsed.events
            rejected += parsed.rejected
            edits.update(parsed.edits)
            if parsed.newest_id:
                newest = max(newest or 0, int(parsed.newest_id))
            token = raw["meta"].get("next_token")
            if not token:
                break
        if token:
            self.log.warning("%s: more new posts than %d pages; older ones skipped",
                             ch.key, pages)
        emitted_name = f"emitted:{ch.key}"
        emitted: list[str] = json.loads(await ctx.get_cursor(emitted_name) or "[]")
        known = set(emitted)
        fresh: list[Posted | Edited | Rejected] = list(rejected)
        # An edited post whose earlier versions this reader does not know (edited
        # before a search found it: the bridge was down or the store was holding
        # writes; or found, but the list of what was emitted was not saved) is the
        # member's post under its first id, where it stands in the conversation:
        # replies name that id, and it goes out before them.  It is followed by
        # its edit: a post the core already has takes the new text from it (the
        # post itself is then a re-read), a new one drops it as unchanged.
        on_page = {ev.native_id for ev in events}
        reborn: set[str] = set()
        for k, ev in enumerate(events):
            chain = edits.get(ev.native_id)
            if chain and not any(i in known or i in on_page for i in chain):
                events[k] = dataclasses.replace(ev, native_id=NativeId(chain[0]))
                reborn.add(chain[0])
        for ev in sorted(events, key=lambda e: int(e.native_id)):
            self._remember_summons(ev, me_name)
            if await ctx.is_own(ch.key, ev.native_id):
                continue
            earlier = next((i for i in edits.get(ev.native_id, ()) if i in known), None)
            if earlier:  # an edit of a post we relayed: same message, new text
                fresh.append(Edited(channel=ch.key, native_id=NativeId(earlier),
                                    text=ev.text, attachments=ev.attachments,
                                    edited_at=ev.created_at))
            else:  # new, or an edit of a post we never saw: relay it as a post
                fresh.append(ev)
                emitted.append(ev.native_id)
                known.add(ev.native_id)
                if ev.native_id in reborn:
                    fresh.append(Edited(channel=ch.key, native_id=ev.native_id,
                                        text=ev.text, attachments=ev.attachments,
                                        edited_at=ev.created_at))
        if fresh:
            await ctx.emit_many(list(fresh), cursor=(name, str(newest)))
            # Not in the emit's transaction: a crash right here makes a later
            # edit of these posts arrive as a new post (never a lost one).
            await ctx.set_cursor(emitted_name, json.dumps(emitted[-2000:]))
            posted = [e.native_id for e in fresh if isinstance(e, Posted)]
            if opts.recheck_after_hours > 0 and posted:
                await self._remember_relayed(ch, posted)
        elif newest:
            await ctx.set_cursor(name, str(newest))
        return len(fresh)

    def _remember_summons(self, ev: Posted, me_name: str) -> None:
        named = any(isinstance(n, Mention) and n.handle.lower() == me_name.lower()
                    for n in iter_inlines(ev.text))
        self._summoned[ev.native_id] = named
        while len(self._summoned) > 5000:
            self._summoned.popitem(last=False)

    # ------------------------------------------------------------------ deletes
    async def _remember_relayed(self, ch: ChannelSpec, ids: Sequence[str]) -> None:
        assert self.ctx is not None
        name = f"relayed:{ch.key}"
        seen = json.loads(await self.ctx.get_cursor(name) or "[]")
        now = self.clock()
        seen += [[i, now] for i in ids]
        await self.ctx.set_cursor(name, json.dumps(seen[-2000:]))

    async def recheck_deletions(self, ch: ChannelSpec) -> int:
        """Look up relayed posts that reached ``recheck_after_hours``; emit
        ``Deleted`` for those X no longer has.  Returns how many were gone."""
        assert self.ctx is not None
        ctx, opts = self.ctx, self._opts(ch)
        name = f"relayed:{ch.key}"
        seen: list[list[Any]] = json.loads(await ctx.get_cursor(name) or "[]")
        cutoff = self.clock() - opts.recheck_after_hours * 3600
        due = [str(i) for i, at in seen if at <= cutoff]
        gone: set[str] = set()
        likes: list[Reacted] = []
        for k in range(0, len(due), 100):
            batch = due[k:k + 100]
            r = _raw_page(await self.client.call_raw(
                "deletion re-check",
                functools.partial(_get_posts, batch, not self.client.app_search)))
            live = len(r["data"])
            await self._save_ledger(usd=live * self.account.prices.read, reads=live)
            gone |= missing_ids({"errors": r["errors"]})
            likes += like_counts(r, ch.key)
        rest = json.dumps([e for e in seen if str(e[0]) not in set(due)])
        deleted = [Deleted(channel=ch.key, native_id=NativeId(i)) for i in due if i in gone]
        if deleted:
            self.log.info("%d relayed posts were deleted on X; propagating", len(deleted))
        events: list[Reacted | Deleted] = [*likes, *deleted]
        if events:
            await ctx.emit_many(list(events), cursor=(name, rest))
        elif due:
            await ctx.set_cursor(name, rest)
        return len(deleted)

    async def _recheck_loop(self, ch: ChannelSpec) -> None:
        every = max(1.0, min(self._opts(ch).recheck_after_hours * 3600 / 4, 900.0))
        delay = every
        while True:
            await asyncio.sleep(delay)
            delay = every
            try:
                await self.recheck_deletions(ch)
            except (TransientError, PermanentError) as e:
                self.log.warning("deletion re-check on %s postponed: %s", ch.key, e)
                if isinstance(e, TransientError) and e.retry_after:
                    delay = max(every, e.retry_after)  # no reads before the window resets


def _search_page(kw: dict[str, Any], token: str | None, client: Any) -> Awaitable[Any]:
    """One page of recent search (*client* is tweepy's AsyncClient, untyped)."""
    page: Awaitable[Any] = client.search_recent_tweets(**kw, next_token=token)
    return page


def _get_posts(ids: list[str], user_auth: bool, client: Any) -> Awaitable[Any]:
    """A lookup of up to 100 posts by id."""
    # public_metrics rides along: X bills the posts a lookup returns, not their fields.
    page: Awaitable[Any] = client.get_tweets(ids, user_auth=user_auth,
                                             tweet_fields=["public_metrics"])
    return page


def _text_size(page: dict[str, Any]) -> int:
    """The characters of text a page holds (what converting it costs)."""
    total = 0
    for tw in page.get("data") or []:
        if isinstance(tw, dict):
            for v in (tw.get("text"), (tw.get("note_tweet") or {}).get("text")
                      if isinstance(tw.get("note_tweet"), dict) else None):
                total += len(v) if isinstance(v, str) else 0
    return total


def _raw_page(resp: Any) -> dict[str, Any]:
    """A page in the wire shape the converters read, whatever X (or tweepy's
    Response) put in its fields: ``data`` and ``errors`` lists, ``includes``
    and ``meta`` objects."""
    if isinstance(resp, dict):
        data, inc, meta, errors = (resp.get("data"), resp.get("includes"), resp.get("meta"),
                                   resp.get("errors"))
    else:
        data, meta, errors = resp.data, resp.meta, resp.errors
        inc = {k: [getattr(o, "data", o) for o in v] for k, v in (resp.includes or {}).items()}
        data = [getattr(t, "data", t) for t in data or []]
    if isinstance(data, dict):
        data = [data]
    return {"data": data if isinstance(data, list) else [],
            "includes": inc if isinstance(inc, dict) else {},
            "meta": meta if isinstance(meta, dict) else {},
            "errors": errors if isinstance(errors, list) else []}
