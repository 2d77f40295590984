"""Every SQL statement hashbridge runs on PostgreSQL, as typed methods on a transaction
(the :class:`~bridge.store.api.Tx` protocol).

The statements are SQLite's (:mod:`bridge.store.sqlite.tx`) in PostgreSQL's dialect:
``ON CONFLICT`` instead of ``INSERT OR ...``, ``= ANY(%s)`` for lists.  The caches
differ: several processes may write the same database, so recent posts are not cached
at all (a post edited by another process must be read as it is now), and the small
tables read for every inbound post (consent, blocks, linked accounts) are cached until
any process changes them: every such write sends a notification
(:data:`CACHE_CHANNEL`) that every process's store listens to, dropping its copy.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Iterable
from datetime import UTC, datetime
from typing import Any

from bridge.contract.model import (
    Attachment,
    Author,
    ChannelKey,
    DeliveryId,
    NativeId,
    Op,
    Poll,
    Post,
    PostId,
    QuotedPost,
    delivery_ids,
    extras_from_json,
    extras_to_json,
    identity_of,
    new_delivery_id,
)
from bridge.contract.richtext import RichText
from bridge.store.api import NEW_POST, RETIRED_PART, CopyRow, DeliveryRow, PostState
from bridge.store.postgresql.conn import CacheEpochs, PgConn

CACHE_CHANNEL = "hashbridge_cache"
"""The notification channel of cache invalidations (payload: the table's name)."""


def _ts(dt: datetime) -> float:
    return dt.timestamp()


def _attachments_json(items: tuple[Attachment, ...]) -> str:
    if not items:
        return "[]"
    return json.dumps([{"url": a.url, "media_type": a.media_type, "alt_text": a.alt_text,
                        "size": a.size, "filename": a.filename} for a in items])


class PgTx:
    """Thin typed layer over the connection; used only inside ``Store.run`` units.

    *epochs* counts, per cached table, the changes any process announced; a cache
    loaded at an older count is dropped (see the module docstring)."""

    def __init__(self, conn: PgConn, epochs: CacheEpochs | None = None) -> None:
        self.c = conn
        self.epochs = epochs or CacheEpochs()
        self._consent: dict[tuple[str, str], str] | None = None
        self._blocks: set[tuple[str, str]] | None = None
        self._links: dict[str, set[str]] | None = None
        self._loaded: dict[str, int] = {}

    def forget(self) -> None:
        """Drop cached rows (after a rollback they may describe nothing real)."""
        self._consent = None
        self._blocks = None
        self._links = None

    def _fresh(self, table: str) -> bool:
        """Whether the cache of *table* is still what the database holds (as far as
        the notifications received tell)."""
        return self._loaded.get(table) == self.epochs.get(table)

    def _changed(self, table: str) -> None:
        """This transaction changed *table*: drop our copy, and every other
        process's once we commit."""
        self.c.execute("SELECT pg_notify(%s, %s)", (CACHE_CHANNEL, table))

    # ------------------------------------------------------------ native ids
    def native_lookup(self, channel: str, native_id: str) -> tuple[PostId, str] | None:
        row = self.c.execute("SELECT post_id, role FROM native_ids WHERE channel=%s"
                             " AND native_id=%s", (channel, native_id)).fetchone()
        return (PostId(row[0]), row[1]) if row else None

    def add_native(self, channel: str, native_id: str, post_id: str, role: str, *,
                   part: int = 0, subject: str = "", permalink: str = "") -> None:
        self.c.execute(
            "INSERT INTO native_ids(channel, native_id, post_id, role, part, subject,"
            " permalink) VALUES (%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING",
            (channel, native_id, post_id, role, part, subject, permalink))

    def copies(self, post_id: str, channel: str) -> list[CopyRow]:
        """The post's ids on *channel*: its origin there, or our copy's parts in order."""
        rows = self.c.execute(
            "SELECT native_id, role, part, subject, permalink FROM native_ids"
            " WHERE post_id=%s AND channel=%s AND role IN ('origin','copy') ORDER BY part",
            (post_id, channel)).fetchall()
        return [CopyRow(NativeId(r[0]), r[1], r[2], r[3], r[4]) for r in rows]

    def copies_many(self, post_ids: Iterable[str], channel: str) -> dict[str, list[CopyRow]]:
        """:meth:`copies` for several posts in one query (a worker's batch)."""
        ids = list(dict.fromkeys(post_ids))
        out: dict[str, list[CopyRow]] = {p: [] for p in ids}
        for r in self.c.execute(
                "SELECT post_id, native_id, role, part, subject, permalink FROM native_ids"
                " WHERE post_id = ANY(%s) AND channel=%s AND role IN ('origin','copy')"
                " ORDER BY post_id, part", (ids, channel)):
            out[r[0]].append(CopyRow(NativeId(r[1]), r[2], r[3], r[4], r[5]))
        return out

    def aliases(self, post_id: str, channel: str, part: int) -> list[NativeId]:
        rows = self.c.execute(
            "SELECT native_id FROM native_ids WHERE post_id=%s AND channel=%s AND part=%s"
            " AND role='alias'", (post_id, channel, part)).fetchall()
        return [NativeId(r[0]) for r in rows]

    def retire_part(self, post_id: str, channel: str, part: int) -> None:
        """See :meth:`bridge.store.api.Tx.retire_part`."""
        self.c.execute(
            "UPDATE native_ids SET role='alias', part=%s WHERE post_id=%s AND channel=%s"
            " AND part=%s AND role IN ('copy','alias')", (RETIRED_PART, post_id, channel, part))

    def all_copies(self, post_id: str) -> list[tuple[str, CopyRow]]:
        rows = self.c.execute(
            "SELECT channel, native_id, role, part, subject, permalink FROM native_ids"
            " WHERE post_id=%s ORDER BY channel, part", (post_id,)).fetchall()
        return [(r[0], CopyRow(NativeId(r[1]), r[2], r[3], r[4], r[5])) for r in rows]

    # ------------------------------------------------------------ posts
    def insert_post(self, post: Post, text_hash: str) -> None:
        a = post.author
        self.c.execute(
            "INSERT INTO posts(id, community, origin_channel, origin_native_id, permalink,"
            " author_platform, author_handle, author_name, author_url, text_json,"
            " attachments_json, reply_to, content_warning, language, created_at, is_notice,"
            " text_hash, author_id, extras_json)"
            " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
            (post.id, post.community, post.origin_channel, post.origin_native_id, post.permalink,
             a.platform, a.handle, a.display_name, a.profile_url, post.text.to_json(),
             _attachments_json(post.attachments), post.reply_to, post.content_warning,
             post.language, _ts(post.created_at), int(post.is_notice), text_hash,
             a.account_id, extras_to_json(post.poll, post.quote)))

    def find_duplicate(self, community: str, text_hash: str, identities: Collection[str],
                       since: float, not_channel: str) -> PostId | None:
        """A post of the community with the same text fingerprint, posted since
        *since* on another channel by one of *identities* (see
        :attr:`Author.identity`: an account, never a display name)."""
        rows = self.c.execute(
            "SELECT id, author_platform, author_handle, author_id FROM posts WHERE community=%s"
            " AND text_hash=%s AND created_at>=%s AND origin_channel<>%s AND deleted_at IS NULL"
            " AND is_notice=0 ORDER BY created_at",
            (community, text_hash, since, not_channel)).fetchall()
        for r in rows:
            if identity_of(r[1], r[2], r[3]) in identities:
                return PostId(r[0])
        return None

    # ------------------------------------------------------------ linked accounts
    def linked_identities(self, identity: str) -> set[str]:
        """*identity* and every account linked to it, directly or through
        another link (one person's accounts on several networks)."""
        if self._links is None or not self._fresh("identity_links"):
            self._loaded["identity_links"] = self.epochs.get("identity_links")
            links: dict[str, set[str]] = {}
            for a, b in self.c.execute("SELECT a, b FROM identity_links"):
                links.setdefault(a, set()).add(b)
                links.setdefault(b, set()).add(a)
            self._links = links
        seen = {identity}
        todo = [identity]
        while todo:
            for other in self._links.get(todo.pop(), ()):
                if other not in seen:
                    seen.add(other)
                    todo.append(other)
        return seen

    def link_identities(self, a: str, b: str) -> None:
        a, b = sorted((a, b))
        self.c.execute("INSERT INTO identity_links(a, b, created_at) VALUES (%s,%s,%s)"
                       " ON CONFLICT DO NOTHING", (a, b, time.time()))
        self._links = None
        self._changed("identity_links")

    def unlink_identity(self, identity: str) -> int:
        """Remove every link of *identity*; how many there were."""
        n = self.c.execute("DELETE FROM identity_links WHERE a=%s OR b=%s",
                           (identity, identity)).rowcount
        self.c.execute("DELETE FROM link_claims WHERE identity=%s", (identity,))
        self._links = None
        self._changed("identity_links")
        return int(n)

    def identity_links(self) -> list[tuple[str, str, float]]:
        return [tuple(r) for r in self.c.execute(
            "SELECT a, b, created_at FROM identity_links ORDER BY created_at")]

    def add_link_claim(self, code: str, identity: str, label: str, target_platform: str,
                       target_handle: str, expires_at: float) -> None:
        """The first half of a link: *identity* says it is also *target* and
        must confirm from there with *code*.  One open claim per account."""
        self.c.execute("DELETE FROM link_claims WHERE identity=%s OR expires_at<%s",
                       (identity, time.time()))
        self.c.execute(
            "INSERT INTO link_claims(code, identity, label, target_platform, target_handle,"
            " expires_at) VALUES (%s,%s,%s,%s,%s,%s)",
            (code, identity, label, target_platform, target_handle, expires_at))

    def link_claim(self, code: str) -> tuple[str, str, str, str] | None:
        """(identity, label, target platform, target handle) of an open claim."""
        r = self.c.execute(
            "SELECT identity, label, target_platform, target_handle FROM link_claims"
            " WHERE code=%s AND expires_at>=%s", (code, time.time())).fetchone()
        return (r[0], r[1], r[2], r[3]) if r else None

    def drop_link_claim(self, code: str) -> None:
        self.c.execute("DELETE FROM link_claims WHERE code=%s", (code,))

    def get_post(self, post_id: str) -> Post | None:
        cached = self._load_post(post_id)
        return cached[0] if cached else None

    def post_state(self, post_id: str) -> PostState:
        """(edited_at, deleted_at, hidden) of a post."""
        cached = self._load_post(post_id)
        return cached[1] if cached else NEW_POST

    def _load_post(self, post_id: str) -> tuple[Post, PostState] | None:
        rows = self.c.rows(f"SELECT {_POST_COLS} FROM posts WHERE id=%s", (post_id,))
        if not rows:
            return None
        row = rows[0]
        return post_from_row(row), (row["edited_at"], row["deleted_at"], bool(row["hidden"]))

    def update_post(self, post_id: str, text: RichText, text_hash: str, content_warning: str,
                    attachments: tuple[Attachment, ...] | None, edited_at: float,
                    extras: tuple[Poll | None, QuotedPost | None] | None = None) -> None:
        self.c.execute(
            "UPDATE posts SET text_json=%s, text_hash=%s, content_warning=%s, edited_at=%s,"
            " attachments_json=COALESCE(%s, attachments_json),"
            " extras_json=COALESCE(%s, extras_json) WHERE id=%s",
            (text.to_json(), text_hash, content_warning, edited_at,
             None if attachments is None else _attachments_json(attachments),
             None if extras is None else extras_to_json(*extras), post_id))

    def mark_post_deleted(self, post_id: str) -> None:
        """Deleted at its origin: keep the row for the id map, drop the content
        (X requires removal; everyone deserves it)."""
        self.c.execute(
            "UPDATE posts SET deleted_at=%s, text_json='[]', attachments_json='[]',"
            " extras_json='{}',"
            " content_warning='', text_hash='' WHERE id=%s AND deleted_at IS NULL",
            (time.time(), post_id))

    def set_hidden(self, post_id: str, hidden: bool) -> None:
        self.c.execute("UPDATE posts SET hidden=%s WHERE id=%s", (int(hidden), post_id))

    def recent_posts(self, community: str, limit: int = 200, *,
                     include_deleted: bool = False) -> list[Post]:
        where = "" if include_deleted else " AND deleted_at IS NULL AND hidden=0"
        rows = self.c.rows(
            f"SELECT {_POST_COLS} FROM posts WHERE community=%s{where}"
            " ORDER BY created_at DESC, id DESC LIMIT %s", (community, limit))
        return [post_from_row(r) for r in reversed(rows)]

    # ------------------------------------------------------------ the public archive
    def visible_post(self, post_id: str) -> Post | None:
        rows = self.c.rows(f"SELECT {_POST_COLS} FROM posts WHERE id=%s AND {_VISIBLE}",
                           (post_id,))
        return post_from_row(rows[0]) if rows else None

    def visible_page(self, community: str, limit: int, before: str | None = None,
                     channels: tuple[str, ...] = ()) -> list[Post]:
        # Ordered by (created_at, id) like recent_posts: ULIDs made in the same
        # millisecond are not ordered, so the id alone is only the tie-break.
        sql = f"SELECT {_POST_COLS} FROM posts WHERE community=%s AND {_VISIBLE}"
        args: list[object] = [community]
        if before:
            sql += " AND (created_at, id) < (SELECT created_at, id FROM posts WHERE id=%s)"
            args.append(before)
        if channels:
            sql += " AND origin_channel = ANY(%s)"
            args.append(list(channels))
        sql += " ORDER BY created_at DESC, id DESC LIMIT %s"
        args.append(limit)
        return [post_from_row(r) for r in reversed(self.c.rows(sql, args))]

    def visible_between(self, community: str, start: float, end: float) -> list[Post]:
        rows = self.c.rows(
            f"SELECT {_POST_COLS} FROM posts WHERE community=%s AND {_VISIBLE}"
            " AND created_at>=%s AND created_at<%s ORDER BY created_at, id",
            (community, start, end))
        return [post_from_row(r) for r in rows]

    def count_visible(self, community: str, start: float | None = None,
                      end: float | None = None) -> int:
        sql = f"SELECT count(*) FROM posts WHERE community=%s AND {_VISIBLE}"
        args: list[object] = [community]
        if start is not None and end is not None:
            sql += " AND created_at>=%s AND created_at<%s"
            args += [start, end]
        return int(self.c.one(sql, args)[0])

    def visible_after(self, community: str, after: str, limit: int, *,
                      start: float | None = None, end: float | None = None
                      ) -> list[tuple[Post, float | None]]:
        sql = f"SELECT {_POST_COLS} FROM posts WHERE community=%s AND {_VISIBLE}"
        args: list[object] = [community]
        if after:
            sql += " AND (created_at, id) > (SELECT created_at, id FROM posts WHERE id=%s)"
            args.append(after)
        if start is not None and end is not None:
            sql += " AND created_at>=%s AND created_at<%s"
            args += [start, end]
        sql += " ORDER BY created_at, id LIMIT %s"
        args.append(limit)
        return [(post_from_row(r), r["edited_at"]) for r in self.c.rows(sql, args)]

    def post_community(self, post_id: str) -> str | None:
        r = self.c.execute("SELECT community FROM posts WHERE id=%s", (post_id,)).fetchone()
        return r[0] if r else None

    def hidden_posts(self, community: str, limit: int = 50) -> list[Post]:
        rows = self.c.rows(f"SELECT {_POST_COLS} FROM posts WHERE community=%s AND hidden=1"
                           " AND is_notice=0 ORDER BY id DESC LIMIT %s", (community, limit))
        return [post_from_row(r) for r in rows]

    # ------------------------------------------------------------ outbox
    def enqueue(self, post_id: str, channel: str, op: Op, *, source: str = "",
                at: float = 0.0) -> DeliveryId:
        return self.enqueue_many(post_id, [channel], op, source=source, at=at)[0]

    def enqueue_many(self, post_id: str, channels: Iterable[str], op: Op, *,
                     source: str = "", at: float = 0.0) -> list[DeliveryId]:
        """Queue *op* of the post for each channel.  With *source* and *at* (the
        origin message and its time, see :func:`derived_delivery_id`) the ids are
        derived from them, else random; a derived id already in the outbox gets
        a random one (the same operation queued twice is sent twice rather than
        lost)."""
        now = time.time()
        chans = list(channels)
        ids = delivery_ids(source, chans, op.value, at) if source else \
            [new_delivery_id() for _ in chans]
        # One statement, rows in the channels' order (their seq follows it).
        added = {r[0] for r in self.c.execute(
            "INSERT INTO deliveries(id, post_id, channel, op, state, created_at)"
            " SELECT d, %s, c, %s, 'pending', %s"
            " FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS t(d, c, n) ORDER BY n"
            " ON CONFLICT (id) DO NOTHING RETURNING id",
            (post_id, op.value, now, list(ids), chans)).fetchall()}
        for i, ch in enumerate(chans):
            if ids[i] not in added:  # taken: queued under a fresh id, never dropped
                ids[i] = new_delivery_id()
                self.c.execute("INSERT INTO deliveries(id, post_id, channel, op, state,"
                               " created_at) VALUES (%s,%s,%s,%s,'pending',%s)",
                               (ids[i], post_id, ch, op.value, now))
                added.add(ids[i])
        return ids

    def pending(self, channel: str, limit: int) -> list[DeliveryRow]:
        """The channel's oldest pending deliveries, leaving out held edits (see
        :meth:`hold`): they wait without holding up the queue."""
        rows = self.c.execute(
            "SELECT seq, id, post_id, channel, op, state, attempts, next_at, last_error,"
            " parts_done, created_at FROM deliveries WHERE channel=%s AND state='pending'"
            f" AND NOT ({_HELD}) ORDER BY seq LIMIT %s", (channel, time.time(), limit)).fetchall()
        return [_delivery(r) for r in rows]

    def next_held(self, channel: str) -> DeliveryRow | None:
        """The held edit of *channel* due first (None: none is held)."""
        r = self.c.execute(
            "SELECT seq, id, post_id, channel, op, state, attempts, next_at, last_error,"
            " parts_done, created_at FROM deliveries WHERE channel=%s AND state='pending'"
            f" AND {_HELD} ORDER BY next_at LIMIT 1", (channel, time.time())).fetchone()
        return _delivery(r) if r else None

    def hold(self, delivery_ids: Iterable[str], until: float) -> None:
        """Hold fresh create or edit deliveries until *until* (their author is
        over the rate).  Unlike a retry's wait, a held delivery does not stop the
        deliveries behind it."""
        self.c.execute("UPDATE deliveries SET next_at=%s, last_error=%s WHERE id = ANY(%s)"
                       " AND op IN ('create','edit') AND attempts=0",
                       (until, "held: author over the rate", list(delivery_ids)))

    def release_held(self, post_ids: Iterable[str]) -> int:
        """The posts' held deliveries are due now; how many there were."""
        return int(self.c.execute(
            f"UPDATE deliveries SET next_at=0 WHERE post_id = ANY(%s) AND state='pending'"
            f" AND {_HELD}", (list(post_ids), time.time())).rowcount)

    def discard_held(self, post_ids: Iterable[str], note: str) -> int:
        """The posts' held deliveries are never sent (state ``skipped``, *note*
        as the reason); how many there were."""
        now = time.time()
        return int(self.c.execute(
            "UPDATE deliveries SET state='skipped', done_at=%s, last_error=%s"
            f" WHERE post_id = ANY(%s) AND state='pending' AND {_HELD}",
            (now, note, list(post_ids), now)).rowcount)

    def held_until(self, post_id: str) -> float | None:
        """When the post's held create or edit (if any) goes out."""
        r = self.c.execute(f"SELECT max(next_at) FROM deliveries WHERE post_id=%s AND"
                           f" state='pending' AND {_HELD}", (post_id, time.time())).fetchone()
        return float(r[0]) if r and r[0] is not None else None

    def supersede_edits(self, post_id: str, channels: Iterable[str]) -> int:
        """Edits of the post still queued for *channels* are skipped: the edit
        queued next carries the latest text.  How many were."""
        chans = list(channels)
        if not chans:
            return 0
        return int(self.c.execute(
            "UPDATE deliveries SET state='skipped', done_at=%s,"
            " last_error='superseded by a later edit' WHERE post_id=%s AND op='edit'"
            " AND state='pending' AND channel = ANY(%s)",
            (time.time(), post_id, chans)).rowcount)

    def delivery_state(self, delivery_id: str) -> str | None:
        r = self.c.execute("SELECT state FROM deliveries WHERE id=%s", (delivery_id,)).fetchone()
        return r[0] if r else None

    def delivery(self, delivery_id: str) -> DeliveryRow | None:
        r = self.c.execute(
            "SELECT seq, id, post_id, channel, op, state, attempts, next_at, last_error,"
            " parts_done, created_at FROM deliveries WHERE id=%s", (delivery_id,)).fetchone()
        return _delivery(r) if r else None

    def create_state(self, post_id: str, channel: str) -> str | None:
        """State of the post's create delivery on *channel* (None: none was queued)."""
        r = self.c.execute(
            "SELECT state FROM deliveries WHERE post_id=%s AND channel=%s AND op='create'"
            " ORDER BY seq DESC LIMIT 1", (post_id, channel)).fetchone()
        return r[0] if r else None

    def record_sent(self, d: DeliveryRow, part: int, native_id: str | None, *,
                    subject: str = "", permalink: str = "", extra_ids: Iterable[str] = (),
                    final: bool) -> None:
        """Part *part* of a delivery sent: its copy's id (and the platform's
        other ids for it) in the map, the outbox row's progress and, when
        *final*, the delivery done, in one statement on the row."""
        if native_id is not None:
            self.add_native(d.channel, native_id, d.post_id, "copy", part=part, subject=subject,
                            permalink=permalink)
            for extra in extra_ids:
                self.add_native(d.channel, extra, d.post_id, "alias", part=part)
        if final:
            self.c.execute("UPDATE deliveries SET state='sent', done_at=%s, last_error='',"
                           " attempts=attempts+1, parts_done=%s WHERE seq=%s",
                           (time.time(), part + 1 if native_id is not None else d.parts_done,
                            d.seq))
        elif native_id is not None:
            self.c.execute("UPDATE deliveries SET parts_done=%s WHERE seq=%s", (part + 1, d.seq))

    def finish(self, delivery_id: str, state: str, note: str = "") -> None:
        self.c.execute("UPDATE deliveries SET state=%s, done_at=%s, last_error=%s,"
                       " attempts=attempts+1 WHERE id=%s",
                       (state, time.time(), note, delivery_id))

    def defer(self, delivery_id: str, next_at: float, error: str) -> None:
        self.c.execute("UPDATE deliveries SET attempts=attempts+1, next_at=%s, last_error=%s"
                       " WHERE id=%s", (next_at, error[:2000], delivery_id))

    def retry_now(self, channel: str) -> None:
        """Deferred deliveries of *channel* become due now (its platform is back)."""
        self.c.execute("UPDATE deliveries SET next_at=0 WHERE channel=%s AND state='pending'"
                       f" AND next_at>0 AND NOT ({_HELD})", (channel, time.time()))

    def requeue_dead(self, channel: str | None = None, delivery_id: str | None = None) -> int:
        sql = ("UPDATE deliveries SET state='pending', next_at=0, attempts=0"
               " WHERE state='dead'")
        args: list[Any] = []
        if channel:
            sql += " AND channel=%s"
            args.append(channel)
        if delivery_id:
            sql += " AND id=%s"
            args.append(delivery_id)
        return self.c.execute(sql, args).rowcount

    def queue_depths(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for ch, state, n in self.c.execute(
                "SELECT channel, state, count(*) FROM deliveries"
                " WHERE state IN ('pending','dead') GROUP BY channel, state"):
            out.setdefault(ch, {})[state] = n
        return out

    def dead(self, limit: int = 100) -> list[DeliveryRow]:
        rows = self.c.execute(
            "SELECT seq, id, post_id, channel, op, state, attempts, next_at, last_error,"
            " parts_done, created_at FROM deliveries WHERE state='dead' ORDER BY seq LIMIT %s",
            (limit,)).fetchall()
        return [_delivery(r) for r in rows]

    def count_deliveries(self, state: str) -> int:
        return int(self.c.one("SELECT count(*) FROM deliveries WHERE state=%s", (state,))[0])

    # ------------------------------------------------------------ cursors
    def get_cursor(self, account: str, name: str) -> str | None:
        r = self.c.execute("SELECT value FROM cursors WHERE account=%s AND name=%s",
                           (account, name)).fetchone()
        return r[0] if r else None

    def set_cursor(self, account: str, name: str, value: str) -> None:
        self.c.execute(
            "INSERT INTO cursors(account, name, value, updated_at) VALUES (%s,%s,%s,%s)"
            " ON CONFLICT(account, name) DO UPDATE SET value=excluded.value,"
            " updated_at=excluded.updated_at", (account, name, value, time.time()))

    # ------------------------------------------------------------ adapter state
    def state_get(self, account: str, namespace: str, key: str) -> str | None:
        r = self.c.execute("SELECT value FROM adapter_state WHERE account=%s AND namespace=%s"
                           " AND key=%s", (account, namespace, key)).fetchone()
        return r[0] if r else None

    def state_put(self, account: str, namespace: str, key: str, value: str) -> None:
        self.c.execute(
            "INSERT INTO adapter_state(account, namespace, key, value, updated_at)"
            " VALUES (%s,%s,%s,%s,%s) ON CONFLICT(account, namespace, key) DO UPDATE SET"
            " value=excluded.value, updated_at=excluded.updated_at",
            (account, namespace, key, value, time.time()))

    def state_add(self, account: str, namespace: str, key: str, value: str) -> bool:
        return self.c.execute(
            "INSERT INTO adapter_state(account, namespace, key, value, updated_at)"
            " VALUES (%s,%s,%s,%s,%s) ON CONFLICT(account, namespace, key) DO NOTHING",
            (account, namespace, key, value, time.time())).rowcount == 1

    def state_items(self, account: str, namespace: str) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self.c.execute(
            "SELECT key, value FROM adapter_state WHERE account=%s AND namespace=%s"
            " ORDER BY seq", (account, namespace))]

    def state_delete(self, account: str, namespace: str, keys: Iterable[str]) -> int:
        return int(self.c.execute(
            "DELETE FROM adapter_state WHERE account=%s AND namespace=%s AND key = ANY(%s)",
            (account, namespace, list(keys))).rowcount)

    # ------------------------------------------------------------ reactions
    def add_reaction(self, post_id: str, network: str, reactor: str, key: str, *,
                     reaction_id: str = "", count: int = 1) -> bool:
        r = self.c.execute("SELECT count, reaction_id FROM reactions WHERE post_id=%s AND"
                           " network=%s AND reactor=%s AND key=%s",
                           (post_id, network, reactor, key)).fetchone()
        if r is not None:
            if r[0] == count and (not reaction_id or r[1] == reaction_id):
                return False
            self.c.execute("UPDATE reactions SET count=%s, reaction_id=%s WHERE post_id=%s AND"
                           " network=%s AND reactor=%s AND key=%s",
                           (count, reaction_id or r[1], post_id, network, reactor, key))
            return bool(r[0] != count)
        self.c.execute("INSERT INTO reactions(post_id, network, reactor, key, reaction_id,"
                       " count, created_at) VALUES (%s,%s,%s,%s,%s,%s,%s)",
                       (post_id, network, reactor, key, reaction_id, count, time.time()))
        return count != 0

    def remove_reaction(self, post_id: str, network: str, reactor: str, key: str) -> bool:
        return int(self.c.execute(
            "DELETE FROM reactions WHERE post_id=%s AND network=%s AND reactor=%s AND key=%s",
            (post_id, network, reactor, key)).rowcount) > 0

    def remove_reaction_by_id(self, network: str, reaction_id: str
                              ) -> tuple[PostId, str, str] | None:
        if not reaction_id:
            return None
        r = self.c.execute("SELECT post_id, reactor, key FROM reactions WHERE network=%s AND"
                           " reaction_id=%s", (network, reaction_id)).fetchone()
        if r is None:
            return None
        self.c.execute("DELETE FROM reactions WHERE network=%s AND reaction_id=%s",
                       (network, reaction_id))
        return PostId(r[0]), r[1], r[2]

    def reaction_counts(self, post_ids: Iterable[str]) -> dict[PostId, dict[str, int]]:
        ids = list(dict.fromkeys(post_ids))
        out: dict[PostId, dict[str, int]] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            for pid, network, n in self.c.execute(
                    "SELECT post_id, network, sum(count) FROM reactions WHERE post_id ="
                    " ANY(%s) GROUP BY post_id, network HAVING sum(count) > 0"
                    " ORDER BY post_id, network", (chunk,)):
                out.setdefault(PostId(pid), {})[network] = int(n)
        return out

    def reaction_reactors(self, post_id: str, key: str) -> int:
        return int(self.c.one("SELECT count(*) FROM reactions WHERE post_id=%s AND key=%s"
                              " AND count > 0", (post_id, key))[0])

    # ------------------------------------------------------------ consent, blocks
    def consent(self, platform: str, handle: str) -> str | None:
        if self._consent is None or not self._fresh("consent"):
            self._loaded["consent"] = self.epochs.get("consent")
            self._consent = {(p, h): d for p, h, d in self.c.execute(
                "SELECT platform, handle, decision FROM consent")}
        return self._consent.get((platform, handle.casefold()))

    def set_consent(self, platform: str, handle: str, decision: str) -> None:
        self.c.execute(
            "INSERT INTO consent(platform, handle, decision, decided_at) VALUES (%s,%s,%s,%s)"
            " ON CONFLICT(platform, handle) DO UPDATE SET decision=excluded.decision,"
            " decided_at=excluded.decided_at", (platform, handle.casefold(), decision,
                                                time.time()))
        self._consent = None
        self._changed("consent")

    def consents(self) -> list[tuple[str, str, str, float]]:
        return [tuple(r) for r in self.c.execute(
            "SELECT platform, handle, decision, decided_at FROM consent ORDER BY decided_at")]

    def is_blocked(self, platform: str, handle: str) -> bool:
        if self._blocks is None or not self._fresh("blocks"):
            self._loaded["blocks"] = self.epochs.get("blocks")
            self._blocks = {(p, h) for p, h in
                            self.c.execute("SELECT platform, handle FROM blocks")}
        return (platform, handle.casefold()) in self._blocks

    def block(self, platform: str, handle: str, reason: str) -> None:
        self.c.execute("INSERT INTO blocks(platform, handle, reason, created_at)"
                       " VALUES (%s,%s,%s,%s) ON CONFLICT (platform, handle) DO UPDATE SET"
                       " reason=excluded.reason, created_at=excluded.created_at",
                       (platform, handle.casefold(), reason, time.time()))
        self._blocks = None
        self._changed("blocks")

    def unblock(self, platform: str, handle: str) -> bool:
        gone = self.c.execute("DELETE FROM blocks WHERE platform=%s AND handle=%s",
                              (platform, handle.casefold())).rowcount > 0
        self._blocks = None
        self._changed("blocks")
        return gone

    def blocks(self) -> list[tuple[str, str, str, float]]:
        return [tuple(r) for r in self.c.execute(
            "SELECT platform, handle, reason, created_at FROM blocks ORDER BY created_at DESC")]

    def reject(self, channel: str, native_id: str, reason: str, kind: str = "policy") -> bool:
        """Record why an inbound event was not relayed.  An event that could not
        be read (any *kind* but ``policy``) is recorded once however often it is
        read again; returns False when it already was."""
        if kind != "policy" and self.c.execute(
                "SELECT 1 FROM rejections WHERE channel=%s AND native_id=%s AND kind=%s",
                (channel, native_id, kind)).fetchone():
            return False
        self.c.execute("INSERT INTO rejections(channel, native_id, reason, created_at, kind)"
                       " VALUES (%s,%s,%s,%s,%s)", (channel, native_id, reason, time.time(), kind))
        return True

    def rejections(self, limit: int = 100, *, kinds: Iterable[str] | None = None
                   ) -> list[tuple[str, str, str, float]]:
        """The latest rejections, newest first: ``(channel, native id, reason, time)``;
        only those of *kinds* when given."""
        if kinds is None:
            return [tuple(r) for r in self.c.execute(
                "SELECT channel, native_id, reason, created_at FROM rejections ORDER BY id DESC"
                " LIMIT %s", (limit,))]
        return [tuple(r) for r in self.c.execute(
            "SELECT channel, native_id, reason, created_at FROM rejections"
            " WHERE kind = ANY(%s) ORDER BY id DESC LIMIT %s", (list(kinds), limit))]

    def rejection_counts(self) -> list[tuple[str, str, int, float]]:
        """``(channel, kind, count, latest time)`` over every rejection recorded."""
        return [tuple(r) for r in self.c.execute(
            "SELECT channel, kind, count(*), max(created_at) FROM rejections"
            " GROUP BY channel, kind ORDER BY channel, kind")]

    def policy_refusal_counts(self) -> list[tuple[str, str, int, float]]:
        """``(channel, reason, count, latest time)`` over the policy's refusals
        (kind ``policy``), by their recorded reason text."""
        return [tuple(r) for r in self.c.execute(
            "SELECT channel, reason, count(*), max(created_at) FROM rejections"
            " WHERE kind='policy' GROUP BY channel, reason ORDER BY channel, reason")]

    # ------------------------------------------------------------ health
    def set_health(self, account: str, platform: str, state: str, detail: str) -> None:
        self.c.execute(
            "INSERT INTO health(account, platform, state, detail, updated_at)"
            " VALUES (%s,%s,%s,%s,%s)"
            " ON CONFLICT(account) DO UPDATE SET state=excluded.state, detail=excluded.detail,"
            " updated_at=excluded.updated_at", (account, platform, state, detail, time.time()))

    def health(self) -> list[tuple[str, str, str, str, float]]:
        return [tuple(r) for r in self.c.execute(
            "SELECT account, platform, state, detail, updated_at FROM health ORDER BY account")]


_OPS = {op.value: op for op in Op}
_VISIBLE = "deleted_at IS NULL AND hidden=0"
"""What the public may see: not deleted at its origin, not hidden by moderation."""
_HELD = "op IN ('create','edit') AND attempts=0 AND next_at>%s"
"""A held create or edit (see :meth:`Tx.hold`); a retried delivery has attempts > 0."""


def _delivery(r: tuple[Any, ...]) -> DeliveryRow:
    return DeliveryRow(r[0], r[1], r[2], r[3], _OPS[r[4]], r[5], r[6], r[7], r[8], r[9], r[10])


_POST_COLS = ("id, community, origin_channel, origin_native_id, permalink, author_platform,"
              " author_handle, author_name, author_url, author_id, text_json, attachments_json,"
              " reply_to, content_warning, language, created_at, is_notice, edited_at,"
              " deleted_at, hidden, extras_json")


def post_from_row(r: dict[str, Any]) -> Post:
    poll, quote = extras_from_json(r["extras_json"])
    return Post(
        id=PostId(r["id"]), community=r["community"],
        origin_channel=ChannelKey(r["origin_channel"]),
        origin_native_id=NativeId(r["origin_native_id"]), permalink=r["permalink"],
        author=Author(platform=r["author_platform"], handle=r["author_handle"],
                      display_name=r["author_name"], profile_url=r["author_url"],
                      account_id=r["author_id"]),
        text=RichText.from_json(r["text_json"]),
        attachments=tuple(Attachment(**a) for a in json.loads(r["attachments_json"])),
        reply_to=PostId(r["reply_to"]) if r["reply_to"] else None,
        content_warning=r["content_warning"], language=r["language"],
        created_at=datetime.fromtimestamp(r["created_at"], UTC), is_notice=bool(r["is_notice"]),
        poll=poll, quote=quote,
    )
