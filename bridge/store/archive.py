"""Read queries (and the two moderation units) for the web view and exports.

Plain functions taking a :class:`~bridge.store.Tx`, run with ``store.run``; the
queries themselves are ``Tx``'s (``visible_*``), this module composes them.
Public reads never return a deleted or hidden post: the content of a post
deleted at its origin is already scrubbed by the relay, and here it is not even
listed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bridge.contract.model import Op, Post, PostId
from bridge.store.api import Tx


@dataclass(frozen=True, slots=True)
class PostView:
    """A visible post with what a page needs around it."""

    post: Post
    edited_at: float | None
    parent: Post | None
    """The post it replies to, when that one is visible."""
    copies: tuple[tuple[str, str], ...]
    """(channel, permalink) of its copies that have a permalink."""
    reactions: dict[str, int] | None = None
    """Its reactions counted per network (platform name), if any."""


def visible_post(tx: Tx, post_id: str) -> Post | None:
    """The post if the public may see it now (not deleted, not hidden)."""
    return tx.visible_post(post_id)


def view(tx: Tx, post: Post) -> PostView:
    edited_at, _, _ = tx.post_state(post.id)
    parent = tx.visible_post(post.reply_to) if post.reply_to else None
    copies = tuple((ch, c.permalink) for ch, c in tx.all_copies(post.id)
                   if c.role == "copy" and c.part == 0 and c.permalink)
    reactions = tx.reaction_counts([post.id]).get(post.id)
    return PostView(post, edited_at, parent, copies, reactions)


def view_of(tx: Tx, post_id: str) -> PostView | None:
    post = tx.visible_post(post_id)
    return view(tx, post) if post else None


def page(tx: Tx, community: str, *, limit: int = 100, before: str | None = None,
         channels: tuple[str, ...] = ()) -> list[PostView]:
    """The newest *limit* visible posts (older than post id *before*), oldest first.

    Ordered by (created_at, id) like the relay's own listing: ULIDs made in the
    same millisecond are not ordered, so the id alone is only the tie-break.
    ``before`` is a keyset cursor: paging needs no offsets."""
    return [view(tx, p) for p in tx.visible_page(community, limit, before, channels)]


def between(tx: Tx, community: str, start: float, end: float) -> list[Post]:
    """Visible posts created in [start, end), oldest first (a chat event's window)."""
    return tx.visible_between(community, start, end)


def count_visible(tx: Tx, community: str, start: float | None = None,
                  end: float | None = None) -> int:
    return tx.count_visible(community, start, end)


def batch_after(tx: Tx, community: str, after: str, limit: int, *,
                start: float | None = None, end: float | None = None
                ) -> list[tuple[Post, float | None]]:
    """Visible posts after post id *after* ("" for the first), oldest first, with
    their edit time: exports walk the archive with this in bounded batches."""
    return tx.visible_after(community, after, limit, start=start, end=end)


def reaction_counts(tx: Tx, post_ids: Iterable[str]) -> dict[PostId, dict[str, int]]:
    """Per post (those with any), its reactions counted per network."""
    return tx.reaction_counts(post_ids)


def post_community(tx: Tx, post_id: str) -> str | None:
    return tx.post_community(post_id)


def hide_everywhere(tx: Tx, post_id: str, channels: tuple[str, ...]) -> list[str]:
    """Moderation: hide the post from every page and export, and queue the removal
    of the bridge's copies on *channels* (the community's writable channels).

    A delete is queued on every such channel but the origin, not only where a
    copy exists yet: the outbox is FIFO per channel, so a create still pending
    is sent first and then removed (the worker skips channels with no copy).
    Returns the channels to wake.  The member's original is theirs: it is not
    touched.
    """
    post = tx.get_post(post_id)
    if post is None:
        raise KeyError(f"no post {post_id}")
    if tx.post_state(post_id)[2]:
        return []
    tx.set_hidden(post_id, True)
    woken = []
    for ch in channels:
        if ch == post.origin_channel:
            continue
        tx.enqueue(post_id, ch, Op.DELETE)
        woken.append(ch)
    return woken


def hidden_posts(tx: Tx, community: str, limit: int = 50) -> list[Post]:
    return tx.hidden_posts(community, limit)


def blocks(tx: Tx) -> list[tuple[str, str, str, float]]:
    return tx.blocks()


def unblock(tx: Tx, platform: str, handle: str) -> bool:
    return tx.unblock(platform, handle)


FIRST_START = ("hashbridge.communities", "first_start")
"""Where :func:`first_starts` keeps each community's first start (the adapter-state
table, account and namespace no adapter uses): no migration needed."""


def first_starts(tx: Tx, communities: list[str], now: float) -> dict[str, float]:
    """When each community first ran on this store (epoch seconds), recording *now*
    for one seen for the first time.

    A store that already holds posts of the community (an upgrade from a version
    that kept no such record, an import) counts from its earliest post instead:
    what was relayed before stays listed.  The first writer wins (an insert only
    one process gets in), so every process sharing a database agrees.
    """
    out: dict[str, float] = {}
    for name in communities:
        value = tx.state_get(*FIRST_START, name)
        if value is None:
            earliest = tx.visible_after(name, "", 1)
            first = min([now] + [p.created_at.timestamp() for p, _ in earliest])
            tx.state_add(*FIRST_START, name, repr(first))
            value = tx.state_get(*FIRST_START, name) or repr(first)
        out[name] = float(value)
    return out


def has_posts(tx: Tx, community: str, start: float, end: float) -> bool:
    """Whether anyone posted (a visible post that is not the bridge's own notice)
    in [start, end)."""
    first = tx.visible_after(community, "", 5, start=start, end=end)
    if any(not p.is_notice for p, _ in first):
        return True
    if len(first) < 5:
        return False
    return any(not p.is_notice for p in tx.visible_between(community, start, end))
