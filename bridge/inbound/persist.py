"""The steps of the inbound pipeline that read and write the id map: what the
bridge has seen already (echoes of its own copies, re-reads), duplicates a member
posted by hand, and the last steps that store the post, the edit or the delete
with the outbox rows the workers will send."""

from __future__ import annotations

import logging
import re
import time

from bridge.contract.model import (
    ChannelKey,
    Deleted,
    Edited,
    InboundEvent,
    NativeId,
    Op,
    Poll,
    Post,
    Posted,
    PostId,
    Rejected,
    new_post_id,
)
from bridge.contract.richtext import RichText
from bridge.inbound import held
from bridge.inbound.pipeline import DONE, Drop, DropReason, Inbound, IngestResult, Outcome
from bridge.inbound.policy import allowed_quote, carries_opt_out_tag, fit_size, text_hash
from bridge.runtime.blend import Blend
from bridge.runtime.config import CommunityConfig
from bridge.store import Tx

log = logging.getLogger("hashbridge.relay")


def known_channel(ib: Inbound[InboundEvent]) -> Drop | None:
    route = ib.services.routes.get(ib.ev.channel)
    if route is None:
        log.warning("event for unknown channel %s dropped", ib.ev.channel)
        return Drop(DropReason.UNKNOWN_CHANNEL)
    ib.channel, ib.community = route
    return None


# ------------------------------------------------------------------ posted

def echo(ib: Inbound[Posted]) -> Drop | None:
    known = ib.known = ib.tx.native_lookup(ib.channel.key, ib.ev.native_id)
    if known is None:
        return None
    return Drop(DropReason.ECHO if known[1] != "origin" else DropReason.ALREADY_INGESTED)


def same_place(ib: Inbound[Posted]) -> Drop | None:
    """A post read on a channel that shares its place with another community's
    channel (the same bot account on a hashtag network, the same room): the
    bridge's own copy made for the other community, read back here, is an echo;
    during a blended event, a post tagged with both hashtags and already read
    there is the same post, not a second one."""
    blend = ib.services.blend
    others = blend.same_place(ib.channel.key)
    if not others:
        return None
    partners: frozenset[str] | None = None
    for other in others:
        known = ib.tx.native_lookup(other.key, ib.ev.native_id)
        if known is None:
            continue
        if known[1] != "origin":
            return Drop(DropReason.ECHO)
        if partners is None:
            partners = blend.partners(ib.community.name, ib.ev.created_at.timestamp())
        if other.community in partners:
            return Drop(DropReason.SAME_POST)
    return None


def direction(ib: Inbound[Posted]) -> Drop | None:
    return None if ib.channel.reads else Drop(DropReason.WRITE_ONLY)


def size(ib: Inbound[Posted]) -> None:
    ib.text, ib.plain, ib.cut = fit_size(ib.ev.text, ib.community.settings.max_post_chars)


def duplicate(ib: Inbound[Posted]) -> Drop | None:
    settings, tx, ev = ib.community.settings, ib.tx, ib.ev
    fingerprint = ib.fingerprint = text_hash(ib.plain, settings.hashtag)
    if not fingerprint or not settings.duplicate_window:
        return None
    # The same account, or one its owner linked from both sides (!link):
    # never a display name, which anyone can take.
    dup = tx.find_duplicate(settings.name, fingerprint, tx.linked_identities(ev.author.identity),
                            time.time() - settings.duplicate_window, ib.channel.key)
    if dup is None:
        return None
    # The member posted the same words here by hand: this message *is* the
    # post's presence on this channel (replies map to it; the worker will not
    # copy the post here).
    tx.add_native(ib.channel.key, ev.native_id, dup, "origin", permalink=ev.permalink)
    return Drop(DropReason.DUPLICATE)


