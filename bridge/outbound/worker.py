"""Delivery workers: one per target channel, strictly FIFO.

A worker takes the channel's oldest pending delivery, works out what to send
(a *plan*, computed in the store thread from the post and the id map), makes
one attempt per message through the adapter, and records the outcome.  A
transient failure holds the whole channel until its retry time, which is what
keeps order; a permanent one parks the delivery as dead with its reason.
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
    Rendered,
    SendCreate,
    SendDelete,
    SendEdit,
    SendOp,
    SendResult,
    TransientError,
)
from bridge.contract.model import NativeId, Op, Post
from bridge.contract.richtext import Inline, Link, RichText, Text
from bridge.outbound.ratelimit import AuthorShare, TokenBucket, backoff
from bridge.outbound.render import DEFAULT_ATTRIBUTION, Target, render
from bridge.runtime.config import BridgeSettings, ChannelConfig
from bridge.runtime.metrics import Metrics
from bridge.store import CopyRow, DeliveryRow, Store, TransientStoreError, Tx

CORRECTION_PREFIX = "✏️ correction: "
DELETED_NOTICE = "(this message was deleted by its author)"
MAX_UNEXPECTED = 8
READY_WAIT = 30
SLOW_SEND = 0.005
"""Seconds: a send slower than this is recorded at once; quicker ones a pass at a time."""


@dataclass(slots=True)
class Plan:
    """What one delivery needs: ops to send in order, or why nothing is sent."""

    ops: tuple[SendOp, ...] = ()
    skip: str = ""
    wait: float = 0.0
    """Not ready (a reply waiting for its parent's copy): look again in this many seconds."""
    first_part: int = 0
    replan: str = ""
    """Post id of a create earlier in the same batch this plan depends on: the
    worker fills in its copy's id when it was sent in this pass, or re-plans."""
    build: Callable[[], tuple[SendOp, ...]] | None = None
    """Makes ``ops`` from what the store thread read: rendering runs in the
    worker's own thread, so the store thread only reads and writes."""

    def built(self) -> Plan:
        """The plan with its ops made (in place: a plan is used once)."""
        if self.build is not None:
            self.ops, self.build = self.build(), None
        return self


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

    def wake(self) -> None:
        self._wake.set()

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
                # One round trip plans the head of the queue; plans that depend on a
                # create earlier in the same batch are resolved from what this pass
                # sent (or re-planned) right before they go.
                batch = await store.run(functools.partial(self.plan_head, caps=caps))
                if not batch:
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

    async def _pass(self, batch: list[tuple[DeliveryRow, Plan]], caps: Capabilities) -> None:
        store = self.deps.store
        sent: dict[str, tuple[NativeId, str]] = {}
        for d, plan in batch:
            delay = d.next_at - time.time()
            if delay > 0:
                self._flush()
                await self._sleep(delay)
                return
            if d.op == Op.EDIT and await store.run(
                    functools.partial(_delivery_state, delivery_id=d.id)) != "pending":
                continue  # superseded by a later edit since it was planned
            plan = plan.built()
            if plan.replan:
                got = sent.get(plan.replan)
                if got is not None and plan.ops and isinstance(plan.ops[0], SendCreate) \
                        and plan.ops[0].post.reply_to == plan.replan:
                    first = dataclasses.replace(plan.ops[0], reply_to=got[0],
                                                parent_subject=got[1])
                    plan = dataclasses.replace(plan, ops=(first, *plan.ops[1:]), replan="")
                else:
                    self._flush()
                    plan = (await store.run(functools.partial(self.plan, d=d,
                                                              caps=caps))).built()
            if not await self.process(d, plan, sent):
                return

    def plan_head(self, tx: Tx, caps: Capabilities, limit: int = 32
                  ) -> list[tuple[DeliveryRow, Plan]]:
        """Plans for the oldest pending deliveries, stopping at the first one
        that is not due yet (FIFO: nothing overtakes it)."""
        out: list[tuple[DeliveryRow, Plan]] = []
        in_batch: set[str] = set()
        now = time.time()
        rows = tx.pending(self.channel.key, limit)
        if not rows:
            # Nothing to send but maybe a held edit: sleep until it is due.
            held = tx.next_held(self.channel.key)
            return [(held, Plan())] if held is not None else []
        copies = tx.copies_many([d.post_id for d in rows], self.channel.key)
        for d in rows:
            if d.next_at > now:
                out.append((d, Plan()))
                break
            out.append((d, self.plan(tx, d, caps, in_batch, copies.get(d.post_id))))
            if d.op == Op.CREATE:
                in_batch.add(d.post_id)
        return out

    # ------------------------------------------------------------------ one delivery
    async def process(self, d: DeliveryRow, plan: Plan,
                      sent: dict[str, tuple[NativeId, str]]) -> bool:
        """Carry out one planned delivery; False when the channel must pause."""
        deps = self.deps
        if plan.skip:
            self._unrecorded.append(lambda tx: tx.finish(d.id, "skipped", plan.skip))
            deps.logger.debug("delivery %s skipped: %s", d.id, plan.skip)
            return True
        if plan.wait:
            self._flush()
            await deps.store.run(lambda tx: tx.defer(d.id, time.time() + plan.wait,
                                                     "waiting for the parent's copy"))
            return False
        part = plan.first_part
        last: NativeId | None = None
        first_id: NativeId | None = None
        for index, op in enumerate(plan.ops):
            if isinstance(op, SendCreate) and op.part > plan.first_part and last:
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
            self._send_started = asyncio.get_running_loop().time()
            try:
                try:
                    async with guard:
                        result = await deps.adapter.send(op)
                finally:
                    self._guard = None
            except TimeoutError:
                # A stalled connection: the platform may or may not have the
                # post; the retry carries the same idempotency key.
                return await self._retry(
                    d, f"no answer from the platform in {deps.settings.send_timeout_seconds:g}s",
                    None)
            except TransientError as e:
                return await self._retry(d, str(e) or type(e).__name__, e.retry_after)
            except PermanentError as e:
                await self._dead(d, str(e) or type(e).__name__)
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
                    await self._dead(d, f"adapter error: {type(e).__name__}: {e}")
                    return True
                return await self._retry(d, f"adapter error: {type(e).__name__}: {e}", None)
            final = index == len(plan.ops) - 1
            if isinstance(op, SendCreate) and result.native_id:
                nid = result.native_id
                if last is None:
                    first_id = nid
                last = nid
                self._record(d, part, nid, result, final)
                if part == 0 or d.post_id not in sent:
                    sent[d.post_id] = (nid, result.subject)
                else:
                    sent[d.post_id] = (nid, sent[d.post_id][1])
            elif final:
                self._record(d, part, None, result, final)
            if time.perf_counter() - started > SLOW_SEND:
                self._flush()  # a slow platform: record each send as it happens
            part += 1
        deps.metrics.delivered(self.channel.key, d.op, time.time() - d.created_at)
        return True

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

    async def _dead(self, d: DeliveryRow, reason: str) -> None:
        self.deps.logger.warning("delivery %s to %s is dead: %s", d.id, self.channel.key, reason)
        await self.deps.store.run(lambda tx: tx.finish(d.id, "dead", reason))
        self.deps.metrics.dead(self.channel.key)

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

    def _fair_parts(self, d: DeliveryRow, post: Post, caps: Capabilities,
                    rendering: Callable[[Target, str, bool], list[Rendered]]
                    ) -> list[Rendered]:
        """The post's parts on this channel, within its author's fair share of
        the channel's daily budget (``author_share`` of ``posts_per_day``, and
        of ``cost_per_day`` where each part has a price: on X a part with a
        URL costs over ten times one without): a post that would take the
        author past it goes out as one part, cut, with a link to the web view
        (or the original) instead of as a thread.  A thread already partly
        sent stays a thread."""
        target = self.target(caps)
        parts = rendering(target, post.permalink, False)
        author = f"{post.author.platform}:{post.author.handle.casefold()}"
        share = self.channel.common.author_share
        allowance = AuthorShare.allowance(caps.posts_per_day, share)
        money = AuthorShare.cost_allowance(
            caps.cost_per_day if caps.part_cost is not None else None, share)
        cost = _cost(parts, caps)
        cut = False
        if d.parts_done == 0 and not self._share.fits(d.id, author, len(parts), allowance,
                                                      cost, money):
            cut = True
            self.deps.logger.info(
                "post %s by %s cut to one part on %s: a thread of %d parts (cost %.3f) would "
                "take its author past their share today (author_share %g of %s posts%s a day; "
                "used today: %d parts, cost %.3f)", post.id, author, self.channel.key,
                len(parts), cost, share, caps.posts_per_day,
                f" and {caps.cost_per_day:g}" if money is not None else "",
                self._share.used(author), self._share.spent(author))
            parts = rendering(dataclasses.replace(target, split="truncate"),
                              self._web_link(post), True)
            cost = _cost(parts, caps)
        self._share.charge(d.id, author, len(parts), cut, cost)
        return parts

    def _web_link(self, post: Post) -> str:
        """Where the whole post can be read: its place in the web view when the
        bridge has a public address, else the original."""
        web = self.deps.settings.web
        if web is not None and web.public_url:
            return f"{web.public_url.rstrip('/')}/c/{post.community}#p-{post.id}"
        return post.permalink

    def plan(self, tx: Tx, d: DeliveryRow, caps: Capabilities,
             in_batch: set[str] | None = None, copies: list[CopyRow] | None = None) -> Plan:
        """Runs in the store thread: read what the delivery needs, decide.

        ``in_batch``: posts whose create is planned earlier in the same batch;
        a plan that needs one of their copies is marked ``replan``.  ``copies``:
        the post's ids on this channel when the caller read them already."""
        in_batch = in_batch or set()
        if d.op != Op.CREATE and d.post_id in in_batch:
            return Plan(replan=d.post_id)
        post = tx.get_post(d.post_id)
        if post is None:
            return Plan(skip="post no longer exists")
        _edited_at, deleted_at, _hidden = tx.post_state(d.post_id)
        key = self.channel.key
        if copies is None:
            copies = tx.copies(d.post_id, key)
        network = self.deps.network_name(post.origin_channel)
        target = self.target(caps)
        match d.op:
            case Op.CREATE:
                if deleted_at:
                    return Plan(skip="deleted at its origin before delivery")
                if any(c.role == "origin" for c in copies):
                    return Plan(skip="already on this channel (posted there by its author)")
                reply_to: NativeId | None = None
                replan = ""
                subject = ""
                reference = ""
                if post.reply_to:
                    parent = tx.copies(post.reply_to, key)
                    if parent:
                        reply_to, subject = parent[-1].native_id, parent[0].subject
                    elif post.reply_to in in_batch:
                        replan = post.reply_to
                    else:
                        state = tx.create_state(post.reply_to, key)
                        waited = time.time() - d.created_at
                        if state == "pending" and waited < self.channel.common.reply_wait:
                            return Plan(wait=min(1.0, self.channel.common.reply_wait - waited))
                        parent_post = tx.get_post(post.reply_to)
                        reference = parent_post.permalink if parent_post else ""
                def build_create() -> tuple[SendOp, ...]:
                    text = post.text.with_suffix(_reply_ref(reference)) \
                        if reference and not reply_to else None
                    parts = self._fair_parts(d, post, caps, lambda t, ref, keep: render(
                        post, t, network, reference=ref, text=text, keep_reference=keep))
                    ops: list[SendOp] = []
                    # Parts of a split thread chain to the part before; when resuming
                    # after a crash the last part sent is known, later ones are filled
                    # in by process() as they are sent.
                    previous = [c.native_id for c in copies if c.role == "copy"]
                    for i, rendered in enumerate(parts):
                        if i < d.parts_done:
                            continue
                        chain = previous[-1] if i and previous and i == d.parts_done else None
                        ops.append(SendCreate(
                            delivery_id=d.id, idempotency_key=f"{d.id}.{i}", channel=key,
                            post=post, rendered=rendered, reply_to=chain if i else reply_to,
                            thread_root=previous[0] if previous else None, part=i,
                            parts=len(parts), parent_subject=subject))
                    return tuple(ops)

                return Plan(build=build_create, first_part=d.parts_done, replan=replan)
            case Op.EDIT:
                own = [c for c in copies if c.role == "copy"]
                if deleted_at:
                    return Plan(skip="deleted at its origin")
                if not own:
                    return Plan(skip="no copy on this channel to edit")
                mode = self.channel.common.on_edit
                if mode == "skip" or (mode == "update" and not caps.edit):
                    return Plan(skip="edits not relayed to this channel"
                                + ("" if caps.edit else " (it cannot edit)"))
                own_ids = tuple(c.native_id for c in own)
                own_parts = tuple(c.part for c in own)
                first_subject = own[0].subject
                if mode == "correct":
                    def build_correction() -> tuple[SendOp, ...]:
                        parts = self._fair_parts(d, post, caps, lambda t, ref, keep: render(
                            post, t, network, prefix=CORRECTION_PREFIX, reference=ref,
                            keep_reference=keep))
                        return tuple(SendCreate(
                            delivery_id=d.id, idempotency_key=f"{d.id}.{i}", channel=key,
                            post=post, rendered=r, reply_to=own_ids[-1], part=i,
                            parts=len(parts), parent_subject=first_subject)
                            for i, r in enumerate(parts))

                    return Plan(build=build_correction)

                def build_edit() -> tuple[SendOp, ...]:
                    parts = render(post, target, network, reference=post.permalink)
                    return tuple(
                        SendEdit(delivery_id=d.id, idempotency_key=f"{d.id}.{part}",
                                 channel=key, post=post, native_id=nid,
                                 rendered=parts[min(part, len(parts) - 1)])
                        for nid, part in zip(own_ids, own_parts, strict=True))

                return Plan(build=build_edit)
            case Op.DELETE:
                own = [c for c in copies if c.role == "copy"]
                if not own:
                    return Plan(skip="no copy on this channel to delete")
                on_delete = self.channel.common.on_delete
                if on_delete == "skip" or (on_delete == "delete" and not caps.delete):
                    return Plan(skip="deletes not relayed to this channel"
                                + ("" if caps.delete else " (it cannot delete)"))
                if on_delete == "notice":
                    last_id, first_subject = own[-1].native_id, own[0].subject

                    def build_notice() -> tuple[SendOp, ...]:
                        rendered = render(_notice(post), target, network)[0]
                        return (SendCreate(
                            delivery_id=d.id, idempotency_key=f"{d.id}.0", channel=key,
                            post=post, rendered=rendered, reply_to=last_id,
                            parent_subject=first_subject),)

                    return Plan(build=build_notice)
                return Plan(ops=tuple(
                    SendDelete(delivery_id=d.id, idempotency_key=f"{d.id}.{c.part}",
                               channel=key, post=post, native_id=c.native_id,
                               extra_native_ids=tuple(tx.aliases(d.post_id, key, c.part)))
                    for c in reversed(own)))
        return Plan(skip=f"unknown op {d.op}")


def _delivery_state(tx: Tx, delivery_id: str) -> str | None:
    # Through the instance: ``Tx`` is a protocol, its own methods are stubs.
    return tx.delivery_state(delivery_id)


_STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS})


def _local_storage_failure(e: BaseException) -> bool:
    """The adapter's storage failed, not the platform nor the delivery: its state in
    the store (:class:`TransientStoreError`: a full disk, a held lock) or its own
    files (attachments on a full or failing disk)."""
    if isinstance(e, TransientStoreError):
        return True
    return isinstance(e, OSError) and e.errno in _STORAGE_ERRNOS


def _cost(parts: list[Rendered], caps: Capabilities) -> float:
    """What *parts* cost on a target that prices each part (0 elsewhere)."""
    price = caps.part_cost
    return sum(price(r.plain) for r in parts) if price is not None else 0.0


def _reply_ref(url: str) -> list[Inline]:
    return [Text(" (reply to "), Link(url), Text(")")]


def _notice(post: Post) -> Post:
    return Post(id=post.id, community=post.community, origin_channel=post.origin_channel,
                origin_native_id=post.origin_native_id, permalink=post.permalink,
                author=post.author, text=RichText.plain(DELETED_NOTICE), is_notice=True)

