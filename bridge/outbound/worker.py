"""Delivery workers: one per target channel, strictly FIFO.

A worker reads the channel's oldest pending deliveries and what their plans
need from the store (one round trip for a batch), asks the pure planner
(:mod:`bridge.outbound.planner`) what each one sends, makes one attempt per
message through the adapter, and records the outcome.  A transient failure
holds the whole channel until its retry time, which is what keeps order; a
permanent one parks the delivery as dead with its reason.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bridge.contract.adapter import (
    Adapter,
    AuthError,
    Capabilities,
    Health,
    PermanentError,
    SendCreate,
    SendResult,
    TransientError,
)
from bridge.contract.model import DeliveryState, NativeId, Op, Post, Role
from bridge.outbound import planner
from bridge.outbound.planner import (
    CopyPart,
    DeleteMode,
    Delivery,
    EditMode,
    OnChannel,
    Parent,
    Plan,
    PlanInput,
    Rules,
    Send,
    Skip,
    Wait,
)
from bridge.outbound.ratelimit import AuthorShare, ShareView, TokenBucket, backoff
from bridge.outbound.render import DEFAULT_ATTRIBUTION, Target
from bridge.runtime.config import BridgeSettings, ChannelConfig
from bridge.runtime.metrics import Metrics
from bridge.store import CopyRow, DeliveryRow, Store, TransientStoreError, Tx
from bridge.store.api import RETIRED_PART

MAX_UNEXPECTED = 8
READY_WAIT = 30
SLOW_SEND = 0.005
"""Seconds: a send slower than this is recorded at once; quicker ones a pass at a time."""


@dataclass(slots=True, kw_only=True)
class Facts:
    """What the store knows that one delivery's plan needs (read in the store
    thread, with the rest of the batch, in one round trip)."""

    post: Post | None
    deleted: bool = False
    here: OnChannel = field(default_factory=OnChannel)
    parent: Parent | None = None


@dataclass(slots=True)
class Queued:
    row: DeliveryRow
    facts: Facts | None
    """None: not due yet (the pass sleeps until ``row.next_at``)."""


@dataclass(slots=True)
class PassLog:
    """What this pass changed on the channel, so a later delivery of the batch
    plans with it: a reply whose parent's copy was just sent answers it, an
    edit right after its create edits the copy just made."""

    parts: dict[str, tuple[CopyPart, ...]] = field(default_factory=dict)
    """Post id -> its copy's parts now."""
    creates: dict[str, DeliveryState] = field(default_factory=dict)
    """Post id -> how its create ended in this pass."""

    def here(self, post_id: str, gathered: OnChannel) -> OnChannel:
        parts = self.parts.get(post_id)
        return gathered if parts is None else dataclasses.replace(gathered, parts=parts)

    def parent(self, post_id: str | None, gathered: Parent | None) -> Parent | None:
        if gathered is None or post_id is None:
            return gathered
        parts, state = self.parts.get(post_id), self.creates.get(post_id)
        if parts is None and state is None:
            return gathered
        return dataclasses.replace(
            gathered, here=self.here(post_id, gathered.here),
            create_state=state if state is not None else gathered.create_state)


@dataclass
class WorkerDeps:
    store: Store
    adapter: Adapter
    bucket: TokenBucket
    settings: BridgeSettings
    metrics: Metrics
    network_name: Callable[[str], str]
    """Display name of the network a channel key belongs to."""
    set_health: Callable[[Health, str], None]
    logger: logging.Logger
    ready: asyncio.Event | None = None
    """Set once the adapter connected; the worker waits for it (bounded) so
    it renders with the platform's real limits."""