def persist_post(ib: Inbound[Posted]) -> Outcome:
    ev, tx, channel, settings = ib.ev, ib.tx, ib.channel, ib.community.settings
    assert ib.text is not None, "the size step runs first"
    if ib.cut:
        log.info("%s %s: text cut to %d characters", channel.key, ev.native_id,
                 settings.max_post_chars)
    reply_to: PostId | None = None
    if ev.reply_to_native:
        parent = tx.native_lookup(channel.key, ev.reply_to_native)
        reply_to = parent[0] if parent else None
    post = Post(id=new_post_id(), community=settings.name, origin_channel=channel.key,
                origin_native_id=ev.native_id, permalink=ev.permalink, author=ev.author,
                text=ib.text, attachments=ev.attachments[:10], reply_to=reply_to,
                content_warning=ev.content_warning, language=ev.language,
                created_at=ev.created_at, poll=ev.poll, quote=ib.quote)
    hold = ib.hold_until
    parent_until = tx.held_until(reply_to) if reply_to else None
    if parent_until is not None and parent_until > hold:
        # A reply to a post held over its author's rate waits with it, so it
        # answers the parent's copy (rather than holding up its channel while
        # it waits for one).
        hold = parent_until
    skip = channel.platform if _read_through_also(ib) else ""
    store_post(tx, post, ib.fingerprint, ib.community, ib.result, exclude=channel.key,
               hold=hold, blend=ib.services.blend, skip_platform=skip)
    if ib.hold_until:
        _held(ib, post)
    elif hold:
        held.note(tx, post.id, hold)
        ib.result.counts[(channel.key, "held", "")] += 1
        log.info("%s %s: reply held %.0fs with its held parent", channel.key, ev.native_id,
                 hold - time.time())
    return DONE


HELD_NOTICE = ("{name}, your posts are arriving faster than {rate} a minute, the most the "
               "bridge relays for one person: this one and your next ones wait and are "
               "relayed in order as the minute allows. Nothing is lost.")


def _held(ib: Inbound[Posted], post: Post) -> None:
    """The post is held over its author's rate: recorded, counted, logged, and
    the author told (once per window, where the bridge can answer there)."""
    settings, a = ib.community.settings, post.author
    held.note(ib.tx, post.id, ib.hold_until)
    ib.result.counts[(ib.channel.key, "held", "")] += 1
    log.info("%s %s: post held %.0fs (author over %d posts and edits a minute)",
             ib.channel.key, ib.ev.native_id, ib.hold_until - time.time(),
             settings.author_rate_per_minute)
    if ib.channel.writes and ib.services.rate.tell(settings.name, a.platform, a.handle):
        answer(ib, post.id, HELD_NOTICE.format(name=a.name,
                                               rate=settings.author_rate_per_minute))


def answer(ib: Inbound[Posted], reply_to: PostId, text: str) -> None:
    """The bridge's answer to the event's author, threaded under *reply_to* on
    the event's channel only (a command's answer, a held post's notice)."""
    ev, tx, channel = ib.ev, ib.tx, ib.channel
    notice = Post(id=new_post_id(), community=ib.community.name, origin_channel=channel.key,
                  origin_native_id=NativeId(f"notice:{ev.native_id}"), permalink="",
                  author=ev.author, text=RichText.plain(text), reply_to=reply_to,
                  is_notice=True)
    tx.insert_post(notice, "")
    tx.set_hidden(notice.id, True)
    tx.enqueue(notice.id, channel.key, Op.CREATE, source=source(notice),
               at=notice.created_at.timestamp())
    ib.result.wake.add(channel.key)


_HASHTAG = re.compile(r"(?<![\w#&])#(\w+)")


def _read_through_also(ib: Inbound[Posted]) -> bool:
    """Whether the post was read through one of the community's ``also_read``
    hashtags (on a channel that selects by hashtag, it lacks the community's own):
    it is not copied back onto its network."""
    settings = ib.community.settings
    if not settings.also_read or not ib.services.blend.by_hashtag(ib.channel.key):
        return False
    own = settings.hashtag.casefold()
    return all(t.casefold() != own for t in _HASHTAG.findall(ib.plain))


def targets_of(post: Post, community: CommunityConfig, blend: Blend | None,
               origin: str | None, *, skip_platform: str = "") -> list[ChannelKey]:
    """The channels *post*'s copies go to: the community's writable channels but
    *origin*, and during a blended event its partner's, one per place (by the
    post's own time, so its edits and deletes reach every copy after the event)."""
    if blend is None or (not blend.blended(community.name) and not skip_platform):
        return [t.key for t in community.channels if t.writes and t.key != origin]
    return list(blend.targets(community, origin, post.created_at.timestamp(),
                              skip_platform=skip_platform))


