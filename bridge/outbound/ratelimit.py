"""Pacing: a token bucket per account and the retry backoff schedule."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime


class TokenBucket:
    """``rate`` tokens per second up to ``burst``, paused until a platform's
    reset time when its headers say the window is spent.

    ``acquire`` waits; the wait is reported through ``waited`` (seconds) for
    metrics.  Unlimited when ``rate`` is None.
    """

    def __init__(self, rate: float | None, burst: int | None = None) -> None:
        self.rate = rate
        self.burst = float(burst or (max(1.0, rate) if rate else 1.0))
        self.tokens = self.burst
        self.updated = time.monotonic()
        self.paused_until = 0.0  # wall clock (platform reset times are wall clock)
        self.waited = 0.0
        self._lock = asyncio.Lock()

    def feed(self, *, remaining: int | None, reset_at: float | None,
             limit: int | None = None) -> None:
        """Platform headers: with nothing remaining, hold everything until reset."""
        if remaining is not None and remaining <= 0 and reset_at:
            self.paused_until = max(self.paused_until, reset_at)

    def pause(self, seconds: float) -> None:
        self.paused_until = max(self.paused_until, time.time() + seconds)

    def try_acquire(self) -> bool:
        """Take a token if one is there now (no waiting, nobody queued)."""
        if self._lock.locked() or self.paused_until > time.time():
            return False
        if self.rate is None:
            return True
        self._refill()
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                delay = self.paused_until - time.time()
                if delay <= 0:
                    break
                self.waited += delay
                await asyncio.sleep(min(delay, 60.0))
            if self.rate is None:
                return
            self._refill()
            while self.tokens < 1:
                delay = (1 - self.tokens) / self.rate
                self.waited += delay
                await asyncio.sleep(delay)
                # Credit the time that really passed (a sleep overshoots), so a
                # long drain runs at the configured rate, not below it.
                self._refill()
            self.tokens -= 1

    def _refill(self) -> None:
        assert self.rate is not None
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now


def backoff(attempt: int, *, base: float = 1.0, cap: float = 300.0,
            retry_after: float | None = None, rng: random.Random | None = None) -> float:
    """Seconds before the next try.  A server's ``retry_after`` wins (plus a
    little jitter so many workers do not wake at once); otherwise capped
    exponential backoff with full jitter over the upper half."""
    r = rng or random
    if retry_after is not None and retry_after >= 0:
        return retry_after + r.uniform(0, min(1.0, 0.1 * retry_after + 0.05))
    ceiling = min(cap, base * (2 ** min(attempt, 30)))
    return r.uniform(ceiling / 2, ceiling)


class AuthorShare:
    """What each author's posts took today (UTC) on one channel, in parts and in
    money where posting is billed, against a fair share of the channel's daily
    budget: a long post must not spend the day.

    Decided once per delivery (a re-plan asks again and gets the same answer,
    charged once); kept in memory, so a restart forgives, as the per-author
    post rate does.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._day = ""
        self._used: dict[str, tuple[int, float]] = {}
        self._decided: dict[str, tuple[str, int, float, bool]] = {}
        """delivery id -> (author, parts charged, cost charged, whether it was cut)"""

    def _roll(self) -> None:
        day = datetime.fromtimestamp(self.clock(), UTC).strftime("%Y-%m-%d")
        if day != self._day:
            self._day, self._used, self._decided = day, {}, {}

    @staticmethod
    def allowance(posts_per_day: int | None, share: float) -> int | None:
        """Parts one author may take per day; None without a daily budget."""
        if posts_per_day is None:
            return None
        return max(1, int(posts_per_day * share))

    @staticmethod
    def cost_allowance(cost_per_day: float | None, share: float) -> float | None:
        """Money one author's posts may cost per day; None without a budget in money."""
        if cost_per_day is None:
            return None
        return cost_per_day * share

    def used(self, author: str) -> int:
        """Parts *author* took today."""
        self._roll()
        return self._used.get(author, (0, 0.0))[0]

    def spent(self, author: str) -> float:
        """What *author*'s parts cost today."""
        self._roll()
        return self._used.get(author, (0, 0.0))[1]

    def view(self, delivery: str, author: str, allowance: int | None,
             cost_allowance: float | None = None) -> ShareView:
        """*author*'s standing today for *delivery*, as a value (what the pure
        planner decides on)."""
        self._roll()
        done = self._decided.get(delivery)
        used, spent = self._used.get(author, (0, 0.0))
        return ShareView(author=author, used=used, spent=spent, allowance=allowance,
                         cost_allowance=cost_allowance,
                         decided=None if done is None else not done[3])

    def fits(self, delivery: str, author: str, parts: int, allowance: int | None,
             cost: float = 0.0, cost_allowance: float | None = None) -> bool:
        """May this delivery go out in *parts* parts costing *cost*?  (One part
        always may: the per-author post rate limits how many posts an author
        makes.)"""
        return self.view(delivery, author, allowance, cost_allowance).fits(parts, cost)

    def charge(self, delivery: str, author: str, parts: int, cut: bool,
               cost: float = 0.0) -> None:
        """Count *parts* costing *cost* against *author* (once per delivery)."""
        self._roll()
        if delivery in self._decided:
            return
        self._decided[delivery] = (author, parts, cost, cut)
        used, spent = self._used.get(author, (0, 0.0))
        self._used[author] = (used + parts, spent + cost)


@dataclass(frozen=True, slots=True, kw_only=True)
class ShareView:
    """One author's standing on one channel today, seen by one delivery."""

    author: str
    used: int = 0
    """Parts the author's posts took today."""
    spent: float = 0.0
    """What they cost."""
    allowance: int | None = None
    cost_allowance: float | None = None
    decided: bool | None = None
    """Decided before (a re-plan asks again): whether it went out whole."""

    def fits(self, parts: int, cost: float = 0.0) -> bool:
        """May the delivery go out in *parts* parts costing *cost*?  (One part
        always may: the per-author post rate limits how many posts an author
        makes.)"""
        if self.decided is not None:
            return self.decided
        if parts <= 1:
            return True
        if self.allowance is not None and self.used + parts > self.allowance:
            return False
        return self.cost_allowance is None or self.spent + cost <= self.cost_allowance + 1e-9
