"""Leases: which process does what, when several share one database.

A *lease* is a named right (``account:<name>``: that account's reader and its
channels' senders) held by one process (a *member*) until it expires; the holder
renews it with heartbeats.  The backend keeps them in the database, timed by the
database server's clock, so hosts with skewed clocks agree.  A backend that serves one
process (SQLite) has none: :func:`leases_of` returns None and the bridge runs
everything itself.

:class:`~bridge.daemon.cluster.Cluster` decides what to take and give up; this module
only says what a backend offers.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bridge.store.api import Store


@dataclass(frozen=True, slots=True)
class Member:
    """This process, as the others see it."""

    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """What one heartbeat found: the leases this member holds now (renewed or newly
    taken), and how many members are alive (renewed within the lease time)."""

    held: frozenset[str]
    members: int
    taken: frozenset[str] = frozenset()
    """Of :attr:`held`, those taken by this heartbeat (not renewed)."""
    loads: Mapping[str, int] = field(default_factory=dict)
    """Leases held by each live member (0 for one holding none), after this heartbeat."""


@dataclass(frozen=True, slots=True)
class LeaseRow:
    name: str
    member: str
    host: str
    pid: int
    acquired_at: float
    expires_in: float
    """Seconds until it expires (by the database's clock; negative: expired)."""


class Leases(Protocol):
    member: Member

    async def heartbeat(self, wanted: Sequence[str], held: Collection[str], ttl: float,
                        limit: int) -> Heartbeat:
        """Say this member is alive; renew *held*; take free (or expired) leases of
        *wanted* while holding fewer than *limit*.  One transaction."""
        ...

    async def release(self, names: Collection[str]) -> None:
        """Give *names* up at once (another member takes them at its next heartbeat)."""
        ...

    async def leave(self) -> None:
        """Give every lease up and stop counting as a member (a clean stop)."""
        ...

    async def holders(self) -> list[LeaseRow]: ...

    def broadcast(self, channel: str, payload: str) -> None:
        """Send *payload* to every member's :meth:`listen` on *channel* (fire and
        forget: a lost one is made up by the periodic wake-up)."""
        ...

    def listen(self, channel: str, callback: Callable[[str], None]) -> None:
        """*callback(payload)* for each broadcast on *channel*, called in a thread
        of the store's (hand it to the event loop with ``call_soon_threadsafe``)."""
        ...


class _HasLeases(Protocol):
    def leases(self, member: Member) -> Leases: ...


def leases_of(store: Store, member: Member) -> Leases | None:
    """The store's leases, or None when its backend serves one process only."""
    make = getattr(store, "leases", None)
    if make is None:
        return None
    has: _HasLeases = store  # type: ignore[assignment]
    return has.leases(member)
