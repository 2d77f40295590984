"""Several ``hashbridge run`` processes on one database: who runs which account.

Used when the store has leases (:func:`bridge.store.leases.leases_of`: PostgreSQL).
Each process builds every adapter and worker as usual but runs only the accounts whose
lease it holds: lease ``account:<name>`` covers that account's reader *and* the senders
of its channels.

**Why channels go with their account** (rather than per-delivery claims with
``FOR UPDATE SKIP LOCKED``): an adapter's connection, login and rate-limit bucket are
per account, and a channel's sender needs the adapter connected; one holder per
account gives one sender per channel, so a channel's deliveries go out in queue order
exactly as with one process, with no row locks held across a network send.
Different accounts (and so their channels) run in different processes.

**Timing** (``failover_seconds`` = F, default 15): a lease lasts 0.8 F by the
database's clock and is renewed every 0.2 F.  A process that could not renew for
0.6 F (the database unreachable, the process stalled) stops its accounts *before* its
leases can expire, so two processes never run one account at once; any other process
takes an expired lease at its next heartbeat, within F of the holder's death.  A clean
stop gives the leases up at once.

**Share**: each process holds at most ⌈accounts / live processes⌉ leases; a process
that joins is given leases by the others shedding their surplus (stopped first,
then released).

**A takeover never double-posts**: the new holder re-reads the outbox; a send the old
holder made but did not record goes out again under the same idempotency key (derived
from the origin message), which the platform refuses as a repeat; the id map and
cursors are in the shared database.

**Across processes**: a post relayed by one process may be for a channel another runs:
its workers are woken by a broadcast (``hashbridge_wake``), and every process's live
views get the change (``hashbridge_changes``).  Broadcasts can be lost while a
listener reconnects, so every process also wakes its own workers every F seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any

from bridge.contract.model import PostId
from bridge.store.leases import Leases

log = logging.getLogger("hashbridge.cluster")

WAKE = "hashbridge_wake"
CHANGES = "hashbridge_changes"
_PAYLOAD_MAX = 7000  # NOTIFY payloads must stay under 8000 bytes


def lease_name(account: str) -> str:
    return f"account:{account}"


class Cluster:
    """Runs the accounts whose leases this process holds; see the module docstring.

    *work*: lease name -> the coroutine running it (until cancelled).
    *channels*: lease name -> the channel keys it sends to.
    *wake*: wake the local worker of a channel.  *show*: a change for local live views.
    """

    def __init__(self, leases: Leases, failover_seconds: float,
                 work: Mapping[str, Callable[[], Coroutine[Any, Any, None]]],
                 channels: Mapping[str, Iterable[str]],
                 wake: Callable[[str], None], show: Callable[[str, PostId], None]) -> None:
        self.leases = leases
        self.member = leases.member
        self.failover = failover_seconds
        self.ttl = 0.8 * failover_seconds
        self.interval = 0.2 * failover_seconds
        self.grace = self.ttl - self.interval
        self.work = dict(work)
        self.channels = {k: tuple(v) for k, v in channels.items()}
        self._wake = wake
        self._show = show
        self.running: dict[str, asyncio.Task[None]] = {}
        self.members = 1
        self.loads: dict[str, int] = {}
        self.held_at_stop: set[str] = set()
        """What ran here when the cluster stopped (the accounts whose health this
        process may record as stopped)."""
        self.last_ok: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- what this process runs -------------------------------------------
    def local_channels(self) -> set[str]:
        return {ch for name in self.running for ch in self.channels.get(name, ())}

    def _start(self, name: str) -> None:
        log.warning("cluster: %s runs here now (%s pid %d)", name, self.member.host,
                    self.member.pid)
        self.running[name] = asyncio.create_task(self.work[name](), name=f"lease:{name}")
        for ch in self.channels.get(name, ()):
            self._wake(ch)

    async def _stop(self, names: Iterable[str], why: str) -> None:
        tasks = [(n, self.running.pop(n)) for n in list(names) if n in self.running]
        for n, t in tasks:
            log.warning("cluster: %s stops here (%s)", n, why)
            t.cancel()
        for _n, t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    # -- a reload (bridge/daemon/reload.py) -------------------------------------
    def update(self, work: Mapping[str, Callable[[], Coroutine[Any, Any, None]]],
               channels: Mapping[str, Iterable[str]]) -> None:
        """New or changed accounts: taken at the next heartbeats like the others."""
        self.work.update(work)
        self.channels.update({k: tuple(v) for k, v in channels.items()})

    async def restart(self, names: Iterable[str]) -> None:
        """Run *names* anew where they run here (their work changed; the lease stays)."""
        here = [n for n in names if n in self.running]
        await self._stop(here, "its configuration changed (reload)")
        for n in here:
            if n in self.work:
                self._start(n)

    async def remove(self, names: Iterable[str]) -> None:
        """Stop *names* and give their leases up at once (removed from the config)."""
        gone = list(names)
        for n in gone:
            self.work.pop(n, None)
            self.channels.pop(n, None)
        await self._stop(gone, "removed from the configuration (reload)")
        await self.leases.release(gone)

    # -- the heartbeat loop --------------------------------------------------
    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.leases.listen(WAKE, self._on_wake)
        self.leases.listen(CHANGES, self._on_changes)
        limit = 0  # the first heartbeat only says we are here (counted by the others)
        beats = 0
        try:
            while True:
                started = time.monotonic()
                beats += 1
                wanted = sorted(self.work)  # (a reload adds and removes)
                try:
                    hb = await asyncio.wait_for(
                        self.leases.heartbeat(wanted, set(self.running), self.ttl,
                                              self._take_limit(limit, len(wanted))),
                        timeout=self.interval)
                except (TimeoutError, Exception) as e:
                    if not isinstance(e, TimeoutError):
                        log.warning("cluster: heartbeat failed: %s", e)
                    if self.running and self.last_ok is not None and \
                            time.monotonic() - self.last_ok > self.grace:
                        await self._stop(list(self.running), "cannot renew its lease: the "
                                         "database is out of reach")
                else:
                    self.last_ok = started
                    self.members = hb.members
                    self.loads = dict(hb.loads)
                    lost = set(self.running) - hb.held
                    if lost:
                        await self._stop(lost, "its lease was taken over")
                    stray = sorted(hb.held - set(self.work))  # removed meanwhile
                    if stray:
                        await self.leases.release(stray)
                    for name in sorted(hb.held - set(self.running) - set(stray)):
                        self._start(name)
                    limit = math.ceil(len(wanted) / self.members)
                    surplus = len(self.running) - limit
                    if surplus <= 0 and _gives_one(self.member.id, hb.loads, len(wanted)):
                        surplus = 1
                    if surplus > 0:
                        shed = sorted(self.running)[-surplus:]
                        await self._stop(shed, f"another process joined; {limit} each")
                        await self.leases.release(shed)
                    if beats % 5 == 0:
                        for ch in self.local_channels():
                            self._wake(ch)  # a broadcast lost meanwhile is made up here
                if beats == 1:
                    continue  # registered: now take a share at once
                await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))
        finally:
            held = list(self.running)
            self.held_at_stop = set(held)
            await self._stop(held, "stopping")
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.interval):
                    await self.leases.leave()

    def _take_limit(self, limit: int, total: int) -> int:
        """How many leases to hold after the next heartbeat: *limit*, but no more
        than now while another member is below its floor share (the lease given up
        for it is its to take)."""
        if self.loads and len(self.loads) > 1:
            floor = total // len(self.loads)
            if min(self.loads.values()) < floor and len(self.running) >= floor:
                return min(limit, len(self.running))
        return limit

    # -- broadcasts ------------------------------------------------------------
    def published(self, wake: Iterable[str], changed: Iterable[tuple[str, PostId]]) -> None:
        """What this process relayed: wake the other processes' senders of *wake*
        and show *changed* in their live views."""
        remote = [ch for ch in wake if ch not in self.local_channels()]
        for chunk in _chunks(remote):
            self.leases.broadcast(WAKE, chunk)
        lines = [f"{self.member.id}\t{kind}\t{pid}" for kind, pid in changed]
        for chunk in _chunks(lines):
            self.leases.broadcast(CHANGES, chunk)

    def _on_wake(self, payload: str) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake_local, payload.split("\n"))

    def _wake_local(self, keys: list[str]) -> None:
        local = self.local_channels()
        for k in keys:
            if k in local:
                self._wake(k)

    def _on_changes(self, payload: str) -> None:
        if self._loop is None:
            return
        changes: list[tuple[str, PostId]] = []
        for line in payload.split("\n"):
            member, _, rest = line.partition("\t")
            kind, _, pid = rest.partition("\t")
            if member != self.member.id and pid:
                changes.append((kind, PostId(pid)))
        if changes:
            self._loop.call_soon_threadsafe(self._show_all, changes)

    def _show_all(self, changes: list[tuple[str, PostId]]) -> None:
        for kind, pid in changes:
            self._show(kind, pid)

    def status(self) -> dict[str, Any]:
        return {"member": self.member.id, "host": self.member.host, "pid": self.member.pid,
                "members": self.members, "running": sorted(self.running)}


def _gives_one(me: str, loads: Mapping[str, int], total: int) -> bool:
    """Whether this member should give one lease up so that one holding fewer than
    its floor share gets it: only the busiest member (the smallest id among equals)
    does, one lease per heartbeat, so the share evens out without a stampede
    (4 accounts on 3 processes end 2/1/1, not 2/2/0)."""
    if len(loads) < 2 or me not in loads:
        return False
    floor = total // len(loads)
    busiest = max(loads.values())
    return (min(loads.values()) < floor and loads[me] == busiest and busiest > floor
            and me == min(m for m, n in loads.items() if n == busiest))


def _chunks(lines: list[str]) -> list[str]:
    out: list[str] = []
    buf: list[str] = []
    size = 0
    for line in lines:
        if buf and size + len(line.encode()) + 1 > _PAYLOAD_MAX:
            out.append("\n".join(buf))
            buf, size = [], 0
        buf.append(line)
        size += len(line.encode()) + 1
    if buf:
        out.append("\n".join(buf))
    return out
