"""The inbound pipeline: echo → duplicate → policy → persist (the durable outbox).

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
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import assert_never

from bridge.contract.model import (
    Author,
    ChannelKey,
    Deleted,
    Edited,
    InboundEvent,
    NativeId,
    Op,
    Post,
    Posted,
    PostId,
    Rejected,
    RejectKind,
    new_post_id,
)
from bridge.contract.richtext import RichText
from bridge.inbound import links
from bridge.inbound.policy import AuthorRate, blocked, check_posted, fit_size, text_hash
from bridge.runtime.config import ChannelConfig, CommunityConfig, Config
from bridge.store import Store, Tx
from bridge.store.space import failure_kind

log = logging.getLogger("hashbridge.relay")

CONSENT_REPLIES = {
    "in": "Thanks, {name}: your posts with #{tag} will now be relayed to the community's "
          "other networks. Reply !leave to stop.",
    "out": "Done, {name}: your posts will not be relayed any more. Reply !join to opt in again.",
}


@dataclass
class IngestResult:
    accepted: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    wake: set[ChannelKey] = field(default_factory=set)
    changed: list[tuple[str, PostId]] = field(default_factory=list)
    """``(kind, post id)`` for live views: kind is posted, edited or deleted."""
    counts: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    """``(channel, what, reason)`` -> n, for the metrics: *what* is ``accepted``
    (reason ""), ``dropped`` or ``rejected`` (reason: the rejection's kind)."""
    channel: str = ""
    """The channel of the event being ingested (what :meth:`drop` counts under)."""

    def drop(self, why: str) -> None:
        self.dropped[why] = self.dropped.get(why, 0) + 1
        self.counts[(self.channel, "dropped", why)] += 1

    def reject(self, kind: str) -> None:
        self.counts[(self.channel, "rejected", kind)] += 1


class EventFailed(Exception):
    """Raised out of :meth:`Relay.ingest_tx` (rolling its unit back) when the
    relay's steps fail on one event: :meth:`Relay.ingest` runs the page again
    with that event replaced by *rejected*."""

    def __init__(self, index: int, rejected: Rejected) -> None:
        super().__init__(rejected.reason)
        self.index, self.rejected = index, rejected


class Relay:
    def __init__(self, config: Config, store: Store) -> None:
        self.config = config
        self.store = store
        self.rate = AuthorRate()
        self._channels: dict[str, tuple[ChannelConfig, CommunityConfig]] = {
            ch.key: (ch, comm) for comm in config.communities for ch in comm.channels}
        self._platforms = frozenset(a.platform for a in config.accounts.values())

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
        for index, ev in enumerate(events):
            result.channel = ev.channel
            found = self._channels.get(ev.channel)
            if found is None:
                result.drop("unknown channel")
                log.warning("event for unknown channel %s dropped", ev.channel)
                continue
            channel, community = found
            if isinstance(ev, Rejected):
                self._record_rejected(tx, ev, result)
                continue
            accepted = result.accepted
            try:
                self._one(tx, ev, channel, community, result)
            except Exception as exc:
                if failure_kind(exc) is not None:
                    # A TransientStoreError (the disk, a held lock), not the event:
                    # the page is held and retried whole.
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

    def _one(self, tx: Tx, ev: Posted | Edited | Deleted, channel: ChannelConfig,
             community: CommunityConfig, result: IngestResult) -> None:
        match ev:
            case Posted():
                self._posted(tx, ev, channel, community, result)
            case Edited():
                self._edited(tx, ev, channel, community, result)
            case Deleted():
                self._deleted(tx, ev, channel, community, result)
            case _:
                assert_never(ev)

    def _record_rejected(self, tx: Tx, ev: Rejected, result: IngestResult) -> None:
        """An event that could not be read or relayed: recorded (once, however
        often it is read again) and counted; its page goes on without it."""
        if tx.reject(ev.channel, ev.native_id, ev.reason, ev.kind.value):
            result.reject(ev.kind.value)
        result.dropped[ev.kind.value] = result.dropped.get(ev.kind.value, 0) + 1

    # ------------------------------------------------------------------ steps
    def _posted(self, tx: Tx, ev: Posted, channel: ChannelConfig, community: CommunityConfig,
                result: IngestResult) -> None:
        known = tx.native_lookup(channel.key, ev.native_id)
        if known is not None:
            result.drop("echo" if known[1] != "origin" else "already ingested")
            return
        if not channel.reads:
            result.drop("channel is write-only")
            return
        settings = community.settings
        if ev.command:
            self._command(tx, ev, channel, community, result)
            return
        text, plain, cut = fit_size(ev.text, settings.max_post_chars)
        link = links.parse(plain)
        if link is not None:
            self._link_command(tx, ev, link, channel, community, result)
            return
        verdict = check_posted(ev, settings, tx, self.rate, plain)
        if not verdict.ok:
            tx.reject(channel.key, ev.native_id, verdict.reason)
            result.drop(verdict.reason)
            log.info("not relayed: %s %s: %s", channel.key, ev.native_id, verdict.reason)
            return
        if cut:
            log.info("%s %s: text cut to %d characters", channel.key, ev.native_id,
                     settings.max_post_chars)
        fingerprint = text_hash(plain, settings.hashtag)
        if fingerprint and settings.duplicate_window:
            # The same account, or one its owner linked from both sides (!link):
            # never a display name, which anyone can take.
            dup = tx.find_duplicate(settings.name, fingerprint,
                                    tx.linked_identities(ev.author.identity),
                                    time.time() - settings.duplicate_window, channel.key)
            if dup is not None:
                # The member posted the same words here by hand: this message *is*
                # the post's presence on this channel (replies map to it; the
                # worker will not copy the post here).
                tx.add_native(channel.key, ev.native_id, dup, "origin", permalink=ev.permalink)
                result.drop("cross-posted duplicate linked")
                return
        reply_to: PostId | None = None
        if ev.reply_to_native:
            parent = tx.native_lookup(channel.key, ev.reply_to_native)
            reply_to = parent[0] if parent else None
        post = Post(id=new_post_id(), community=settings.name, origin_channel=channel.key,
                    origin_native_id=ev.native_id, permalink=ev.permalink, author=ev.author,
                    text=text, attachments=ev.attachments[:10], reply_to=reply_to,
                    content_warning=ev.content_warning, language=ev.language,
                    created_at=ev.created_at)
        self._store_post(tx, post, fingerprint, community, result, exclude=channel.key)

    def _store_post(self, tx: Tx, post: Post, fingerprint: str, community: CommunityConfig,
                    result: IngestResult, *, exclude: str | None = None,
                    only: str | None = None) -> None:
        tx.insert_post(post, fingerprint)
        tx.add_native(post.origin_channel, post.origin_native_id, post.id, "origin",
                      permalink=post.permalink)
        targets = [t.key for t in community.channels
                   if t.writes and t.key != exclude and not (only and t.key != only)]
        tx.enqueue_many(post.id, targets, Op.CREATE, source=_source(post),
                        at=post.created_at.timestamp())
        result.wake.update(targets)
        result.accepted += 1
        result.changed.append(("posted", post.id))

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
            self._store_post(tx, notice, "", comm, result)
            return notice.id, result

        return await self.store.run(unit)

    def _command(self, tx: Tx, ev: Posted, channel: ChannelConfig, community: CommunityConfig,
                 result: IngestResult) -> None:
        decision = {"!join": "in", "!leave": "out"}.get(ev.command.strip().lower())
        if decision is None:
            result.drop(f"unknown command {ev.command!r}")
            return
        a = ev.author
        before = tx.consent(a.platform, a.handle)
        tx.set_consent(a.platform, a.handle, decision)
        command = self._keep_command(tx, ev, channel, community)
        if before == decision or not channel.writes:
            result.drop("consent unchanged")
            return
        text = CONSENT_REPLIES[decision].format(name=a.name, tag=community.settings.hashtag)
        self._answer(tx, ev, command, text, channel, community, result)

    def _link_command(self, tx: Tx, ev: Posted, cmd: links.LinkCommand, channel: ChannelConfig,
                      community: CommunityConfig, result: IngestResult) -> None:
        """``!link``/``!unlink`` (see :mod:`bridge.inbound.links`): never relayed; answered
        where it was said.  Counts against the author's rate like a post."""
        command = self._keep_command(tx, ev, channel, community)
        a, settings = ev.author, community.settings
        if a.is_bot or blocked(a, settings, tx):
            result.drop("!link from a bot or a blocked author")
            return
        if not self.rate.allow(settings.name, a.platform, a.handle,
                               settings.author_rate_per_minute,
                               key=f"{ev.channel} {ev.native_id}"):
            result.drop(f"author over {settings.author_rate_per_minute} posts/minute")
            return
        text = links.answer(tx, cmd, a, self._platforms, channel.platform)
        result.drop(f"!{cmd.verb} command")
        if channel.writes:
            self._answer(tx, ev, command, text, channel, community, result)

    def _keep_command(self, tx: Tx, ev: Posted, channel: ChannelConfig,
                      community: CommunityConfig) -> Post:
        """A command is kept as a hidden post (never relayed, never shown) so a
        re-read is recognised and the answer can thread under it."""
        command = Post(id=new_post_id(), community=community.name, origin_channel=channel.key,
                       origin_native_id=ev.native_id, permalink=ev.permalink, author=ev.author,
                       text=ev.text, created_at=ev.created_at)
        tx.insert_post(command, "")
        tx.set_hidden(command.id, True)
        tx.add_native(channel.key, ev.native_id, command.id, "origin")
        return command

    def _answer(self, tx: Tx, ev: Posted, command: Post, text: str, channel: ChannelConfig,
                community: CommunityConfig, result: IngestResult) -> None:
        """The bridge's answer to a command, threaded under it on its channel only."""
        notice = Post(id=new_post_id(), community=community.name, origin_channel=channel.key,
                      origin_native_id=NativeId(f"notice:{ev.native_id}"), permalink="",
                      author=ev.author,
                      text=RichText.plain(text), reply_to=command.id, is_notice=True)
        tx.insert_post(notice, "")
        tx.set_hidden(notice.id, True)
        tx.enqueue(notice.id, channel.key, Op.CREATE, source=_source(notice),
                   at=notice.created_at.timestamp())
        result.wake.add(channel.key)

    def _edited(self, tx: Tx, ev: Edited, channel: ChannelConfig, community: CommunityConfig,
                result: IngestResult) -> None:
        known = tx.native_lookup(channel.key, ev.native_id)
        if known is None or known[1] != "origin":
            result.drop("echo" if known else "edit of an unknown post")
            return
        post_id = known[0]
        post = tx.get_post(post_id)
        if post is None or post.origin_channel != channel.key:
            result.drop("edit of a linked duplicate")
            return
        _, deleted_at, _ = tx.post_state(post_id)
        if deleted_at:
            result.drop("edit of a deleted post")
            return
        settings = community.settings
        if ev.text.hashtags() & {"nobridge", "nobot"}:
            # The author withdrew the post from the bridge: treat as a delete.
            self._delete_post(tx, post_id, channel, community, result)
            return
        text, plain, _ = fit_size(ev.text, settings.max_post_chars)
        if text == post.text and ev.content_warning == post.content_warning:
            result.drop("edit without change")
            return
        tx.update_post(post_id, text, text_hash(plain, settings.hashtag), ev.content_warning,
                       ev.attachments, ev.edited_at.timestamp())
        targets = [t.key for t in community.channels if t.writes and t.key != channel.key]
        # Edits count against the author's rate.  Over it, the edit is held (its
        # deliveries wait, without holding up anyone else's) until the author is
        # back under the rate; the text is already stored, so whatever edit goes
        # out then carries the latest one.
        a = post.author
        version = f"{ev.edited_at.timestamp():.6f}"
        until = tx.held_until(post_id)
        if until is None:
            hold = self.rate.reserve(settings.name, a.platform, a.handle,
                                     settings.author_rate_per_minute,
                                     key=f"{ev.channel} {ev.native_id} edit {version}",
                                     book=True)
            until = time.time() + hold if hold else None
        # else: an edit of this post is held already; this one takes its slot.
        # Only the latest text is sent: an edit still queued for a target is
        # replaced by this one.
        tx.supersede_edits(post_id, targets)
        # An edit's version is its time on the platform: re-reading it yields the same ids.
        ids = tx.enqueue_many(post_id, targets, Op.EDIT, source=f"{_source(post)}\x1e{version}",
                              at=ev.edited_at.timestamp())
        if until is not None:
            tx.hold(ids, until)
            log.info("%s %s: edit held %.0fs (author over %d posts and edits a minute)",
                     channel.key, ev.native_id, until - time.time(),
                     settings.author_rate_per_minute)
        result.wake.update(targets)
        result.accepted += 1
        result.changed.append(("edited", post_id))

    def _deleted(self, tx: Tx, ev: Deleted, channel: ChannelConfig, community: CommunityConfig,
                 result: IngestResult) -> None:
        known = tx.native_lookup(channel.key, ev.native_id)
        if known is None:
            result.drop("delete of an unknown post")
            return
        if known[1] != "origin":
            log.info("our copy %s on %s was removed there", ev.native_id, channel.key)
            result.drop("copy removed on its platform")
            return
        post = tx.get_post(known[0])
        if post is None or post.origin_channel != channel.key:
            result.drop("delete of a linked duplicate")
            return
        self._delete_post(tx, known[0], channel, community, result)

    def _delete_post(self, tx: Tx, post_id: PostId, channel: ChannelConfig,
                     community: CommunityConfig, result: IngestResult) -> None:
        _, deleted_at, _ = tx.post_state(post_id)
        if deleted_at:
            result.drop("already deleted")
            return
        post = tx.get_post(post_id)
        tx.mark_post_deleted(post_id)
        targets = [t.key for t in community.channels if t.writes and t.key != channel.key]
        tx.enqueue_many(post_id, targets, Op.DELETE, source=_source(post) if post else "",
                        at=post.created_at.timestamp() if post else 0.0)
        result.wake.update(targets)
        result.accepted += 1
        result.changed.append(("deleted", post_id))



def _source(post: Post) -> str:
    """The origin message a post's deliveries are derived from (see enqueue_many)."""
    return f"{post.origin_channel}\x1e{post.origin_native_id}"
