"""Posts held over their author's rate: the store's record of them.

A post over ``author_rate_per_minute`` is not dropped: it is stored with its
deliveries held (:meth:`~bridge.store.Tx.hold`) until the slot the rate step
booked for it, and recorded here (the store's keyed state, account
``hashbridge``, namespace ``held``: post id -> the time its slot comes), so the
admin page lists it, ``/metrics`` counts it, and a restart puts the author's
slots back (:func:`pending`).  Counters that outlive a restart (released,
discarded, refused over the cap) are kept beside it.

A post is *held* while its slot is in the future; once the slot has come (or
an admin released it) it counts as *released*; an admin may *discard* it
instead (never sent, hidden from the archive).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bridge.contract.model import Post, PostId
from bridge.runtime.metrics import HeldFigures
from bridge.store import Tx

ACCOUNT = "hashbridge"
HELD = "held"
COUNTS = "held-counts"
MAX_WINDOWS = 10
"""The cap: a post whose slot would be more than this many windows (minutes)
away is refused like before (not relayed, recorded, logged), so one author can
have at most ``MAX_WINDOWS * author_rate_per_minute`` posts held."""
DISCARDED_NOTE = "discarded by an admin while held"
WITHDRAWN_NOTE = "deleted at its origin while held"


@dataclass(frozen=True, slots=True)
class HeldPost:
    post: Post
    until: float
    """When its slot comes (wall clock)."""


def note(tx: Tx, post_id: PostId, until: float) -> None:
    """Record that *post_id* is held until *until*; forget the released ones."""
    settle(tx, time.time())
    tx.state_put(ACCOUNT, HELD, post_id, repr(until))


def _items(tx: Tx) -> list[tuple[str, float]]:
    return [(k, float(v)) for k, v in tx.state_items(ACCOUNT, HELD)]


def _count(tx: Tx, name: str) -> int:
    return int(tx.state_get(ACCOUNT, COUNTS, name) or 0)


def _add(tx: Tx, name: str, n: int) -> None:
    if n:
        tx.state_put(ACCOUNT, COUNTS, name, str(_count(tx, name) + n))


def settle(tx: Tx, now: float) -> None:
    """Forget the posts whose slot has come, counting them released."""
    due = [k for k, until in _items(tx) if until <= now]
    if due:
        tx.state_delete(ACCOUNT, HELD, due)
        _add(tx, "released", len(due))


def refused(tx: Tx) -> None:
    """A post refused over the cap."""
    _add(tx, "refused", 1)


def figures(tx: Tx) -> HeldFigures:
    """What ``/metrics`` shows (read only)."""
    now = time.time()
    items = _items(tx)
    held = sum(1 for _, until in items if until > now)
    return HeldFigures(held=held, released=_count(tx, "released") + len(items) - held,
                       discarded=_count(tx, "discarded"), refused=_count(tx, "refused"))


def pending(tx: Tx, community: str | None = None, limit: int | None = None) -> list[HeldPost]:
    """The posts held now, by their slot (then their order in the store); the
    first *limit* of them when given."""
    now = time.time()
    out: list[HeldPost] = []
    items = sorted(((until, key) for key, until in _items(tx) if until > now),
                   key=lambda item: item[0])
    for until, key in items:
        if limit is not None and len(out) >= limit:
            break
        post = tx.get_post(key)
        if post is not None and (community is None or post.community == community):
            out.append(HeldPost(post, until))
    return out


def release(tx: Tx, post_id: str) -> list[PostId]:
    """Release *post_id* now, with the same author's posts held before it (so
    their order holds); the ids released."""
    now = time.time()
    held = pending(tx)  # (the author's earlier ones are among all held)
    this = next((h for h in held if h.post.id == post_id), None)
    if this is None:
        return []
    a = this.post.author
    ids = [h.post.id for h in held
           if h.post.community == this.post.community and h.until <= this.until
           and h.post.author.platform == a.platform
           and h.post.author.handle.casefold() == a.handle.casefold()]
    tx.release_held(ids)
    for pid in ids:
        tx.state_put(ACCOUNT, HELD, pid, repr(now))
    settle(tx, now)
    return ids


def withdraw(tx: Tx, post_id: str) -> None:
    """The post was deleted (or withdrawn) at its origin: whatever of it is
    still held is never sent, and it is no longer listed as held."""
    tx.discard_held([post_id], WITHDRAWN_NOTE)
    tx.state_delete(ACCOUNT, HELD, [post_id])


def discard(tx: Tx, post_id: str) -> bool:
    """Never send *post_id* (held now): its deliveries skipped, the post hidden
    from the archive.  False when it is not held."""
    if not any(h.post.id == post_id for h in pending(tx)):
        return False
    tx.discard_held([post_id], DISCARDED_NOTE)
    tx.set_hidden(post_id, True)
    tx.state_delete(ACCOUNT, HELD, [post_id])
    _add(tx, "discarded", 1)
    return True
