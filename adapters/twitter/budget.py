"""The account's spending ledger: pay-per-use prices, daily and monthly caps.

Pure data and arithmetic (no I/O); the adapter persists :meth:`Ledger.dumps`
through the context's cursor store after every billed call, so a restart keeps
what was spent today and this month.
"""

from __future__ import annotations

import calendar
import json
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True, slots=True, kw_only=True)
class Prices:
    """USD per billed unit (X pay-per-use table, 2026-04)."""

    read: float = 0.005
    post: float = 0.015
    post_with_url: float = 0.20
    delete: float = 0.010


@dataclass(frozen=True, slots=True, kw_only=True)
class Caps:
    posts_per_day: int = 50
    usd_per_day: float = 2.0
    usd_per_month: float = 30.0
    reads_per_month: int = 10_000


def _day(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")


def _month(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m")


def next_day(now: float) -> float:
    d = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (d + timedelta(days=1)).timestamp()


def next_month(now: float) -> float:
    d = datetime.fromtimestamp(now, UTC).replace(day=1, hour=0, minute=0, second=0,
                                                 microsecond=0)
    return (d.replace(year=d.year + 1, month=1) if d.month == 12
            else d.replace(month=d.month + 1)).timestamp()


def next_cap_reset(now: float, day: int | None) -> float:
    """When an X project's monthly read cap resets: the next midnight UTC on its
    ``cap_reset_day`` (``GET /2/usage/tweets``), the month's last day when the month is
    shorter; the 1st of next month when the day is unknown."""
    if day is None or not 1 <= day <= 31:
        return next_month(now)
    d = datetime.fromtimestamp(now, UTC)
    for ahead in (0, 1, 2):
        year, month = d.year + (d.month - 1 + ahead) // 12, (d.month - 1 + ahead) % 12 + 1
        at = datetime(year, month, min(day, calendar.monthrange(year, month)[1]), tzinfo=UTC)
        if at.timestamp() > now:
            return at.timestamp()
    return next_month(now)  # not reached: a later month always has the day


@dataclass(frozen=True, slots=True, kw_only=True)
class Ledger:
    day: str = ""
    month: str = ""
    posts_today: int = 0
    usd_today: float = 0.0
    usd_month: float = 0.0
    reads_month: int = 0
    reads_total: int = 0
    posts_total: int = 0
    deletes_total: int = 0
    usd_total: float = 0.0

    def rolled(self, now: float) -> Ledger:
        """The ledger with the day's and month's counters reset when they changed."""
        led = self
        if led.month != _month(now):
            led = replace(led, month=_month(now), usd_month=0.0, reads_month=0)
        if led.day != _day(now):
            led = replace(led, day=_day(now), posts_today=0, usd_today=0.0)
        return led

    def charge(self, now: float, *, usd: float, posts: int = 0, reads: int = 0,
               deletes: int = 0) -> Ledger:
        led = self.rolled(now)
        return replace(led, posts_today=led.posts_today + posts,
                       usd_today=led.usd_today + usd, usd_month=led.usd_month + usd,
                       reads_month=led.reads_month + reads, reads_total=led.reads_total + reads,
                       posts_total=led.posts_total + posts,
                       deletes_total=led.deletes_total + deletes, usd_total=led.usd_total + usd)

    def refusal(self, now: float, caps: Caps, cost: float) -> tuple[str, float] | None:
        """Why a post costing *cost* may not go out now, and when it may
        (epoch seconds); None when it fits the budget."""
        led = self.rolled(now)
        if led.posts_today + 1 > caps.posts_per_day:
            return (f"budget spent: {led.posts_today}/{caps.posts_per_day} posts today",
                    next_day(now))
        if led.usd_today + cost > caps.usd_per_day + 1e-9:
            return (f"budget spent: ${led.usd_today:.3f} of ${caps.usd_per_day:.2f} today",
                    next_day(now))
        if led.usd_month + cost > caps.usd_per_month + 1e-9:
            return (f"budget spent: ${led.usd_month:.3f} of ${caps.usd_per_month:.2f} "
                    "this month", next_month(now))
        return None

    def reads_allowed(self, now: float, caps: Caps) -> bool:
        return self.rolled(now).reads_month < caps.reads_per_month

    def dumps(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def loads(cls, raw: str | None) -> Ledger:
        if not raw:
            return cls()
        try:
            data = json.loads(raw)
            return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        except (ValueError, TypeError):
            return cls()
