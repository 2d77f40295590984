"""Read queries (and the two moderation units) for the web view and exports.

Plain functions taking a :class:`~bridge.store.Tx`, run with ``store.run``.
Public reads never return a deleted or hidden post: the content of a post
deleted at its origin is already scrubbed by the relay, and here it is not even
listed.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.contract.model import Op, Post
from bridge.store.tx import Tx, post_from_row

_VISIBLE = "deleted_at IS NULL AND hidden=0"


@dataclass(frozen=True, slots=True)
class PostView:
    """A visible post with what a page needs around it."""

    post: Post
    edited_at: float | None
    parent: Post | None
    """The post it replies to, when that one is visible."""
    copies: tuple[tuple[str, str], ...]
    """(channel, permalink) of its copies that have a permalink."""


def visible_post(tx: Tx, post_id: str) -> Post | None:
    """The post if the public may see it now (not deleted, not hidden)."""
    row = tx.c.execute(f"SELECT * FROM posts WHERE id=? AND {_VISIBLE}", (post_id,)).fetchone()
    return post_from_row(row) if row else None


def view(tx: Tx, post: Post) -> PostView:
    edited_at, _, _ = tx.post_state(post.id)
    parent = visible_post(tx, post.reply_to) if post.reply_to else None
    copies = tuple((ch, c.permalink) for ch, c in tx.all_copies(post.id)
                   if c.role == "copy" and c.part == 0 and c.permalink)
    return PostView(post, edited_at, parent, copies)


def view_of(tx: Tx, post_id: str) -> PostView | None:
    post = visible_post(tx, post_id)
    return view(tx, post) if post else None


def page(tx: Tx, community: str, *, limit: int = 100, before: str | None = None,
         channels: tuple[str, ...] = ()) -> list[PostView]:
    """The newest *limit* visible posts (older than post id *before*), oldest first.

    Ordered by (created_at, id) like the relay's own listing: ULIDs made in the
    same millisecond are not ordered, so the id alone is only the tie-break.
    ``before`` is a keyset cursor: paging needs no offsets."""
    sql = f"SELECT * FROM posts WHERE community=? AND {_VISIBLE}"
    args: list[object] = [community]
    if before:
        sql += " AND (created_at, id) < (SELECT created_at, id FROM posts WHERE id=?)"
        args.append(before)
    if channels:
        sql += f" AND origin_channel IN ({','.join('?' * len(channels))})"
        args.extend(channels)
    sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
    args.append(limit)
    rows = tx.c.execute(sql, args).fetchall()
    return [view(tx, post_from_row(r)) for r in reversed(rows)]


def between(tx: Tx, community: str, start: float, end: float) -> list[Post]:
    """Visible posts created in [start, end), oldest first (a chat event's window)."""
    rows = tx.c.execute(
        f"SELECT * FROM posts WHERE community=? AND {_VISIBLE} AND created_at>=? AND"
        " created_at<? ORDER BY created_at, id", (community, start, end)).fetchall()
    return [post_from_row(r) for r in rows]


def count_visible(tx: Tx, community: str, start: float | None = None,
                  end: float | None = None) -> int:
    sql = f"SELECT count(*) FROM posts WHERE community=? AND {_VISIBLE}"
    args: list[object] = [community]
    if start is not None and end is not None:
        sql += " AND created_at>=? AND created_at<?"
        args += [start, end]
    return int(tx.c.execute(sql, args).fetchone()[0])


def batch_after(tx: Tx, community: str, after: str, limit: int, *,
                start: float | None = None, end: float | None = None
                ) -> list[tuple[Post, float | None]]:
    """Visible posts after post id *after* ("" for the first), oldest first, with
    their edit time: exports walk the archive with this in bounded batches."""
    sql = f"SELECT * FROM posts WHERE community=? AND {_VISIBLE}"
    args: list[object] = [community]
    if after:
        sql += " AND (created_at, id) > (SELECT created_at, id FROM posts WHERE id=?)"
        args.append(after)
    if start is not None and end is not None:
        sql += " AND created_at>=? AND created_at<?"
        args += [start, end]
    sql += " ORDER BY created_at, id LIMIT ?"
    args.append(limit)
    return [(post_from_row(r), r["edited_at"]) for r in tx.c.execute(sql, args).fetchall()]


def post_community(tx: Tx, post_id: str) -> str | None:
    r = tx.c.execute("SELECT community FROM posts WHERE id=?", (post_id,)).fetchone()
    return r[0] if r else None


def hide_everywhere(tx: Tx, post_id: str, channels: tuple[str, ...]) -> list[str]:
    """Moderation: hide the post from every page and export, and queue the removal
    of the bridge's copies on *channels* (the community's writable channels).

    A delete is queued on every such channel but the origin, not only where a
    copy exists yet: the outbox is FIFO per channel, so a create still pending
    is sent first and then removed (the worker skips channels with no copy).
    Returns the channels to wake.  The member's original is theirs: it is not
    touched.
    """
    row = tx.c.execute("SELECT origin_channel, hidden FROM posts WHERE id=?",
                       (post_id,)).fetchone()
    if row is None:
        raise KeyError(f"no post {post_id}")
    if row["hidden"]:
        return []
    tx.set_hidden(post_id, True)
    woken = []
    for ch in channels:
        if ch == row["origin_channel"]:
            continue
        tx.enqueue(post_id, ch, Op.DELETE)
        woken.append(ch)
    return woken


def hidden_posts(tx: Tx, community: str, limit: int = 50) -> list[Post]:
    rows = tx.c.execute("SELECT * FROM posts WHERE community=? AND hidden=1 AND is_notice=0"
                        " ORDER BY id DESC LIMIT ?", (community, limit)).fetchall()
    return [post_from_row(r) for r in rows]


def blocks(tx: Tx) -> list[tuple[str, str, str, float]]:
    return [tuple(r) for r in tx.c.execute(
        "SELECT platform, handle, reason, created_at FROM blocks ORDER BY created_at DESC")]


def unblock(tx: Tx, platform: str, handle: str) -> bool:
    return tx.unblock(platform, handle)
