"""The per-author rate: a sliding one-minute window over each author's posts
and edits, kept in memory (a restart forgives the count, not the order: the
posts held over the rate are in the store and :meth:`AuthorRate.seed` puts
them back at the start)."""

from __future__ import annotations

import time
from collections import deque


class AuthorRate:
    """Sliding one-minute window per author over posts and edits (kept in memory:
    a restart forgives)."""

    def __init__(self, window: float = 60.0) -> None:
        self.window = window
        """Seconds; the limits are per minute (shorter in tests only)."""
        self._seen: dict[tuple[str, str, str], deque[float]] = {}
        self._floor: dict[tuple[str, str, str], float] = {}
        """The slot of each author's last held post: a later post of theirs
        never goes before it."""
        self._told: dict[tuple[str, str, str], float] = {}
        """When each author was last told their posts are held."""
        self._counted: dict[str, float] = {}
        """Messages already counted, by key, with the time they count at: a store
        unit run again (its commit failed on a full disk and was retried) must
        not count its posts twice, and a held edit keeps its slot."""

    def allow(self, community: str, platform: str, handle: str, per_minute: int,
              key: str = "") -> bool:
        return self.reserve(community, platform, handle, per_minute, key) == 0.0

    def reserve(self, community: str, platform: str, handle: str, per_minute: int,
                key: str = "", *, book: bool = False) -> float:
        """Count one message of the author now and return 0.0; or, when the
        author is over the rate, return the seconds until the window has room
        again.  With *book*, that later room is taken for this message (a held
        edit goes out then, and counts then): messages held one after another
        get successive slots, never more than the rate."""
        now = time.monotonic()
        if key and key in self._counted:
            return max(self._counted[key] - now, 0.0)
        q = self._seen.setdefault((community, platform, handle.casefold()), deque())
        while q and q[0] < now - self.window:
            q.popleft()
        if len(q) >= per_minute:
            # Room comes when the entry per_minute places from the end expires
            # (entries may be booked in the future: the deque stays sorted).
            at = q[len(q) - per_minute] + self.window
            if not book:
                return max(at - now, 0.001)
            q.append(at)
            wait = max(at - now, 0.001)
        else:
            q.append(now)
            at, wait = now, 0.0
        if key:
            self._counted[key] = at
            if len(self._counted) > 100_000:
                self._counted = {k: t for k, t in self._counted.items()
                                 if t > now - self.window}
        if len(self._seen) > 50_000:  # bound memory on a months-long run
            self._seen = {k: v for k, v in self._seen.items()
                          if v and v[-1] > now - self.window}
        return wait

    def hold(self, community: str, platform: str, handle: str, per_minute: int,
             key: str = "", *, max_windows: float) -> float | None:
        """A post of the author: count it now and return 0.0, or, over the
        rate, book its slot (after the author's posts and edits held before
        it) and return the seconds until then.  None, counting nothing, when
        that slot is more than *max_windows* windows away (the cap on what one
        author may have held)."""
        now = time.monotonic()
        if key and key in self._counted:
            return max(self._counted[key] - now, 0.0)
        author = (community, platform, handle.casefold())
        q = self._seen.setdefault(author, deque())
        while q and q[0] < now - self.window:
            q.popleft()
        at = now
        if len(q) >= per_minute:
            at = q[len(q) - per_minute] + self.window
        floor = self._floor.get(author, 0.0)
        if floor > at:
            at = floor
        if at - now > max_windows * self.window:
            return None
        q.append(at)
        if at > now:
            self._floor[author] = at
        if key:
            self._counted[key] = at
        self._trim(now)
        return max(at - now, 0.0)

    def seed(self, community: str, platform: str, handle: str, wait: float) -> None:
        """A post held before a restart goes out in *wait* seconds: it counts
        then, and the author's later posts go after it."""
        now = time.monotonic()
        author = (community, platform, handle.casefold())
        at = now + max(wait, 0.0)
        q = self._seen.setdefault(author, deque())
        q.append(at)
        if len(q) > 1 and q[-2] > at:  # seeded out of order: keep the deque sorted
            self._seen[author] = deque(sorted(q))
        self._floor[author] = max(self._floor.get(author, 0.0), at)

    def tell(self, community: str, platform: str, handle: str) -> bool:
        """True once per window per author: whether to tell them now that their
        posts are held."""
        now = time.monotonic()
        author = (community, platform, handle.casefold())
        if now - self._told.get(author, -1e18) < self.window:
            return False
        self._told[author] = now
        if len(self._told) > 50_000:
            self._told = {k: t for k, t in self._told.items() if t > now - self.window}
        return True

    def _trim(self, now: float) -> None:
        if len(self._counted) > 100_000:
            self._counted = {k: t for k, t in self._counted.items() if t > now - self.window}
        if len(self._seen) > 50_000:
            self._seen = {k: v for k, v in self._seen.items() if v and v[-1] > now - self.window}
            self._floor = {k: t for k, t in self._floor.items() if t > now}