@dataclass
class ChannelWorker:
    channel: ChannelConfig
    deps: WorkerDeps
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _unrecorded: list[Callable[[Tx], None]] = field(default_factory=list)
    """Outcomes of sends not yet handed to the store (see :meth:`_flush`)."""
    _guard: asyncio.Timeout | None = None
    """The send in progress (see :meth:`_watch`)."""
    _send_started: float = 0.0
    _watchdog: asyncio.Handle | None = None
    _target: Target | None = None
    _share: AuthorShare = field(default_factory=AuthorShare)
    """Parts each author took on this channel today (``author_share``)."""
    _started: float = field(default_factory=time.time)
    """Deliveries queued before this worker started may have been in flight when the
    last process stopped (a kill -9 mid-send)."""
    draining: bool = False
    """The channel was removed from the config by a reload: send what is queued,
    then return (see :mod:`bridge.daemon.reload`)."""
    _stopping: bool = False
    """:meth:`pause` was called: start no further send."""
    _idle: asyncio.Event = field(default_factory=asyncio.Event)
    """Clear while a send is in progress."""

    def wake(self) -> None:
        self._wake.set()

    def reconfigure(self, channel: ChannelConfig, settings: BridgeSettings) -> None:
        """New delivery options (a reload): the next delivery planned uses them."""
        self.channel = channel
        self.deps.settings = settings
        self._target = None
        self.__dict__.pop("rules", None)  # the cached property, computed anew
        self.wake()

    async def pause(self) -> None:
        """Return once no send is in progress; none starts after (the worker is then
        cancelled without cutting a send in half: a reload restarting its account)."""
        self._stopping = True
        if self._guard is not None:
            await self._idle.wait()

    async def _sleep(self, seconds: float | None) -> None:
        self._wake.clear()
        try:
            if seconds is None:
                await self._wake.wait()
            else:
                async with asyncio.timeout(max(seconds, 0.0)):
                    await self._wake.wait()
        except TimeoutError:
            pass

    async def run(self) -> None:
        store = self.deps.store
        key = self.channel.key
        if self.deps.ready is not None:
            try:
                async with asyncio.timeout(READY_WAIT):
                    await self.deps.ready.wait()
            except TimeoutError:
                self.deps.logger.warning("adapter not connected after %ds; delivering with "
                                         "its default capabilities", READY_WAIT)
        self._watchdog = asyncio.get_running_loop().call_soon(self._watch)
        try:
            while True:
                self._wake.clear()
                caps = self.deps.adapter.capabilities(key)
                # One round trip reads what the head of the queue needs; each
                # delivery is planned right before it goes, with what this pass
                # sent so far (a reply to a post sent just before answers its copy).
                batch = await store.run(self.gather)
                if not batch:
                    if self.draining:
                        return
                    await self._sleep(None)
                    continue
                try:
                    await self._pass(batch, caps)
                finally:
                    # Recorded before the next plan reads the queue (units run in order).
                    self._flush()
        finally:
            if self._watchdog is not None:
                self._watchdog.cancel()
            self._flush()

    def _watch(self) -> None:
        """Expire a send that has had no answer for ``send_timeout_seconds``.
        One timer per worker, every quarter of that time, instead of a timer
        per send (which cost a tenth of the relay's time at full speed)."""
        loop = asyncio.get_running_loop()
        limit = self.deps.settings.send_timeout_seconds
        guard = self._guard
        if guard is not None and not guard.expired() \
                and loop.time() - self._send_started >= limit:
            guard.reschedule(loop.time())
        self._watchdog = loop.call_later(limit / 4, self._watch)

    async def _pass(self, batch: list[Queued], caps: Capabilities) -> None:
        store = self.deps.store
        log = PassLog()
        for q in batch:
            d = q.row
            delay = d.next_at - time.time()
            if delay > 0 or q.facts is None:
                self._flush()
                await self._sleep(delay)
                return
            if d.op == Op.EDIT and await store.run(functools.partial(
                    _delivery_state, delivery_id=d.id)) != DeliveryState.PENDING:
                continue  # superseded by a later edit since it was read
            inp = self.plan_input(d, q.facts, caps, log)
            plan = planner.plan(inp)
            if isinstance(plan, Send) and plan.charge is not None:
                c = plan.charge
                self._share.charge(d.id, c.author, c.parts, c.cut, c.cost)
                if plan.note:
                    self.deps.logger.info("%s", plan.note)
            if not await self.process(d, plan, log, inp.here):
                return

    def gather(self, tx: Tx, limit: int = 32) -> list[Queued]:
        """Runs in the store thread: the oldest pending deliveries and what
        their plans need, stopping at the first one that is not due yet (FIFO:
        nothing overtakes it)."""
        out: list[Queued] = []
        now = time.time()
        rows = tx.pending(self.channel.key, limit)
        if not rows:
            # Nothing to send but maybe a held edit: sleep until it is due.
            held = tx.next_held(self.channel.key)
            return [Queued(held, None)] if held is not None else []
        copies = tx.copies_many([d.post_id for d in rows], self.channel.key)
        for d in rows:
            if d.next_at > now:
                out.append(Queued(d, None))
                break
            out.append(Queued(d, self._facts(tx, d, copies.get(d.post_id, []))))
        return out

    def _facts(self, tx: Tx, d: DeliveryRow, rows: list[CopyRow]) -> Facts:
        post = tx.get_post(d.post_id)
        if post is None:
            return Facts(post=None)
        key = self.channel.key
        deleted = tx.post_state(d.post_id)[1] is not None
        aliases: dict[int, list[NativeId]] = {}
        if d.op != Op.CREATE and any(r.role == Role.COPY for r in rows):
            # (a delete removes each part's other ids too; so does an edit removing parts)
            for channel, c in tx.all_copies(d.post_id):
                if channel == key and c.role == Role.ALIAS and c.part != RETIRED_PART:
                    aliases.setdefault(c.part, []).append(c.native_id)
        here = _on_channel(rows, aliases)
        parent: Parent | None = None
        if d.op == Op.CREATE and post.reply_to and not deleted and here.origin is None:
            there = tx.copies(post.reply_to, key)
            state: str | None = None
            permalink = ""
            if not there:
                state = tx.create_state(post.reply_to, key)
                parent_post = tx.get_post(post.reply_to)
                permalink = parent_post.permalink if parent_post else ""
            parent = Parent(here=_on_channel(there, {}), permalink=permalink,
                            create_state=DeliveryState(state) if state else None)
        return Facts(post=post, deleted=deleted, here=here, parent=parent)

    def plan_input(self, d: DeliveryRow, facts: Facts, caps: Capabilities,
                   log: PassLog | None = None) -> PlanInput:
        """The planner's input for *d*: what the store said, updated with what
        this pass (*log*) sent since it was read."""
        log = log or PassLog()
        post = facts.post
        share: ShareView | None = None
        network = ""
        web_link = ""
        if post is not None:
            network = self.deps.network_name(post.origin_channel)
            portion = self.channel.common.author_share
            allowance = AuthorShare.allowance(caps.posts_per_day, portion)
            money = AuthorShare.cost_allowance(
                caps.cost_per_day if caps.part_cost is not None else None, portion)
            if allowance is not None or money is not None:
                # (a channel without a daily budget has no share to keep)
                web_link = self._web_link(post)
                share = self._share.view(
                    d.id, f"{post.author.platform}:{post.author.handle.casefold()}",
                    allowance, money)
        return PlanInput(
            delivery=Delivery(id=d.id, op=d.op, parts_done=d.parts_done, created_at=d.created_at,
                              maybe_sent=d.attempts > 0 or d.created_at < self._started),
            channel=self.channel.key, post=post, deleted=facts.deleted,
            here=log.here(d.post_id, facts.here),
            parent=log.parent(post.reply_to if post else None, facts.parent),
            target=self.target(caps), network=network, rules=self.rules, share=share,
            web_link=web_link, now=time.time())

    # ------------------------------------------------------------------ one delivery
    async def process(self, d: DeliveryRow, plan: Plan, log: PassLog,
                      here: OnChannel) -> bool:
        """Carry out one planned delivery; False when the channel must pause.
        *here*: the copy's parts when it was planned (what *log* goes on from)."""
        deps = self.deps
        if isinstance(plan, Skip):
            reason = plan.reason
            self._unrecorded.append(
                lambda tx: tx.finish(d.id, DeliveryState.SKIPPED, reason))
            deps.logger.debug("delivery %s skipped: %s", d.id, reason)
            self._ended(d, log, DeliveryState.SKIPPED)
            return True
        if isinstance(plan, Wait):
            self._flush()
            await deps.store.run(lambda tx: tx.defer(d.id, time.time() + plan.seconds,
                                                     plan.reason))
            return False
        if not plan.steps:
            # (a create resumed after every part went, its row not yet closed)
            self._unrecorded.append(lambda tx: tx.finish(d.id, DeliveryState.SENT))
            self._ended(d, log, DeliveryState.SENT)
            return True
        parts = list(here.parts)
        last: NativeId | None = None
        first_id: NativeId | None = None
        for index, step in enumerate(plan.steps):
            if self._stopping:  # paused: what was sent is recorded; wait to be cancelled
                self._flush()
                await asyncio.Event().wait()
            op = step.op
            if step.chain and last is not None and isinstance(op, SendCreate):
                op = dataclasses.replace(op, reply_to=last,
                                         thread_root=op.thread_root or first_id)
            if not deps.store.storage.ok:
                # A send we could not record would be sent again after a restart:
                # while the store cannot write (a full disk), the channel waits.
                self._flush()
                await deps.store.writable()
            if not deps.bucket.try_acquire():
                self._flush()
                await deps.bucket.acquire()
            started = time.perf_counter()
            self._guard = guard = asyncio.timeout(None)
            self._idle.clear()
            self._send_started = asyncio.get_running_loop().time()
            try:
                try:
                    async with guard:
                        result = await deps.adapter.send(op)
                finally:
                    self._guard = None
                    self._idle.set()
            except TimeoutError:
                # A stalled connection: the platform may or may not have the
                # post; the retry carries the same idempotency key.
                return await self._retry(
                    d, f"no answer from the platform in {deps.settings.send_timeout_seconds:g}s",
                    None)
            except TransientError as e:
                return await self._retry(d, str(e) or type(e).__name__, e.retry_after)
            except PermanentError as e:
                await self._dead(d, str(e) or type(e).__name__, log)
                return True
            except AuthError as e:
                deps.set_health(Health.BAD_CREDENTIALS, str(e))
                return await self._retry(d, f"bad credentials: {e}", 60.0)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if _local_storage_failure(e):
                    # The adapter's own files (its journal, its outbox) on a full
                    # or failing disk: the platform was not at fault and the
                    # delivery is not either; retried until the disk is back.
                    return await self._retry(d, f"adapter's storage: {type(e).__name__}: {e}",
                                             None)
                # an adapter bug: retry a few times, then park
                deps.logger.exception("adapter raised on delivery %s", d.id)
                if d.attempts + 1 >= MAX_UNEXPECTED:
                    await self._dead(d, f"adapter error: {type(e).__name__}: {e}", log)
                    return True
                return await self._retry(d, f"adapter error: {type(e).__name__}: {e}", None)
            final = index == len(plan.steps) - 1
            if isinstance(op, SendCreate) and result.native_id:
                nid = result.native_id
                if last is None:
                    first_id = nid
                last = nid
                self._record(d, step.part, nid, result, final)
                parts.append(CopyPart(native_id=nid, part=step.part, subject=result.subject,
                                      aliases=result.extra_native_ids))
                log.parts[d.post_id] = tuple(parts)
            else:
                if step.retire:
                    self._unrecorded.append(functools.partial(
                        _retire_part, post_id=d.post_id, channel=d.channel, part=step.part))
                    parts = [p for p in parts if p.part != step.part]
                    log.parts[d.post_id] = tuple(parts)
                if final:
                    self._record(d, step.part, None, result, final)
            if time.perf_counter() - started > SLOW_SEND:
                self._flush()  # a slow platform: record each send as it happens
        self._ended(d, log, DeliveryState.SENT)
        deps.metrics.delivered(self.channel.key, d.op, time.time() - d.created_at)
        return True

    @staticmethod
    def _ended(d: DeliveryRow, log: PassLog, state: DeliveryState) -> None:
        if d.op == Op.CREATE:
            log.creates[d.post_id] = state

    def _record(self, d: DeliveryRow, part: int, native_id: NativeId | None,
                result: SendResult, final: bool) -> None:
        """Note a send's outcome; :meth:`_flush` hands it to the store."""

        def unit(tx: Tx) -> None:
            tx.record_sent(d, part, native_id, subject=result.subject,
                           permalink=result.permalink, extra_ids=result.extra_native_ids,
                           final=final)

        self._unrecorded.append(unit)

    def _flush(self) -> None:
        """Hand the noted outcomes to the store as one unit, without waiting for
        the commit.  Units run in order, so the next plan (which may need a
        copy's id) sees them.  A platform that answers quickly gets its
        outcomes recorded a pass at a time (one store round trip for up to a
        batch of sends); a slow one after every send (see :meth:`process`).
        A write the disk refuses (full, I/O error) is held by the store and
        retried until it commits; only if the bridge stops (or crashes)
        meanwhile do the deliveries stay pending, to be resent at the next
        start with the same idempotency keys, which the platform (or the
        adapter) de-duplicates."""
        if not self._unrecorded:
            return
        units, self._unrecorded = self._unrecorded, []

        def record(tx: Tx) -> None:
            for unit in units:
                unit(tx)

        self.deps.store.submit(record).add_done_callback(self._record_failed)

    def _record_failed(self, fut: asyncio.Future[None]) -> None:
        if not fut.cancelled() and fut.exception() is not None:
            self.deps.logger.error("could not record a delivery (it will be resent): %s",
                                   fut.exception())

    async def _retry(self, d: DeliveryRow, error: str, retry_after: float | None) -> bool:
        settings = self.deps.settings
        if time.time() - d.created_at > settings.give_up_after_hours * 3600:
            await self._dead(d, f"gave up after {settings.give_up_after_hours:g} h: {error}")
            return True
        delay = backoff(d.attempts, cap=settings.retry_max_seconds, retry_after=retry_after)
        if retry_after:
            self.deps.bucket.pause(retry_after)
            self.deps.metrics.rate_limited(self.channel.key, retry_after)
        self.deps.logger.info("delivery %s to %s deferred %.1fs: %s", d.id, self.channel.key,
                              delay, error)
        await self.deps.store.run(lambda tx: tx.defer(d.id, time.time() + delay, error))
        self.deps.metrics.retried(self.channel.key)
        return False

    async def _dead(self, d: DeliveryRow, reason: str, log: PassLog | None = None) -> None:
        self.deps.logger.warning("delivery %s to %s is dead: %s", d.id, self.channel.key, reason)
        await self.deps.store.run(lambda tx: tx.finish(d.id, DeliveryState.DEAD, reason))
        self.deps.metrics.dead(self.channel.key)
        if log is not None:
            self._ended(d, log, DeliveryState.DEAD)

    # ------------------------------------------------------------------ planning
    def target(self, caps: Capabilities) -> Target:
        if self._target is not None and self._target.caps is caps:
            return self._target  # the same capabilities object: the same target
        c = self.channel.common
        self._target = Target(caps=caps, hashtag=self.channel.hashtag,
                              attribution=c.attribution or DEFAULT_ATTRIBUTION,
                              append_hashtag=c.append_hashtag, split=c.split, links=c.links,
                              max_length=c.max_length)
        return self._target

    def _web_link(self, post: Post) -> str:
        """Where the whole post can be read: its place in the web view when the
        bridge has a public address, else the original."""
        web = self.deps.settings.web
        if web is not None and web.public_url:
            return f"{web.public_url.rstrip('/')}/c/{post.community}#p-{post.id}"
        return post.permalink

    @functools.cached_property
    def rules(self) -> Rules:
        c = self.channel.common
        return Rules(on_edit=EditMode(c.on_edit), on_delete=DeleteMode(c.on_delete),
                     reply_wait=c.reply_wait, author_share=c.author_share)


