"""The inbound pipeline: each event runs through its declared steps
(:mod:`bridge.inbound.steps`: echo, commands, policy, duplicate, persist).

All of one page of events, and the cursor that covers them, run as one unit of
work in the store: either everything (posts, id map, outbox rows, cursor) is
committed, or nothing is and the adapter reads the page again.

One event never costs its page: an event the adapter could not read arrives as
:class:`~bridge.contract.model.Rejected` and is recorded, and an event on which the
relay's own steps fail is undone alone (the page is run again without it) and
recorded as a ``relay error``.  Only the store itself failing (a full disk)
holds the page.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from bridge.contract.model import (
    Author,
    ChannelKey,
    InboundEvent,
    NativeId,
    Post,
    PostId,
    Rejected,
    RejectKind,
    new_post_id,
)
from bridge.contract.richtext import RichText
from bridge.inbound import held, pipeline
from bridge.inbound.commands import CONSENT_REPLIES
from bridge.inbound.persist import store_post
from bridge.inbound.pipeline import Inbound, IngestResult, Services, Step
from bridge.inbound.rate import AuthorRate
from bridge.inbound.steps import PIPELINES
from bridge.runtime.blend import Blend
from bridge.runtime.config import ChannelConfig, CommunityConfig, Config
from bridge.store import Store, Tx
from bridge.store.space import failure_kind

__all__ = ["CONSENT_REPLIES", "EventFailed", "IngestResult", "Relay"]

log = logging.getLogger("hashbridge.relay")


class EventFailed(Exception):
    """Raised out of :meth:`Relay.ingest_tx` (rolling its unit back) when the
    relay's steps fail on one event: :meth:`Relay.ingest` runs the page again
    with that event replaced by *rejected*."""

    def __init__(self, index: int, rejected: Rejected) -> None:
        super().__init__(rejected.reason)
        self.index, self.rejected = index, rejected


class Relay:
    def __init__(self, config: Config, store: Store) -> None:
        self.store = store
        self.rate = AuthorRate()
        self._seeded = False
        """Whether the posts held before a restart have been put back in the rate."""
        self.reconfigure(config)

    def reconfigure(self, config: Config) -> None:
        """Route by *config* from the next page on (a reload): a page being relayed
        finishes with the routes it started with (routes and blend are swapped
        together, with no await between)."""
        self.config = config
        channels: dict[str, tuple[ChannelConfig, CommunityConfig]] = {
            ch.key: (ch, comm) for comm in config.communities for ch in comm.channels}
        self.blend = Blend(config)
        self._services = Services(routes=channels, rate=self.rate, platforms=frozenset(
            a.platform for a in config.accounts.values()), blend=self.blend)

    async def ingest(self, account: str, events: Sequence[InboundEvent],
                     cursor: tuple[str, str] | None = None) -> IngestResult:
        """Persist *events* and *cursor* in one transaction; return what to wake.

        An event on which the relay's own steps fail is undone alone: the page's
        unit of work is rolled back and run again with that event recorded as a
        ``relay error`` instead (nothing to pay on the common path, where a
        savepoint per event would cost every event)."""
        page = list(events)
        while True:
            try:
                return await self.store.run(lambda tx: self.ingest_tx(tx, account, page, cursor))
            except EventFailed as failed:
                page[failed.index] = failed.rejected

    def ingest_tx(self, tx: Tx, account: str, events: Sequence[InboundEvent],
                  cursor: tuple[str, str] | None) -> IngestResult:
        result = IngestResult()
        services, run = self._services, pipeline.run
        if not self._seeded:
            self._seed(tx)
        for index, ev in enumerate(events):
            result.channel = ev.channel
            accepted = result.accepted
            ib = Inbound(ev, tx, result, services)
            try:
                run(PIPELINES.get(type(ev)) or _steps_of(ev), ib)
            except Exception as exc:
                if isinstance(ev, Rejected) or failure_kind(exc) is not None:
                    # A TransientStoreError (the disk, a held lock), not the event: the
                    # page is held and retried whole. (A rejection is only recorded.)
                    raise
                reason = f"{type(exc).__name__}: {str(exc)[:200]}"
                log.warning("not relayed: %s %s: relay error: %s", ev.channel, ev.native_id,
                            reason)
                log.debug("relay steps failed on %s %s", ev.channel, ev.native_id,
                          exc_info=exc)
                raise EventFailed(index, Rejected(
                    channel=ev.channel, native_id=ev.native_id, reason=f"relay error: {reason}",
                    kind=RejectKind.RELAY_ERROR)) from exc
            if result.accepted > accepted:
                result.counts[(ev.channel, "accepted", "")] += result.accepted - accepted
        if cursor is not None:
            tx.set_cursor(account, cursor[0], cursor[1])
        return result

    def _seed(self, tx: Tx) -> None:
        """The posts held before a restart keep their slots: each author's later
        posts go after them (the order on every target holds)."""
        now = time.time()
        for h in held.pending(tx):
            a = h.post.author
            self.rate.seed(h.post.community, a.platform, a.handle, h.until - now)
        self._seeded = True

    async def announce(self, community: str, text: RichText, *,
                       origin: str = "bridge") -> tuple[PostId, IngestResult]:
        """Post the bridge's own notice (chat-event announcements) on every
        writable channel of *community*, through the normal outbox."""
        comm = next(c for c in self.config.communities if c.name == community)

        def unit(tx: Tx) -> tuple[PostId, IngestResult]:
            result = IngestResult()
            notice = Post(id=new_post_id(), community=community,
                          origin_channel=ChannelKey(f"{community}/{origin}"),
                          origin_native_id=NativeId(f"notice:{new_post_id()}"), permalink="",
                          author=Author(platform="hashbridge", handle="hashbridge",
                                        display_name="hashbridge"),
                          text=text, is_notice=True)
            store_post(tx, notice, "", comm, result, blend=self.blend)
            return notice.id, result

        return await self.store.run(unit)


    async def post_question(self, community: str, marker: str,
                            post: Post) -> IngestResult | None:
        """Post a scheduled question (*post*, in the host's name) on every writable
        channel of *community*, unless *marker* says it was posted already: the
        record and the post are one transaction, so neither a restart nor another
        process on the same database posts it twice.  None: posted before."""
        comm = next(c for c in self.config.communities if c.name == community)

        def unit(tx: Tx) -> IngestResult | None:
            if not tx.state_add(QUESTIONS_ACCOUNT, "posted", marker, post.id):
                return None
            result = IngestResult()
            store_post(tx, post, "", comm, result, blend=self.blend,
                       mapped_on=f"{community}/questions")
            return result

        return await self.store.run(unit)


QUESTIONS_ACCOUNT = "hashbridge.questions"
"""Scheduled questions already posted: ``(namespace "posted", marker → post id)``
in the adapter-state table."""


def _steps_of(ev: InboundEvent) -> tuple[Step[Any], ...]:
    """The steps of an event of a subclass of one of the kinds."""
    return next(steps for kind, steps in PIPELINES.items() if isinstance(ev, kind))
