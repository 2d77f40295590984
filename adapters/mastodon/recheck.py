"""Edits and deletes made while the hashtag stream was not read.

Mastodon tells edits (``status.update``) and deletes (``delete``) through the stream
only: the tag timeline read at catch-up shows neither (a deleted post is simply absent,
an edited one looks like any other).  So an edit or a delete made while the bridge was
stopped, the stream was down, or the disk was full would never reach the copies.

Each post relayed from a channel is remembered in the account's state (its id and
``edited_at``) for :data:`WINDOW`.  When the stream (re)connects, those posts are asked
for again: ``GET /api/v1/statuses?id[]=`` twenty at a time on Mastodon 4.3+, one ``GET
/api/v1/statuses/:id`` each for the newest :data:`OLD_SERVER_MAX` on older servers.  One
that is gone becomes a ``Deleted``; one whose ``edited_at`` moved becomes an ``Edited``
(or a ``Deleted`` when the edit added ``#nobridge`` or narrowed its visibility).

A flapping stream must not spend the account's calls on this: a channel is re-checked
at most every :data:`MIN_GAP` seconds, and not again before :data:`SHARE` times as long
as the last re-check took.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bridge.contract.adapter import AccountState
from bridge.contract.model import ChannelKey

NAMESPACE = "relayed"
WINDOW = 48 * 3600.0
"""How long a relayed post's edits and deletes are followed across downtime."""
BATCH = 20
"""Ids per ``GET /api/v1/statuses`` (Mastodon's own limit: more is a 422)."""
OLD_SERVER_MAX = 40
"""Before Mastodon 4.3 (no batch route) only the newest this many are asked, one call each."""
MIN_GAP = 10.0
SHARE = 5.0


def stamp(value: Any) -> str:
    """``edited_at`` as it is remembered: the stream gives ISO text, Mastodon.py a
    datetime; both become the same seconds, and no edit is ""."""
    if not value:
        return ""
    if isinstance(value, datetime):
        when = value if value.tzinfo else value.replace(tzinfo=UTC)
    else:
        try:
            when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return str(value)
    return f"{when.timestamp():.3f}"


def version(v: str) -> tuple[int, ...]:
    """``"4.3.0+glitch"`` → ``(4, 3, 0)``; an unknown part counts as 0."""
    core = v.split("+", 1)[0].split("-", 1)[0]
    return tuple(int(p) if p.isdigit() else 0 for p in core.split(".")[:3])


class Recheck:
    """The relayed posts of an account's channels, and when each may be re-checked."""

    def __init__(self, state: AccountState, clock: Callable[[], float] = time.time) -> None:
        self._state = state
        self._clock = clock
        self._next: dict[ChannelKey, float] = {}
        self._gone: OrderedDict[tuple[ChannelKey, str], None] = OrderedDict()
        """Deletes a re-check emitted: the stream may still bring the same delete (it
        was queued there while the re-check ran), which must not be followed twice."""

    @staticmethod
    def _key(channel: ChannelKey, sid: str) -> str:
        return f"{channel}\x1f{sid}"

    async def remember(self, channel: ChannelKey, items: list[tuple[str, str]]) -> None:
        """(status id, :func:`stamp` of its ``edited_at``) of posts just relayed or edited."""
        if not items:
            return
        now = self._clock()
        await self._state.put_many(NAMESPACE, [
            (self._key(channel, sid), json.dumps({"t": now, "e": edited}))
            for sid, edited in items])

    async def forget(self, channel: ChannelKey, sids: list[str], *, found_gone: bool = False
                     ) -> None:
        """Stop following *sids* (deleted); *found_gone*: by a re-check, so a delete of
        theirs still on its way through the stream is not followed again."""
        if found_gone:
            for sid in sids:
                self._gone[(channel, sid)] = None
            while len(self._gone) > 2000:
                self._gone.popitem(last=False)
        if sids:
            await self._state.delete(NAMESPACE, [self._key(channel, s) for s in sids])

    def found_gone(self, channel: ChannelKey, sid: str) -> bool:
        """Whether a re-check already followed the delete of *sid*."""
        return (channel, sid) in self._gone

    async def known(self, channel: ChannelKey) -> dict[str, str]:
        """Status id → remembered ``edited_at`` of *channel*'s posts still within
        :data:`WINDOW`, oldest first; older rows (of every channel) are dropped."""
        now, old, out = self._clock(), [], {}
        for key, value in await self._state.items(NAMESPACE):
            chan, _, sid = key.partition("\x1f")
            try:
                rec = json.loads(value)
                at, edited = float(rec["t"]), str(rec.get("e") or "")
            except (ValueError, KeyError, TypeError):
                old.append(key)
                continue
            if now - at > WINDOW:
                old.append(key)
            elif chan == str(channel):
                out[sid] = edited
        if old:
            await self._state.delete(NAMESPACE, old)
        return out

    def due(self, channel: ChannelKey) -> bool:
        return self.wait(channel) <= 0

    def wait(self, channel: ChannelKey) -> float:
        """Seconds until *channel* may be re-checked again."""
        return self._next.get(channel, 0.0) - self._clock()

    def ran(self, channel: ChannelKey, took: float) -> None:
        self._next[channel] = self._clock() + max(MIN_GAP, SHARE * took)