def _on_channel(rows: list[CopyRow], aliases: dict[int, list[NativeId]]) -> OnChannel:
    """A post's rows in the id map on one channel, as the planner sees them."""
    origin: CopyPart | None = None
    parts: list[CopyPart] = []
    for r in rows:
        one = CopyPart(native_id=r.native_id, part=r.part, subject=r.subject,
                       aliases=tuple(aliases.get(r.part, ())))
        if r.role == Role.ORIGIN:
            origin = one
        else:
            parts.append(one)
    return OnChannel(origin=origin, parts=tuple(parts))


def _delivery_state(tx: Tx, delivery_id: str) -> str | None:
    # Through the instance: ``Tx`` is a protocol, its own methods are stubs.
    return tx.delivery_state(delivery_id)


def _retire_part(tx: Tx, post_id: str, channel: str, part: int) -> None:
    tx.retire_part(post_id, channel, part)


_STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS})


def _local_storage_failure(e: BaseException) -> bool:
    """The adapter's storage failed, not the platform nor the delivery: its state in
    the store (:class:`TransientStoreError`: a full disk, a held lock) or its own
    files (attachments on a full or failing disk)."""
    if isinstance(e, TransientStoreError):
        return True
    return isinstance(e, OSError) and e.errno in _STORAGE_ERRNOS
