"""The running bridge: one root TaskGroup, a supervised task per adapter, a
delivery worker per target channel, the store closed last.

Shutdown is cancellation.  Work in flight is never lost: an outbox row stays
pending until its send is recorded, and the next start sends it again with the
same idempotency key.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import gc
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bridge.contract.adapter import (
    AccountState,
    Adapter,
    AdapterError,
    AuthError,
    ChannelSpec,
    Health,
    NativeReactions,
    SendReaction,
    TransientError,
)
from bridge.contract.model import ChannelKey, InboundEvent, NativeId, Post, PostId
from bridge.contract.richtext import RichText
from bridge.contract.services import Services
from bridge.daemon.cluster import Cluster, lease_name
from bridge.inbound.pipeline import ReactionChange
from bridge.inbound.relay import IngestResult, Relay
from bridge.inbound.steps import described
from bridge.outbound.ratelimit import TokenBucket, backoff
from bridge.outbound.worker import ChannelWorker, WorkerDeps
from bridge.runtime.config import AccountConfig, ChannelConfig, Config
from bridge.runtime.metrics import Metrics
from bridge.store import MIN_FREE_BYTES, Store, StoreError, Tx, archive
from bridge.store.adapter_state import StoredAccountState
from bridge.store.backends import open_store
from bridge.store.leases import Member, leases_of

log = logging.getLogger("hashbridge")

RESTART_WINDOW = 600.0
STOP_WRITE_WAIT = 5.0

_NETWORK_ERRNOS = frozenset({errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED,
                             errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH,
                             errno.EHOSTDOWN, errno.ENETDOWN, errno.EPIPE})


def unreachable(e: BaseException) -> bool:
    """A network error: the platform cannot be reached now (refused, reset, timed
    out, no route, name not resolved).  Not a crash: the adapter waits it out."""
    if isinstance(e, ConnectionError | TimeoutError | socket.gaierror
                  | aiohttp.ClientConnectionError):
        return True
    return isinstance(e, OSError) and e.errno in _NETWORK_ERRNOS


def _informative(fut: asyncio.Future[Any]) -> None:
    """Done-callback of a write nobody waits for (health, retry times): its
    failure (the bridge stopping on a full disk) is logged by the store."""
    if not fut.cancelled():
        fut.exception()


@dataclass
class AccountRuntime:
    """Per-account state; also the :class:`~bridge.contract.adapter.AdapterContext`."""

    name: str
    account: AccountConfig
    channels: tuple[ChannelSpec, ...]
    bridge: Bridge
    logger: logging.Logger
    data_dir: str
    bucket: TokenBucket
    adapter: Adapter | None = None
    health: Health = Health.STARTING
    detail: str = ""
    restarts: list[float] = field(default_factory=list)
    connected_once: asyncio.Event = field(default_factory=asyncio.Event)
    """Set at the first CONNECTED: capabilities read from the platform (an
    instance's length limit) are known from then on."""
    waiting_for: str | None = None
    """Why the adapter waits to start (logged once, until it connects)."""

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self.bridge.http is not None
        return self.bridge.http

    @property
    def state(self) -> AccountState:
        return StoredAccountState(self.bridge.store, self.name)

    async def emit(self, event: InboundEvent, *, cursor: tuple[str, str] | None = None) -> None:
        await self.emit_many([event], cursor=cursor)

    async def emit_many(self, events: list[InboundEvent], *,
                        cursor: tuple[str, str] | None = None) -> None:
        await self.bridge.ingest(self.name, events, cursor)

    async def get_cursor(self, name: str) -> str | None:
        return await self.bridge.store.run(lambda tx: tx.get_cursor(self.name, name))

    async def set_cursor(self, name: str, value: str) -> None:
        await self.bridge.store.run(lambda tx: tx.set_cursor(self.name, name, value))

    def set_health(self, health: Health, detail: str = "") -> None:
        if (health, detail) == (self.health, self.detail):
            return
        if health == Health.CONNECTED:
            self.connected_once.set()
            self.waiting_for = None
            if self.health in (Health.DISCONNECTED, Health.BAD_CREDENTIALS, Health.FAILED):
                self.bridge.resume_channels(self.name)
        if health != self.health:
            self.logger.info("health: %s%s", health.value, f" ({detail})" if detail else "")
        self.health, self.detail = health, detail
        self.bridge.store.submit(lambda tx: tx.set_health(self.name, self.account.platform,
                                                          health.value, detail)
                                 ).add_done_callback(_informative)

    def rate_limit(self, *, remaining: int | None, reset_at: float | None,
                   limit: int | None = None) -> None:
        self.bucket.feed(remaining=remaining, reset_at=reset_at, limit=limit)

    async def is_own(self, channel: ChannelKey, native_id: NativeId) -> bool:
        found = await self.bridge.store.run(lambda tx: tx.native_lookup(channel, native_id))
        return found is not None and found[1] != "origin"

    async def consent(self, platform: str, handle: str) -> str | None:
        return await self.bridge.store.run(lambda tx: tx.consent(platform, handle))


class Bridge:
    """Build with a validated :class:`Config`; ``await run()`` until cancelled."""

    def __init__(self, config: Config, *, services: Services | None = None,
                 extra_tasks: Sequence[Callable[[Bridge], Awaitable[None]]] = ()) -> None:
        self.config = config
        self.services = services if services is not None else Services()
        self.extra_tasks = list(extra_tasks)
        self.metrics = Metrics(inbound_steps=described())
        self.accounts: dict[str, AccountRuntime] = {}
        self.workers: dict[str, ChannelWorker] = {}
        self.http: aiohttp.ClientSession | None = None
        self._store: Store | None = None
        self.relay: Relay | None = None
        self.ready = asyncio.Event()
        self.started_at = time.time()
        self._network_names: dict[str, str] = {}
        self._subscribers: set[asyncio.Queue[tuple[str, PostId]]] = set()
        self.cluster: Cluster | None = None
        """Set when several processes share the database (see bridge/daemon/cluster.py)."""
        self._tg: asyncio.TaskGroup | None = None
        self._account_tasks: dict[str, asyncio.Task[None]] = {}
        """Account name -> its task (adapter and senders), with one process."""
        self.draining: dict[str, set[str]] = {}
        """Account -> its channels removed by a reload that still send their queue."""
        self.reloader: Any = None
        """The :class:`~bridge.daemon.reload.Reloader` (SIGHUP), once running."""

    @property
    def store(self) -> Store:
        assert self._store is not None, "bridge not started"
        return self._store

    def network_name(self, channel: str) -> str:
        name = self._network_names.get(channel)
        if name is None:
            try:
                acct = self.config.accounts[self.config.channel(channel).account]
            except KeyError:
                return "?"
            custom = getattr(acct.options, "display_name", None)
            name = self._network_names[channel] = str(custom or acct.factory.display_name)
        return name

    async def ingest(self, account: str, events: list[InboundEvent],
                     cursor: tuple[str, str] | None) -> None:
        assert self.relay is not None
        result = await self.relay.ingest(account, events, cursor)
        self.metrics.ingested_page(result.counts, result.steps)
        self.publish(result)
        if result.reactions:
            await self._native_reactions(account, result.reactions)

    async def _native_reactions(self, account: str, changes: Sequence[ReactionChange]) -> None:
        """Reactions read on one of *account*'s channels, shown natively on its
        other channels where the post is (adapters with :class:`NativeReactions`:
        Matrix rooms served by one account).  One attempt each: a failure is
        logged, never retried (the count on the web is what is kept)."""
        rt = self.accounts.get(account)
        adapter = rt.adapter if rt is not None else None
        if rt is None or not isinstance(adapter, NativeReactions):
            return
        own = {c.key for c in rt.channels if c.direction in ("both", "out")}
        for change in changes:
            ids = await self.store.run(lambda tx, pid=change.post_id: tx.all_copies(pid))
            for channel, row in ids:
                if channel not in own or channel == change.channel or row.part != 0 \
                        or row.role not in ("origin", "copy"):
                    continue
                op = SendReaction(channel=ChannelKey(channel), native_id=row.native_id,
                                  source=change.channel, key=change.key, added=change.added,
                                  reactor=change.reactor, author=change.author)
                try:
                    await adapter.react(op)
                except (AdapterError, aiohttp.ClientError, TimeoutError) as exc:
                    rt.logger.warning("reaction %s not shown on %s (not retried): %s",
                                      change.key, channel, exc)

    def publish(self, result: IngestResult, *, remote: bool = False) -> None:
        """Wake the workers for new deliveries and tell live views what changed
        (*remote*: relayed by another process sharing the database)."""
        if self.cluster is not None and not remote:
            self.cluster.published(result.wake, result.changed)
        for key in result.wake:
            w = self.workers.get(key)
            if w is not None:
                w.wake()
        for change in result.changed:
            for q in list(self._subscribers):
                if q.full():  # a stalled reader: drop it rather than grow memory
                    self._subscribers.discard(q)
                    continue
                q.put_nowait(change)

    def subscribe(self, maxsize: int = 10_000) -> asyncio.Queue[tuple[str, PostId]]:
        """A queue of ``(kind, post id)`` changes (posted, edited, deleted, hidden)."""
        q: asyncio.Queue[tuple[str, PostId]] = asyncio.Queue(maxsize)
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[tuple[str, PostId]]) -> None:
        self._subscribers.discard(q)

    def resume_channels(self, account: str) -> None:
        """The account is back: its channels' deferred deliveries go now rather
        than at their backoff time (which may be minutes away after an outage)."""
        rt = self.accounts.get(account)
        if rt is None:
            return  # (an adapter being stopped by a reload that removed its account)
        keys = [c.key for c in rt.channels]

        def unit(tx: Tx) -> None:
            for key in keys:
                tx.retry_now(key)

        def wake(done: asyncio.Future[None]) -> None:
            _informative(done)
            for k in keys:
                if k in self.workers:
                    self.workers[k].wake()

        self.store.submit(unit).add_done_callback(wake)

    def is_subscribed(self, q: asyncio.Queue[tuple[str, PostId]]) -> bool:
        """False once the bridge dropped *q* for falling behind (resubscribe and
        reload what you show)."""
        return q in self._subscribers

    async def announce(self, community: str, text: RichText) -> PostId:
        assert self.relay is not None
        post_id, result = await self.relay.announce(community, text)
        self.publish(result)
        return post_id

    async def post_question(self, community: str, marker: str, post: Post) -> bool:
        """A scheduled question, posted once (see :meth:`Relay.post_question`);
        False when it was posted already."""
        assert self.relay is not None
        result = await self.relay.post_question(community, marker, post)
        if result is None:
            return False
        self.publish(result)
        return True

    async def run(self) -> None:
        cfg = self.config
        # A full disk at start-up is refused here (DiskFullError, naming the
        # data dir); once running, the store holds writes until space returns.
        self._store = await open_store(cfg.database, require_free=MIN_FREE_BYTES)
        try:
            # Chats that ended before a community's first start are not its history.
            await self.store.run(lambda tx: archive.first_starts(
                tx, [c.name for c in cfg.communities], time.time()))
            async with aiohttp.ClientSession() as http:
                self.http = http
                self.relay = Relay(cfg, self.store)
                self._build()
                tune_gc()
                self.cluster = self._cluster()
                async with asyncio.TaskGroup() as tg:
                    self._tg = tg
                    if self.cluster is not None:  # the accounts whose lease we hold
                        tg.create_task(self.cluster.run(), name="cluster")
                    for rt in self.accounts.values() if self.cluster is None else ():
                        self.start_account(rt)
                    for task in self.extra_tasks:
                        tg.create_task(self._keep_running("extra", functools.partial(task, self)))
                    self.ready.set()
                    # Open until cancelled: a reload starts accounts in it later, even
                    # when it stopped every task it had.
                    await asyncio.Event().wait()
        finally:
            for rt in self.accounts.values():
                rt.health = Health.STOPPED
            def stopped(tx: Tx) -> None:
                for rt in self.accounts.values():
                    if self.cluster is None or lease_name(rt.name) in self.cluster.held_at_stop:
                        tx.set_health(rt.name, rt.account.platform, Health.STOPPED.value, "")

            # On a full disk this write would wait for space: bounded, so that
            # stopping never hangs (health rows are only informative).
            try:
                if not self.store.storage.ok:
                    raise StoreError(self.store.storage.detail)
                async with asyncio.timeout(STOP_WRITE_WAIT):
                    await self.store.run(stopped)
            except (TimeoutError, StoreError) as e:
                log.warning("stopped without recording adapters' health: the store cannot "
                            "write (%s)", e or "timed out")
            await self.store.close()

    def _build(self) -> None:
        cfg = self.config
        for name in cfg.accounts:
            specs = cfg.channel_specs(name)
            if not specs:
                log.warning("account %s serves no channel; not started", name)
                continue
            self.build_account(name, cfg.accounts[name], specs)

    def build_account(self, name: str, acct: AccountConfig,
                      specs: tuple[ChannelSpec, ...],
                      draining: Mapping[str, ChannelConfig] | None = None) -> AccountRuntime:
        """The runtime of account *name* serving *specs*, and a sender per channel it
        writes to (not started).  *draining*: channels of *specs* removed by a reload,
        whose senders stop once their queue is sent."""
        cfg = self.config
        rate = acct.rate_per_minute / 60 if acct.rate_per_minute else None
        rt = AccountRuntime(
            name=name, account=acct, channels=specs, bridge=self,
            logger=logging.getLogger(f"hashbridge.adapter.{acct.platform}.{name}"),
            data_dir=cfg.data_path("accounts", name),
            bucket=TokenBucket(rate, acct.rate_burst))
        rt.adapter = acct.factory.create(acct.options, specs, self.services)
        self.accounts[name] = rt
        channels = {c.key: c for c in cfg.all_channels()}
        for spec in specs:
            if spec.direction == "in":
                continue
            gone = draining is not None and spec.key in draining
            # (a removed channel is sent with its last options)
            ch = draining[spec.key] if draining and gone else channels[spec.key]
            deps = WorkerDeps(store=self.store, adapter=rt.adapter, bucket=rt.bucket,
                              ready=rt.connected_once,
                              settings=cfg.bridge, metrics=self.metrics,
                              network_name=self.network_name, set_health=rt.set_health,
                              logger=logging.getLogger(f"hashbridge.worker.{ch.key}"))
            self.workers[ch.key] = ChannelWorker(ch, deps, draining=gone)
        return rt

    def start_account(self, rt: AccountRuntime) -> None:
        """Run *rt* (its adapter and senders) in this process (no database sharing)."""
        assert self._tg is not None
        self._account_tasks[rt.name] = self._tg.create_task(
            self.run_account(rt), name=f"account:{rt.name}")

    async def stop_account(self, name: str) -> None:
        """Stop account *name*'s adapter and senders: a send in progress ends first
        (and is recorded), then everything is cancelled."""
        rt = self.accounts.get(name)
        if rt is not None:
            workers = [w for s in rt.channels if (w := self.workers.get(s.key)) is not None]
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.bridge.send_timeout_seconds + 5):
                    await asyncio.gather(*(w.pause() for w in workers))
        task = self._account_tasks.pop(name, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run_account(self, rt: AccountRuntime) -> None:
        """One account: its adapter (supervised) and the senders of its channels."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._supervise(rt), name=f"adapter:{rt.name}")
            for spec in rt.channels:
                if (w := self.workers.get(spec.key)) is not None:
                    tg.create_task(self._send(rt, w), name=f"worker:{spec.key}")

    async def _send(self, rt: AccountRuntime, w: ChannelWorker) -> None:
        await self._keep_running(f"worker {w.channel.key}", w.run)
        if w.draining:
            self._drained(rt, w)

    def _drained(self, rt: AccountRuntime, w: ChannelWorker) -> None:
        """A removed channel's queue is sent: its sender is gone; a removed account
        whose last such channel this was stops."""
        key = w.channel.key
        log.warning("reload: %s: the removed channel's queue is sent; its sender stopped", key)
        if self.workers.get(key) is w:
            del self.workers[key]
        left = self.draining.get(rt.name, set())
        left.discard(key)
        if not left:
            self.draining.pop(rt.name, None)
            if not self.config.channel_specs(rt.name) and self._tg is not None \
                    and self.accounts.get(rt.name) is rt:
                self._tg.create_task(self.retire_account(rt.name), name=f"retire:{rt.name}")

    async def retire_account(self, name: str) -> None:
        """Stop an account the config no longer has (its queues sent, or left in the
        store for the next start); with a shared database its lease is given up now."""
        if self.cluster is not None:
            await self.cluster.remove([lease_name(name)])
        else:
            await self.stop_account(name)
        rt = self.accounts.pop(name, None)
        if rt is not None:
            for spec in rt.channels:
                self.workers.pop(spec.key, None)
        log.warning("reload: account %s stopped (removed from the configuration)", name)

    def _cluster(self) -> Cluster | None:
        """A :class:`Cluster` when the store is shared by several processes."""
        leases = leases_of(self.store, Member())
        if leases is None:
            return None

        def wake(key: str) -> None:
            if (w := self.workers.get(key)) is not None:
                w.wake()

        return Cluster(
            leases, self.config.bridge.failover_seconds,
            {lease_name(n): functools.partial(self.run_account, rt)
             for n, rt in self.accounts.items()},
            {lease_name(n): [s.key for s in rt.channels] for n, rt in self.accounts.items()},
            wake, lambda kind, pid: self.publish(IngestResult(changed=[(kind, pid)]),
                                                 remote=True))

    async def _supervise(self, rt: AccountRuntime) -> None:
        """Run one adapter forever; its crash never touches its siblings."""
        os.makedirs(rt.data_dir, exist_ok=True)
        assert rt.adapter is not None
        attempt = 0
        while True:
            rt.set_health(Health.STARTING)
            started = time.monotonic()
            try:
                await rt.adapter.run(rt)  # type: ignore[arg-type]  # http is a property
                rt.logger.warning("adapter returned; restarting")
                error = "adapter stopped"
            except asyncio.CancelledError:
                raise
            except AuthError as e:
                rt.set_health(Health.BAD_CREDENTIALS, str(e) or "credentials refused")
                rt.logger.error("credentials refused: %s; fix the config and restart, "
                                "retrying every 5 minutes meanwhile", e)
                await asyncio.sleep(300)
                continue
            except TransientError as e:
                # The platform said "not now" (429, 5xx, unreachable) while the
                # adapter started: not a crash, so no traceback and no charge on
                # the restart budget; wait as long as it asked.
                attempt = await self._not_now(rt, e, started, attempt, e.retry_after)
                continue
            except Exception as e:
                if not unreachable(e):
                    rt.logger.exception("adapter crashed")
                    error = f"{type(e).__name__}: {e}"
                else:
                    # The platform cannot be reached (refused, no route, timed out):
                    # "not now", exactly as a 5xx.
                    attempt = await self._not_now(rt, e, started, attempt, None)
                    continue
            now = time.monotonic()
            if now - started > 60:
                attempt = 0
            rt.restarts = [t for t in rt.restarts if t > now - RESTART_WINDOW] + [now]
            if len(rt.restarts) > self.config.bridge.restart_budget:
                rt.set_health(Health.FAILED, f"{len(rt.restarts)} crashes in 10 minutes; "
                              f"last: {error}")
                rt.logger.error("restart budget spent; retrying in 10 minutes")
                await asyncio.sleep(RESTART_WINDOW)
                rt.restarts.clear()
                continue
            rt.set_health(Health.DISCONNECTED, error)
            await asyncio.sleep(backoff(attempt, base=1.0, cap=120.0))
            attempt += 1

    async def _not_now(self, rt: AccountRuntime, e: Exception, started: float, attempt: int,
                       retry_after: float | None) -> int:
        """Wait after the platform said "not now" (or could not be reached): one
        warning when the wait begins (or its reason changes), the repeats at debug
        level, no traceback, nothing charged on the restart budget."""
        if time.monotonic() - started > 60:
            attempt = 0
        wait = retry_after or backoff(attempt, base=1.0, cap=120.0)
        why = str(e) or type(e).__name__
        if not isinstance(e, TransientError):
            why = f"cannot reach the platform: {type(e).__name__}: {why}"
        rt.set_health(Health.DISCONNECTED, why[:300])
        kind = type(e).__name__
        if rt.waiting_for != kind:
            rt.waiting_for = kind
            rt.logger.warning("could not start: %s; waiting, trying again with backoff "
                              "(up to 2 min)", why)
        else:
            rt.logger.debug("still cannot start: %s; trying again in %.0fs", why, wait)
        await asyncio.sleep(wait)
        return attempt + 1

    async def _keep_running(self, what: str, fn: Callable[[], Awaitable[None]]) -> None:
        attempt = 0
        while True:
            try:
                await fn()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s crashed; restarting", what)
                await asyncio.sleep(backoff(attempt, base=0.5, cap=60.0))
                attempt += 1


def tune_gc() -> None:
    """A long-running relay allocates many short-lived objects per message.
    Everything loaded at start-up (modules, config, adapters) is moved out of
    the collector's sight, and young collections run every 50,000 allocations
    instead of 700: about 25 % more posts per CPU-second (bench/relay.py),
    a few MB more memory between collections."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