def store_post(tx: Tx, post: Post, fingerprint: str, community: CommunityConfig,
               result: IngestResult, *, exclude: str | None = None,
               only: str | None = None, hold: float = 0.0, blend: Blend | None = None,
               skip_platform: str = "", mapped_on: str | None = None) -> None:
    """Store *post* and queue its creates; *hold*: held until then (wall clock);
    *mapped_on*: the channel its origin id is mapped on, when not its origin
    channel (the bridge's post in the host's name is on no channel yet)."""
    tx.insert_post(post, fingerprint)
    tx.add_native(mapped_on or post.origin_channel, post.origin_native_id, post.id, "origin",
                  permalink=post.permalink)
    targets = [t for t in targets_of(post, community, blend, exclude,
                                     skip_platform=skip_platform)
               if not (only and t != only)]
    ids = tx.enqueue_many(post.id, targets, Op.CREATE, source=source(post),
                          at=post.created_at.timestamp())
    if hold:
        tx.hold(ids, hold)
    result.wake.update(targets)
    result.accepted += 1
    result.changed.append(("posted", post.id))


# ------------------------------------------------------------------ edited

def edit_known(ib: Inbound[Edited]) -> Drop | None:
    known = ib.known = ib.tx.native_lookup(ib.channel.key, ib.ev.native_id)
    if known is None:
        return Drop(DropReason.EDIT_UNKNOWN)
    return Drop(DropReason.ECHO) if known[1] != "origin" else None


def edit_origin(ib: Inbound[Edited]) -> Drop | None:
    assert ib.known is not None
    post = ib.post = ib.tx.get_post(ib.known[0])
    if post is None or post.origin_channel != ib.channel.key:
        return Drop(DropReason.EDIT_OF_DUPLICATE)
    return None


def edit_deleted(ib: Inbound[Edited]) -> Drop | None:
    assert ib.known is not None
    _, deleted_at, _ = ib.tx.post_state(ib.known[0])
    return Drop(DropReason.EDIT_OF_DELETED) if deleted_at else None


def edit_withdrawn(ib: Inbound[Edited]) -> Outcome:
    if not carries_opt_out_tag(ib.ev.text):
        return None
    assert ib.known is not None
    # The author withdrew the post from the bridge: treat as a delete.
    return delete_post(ib, ib.known[0])


def edit_unchanged(ib: Inbound[Edited]) -> Drop | None:
    assert ib.post is not None
    ib.text, ib.plain, ib.cut = fit_size(ib.ev.text, ib.community.settings.max_post_chars)
    extras = ib.ev.extras
    if extras is not None:
        # (the quoted author's consent asked again: a quote may change hands)
        poll, quote = extras
        if _same_poll(poll, ib.post.poll):
            poll = ib.post.poll  # (votes counted since are no reason to edit every copy)
        extras = (poll, allowed_quote(quote, ib.community.settings, ib.tx))
        ib.extras = None if extras == (ib.post.poll, ib.post.quote) else extras
    if ib.text == ib.post.text and ib.ev.content_warning == ib.post.content_warning \
            and ib.extras is None:
        return Drop(DropReason.EDIT_UNCHANGED)
    return None


def _same_poll(a: Poll | None, b: Poll | None) -> bool:
    """The same options, end and state, whatever the votes."""
    if a is None or b is None:
        return a is b
    return ([o.title for o in a.options], a.ends_at, a.closed, a.multiple) == \
        ([o.title for o in b.options], b.ends_at, b.closed, b.multiple)


