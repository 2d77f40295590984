"""The store's interface: what the core may ask of any backend, and the rows it gets.

:class:`Store` runs *units of work* (plain functions taking a :class:`Tx`) in a
transaction; :class:`Tx` is the only way the core reads and writes.  Callers type
against these protocols, never a backend's classes; every SQL statement lives in a
backend package (``bridge.store.sqlite``).  A backend must pass the store contract
suite (``tests/store/test_contract.py``), which exercises this surface.

What a backend promises, beyond the signatures:

* **Units are atomic and isolated from each other.**  Units that arrive together may
  be committed together (group commit), but a unit that raises leaves no trace and
  never takes its neighbours down; its exception goes to its caller.
* **Nothing is acknowledged that is not saved.**  ``run`` returns once the unit's
  writes are durable.  A write that fails for a reason that goes away (a full disk,
  a failing device, another writer holding a lock: :class:`~bridge.store.errors.
  TransientStoreError`) is *held* and tried again, the caller waiting meanwhile;
  :attr:`Store.storage` says so.
* **Errors are the core's.**  A unit sees :class:`~bridge.store.errors.StoreError`
  (or its transient kind) from a failing statement, never a driver's exception.
* **Order.**  ``Tx.pending`` lists a channel's deliveries in the order they were
  queued (``DeliveryRow.seq``); one channel has one sender at a time.
* **Caches are the backend's business.**  A backend may cache rows (the SQLite one
  keeps recent posts, consent and blocks in its one writer), but must invalidate them
  on its own writes and, where several processes share the database, on theirs.

Adapter state (:meth:`Tx.state_get` and friends) is a small keyed store per account
and *namespace* (the adapter's own name for a kind of row, e.g. ``threads``), kept in
insertion order, for what an adapter must remember beyond its cursors.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, TypeVar

from bridge.contract.model import (
    Attachment,
    ChannelKey,
    DeliveryId,
    NativeId,
    Op,
    Poll,
    Post,
    PostId,
    QuotedPost,
)
from bridge.contract.richtext import RichText
from bridge.store.space import StorageState

T = TypeVar("T")


class DeliveryRow(NamedTuple):
    """One outbox row (a tuple: read for every delivery, built cheaply)."""

    seq: int
    id: DeliveryId
    post_id: PostId
    channel: ChannelKey
    op: Op
    state: str
    attempts: int
    next_at: float
    last_error: str
    parts_done: int
    created_at: float


PostState = tuple[float | None, float | None, bool]
"""(edited_at, deleted_at, hidden)"""
NEW_POST: PostState = (None, None, False)

RETIRED_PART = -1
"""The part number of ids whose part an edit removed (see :meth:`Tx.retire_part`)."""


@dataclass(frozen=True, slots=True)
class CopyRow:
    """One id of a post on a channel: its origin there, a part of our copy, or an
    alias of a part (``role``: ``origin``, ``copy``, ``alias``)."""

    native_id: NativeId
    role: str
    part: int
    subject: str
    permalink: str


class Tx(Protocol):
    """One transaction: typed reads and writes, used only inside ``Store.run`` units."""

    # -- the id map: every native id a post has on every channel
    def native_lookup(self, channel: str, native_id: str) -> tuple[PostId, str] | None:
        """(post id, role) of *native_id* on *channel*."""
        ...

    def add_native(self, channel: str, native_id: str, post_id: str, role: str, *,
                   part: int = 0, subject: str = "", permalink: str = "") -> None:
        """Map *native_id* to the post (a second mapping of the same id is ignored)."""
        ...

    def copies(self, post_id: str, channel: str) -> list[CopyRow]:
        """The post's ids on *channel*: its origin there, or our copy's parts in order."""
        ...

    def copies_many(self, post_ids: Iterable[str], channel: str) -> dict[str, list[CopyRow]]:
        """:meth:`copies` for several posts at once (a worker's batch)."""
        ...

    def aliases(self, post_id: str, channel: str, part: int) -> list[NativeId]: ...

    def retire_part(self, post_id: str, channel: str, part: int) -> None:
        """An edit removed part *part* of the copy: its ids stay in the map (part
        :data:`RETIRED_PART`, role alias) so their echoes are still recognised, but
        it is no longer one of the copy's parts."""
        ...

    def all_copies(self, post_id: str) -> list[tuple[str, CopyRow]]:
        """(channel, id) of every id the post has, by channel then part."""
        ...

    # -- posts
    def insert_post(self, post: Post, text_hash: str) -> None: ...

    def find_duplicate(self, community: str, text_hash: str, identities: Collection[str],
                       since: float, not_channel: str) -> PostId | None:
        """A post of the community with the same text fingerprint, posted since
        *since* on another channel by one of *identities*."""
        ...

    def get_post(self, post_id: str) -> Post | None: ...

    def post_state(self, post_id: str) -> PostState:
        """(edited_at, deleted_at, hidden) of a post (:data:`NEW_POST` if unknown)."""
        ...

    def update_post(self, post_id: str, text: RichText, text_hash: str, content_warning: str,
                    attachments: tuple[Attachment, ...] | None, edited_at: float,
                    extras: tuple[Poll | None, QuotedPost | None] | None = None) -> None:
        """The post's new text; its poll and quote too where *extras* is given."""

    def mark_post_deleted(self, post_id: str) -> None:
        """Deleted at its origin: keep the row for the id map, drop the content."""
        ...

    def set_hidden(self, post_id: str, hidden: bool) -> None: ...

    def recent_posts(self, community: str, limit: int = 200, *,
                     include_deleted: bool = False) -> list[Post]:
        """The community's newest posts, oldest first (visible only, unless asked)."""
        ...

    # -- the public archive: visible posts only (not deleted, not hidden)
    def visible_post(self, post_id: str) -> Post | None: ...

    def visible_page(self, community: str, limit: int, before: str | None = None,
                     channels: tuple[str, ...] = ()) -> list[Post]:
        """The newest *limit* visible posts older than post *before* (by
        (created_at, id)), from *channels* when given, oldest first."""
        ...

    def visible_between(self, community: str, start: float, end: float) -> list[Post]:
        """Visible posts created in [start, end), oldest first."""
        ...

    def count_visible(self, community: str, start: float | None = None,
                      end: float | None = None) -> int: ...

    def visible_after(self, community: str, after: str, limit: int, *,
                      start: float | None = None, end: float | None = None
                      ) -> list[tuple[Post, float | None]]:
        """Visible posts after post *after* ("" for the first) by (created_at, id),
        with their edit time, oldest first."""
        ...

    def post_community(self, post_id: str) -> str | None: ...

    def hidden_posts(self, community: str, limit: int = 50) -> list[Post]:
        """Posts hidden by moderation (notices left out), newest first."""
        ...

    # -- linked accounts (one person on several networks)
    def linked_identities(self, identity: str) -> set[str]: ...

    def link_identities(self, a: str, b: str) -> None: ...

    def unlink_identity(self, identity: str) -> int: ...

    def identity_links(self) -> list[tuple[str, str, float]]: ...

    def add_link_claim(self, code: str, identity: str, label: str, target_platform: str,
                       target_handle: str, expires_at: float) -> None: ...

    def link_claim(self, code: str) -> tuple[str, str, str, str] | None: ...

    def drop_link_claim(self, code: str) -> None: ...

    # -- the outbox
    def enqueue(self, post_id: str, channel: str, op: Op, *, source: str = "",
                at: float = 0.0) -> DeliveryId: ...

    def enqueue_many(self, post_id: str, channels: Iterable[str], op: Op, *,
                     source: str = "", at: float = 0.0) -> list[DeliveryId]:
        """Queue *op* of the post for each channel; ids derived from *source* and
        *at* when given (see :func:`~bridge.contract.model.delivery_ids`)."""
        ...

    def pending(self, channel: str, limit: int) -> list[DeliveryRow]:
        """The channel's oldest pending deliveries in queue order, held ones left out."""
        ...

    def next_held(self, channel: str) -> DeliveryRow | None: ...

    def hold(self, delivery_ids: Iterable[str], until: float) -> None:
        """Hold fresh (never tried) create or edit deliveries until *until*: their
        author is over the rate.  :meth:`pending` leaves them out until then, so
        they do not stop the deliveries behind them."""
        ...

    def held_until(self, post_id: str) -> float | None:
        """When the post's held create or edit (if any) goes out."""
        ...

    def release_held(self, post_ids: Iterable[str]) -> int:
        """The posts' held deliveries are due now; how many there were."""
        ...

    def discard_held(self, post_ids: Iterable[str], note: str) -> int:
        """The posts' held deliveries are never sent (state ``skipped``, *note*
        as their reason); how many there were."""
        ...

    def supersede_edits(self, post_id: str, channels: Iterable[str]) -> int: ...

    def delivery_state(self, delivery_id: str) -> str | None: ...

    def delivery(self, delivery_id: str) -> DeliveryRow | None: ...

    def create_state(self, post_id: str, channel: str) -> str | None: ...

    def record_sent(self, d: DeliveryRow, part: int, native_id: str | None, *,
                    subject: str = "", permalink: str = "", extra_ids: Iterable[str] = (),
                    final: bool) -> None: ...

    def finish(self, delivery_id: str, state: str, note: str = "") -> None: ...

    def defer(self, delivery_id: str, next_at: float, error: str) -> None: ...

    def retry_now(self, channel: str) -> None: ...

    def requeue_dead(self, channel: str | None = None,
                     delivery_id: str | None = None) -> int: ...

    def queue_depths(self) -> dict[str, dict[str, int]]: ...

    def dead(self, limit: int = 100) -> list[DeliveryRow]: ...

    def count_deliveries(self, state: str) -> int: ...

    # -- cursors (written in the same transaction as the events they cover)
    def get_cursor(self, account: str, name: str) -> str | None: ...

    def set_cursor(self, account: str, name: str, value: str) -> None: ...

    # -- adapter state: per account and namespace, in insertion order
    def state_get(self, account: str, namespace: str, key: str) -> str | None: ...

    def state_put(self, account: str, namespace: str, key: str, value: str) -> None:
        """Set *key* (a key already there keeps its place in the order)."""
        ...

    def state_add(self, account: str, namespace: str, key: str, value: str) -> bool:
        """Set *key* only if absent; True if it was added."""
        ...

    def state_items(self, account: str, namespace: str) -> list[tuple[str, str]]:
        """Every (key, value) of the namespace, in insertion order."""
        ...

    def state_delete(self, account: str, namespace: str, keys: Iterable[str]) -> int:
        """Remove *keys*; how many there were."""
        ...

    # -- reactions: counted per post, one row per (post, network, reactor, key)
    def add_reaction(self, post_id: str, network: str, reactor: str, key: str, *,
                     reaction_id: str = "", count: int = 1) -> bool:
        """Record a reaction; adding the same one again changes nothing.  *count*
        is 1 for a person's reaction; an aggregate read from the platform (no
        reactor named) stores its total, replacing the one before.  True when
        the stored counts changed."""
        ...

    def remove_reaction(self, post_id: str, network: str, reactor: str, key: str) -> bool:
        """Take a reaction back; True if there was one."""
        ...

    def remove_reaction_by_id(self, network: str, reaction_id: str
                              ) -> tuple[PostId, str, str] | None:
        """Take back the reaction whose platform id is *reaction_id*; its
        ``(post id, reactor, key)``, or None if none is known."""
        ...

    def reaction_counts(self, post_ids: Iterable[str]) -> dict[PostId, dict[str, int]]:
        """Per post (those with any), its reactions counted per network."""
        ...

    def reaction_reactors(self, post_id: str, key: str) -> int:
        """How many reactions with *key* the post has, on every network."""
        ...

    # -- consent, blocks, rejections, health
    def consent(self, platform: str, handle: str) -> str | None: ...

    def set_consent(self, platform: str, handle: str, decision: str) -> None: ...

    def consents(self) -> list[tuple[str, str, str, float]]: ...

    def is_blocked(self, platform: str, handle: str) -> bool: ...

    def block(self, platform: str, handle: str, reason: str) -> None: ...

    def unblock(self, platform: str, handle: str) -> bool: ...

    def blocks(self) -> list[tuple[str, str, str, float]]:
        """(platform, handle, reason, time) of every block, newest first."""
        ...

    def reject(self, channel: str, native_id: str, reason: str, kind: str = "policy") -> bool:
        """Record why an inbound event was not relayed (once per event for any
        *kind* but ``policy``); False when it already was."""
        ...

    def rejections(self, limit: int = 100, *, kinds: Iterable[str] | None = None
                   ) -> list[tuple[str, str, str, float]]: ...

    def rejection_counts(self) -> list[tuple[str, str, int, float]]: ...

    def policy_refusal_counts(self) -> list[tuple[str, str, int, float]]:
        """``(channel, reason, count, latest time)`` over the policy's refusals
        (kind ``policy``), by their recorded reason text."""
        ...

    def set_health(self, account: str, platform: str, state: str, detail: str) -> None: ...

    def health(self) -> list[tuple[str, str, str, str, float]]: ...


class Store(Protocol):
    """Runs units of work in transactions; see the module docstring for the promises."""

    @property
    def storage(self) -> StorageState:
        """``ok``, or why writes are held."""
        ...

    async def writable(self, poll: float = 0.5) -> None:
        """Return once writes go through (at once when they do)."""
        ...

    async def run(self, unit: Callable[[Tx], T]) -> T:
        """Run *unit* in a transaction; its result once committed, or what it raised
        (nothing of it kept then)."""
        ...

    def submit(self, unit: Callable[[Tx], Any]) -> asyncio.Future[Any]:
        """Like :meth:`run` without waiting: the returned future resolves on commit."""
        ...

    async def close(self) -> None:
        """Stop after what is queued; writes still held are given up with
        :class:`~bridge.store.errors.StoreError` (their work is redone at the next start)."""
        ...


__all__ = ["NEW_POST", "RETIRED_PART", "CopyRow", "DeliveryRow", "PostState", "Store", "Tx"]
