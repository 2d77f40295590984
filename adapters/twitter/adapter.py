"""The X adapter: frugal recent-search polling in, `each`/`digest`/`off` out,
inside a per-account budget and X's automation rules.

* Inbound: one search per channel with a persisted ``since_id`` (so no post is
  read, or billed, twice); the bot's own posts are excluded in the query itself
  (``-from:bot``) so they are not even billed.  The poll interval follows the
  rate-limit window and slows to ``max_poll_seconds`` when the month's reads run
  ahead of the read budget's pace.
* Outbound: every create passes the budget first (posts per day, USD per day
  and month at the configured prices); a spent budget is a ``TransientError``
  until the next window, so the core keeps the message queued.  X has no
  idempotency key: a create whose key was already attempted looks for its text
  among the account's recent posts before posting again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

from adapters.twitter.budget import Caps, Ledger
from adapters.twitter.client import DUPLICATE, NOT_SUMMONED, Forbidden403, Gone, XClient
from adapters.twitter.compose import (
    MAX_WEIGHTED,
    DigestItem,
    as_shown,
    defuse_urls,
    digest_text,
    fit,
    has_url,
    weighted_length,
)
from adapters.twitter.config import TwitterAccount, TwitterChannel
from adapters.twitter.digest import DigestState, Item, digest_post_text
from adapters.twitter.inbound import Inbound
from adapters.twitter.media import IMAGE_TYPES, MAX_ATTACHMENTS, MAX_IMAGE_BYTES, MEDIA_HOSTS
from adapters.twitter.media import fetch as fetch_media
from adapters.twitter.media import upload as upload_media
from adapters.twitter.textrules import neutralise as x_neutralise
from bridge.contract.adapter import (
    AdapterContext,
    Capabilities,
    ChannelSpec,
    Health,
    PermanentError,
    SendCreate,
    SendDelete,
    SendEdit,
    SendOp,
    SendResult,
    TextFormat,
    TransientError,
)
from bridge.contract.media import MediaFetcher, MediaSource, with_notes
from bridge.contract.model import ChannelKey, NativeId
from bridge.contract.services import Services
from bridge.contract.textconv import to_plain


class TwitterAdapter(Inbound):
    def __init__(self, account: TwitterAccount, channels: tuple[ChannelSpec, ...], *,
                 clock: Any = time.time, services: Services | None = None) -> None:
        self.account = account
        self.channels = {c.key: c for c in channels}
        self.clock = clock
        self.log = logging.getLogger("hashbridge.adapter.twitter")
        self.client = XClient(consumer_key=account.consumer_key,
                              consumer_secret=account.consumer_secret,
                              access_token=account.access_token,
                              access_token_secret=account.access_token_secret,
                              bearer_token=account.bearer_token, api_base=account.api_base,
                              logger=self.log, clock=clock, timeout=account.request_timeout)
        self.ctx: AdapterContext | None = None
        self.ledger = Ledger()
        self.budget_note = ""
        self.me: tuple[str, str] | None = None
        self._ready = asyncio.Event()
        self._lock = asyncio.Lock()
        self._inflight: dict[str, float] = {}
        self._summoned: OrderedDict[str, bool] = OrderedDict()
        self._poll_locks: dict[str, asyncio.Lock] = {}
        self._api_problem = ""
        self.client.on_health = self._api_health
        media = (services if services is not None else Services()).media_sources
        media.register((c.key for c in channels), self.media_source)
        self.media = MediaFetcher(media, self.log)

    def media_source(self) -> MediaSource:
        """Posts from X carry media on X's CDN (plus the account's ``media_hosts``)."""
        return MediaSource(hosts=MEDIA_HOSTS | frozenset(self.account.media_hosts),
                           allow_private=self.account.allow_private_media_hosts)

    def _api_health(self, problem: str) -> None:
        """Any call failing for a transient reason (no connection, 5xx, 429) shows
        as an outage, posts and deletes as well as searches; the next call that
        gets an answer ends it (and the deliveries that waited go at once)."""
        if self.ctx is None or problem == self._api_problem:
            return
        self._api_problem = problem
        if problem:
            self.ctx.set_health(Health.DISCONNECTED, problem)
        else:
            self.ctx.set_health(Health.CONNECTED, self.status_detail())

    # ------------------------------------------------------------------ run
    async def run(self, ctx: AdapterContext) -> None:
        self.ctx = ctx
        self.log = logging.getLogger(f"hashbridge.adapter.twitter.{ctx.name}")
        self.client.log = self.log
        self.media.log = self.log
        self.ledger = Ledger.loads(await ctx.get_cursor("budget"))
        # Creates attempted but not confirmed before the last stop (X has no
        # idempotency key, so these are looked up before posting again).
        self._inflight = json.loads(await ctx.get_cursor("inflight") or "{}")
        try:
            await self.whoami()
            ctx.set_health(Health.CONNECTED, self.status_detail())
            self._ready.set()
            async with asyncio.TaskGroup() as tg:
                for ch in ctx.channels:
                    opts = self._opts(ch)
                    if ch.direction != "out":
                        tg.create_task(self._poll_loop(ch))
                        if opts.recheck_after_hours > 0:
                            tg.create_task(self._recheck_loop(ch))
                    if ch.direction != "in" and opts.mode == "digest":
                        tg.create_task(self._digest_loop(ch))
                await asyncio.Event().wait()  # serve sends until cancelled
        finally:
            self._ready.clear()
            await self.client.close()

    async def whoami(self) -> tuple[str, str]:
        if self.me is None:
            r = await self.client.call("users/me", lambda c: c.get_me(user_auth=True))
            self.me = (str(r.data.id), str(r.data.username))
        return self.me

    def _opts(self, ch: ChannelSpec) -> TwitterChannel:
        assert isinstance(ch.options, TwitterChannel)
        return ch.options

    def status_detail(self) -> str:
        led = self.ledger.rolled(self.clock())
        a = self.account
        parts = [f"posts today {led.posts_today}/{a.max_posts_per_day}",
                 f"spent ${led.usd_today:.3f}/day of ${a.max_usd_per_day:.2f}",
                 f"${led.usd_month:.3f}/month of ${a.max_usd_per_month:.2f}",
                 f"reads {led.reads_month}/{a.monthly_read_budget} this month"]
        return (self.budget_note + "; " if self.budget_note else "") + ", ".join(parts)

    async def _save_ledger(self, **charge: Any) -> None:
        self.ledger = self.ledger.charge(self.clock(), **charge)
        if self.ctx is not None:
            await self.ctx.set_cursor("budget", self.ledger.dumps())

    # ------------------------------------------------------------------ outbound
    def capabilities(self, channel: ChannelKey) -> Capabilities:
        ch = self.channels.get(channel)
        digest = ch is not None and self._opts(ch).mode == "digest"
        return Capabilities(
            max_length=25_000 if self.account.premium else MAX_WEIGHTED,
            count=weighted_length, neutralise=x_neutralise, text_format=TextFormat.PLAIN,
            edit=False, delete=True, posts_per_day=self.account.max_posts_per_day,
            part_cost=self.price_of, cost_per_day=self.account.max_usd_per_day,
            reply=not digest, threads=False, formatted=False,
            media_types=frozenset() if digest else IMAGE_TYPES,
            max_media_bytes=MAX_IMAGE_BYTES, max_attachments=0 if digest else MAX_ATTACHMENTS,
            needs_hashtag=True, links_cost=True)

    def _caps(self) -> Caps:
        return self.account.caps()

    async def _wait_ready(self) -> AdapterContext:
        try:
            async with asyncio.timeout(10):
                await self._ready.wait()
        except TimeoutError:
            raise TransientError("X adapter is not running yet", retry_after=5) from None
        assert self.ctx is not None
        return self.ctx

    async def send(self, op: SendOp) -> SendResult:
        await self._wait_ready()
        ch = self.channels.get(op.channel)
        if ch is None:
            raise PermanentError(f"channel {op.channel} is not served by this X account")
        mode = self._opts(ch).mode
        match op:
            case SendEdit():
                raise PermanentError("posts on X cannot be edited through the API; "
                                     "the edit is not relayed")
            case SendDelete():
                return await self._delete(ch, op)
            case SendCreate() if mode == "off":
                raise PermanentError("X channel is read-only (mode = off)")
            case SendCreate() if mode == "digest":
                return await self._queue_digest(ch, op)
            case SendCreate():
                return await self._create_each(ch, op)
        raise PermanentError(f"unknown operation {type(op).__name__}")

    def price_of(self, text: str) -> float:
        """What posting *text* costs (USD): X bills a post with a URL at its own price."""
        prices = self.account.prices
        return prices.post_with_url if has_url(text) else prices.post

    def _check_budget(self, text: str) -> float:
        cost = self.price_of(text)
        refusal = self.ledger.refusal(self.clock(), self._caps(), cost)
        if refusal:
            why, until = refusal
            if why != self.budget_note:  # once per spell, not once per queued message
                self.log.warning("not posting: %s (until %s)", why,
                                 datetime.fromtimestamp(until, UTC).isoformat())
            self.budget_note = why
            if self.ctx:
                self.ctx.set_health(Health.CONNECTED, self.status_detail())
            raise TransientError(why, retry_after=max(1.0, until - self.clock()))
        self.budget_note = ""
        return cost

    def _fitted(self, text: str) -> str:
        limit = 25_000 if self.account.premium else MAX_WEIGHTED
        if weighted_length(text) > limit:
            self.log.warning("rendered text was %d weighted chars; cut to %d",
                             weighted_length(text), limit)
            return fit(text, limit)
        return text

    async def _create_each(self, ch: ChannelSpec, op: SendCreate) -> SendResult:
        rendered, batch = op.rendered, None
        if rendered.attachments:
            # Fetched first: what could not be fetched is named in the text.
            batch = await fetch_media(self.media, op.idempotency_key, op.post.origin_channel,
                                      rendered.attachments, self.log)
            limit = 25_000 if self.account.premium else MAX_WEIGHTED
            rendered = with_notes(rendered, batch.notes,
                                  fits=lambda t: weighted_length(t) <= limit)
        text = self._fitted(rendered.plain)
        key = op.idempotency_key
        if key in self._inflight:
            found = await self.find_own_copy(text, since=self._inflight.get(key))
            if found:
                self.log.info("delivery %s was already posted as %s before a restart", key,
                              found)
                await self._finish(key, cost=0.0)
                return self._result(found)
        cost = self._check_budget(text)
        reply_to = await self._reply_target(ch, op.reply_to)
        media: list[str] = []
        if batch is not None and batch.fetched:
            self.client._open()
            assert self.client.session is not None
            media = await upload_media(self.client.session, self.client._keys,
                                       batch.fetched, self.log)
        return await self._post(key, text, reply_to, cost, media)

    async def _post(self, key: str, text: str, reply_to: str | None, cost: float,
                    media: list[str] | None = None) -> SendResult:
        assert self.ctx is not None
        self._inflight[key] = self.clock()
        await self._save_inflight()
        try:
            r = await self.client.call("post", lambda c: c.create_tweet(
                text=text or None, in_reply_to_tweet_id=reply_to, media_ids=media or None,
                user_auth=True))
        except Forbidden403 as e:
            if DUPLICATE in str(e).lower():
                found = await self.find_own_copy(text, since=None)
                if found:
                    await self._finish(key, cost=0.0)
                    return self._result(found)
                raise PermanentError(f"X refuses this text as a duplicate of an older post: "
                                     f"{e}") from e
            if NOT_SUMMONED in str(e).lower() and reply_to:
                self._summoned[reply_to] = False
                self.log.info("X refused a reply under %s (bot not summoned); next attempt "
                              "posts standalone", reply_to)
                raise TransientError("reply not allowed by X; retrying standalone",
                                     retry_after=0) from e
            raise PermanentError(str(e)) from e
        except TransientError as e:
            if "rate limited" in str(e) or "usage cap" in str(e):
                self._inflight.pop(key, None)  # X refused before creating anything
                await self._save_inflight()
            raise
        lim = self.client.limits_for("POST", "/2/tweets")
        if lim:
            self.ctx.rate_limit(remaining=lim.remaining, reset_at=lim.reset_at, limit=lim.limit)
        await self._finish(key, cost=cost, posts=1)
        return self._result(str(r.data["id"]))

    async def _save_inflight(self) -> None:
        assert self.ctx is not None
        await self.ctx.set_cursor("inflight", json.dumps(self._inflight))

    async def _finish(self, key: str, *, cost: float, posts: int = 0) -> None:
        assert self.ctx is not None
        if self._inflight.pop(key, None) is not None:
            await self._save_inflight()
        if cost or posts:
            await self._save_ledger(usd=cost, posts=posts)
        self.ctx.set_health(Health.CONNECTED, self.status_detail())

    def _result(self, tid: str) -> SendResult:
        name = self.me[1] if self.me else "i"
        return SendResult(native_id=NativeId(tid), permalink=f"https://x.com/{name}/status/{tid}")

    async def find_own_copy(self, text: str, since: float | None) -> str | None:
        """The id of the account's recent post showing *text*, if any."""
        me_id, _ = await self.whoami()
        kw: dict[str, Any] = dict(max_results=20, tweet_fields=["created_at", "entities",
                                                                 "note_tweet"], user_auth=True)
        if since:
            kw["start_time"] = datetime.fromtimestamp(since - 60, UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ")
        r = await self.client.call("recent own posts",
                                   lambda c: c.get_users_tweets(me_id, **kw))
        data = r.data or []
        await self._save_ledger(usd=len(data) * self.account.prices.read, reads=len(data))
        want = as_shown(text)
        for tw in data:
            note = (tw.data.get("note_tweet") or {}).get("text")
            if as_shown(note or tw.text) == want:
                return str(tw.id)
        return None

    async def _reply_target(self, ch: ChannelSpec, parent: NativeId | None) -> str | None:
        """*parent* if X lets the bot reply under it, else None (post standalone)."""
        assert self.ctx is not None
        if parent is None:
            return None
        if parent.startswith("digest:"):  # a message that went out inside a digest
            posted = (await self._load_digest(ch)).post_of(parent.removeprefix("digest:"))
            if posted is None:
                self.log.info("parent %s is not posted yet (digest pending): standalone",
                              parent)
            return posted
        if await self.ctx.is_own(ch.key, parent):
            return parent
        allowed = self._summoned.get(parent)
        if allowed is None:
            me_id, me_name = await self.whoami()
            try:
                r = await self.client.call("reply check", lambda c: c.get_tweet(
                    parent, tweet_fields=["author_id", "entities", "referenced_tweets"],
                    expansions=["referenced_tweets.id"], user_auth=True))
            except Gone:
                return None
            await self._save_ledger(usd=self.account.prices.read, reads=1)
            tw = r.data.data if r.data else {}
            mentions = {m.get("username", "").lower()
                        for m in (tw.get("entities") or {}).get("mentions") or []}
            quoted = [t for t in (r.includes or {}).get("tweets", [])
                      if str(t.data.get("author_id")) == me_id]
            allowed = (str(tw.get("author_id")) == me_id or me_name.lower() in mentions
                       or bool(quoted))
            self._summoned[parent] = allowed
        if not allowed:
            self.log.info("posting standalone, not under %s: X lets the bot reply only to "
                          "posts that mention or quote it", parent)
            return None
        return parent

    async def _delete(self, ch: ChannelSpec, op: SendDelete) -> SendResult:
        if op.native_id.startswith("digest:"):
            return await self._digest_delete(ch, op.native_id.removeprefix("digest:"))
        try:
            await self.client.call("delete", lambda c: c.delete_tweet(op.native_id))
        except Gone:
            return SendResult()  # already gone: what a delete wants
        # Deletes are compliance work: never held back by the budget, but billed.
        await self._save_ledger(usd=self.account.prices.delete, deletes=1)
        return SendResult()

    # ------------------------------------------------------------------ digest
    async def _load_digest(self, ch: ChannelSpec) -> DigestState:
        assert self.ctx is not None
        return DigestState.loads(await self.ctx.get_cursor(f"digest:{ch.key}"))

    async def _save_digest(self, ch: ChannelSpec, st: DigestState) -> None:
        assert self.ctx is not None
        await self.ctx.set_cursor(f"digest:{ch.key}", st.dumps())

    async def _queue_digest(self, ch: ChannelSpec, op: SendCreate) -> SendResult:
        author = op.post.author
        keep_links = self._opts(ch).links_in_digest
        text = to_plain(op.post.text, links=keep_links, neutralise_mentions=True)
        if not keep_links:
            text = defuse_urls(text)
        async with self._lock:
            st = await self._load_digest(ch)
            # Names and text under X's mention rule here, and the whole digest
            # again before it is posted (digest_post_text).
            st = st.add(Item(key=op.idempotency_key, author=x_neutralise(author.name),
                             text=x_neutralise(text), network=author.platform,
                             at=self.clock()))
            await self._save_digest(ch, st)
        return SendResult(native_id=NativeId(f"digest:{op.idempotency_key}"))

    async def _digest_delete(self, ch: ChannelSpec, key: str) -> SendResult:
        async with self._lock:
            st, removed = (await self._load_digest(ch)).remove(key)
            await self._save_digest(ch, st)
        if not removed:
            self.log.warning("message %s is already part of digest post %s; X cannot edit "
                             "it, so it stays", key, st.post_of(key))
        return SendResult()

    async def _digest_loop(self, ch: ChannelSpec) -> None:
        assert self.ctx is not None
        while True:
            await asyncio.sleep(self._opts(ch).digest_minutes * 60)
            try:
                await self.flush_digest(ch.key)
            except TransientError as e:
                self.log.warning("digest for %s postponed: %s", ch.key, e)
            except PermanentError as e:
                self.log.error("digest for %s refused: %s", ch.key, e)

    async def flush_digest(self, channel: ChannelKey) -> str | None:
        """Post the digest of what ``send`` queued for *channel*; returns the
        post id, or None when there was nothing to post."""
        ch = self.channels[channel]
        async with self._lock:
            st = await self._load_digest(ch)
            if st.posting is not None:  # a crash between marking and X's answer
                found = await self.find_own_copy(st.posting.text, since=st.posting.at)
                if found:
                    await self._finish(f"digest-{ch.key}-{st.seq}", cost=0.0)
                    await self._save_digest(ch, st.complete(found))
                    return found
                st = st.abandon()
            if not st.items:
                return None
            text, _ = digest_text([DigestItem(author=i.author, text=i.text, network=i.network)
                                   for i in st.items], hashtag=ch.hashtag)
            text = digest_post_text(text, MAX_WEIGHTED)
            cost = self._check_budget(text)
            st = st.begin(text, self.clock())
            await self._save_digest(ch, st)
            key = f"digest-{ch.key}-{st.seq}"
            result = await self._post(key, text, None, cost)
            assert result.native_id is not None
            await self._save_digest(ch, st.complete(result.native_id))
            return result.native_id


__all__ = ["TwitterAdapter"]
