"""A community's chat-event schedule: ``[[communities.events]]`` and its occurrences.

A community declares recurring events in its config::

    [[communities.events]]
    id = "weekly"
    title = "#kmers chat"
    day = "wednesday"            # or: rrule = "FREQ=MONTHLY;BYDAY=1TU" + dtstart
    time = "20:00"
    timezone = "Europe/Paris"
    duration_minutes = 60
    hosts = ["mastodon:@alice@example.social", "matrix:@bob:example.org", "twitter:@carol"]

Times are computed in the event's own zone (so a weekly 20:00 stays 20:00 across
daylight-saving changes) and handled in UTC everywhere else.  All of it is pure; what
happens during an event (transcripts, announcements) is :mod:`bridge.features.chatevents`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from bridge.contract.adapter import StrictModel

DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_RRULE_DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")

START_MESSAGE = ("{title} starts now and runs until {end}. Hosted by {hosts}. Questions come "
                 "as Q1, Q2...; answer with A1, A2... and #{hashtag}. {url}")
END_MESSAGE = ("{title} is over: {answers_text} from {people_text} on {networks_text}. "
               "Thank you! Transcript: {url}")
"""``{answers_text}`` reads "1 answer" / "2 answers" (likewise ``{people_text}``,
``{networks_text}``, ``{questions_text}``); the bare numbers ``{answers}``,
``{people}``, ``{networks}``, ``{questions}`` still work in custom messages."""


_OFFSET = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|min)?\s*$")


def parse_offset(text: str) -> float | None:
    """``"10m"`` → 600.0 seconds (``s``, ``m``/``min``, ``h``; a bare number is
    minutes); None when *text* is not an offset."""
    m = _OFFSET.match(text)
    if not m:
        return None
    unit = {"s": 1, "m": 60, "min": 60, "h": 3600, None: 60}[m.group(2)]
    return float(m.group(1)) * unit


_QUESTION_TEXT = re.compile(r"^Q\d{1,3}(?=[\s:.)\-–—,/]|$)")


class ScheduledQuestion(StrictModel):
    """A question the bridge posts for the host (``[[communities.events.questions]]``)."""

    offset: str
    """After the occurrence's start: ``"10m"``, ``"90s"``, ``"1h"`` (a bare number:
    minutes)."""
    text: str = Field(min_length=1, max_length=2000)
    """Starts with its number, ``Q1: ...``, as the host would write it."""

    @field_validator("offset")
    @classmethod
    def _offset(cls, v: str) -> str:
        if parse_offset(v) is None:
            raise ValueError(f"{v!r} is not a time after the start; write minutes like "
                             "\"10m\", or \"90s\", \"1h\"")
        return v.strip()

    @field_validator("text")
    @classmethod
    def _numbered(cls, v: str) -> str:
        if not _QUESTION_TEXT.match(v.strip()):
            raise ValueError(f"{v[:40]!r} does not start with its question number; write "
                             "\"Q1: ...\", \"Q2: ...\" so the live page and the transcript "
                             "see a question")
        return v.strip()

    @property
    def seconds(self) -> float:
        got = parse_offset(self.offset)
        assert got is not None
        return got


class ChatEventConfig(StrictModel):
    """One recurring chat event of a community (``[[communities.events]]``)."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    title: str = Field(min_length=1, max_length=200)
    description: str = ""
    timezone: str = "UTC"
    day: Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday",
                 "sunday"] | None = None
    time: str | None = Field(None, pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    """Local start time ``HH:MM`` (with ``day``)."""
    rrule: str | None = None
    """An RFC 5545 recurrence rule instead of ``day``/``time``."""
    dtstart: datetime | None = None
    """First occurrence, local time in ``timezone`` (required with ``rrule``)."""
    duration_minutes: float = Field(60.0, gt=0, le=24 * 60)
    hosts: list[str] = Field(default_factory=list)
    """Accounts, never display names: ``platform:handle`` (``mastodon:@alice@example.social``,
    ``matrix:@alice:example.org``, ``twitter:@alice`` or X's numeric user id
    ``twitter:783214``), or a bare handle matched on any platform; empty: anyone may ask
    numbered questions."""
    announce: bool = True
    guest: str | None = None
    """Another community of this config (its name) blended in during the event
    (#chatmixer): posts of either are shown and relayed in both
    (:mod:`bridge.runtime.blend`)."""
    questions: list[ScheduledQuestion] = Field(default_factory=list)
    """Questions the bridge posts for the first host at their offset."""
    start_message: str = START_MESSAGE
    end_message: str = END_MESSAGE

    @field_validator("hosts")
    @classmethod
    def _host_accounts(cls, hosts: list[str]) -> list[str]:
        for i, host in enumerate(hosts):
            h = host.strip()
            _, sep, handle = h.partition(":")
            if not h or any(c.isspace() for c in h) or (sep and not handle):
                raise ValueError(
                    f"hosts[{i}] = {host!r} is not an account: hosts are matched by account, "
                    "never by display name (anyone can call themselves anything); write "
                    "platform:handle, e.g. \"mastodon:@alice@example.social\", "
                    "\"matrix:@alice:example.org\" or \"twitter:@alice\"")
        return [h.strip() for h in hosts]

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (use an IANA name like "
                             "'Europe/Paris')") from None
        return v

    @model_validator(mode="after")
    def _schedule(self) -> ChatEventConfig:
        weekly = self.day is not None or self.time is not None
        if weekly and self.rrule:
            raise ValueError("give either day and time, or rrule, not both")
        if weekly and (self.day is None or self.time is None):
            raise ValueError("a weekly event needs both day and time")
        if not weekly and not self.rrule:
            raise ValueError("needs a schedule: day and time, or rrule (with dtstart)")
        if self.rrule:
            if self.dtstart is None:
                raise ValueError("rrule needs dtstart (the first occurrence, local time)")
            try:
                _rule(self)
            except ImportError:
                raise ValueError("rrule needs python-dateutil: pip install "
                                 "'hashbridge[web]'") from None
            except (ValueError, TypeError) as e:
                raise ValueError(f"rrule: {e}") from None
        if self.questions and not self.hosts:
            raise ValueError("questions: the bridge posts them as the event's first host, "
                             "and hosts is empty; name the host in hosts = [\"platform:handle\"]")
        for qi, q in enumerate(self.questions):
            if q.seconds >= self.duration_minutes * 60:
                raise ValueError(f"questions[{qi}].offset: {q.offset!r} is not before the "
                                 f"event's end (duration_minutes = {self.duration_minutes:g})")
        for field_name in ("start_message", "end_message"):
            try:
                getattr(self, field_name).format(**_TEMPLATE_PROBE)
            except (KeyError, IndexError, ValueError) as e:
                raise ValueError(f"{field_name}: unknown placeholder {e}") from None
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def duration(self) -> timedelta:
        return timedelta(minutes=self.duration_minutes)

    def schedule_text(self) -> str:
        if self.day and self.time:
            return f"every {self.day.title()} at {self.time} ({self.timezone})"
        return f"{self.rrule} from {self.dtstart} ({self.timezone})"


_TEMPLATE_PROBE = dict(title="", end="", hosts="", hashtag="", url="", answers=0, people=0,
                       networks=0, questions=0, answers_text="", people_text="",
                       networks_text="", questions_text="")


def _rule(ev: ChatEventConfig, anchor: datetime | None = None) -> Any:
    """The event's rule; for a day/time event, anchored at *anchor* (naive local
    time) when given: any anchor before a window gives the same dates in it, and
    one close to it spares iterating every week since 2020."""
    from dateutil.rrule import rrulestr  # type: ignore[import-untyped,unused-ignore]

    if ev.rrule:
        assert ev.dtstart is not None
        start = ev.dtstart.replace(tzinfo=None)
        return rrulestr(ev.rrule, dtstart=start)
    assert ev.day is not None and ev.time is not None
    hh, mm = (int(x) for x in ev.time.split(":"))
    byday = _RRULE_DAYS[DAYS.index(ev.day)]
    # An anchor in the past; the rule itself pins weekday and time.
    return rrulestr(f"FREQ=WEEKLY;BYDAY={byday};BYHOUR={hh};BYMINUTE={mm};BYSECOND=0",
                    dtstart=anchor or datetime(2020, 1, 1))


@dataclass(frozen=True, slots=True)
class Occurrence:
    event: ChatEventConfig
    start: datetime
    """UTC."""
    end: datetime

    @property
    def key(self) -> str:
        """Stable id in URLs and the cursors table: the UTC start."""
        return self.start.strftime("%Y%m%dT%H%M%SZ")

    def local_start(self) -> datetime:
        return self.start.astimezone(self.event.zone)

    def contains(self, when: datetime) -> bool:
        return self.start <= when < self.end


def occurrences(ev: ChatEventConfig, start: datetime, end: datetime) -> list[Occurrence]:
    """Occurrences overlapping [start, end) (aware datetimes), oldest first."""
    tz = ev.zone
    # Local wall-clock bounds, widened by a day to be safe across DST shifts.
    lo = (start - ev.duration).astimezone(tz).replace(tzinfo=None) - timedelta(days=1)
    hi = end.astimezone(tz).replace(tzinfo=None) + timedelta(days=1)
    out = []
    anchor = (lo - timedelta(days=8)).replace(hour=0, minute=0, second=0, microsecond=0)
    for local in _rule(ev, anchor).between(lo, hi, inc=True):
        s = local.replace(tzinfo=tz).astimezone(UTC)
        occ = Occurrence(ev, s, s + ev.duration)
        if occ.end > start and occ.start < end:
            out.append(occ)
    return out


def first_after(ev: ChatEventConfig, when: datetime) -> Occurrence | None:
    """The first occurrence starting at or after *when* (aware), if the rule has one."""
    tz = ev.zone
    # From a day earlier in local time: the UTC order is checked below (DST shifts).
    local = when.astimezone(tz).replace(tzinfo=None) - timedelta(days=1)
    anchor = (local - timedelta(days=8)).replace(hour=0, minute=0, second=0, microsecond=0)
    for found in _rule(ev, anchor).xafter(local, inc=True):
        s = found.replace(tzinfo=tz).astimezone(UTC)
        if s >= when:
            return Occurrence(ev, s, s + ev.duration)
    return None


def occurrence_at(ev: ChatEventConfig, key: str) -> Occurrence | None:
    """The occurrence whose :attr:`Occurrence.key` is *key*, if the rule has it."""
    try:
        when = datetime.strptime(key, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None
    for occ in occurrences(ev, when, when + timedelta(seconds=1)):
        if occ.key == key:
            return occ
    return None


def upcoming(events: Iterable[ChatEventConfig], now: datetime, *, days: int = 35,
             past_days: int = 0) -> list[Occurrence]:
    out = [o for ev in events
           for o in occurrences(ev, now - timedelta(days=past_days), now + timedelta(days=days))]
    return sorted(out, key=lambda o: (o.start, o.event.id))
