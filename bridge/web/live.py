"""The live feed: one change log per web server, replayed to every SSE client.

The relay publishes ``(kind, post id)`` after each commit.  A single pump turns
each change into a numbered log entry with its rendered payload (rendered once,
not once per client).  An SSE client resumes with ``Last-Event-ID`` (or
``?since=`` on a fresh EventSource) and gets exactly the entries after it: no
gap, no duplicate.  Ids are ``<boot>:<seq>``; an id from another boot, or one
older than the kept window, gets a ``reset`` event and the client reloads the
list instead.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bridge.contract.model import PostId

log = logging.getLogger("hashbridge.web.live")

KEEP = 5000
"""Entries kept for resume: minutes of a busy chat, hours of a normal one."""
SUBSCRIBE_MAX = 100_000
DROP_CHECK = 5.0

Rendered = tuple[str | tuple[str, ...], str, dict[str, object]]
"""(community, network, data); the community may be several, the post's own first
and then the communities it is also shown in (a blended event's partner)."""


@dataclass(slots=True)
class Entry:
    seq: int
    community: str
    kind: str
    post_id: str
    network: str
    payload: str | None
    """JSON sent to clients; None once the post is deleted or hidden (its content
    must not be served again, even to a client resuming from before)."""
    also: tuple[str, ...] = ()
    """Other communities whose live page shows it (a blended event's partner)."""

    def shown_in(self, community: str) -> bool:
        return community == self.community or community in self.also


class ChangeLog:
    def __init__(self, keep: int = KEEP) -> None:
        self.boot = secrets.token_hex(4)
        self.seq = 0
        self.entries: deque[Entry] = deque(maxlen=keep)
        self._cond = asyncio.Condition()

    @property
    def last_id(self) -> str:
        return f"{self.boot}:{self.seq}"

    async def append(self, community: str, kind: str, post_id: str, network: str,
                     data: dict[str, object], also: tuple[str, ...] = ()) -> None:
        async with self._cond:
            self.seq += 1
            if kind in ("deleted", "hidden"):
                for e in self.entries:
                    if e.post_id == post_id:
                        e.payload = None
            data = {**data, "kind": kind, "id": post_id, "network": network}
            self.entries.append(Entry(self.seq, community, kind, post_id, network,
                                      json.dumps(data), also))
            self._cond.notify_all()

    async def restart(self) -> None:
        """A new generation: every id handed out so far stops being resumable."""
        async with self._cond:
            self.boot = secrets.token_hex(4)
            self.entries.clear()
            self._cond.notify_all()

    def parse(self, event_id: str | None) -> int | None:
        """The seq to resume after, or None when *event_id* cannot be resumed."""
        if not event_id:
            return None
        boot, _, seq = event_id.partition(":")
        if boot != self.boot or not seq.isdigit():
            return None
        n = int(seq)
        if n > self.seq:
            return None
        oldest = self.entries[0].seq if self.entries else self.seq + 1
        if n < oldest - 1:
            return None  # fell out of the window
        return n

    def after(self, seq: int) -> list[Entry]:
        return [e for e in self.entries if e.seq > seq]

    async def wait_beyond(self, seq: int, timeout: float) -> None:
        async with self._cond:
            if self.seq > seq:
                return
            try:
                async with asyncio.timeout(timeout):
                    await self._cond.wait()
            except TimeoutError:
                pass


async def pump(bridge: Any, changelog: ChangeLog,
               render: Callable[[str, PostId], Awaitable[Rendered | None]]) -> None:
    """Feed *changelog* from the bridge's change queue until cancelled.

    *render* gives ``(community, network, data)`` for a change, or None when
    there is nothing to show (e.g. a hidden consent notice).  The bridge drops a
    subscriber whose queue fills up (a stalled reader must not grow memory); if
    that ever happens here, the pump subscribes again and starts a new log
    generation, so every client reloads instead of silently missing changes.
    """
    q = bridge.subscribe(SUBSCRIBE_MAX)
    try:
        while True:
            try:
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a
                # cancellation that races with a result, and the pump never stops.
                async with asyncio.timeout(DROP_CHECK):
                    kind, post_id = await q.get()
            except TimeoutError:
                # The bridge drops a queue that fell behind: start over.
                if not bridge.is_subscribed(q):
                    log.warning("live view fell behind the relay; clients will reload")
                    q = bridge.subscribe(SUBSCRIBE_MAX)
                    await changelog.restart()
                continue
            try:
                out = await render(kind, post_id)
            except Exception:
                log.exception("live view: cannot render %s %s", kind, post_id)
                continue
            if out is not None:
                community, network, data = out
                shown = (community,) if isinstance(community, str) else community
                await changelog.append(shown[0], kind, post_id, network, data, shown[1:])
    finally:
        bridge.unsubscribe(q)