def persist_edit(ib: Inbound[Edited]) -> Outcome:
    ev, tx, channel, settings, post = ib.ev, ib.tx, ib.channel, ib.community.settings, ib.post
    assert post is not None and ib.text is not None
    post_id = post.id
    tx.update_post(post_id, ib.text, text_hash(ib.plain, settings.hashtag), ev.content_warning,
                   ev.attachments, ev.edited_at.timestamp(), extras=ib.extras)
    targets = targets_of(post, ib.community, ib.services.blend, channel.key)
    # Edits count against the author's rate.  Over it, the edit is held (its
    # deliveries wait, without holding up anyone else's) until the author is
    # back under the rate; the text is already stored, so whatever edit goes
    # out then carries the latest one.
    a = post.author
    version = f"{ev.edited_at.timestamp():.6f}"
    until = tx.held_until(post_id)
    if until is None:
        hold = ib.services.rate.reserve(settings.name, a.platform, a.handle,
                                        settings.author_rate_per_minute,
                                        key=f"{ev.channel} {ev.native_id} edit {version}",
                                        book=True)
        until = time.time() + hold if hold else None
    # else: an edit of this post is held already; this one takes its slot.
    # Only the latest text is sent: an edit still queued for a target is
    # replaced by this one.
    tx.supersede_edits(post_id, targets)
    # An edit's version is its time on the platform: re-reading it yields the same ids.
    ids = tx.enqueue_many(post_id, targets, Op.EDIT, source=f"{source(post)}\x1e{version}",
                          at=ev.edited_at.timestamp())
    if until is not None:
        tx.hold(ids, until)
        log.info("%s %s: edit held %.0fs (author over %d posts and edits a minute)",
                 channel.key, ev.native_id, until - time.time(),
                 settings.author_rate_per_minute)
    ib.result.wake.update(targets)
    ib.result.accepted += 1
    ib.result.changed.append(("edited", post_id))
    return DONE


# ------------------------------------------------------------------ deleted

def delete_known(ib: Inbound[Deleted]) -> Drop | None:
    known = ib.known = ib.tx.native_lookup(ib.channel.key, ib.ev.native_id)
    if known is None:
        return Drop(DropReason.DELETE_UNKNOWN)
    if known[1] != "origin":
        log.info("our copy %s on %s was removed there", ib.ev.native_id, ib.channel.key)
        return Drop(DropReason.COPY_REMOVED)
    return None


def delete_origin(ib: Inbound[Deleted]) -> Drop | None:
    assert ib.known is not None
    post = ib.post = ib.tx.get_post(ib.known[0])
    if post is None or post.origin_channel != ib.channel.key:
        return Drop(DropReason.DELETE_OF_DUPLICATE)
    return None


def persist_delete(ib: Inbound[Deleted]) -> Outcome:
    assert ib.known is not None
    return delete_post(ib, ib.known[0])


def delete_post(ib: Inbound[Edited] | Inbound[Deleted], post_id: PostId) -> Outcome:
    """Mark the post deleted and queue the deletes of its copies."""
    tx = ib.tx
    _, deleted_at, _ = tx.post_state(post_id)
    if deleted_at:
        return Drop(DropReason.ALREADY_DELETED)
    post = tx.get_post(post_id)
    tx.mark_post_deleted(post_id)
    if tx.held_until(post_id) is not None:
        held.withdraw(tx, post_id)  # never sent: nothing to delete where it was held
    targets = (targets_of(post, ib.community, ib.services.blend, ib.channel.key)
               if post else [t.key for t in ib.community.channels
                             if t.writes and t.key != ib.channel.key])
    tx.enqueue_many(post_id, targets, Op.DELETE, source=source(post) if post else "",
                    at=post.created_at.timestamp() if post else 0.0)
    ib.result.wake.update(targets)
    ib.result.accepted += 1
    ib.result.changed.append(("deleted", post_id))
    return DONE


# ------------------------------------------------------------------ rejected

def record_rejection(ib: Inbound[Rejected]) -> Drop:
    """Recorded once however often it is read again; its page goes on without it."""
    ev = ib.ev
    if ib.tx.reject(ev.channel, ev.native_id, ev.reason, ev.kind.value):
        ib.result.reject(ev.kind.value)
        return Drop(DropReason(ev.kind.value))
    return Drop(DropReason.REJECTED_AGAIN, ev.kind.value)


def source(post: Post) -> str:
    """The origin message a post's deliveries are derived from (see enqueue_many)."""
    return f"{post.origin_channel}\x1e{post.origin_native_id}"

