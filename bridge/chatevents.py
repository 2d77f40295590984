"""Chat events: the schedule, the Q1/A1 convention, transcripts and announcements.

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
daylight-saving changes) and handled in UTC everywhere else.  Everything but
:func:`run_announcements` is pure.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from bridge.adapter import StrictModel
from bridge.model import Post
from bridge.textconv import to_plain

log = logging.getLogger("hashbridge.chatevents")

DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_RRULE_DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
CURSOR_ACCOUNT = "hashbridge.chatevents"
"""Announcements already made are recorded in the cursors table under this name,
so a restart never announces twice."""

START_MESSAGE = ("{title} starts now and runs until {end}. Hosted by {hosts}. Questions come "
                 "as Q1, Q2...; answer with A1, A2... and #{hashtag}. {url}")
END_MESSAGE = ("{title} is over: {answers} answers from {people} people on {networks} "
               "networks. Thank you! Transcript: {url}")


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
                       networks=0, questions=0)


def _rule(ev: ChatEventConfig) -> Any:
    from dateutil.rrule import rrulestr  # type: ignore[import-untyped,unused-ignore]

    if ev.rrule:
        assert ev.dtstart is not None
        start = ev.dtstart.replace(tzinfo=None)
        return rrulestr(ev.rrule, dtstart=start)
    assert ev.day is not None and ev.time is not None
    hh, mm = (int(x) for x in ev.time.split(":"))
    byday = _RRULE_DAYS[DAYS.index(ev.day)]
    # A fixed anchor in the past; the rule itself pins weekday and time.
    return rrulestr(f"FREQ=WEEKLY;BYDAY={byday};BYHOUR={hh};BYMINUTE={mm};BYSECOND=0",
                    dtstart=datetime(2020, 1, 1))


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
    for local in _rule(ev).between(lo, hi, inc=True):
        s = local.replace(tzinfo=tz).astimezone(UTC)
        occ = Occurrence(ev, s, s + ev.duration)
        if occ.end > start and occ.start < end:
            out.append(occ)
    return out


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


# ---------------------------------------------------------------- Q1/A1

_QA = re.compile(r"^\W{0,3}([QA])\s?(\d{1,3})(?=[\s:.)\-–—,/]|$)", re.IGNORECASE)
_LEADING_MENTIONS = re.compile(r"^(?:\s*@\S+)+\s+")
"""Replies on X and Mastodon start with the handles they answer: ``@alice A1: ...``."""


def recognise(text: str) -> tuple[Literal["Q", "A"], int] | None:
    """``("Q", 1)`` for ``Q1: ...``, ``("A", 2)`` for ``A2 ...``; None otherwise."""
    m = _QA.match(_LEADING_MENTIONS.sub("", text.strip(), count=1))
    if not m:
        return None
    kind: Literal["Q", "A"] = "Q" if m.group(1).upper() == "Q" else "A"
    return kind, int(m.group(2))


def is_host(ev: ChatEventConfig, post: Post) -> bool:
    """Whether *post*'s author may open questions: by account (handle, or the
    platform's account id), never by display name."""
    if not ev.hosts:
        return True
    a = post.author
    for host in ev.hosts:
        h = host.casefold().strip()
        platform, sep, handle = h.partition(":")
        if not (sep and platform.isalpha() and handle):
            platform, handle = "", h
        if platform and platform != a.platform.casefold():
            continue
        if a.account_id and handle.isdigit():
            # X's user id, which stays when the account is renamed (write a
            # username made of digits as @123).
            if handle == a.account_id:
                return True
        elif handle.lstrip("@") == a.handle.casefold().lstrip("@"):
            return True
    return False


@dataclass(frozen=True, slots=True)
class Question:
    number: int
    post: Post | None
    """The host's question (None: answers arrived for a question never asked)."""
    answers: tuple[Post, ...]


@dataclass(frozen=True, slots=True)
class Transcript:
    occurrence: Occurrence
    questions: tuple[Question, ...]
    other: tuple[Post, ...]
    """Posts of the event that are neither a question nor an answer."""
    participants: dict[str, tuple[str, ...]]
    """Network name -> people who posted from it, in order of appearance."""
    counts: dict[str, int]
    """Network name -> posts from it."""

    @property
    def answer_count(self) -> int:
        return sum(len(q.answers) for q in self.questions)

    @property
    def people(self) -> int:
        return len({p for names in self.participants.values() for p in names})


def build_transcript(occ: Occurrence, posts: Sequence[Post],
                     network_of: Callable[[Post], str]) -> Transcript:
    """Group the event's posts by question.  *posts* are the visible posts of the
    community in the event's window, oldest first (notices are left out)."""
    asked: dict[int, Post] = {}
    answers: dict[int, list[Post]] = {}
    by_question_post: dict[str, int] = {}
    other: list[Post] = []
    participants: dict[str, list[str]] = {}
    counts: dict[str, int] = {}
    for post in posts:
        if post.is_notice or not occ.contains(post.created_at):
            continue
        net = network_of(post)
        counts[net] = counts.get(net, 0) + 1
        people = participants.setdefault(net, [])
        if post.author.name not in people:
            people.append(post.author.name)
        found = recognise(to_plain(post.text))
        if found and found[0] == "Q" and found[1] not in asked and is_host(occ.event, post):
            asked[found[1]] = post
            by_question_post[post.id] = found[1]
            answers.setdefault(found[1], [])
        elif found and found[0] == "A":
            answers.setdefault(found[1], []).append(post)
        elif post.reply_to is not None and post.reply_to in by_question_post:
            # An answer that forgot its A-number but replies to the question.
            answers[by_question_post[post.reply_to]].append(post)
        else:
            other.append(post)
    questions = tuple(Question(n, asked.get(n), tuple(answers.get(n, ())))
                      for n in sorted(set(asked) | set(answers)))
    return Transcript(occ, questions, tuple(other),
                      {k: tuple(v) for k, v in participants.items()}, counts)


# ---------------------------------------------------------------- announcements

def start_text(occ: Occurrence, hashtag: str, url: str) -> str:
    ev = occ.event
    end = occ.end.astimezone(ev.zone).strftime("%H:%M %Z")
    return ev.start_message.format(title=ev.title, end=end, hashtag=hashtag, url=url,
                                   hosts=", ".join(ev.hosts) or "the community",
                                   answers=0, people=0, networks=0, questions=0).strip()


def end_text(occ: Occurrence, hashtag: str, url: str, transcript: Transcript) -> str:
    ev = occ.event
    return ev.end_message.format(
        title=ev.title, end="", hashtag=hashtag, url=url, hosts=", ".join(ev.hosts),
        answers=transcript.answer_count, people=transcript.people,
        networks=len(transcript.participants), questions=len(transcript.questions)).strip()


TranscriptOf = Callable[[str, Occurrence], Awaitable[Transcript]]


async def run_announcements(bridge: Any, *, base_url: Callable[[], str] = lambda: "",
                            now: Callable[[], float] = time.time, grace: float = 900.0,
                            transcript_of: TranscriptOf | None = None) -> None:
    """Announce every event's start and end on every channel, until cancelled.

    A boundary missed by less than *grace* seconds (the bridge was restarting)
    is still announced; older ones are not (a stale "starts now" misleads).
    """
    while True:
        t = now()
        try:
            soonest = await announce_due(bridge, t, base_url=base_url(), grace=grace,
                                         transcript_of=transcript_of)
        except Exception:  # the store or the relay refused: try again shortly
            log.exception("chat-event announcements failed; retrying in a minute")
            soonest = t + 60.0
        await asyncio.sleep(max(0.05, min(soonest, t + 60.0) - now()))


async def announce_due(bridge: Any, t: float, *, base_url: str, grace: float,
                       transcript_of: TranscriptOf | None) -> float:
    """Make the announcements due at epoch *t*; return when the next one is due."""
    from bridge.textconv import from_plain

    current = datetime.fromtimestamp(t, UTC)
    soonest = t + 60.0
    for comm in bridge.config.communities:
        for ev in comm.settings.events:
            if not ev.announce:
                continue
            for occ in occurrences(ev, current - timedelta(seconds=grace),
                                   current + timedelta(days=2)):
                for which, at in (("start", occ.start), ("end", occ.end)):
                    ts = at.timestamp()
                    if ts > t:
                        soonest = min(soonest, ts)
                        continue
                    if t - ts > grace or (which == "end" and transcript_of is None):
                        continue
                    marker = f"{comm.name}/{ev.id}/{occ.key}/{which}"
                    done = await bridge.store.run(
                        lambda tx, m=marker: tx.get_cursor(CURSOR_ACCOUNT, m))
                    if done:
                        continue
                    if which == "start":
                        link = f"{base_url}/c/{comm.name}" if base_url else ""
                        text = start_text(occ, comm.settings.hashtag, link)
                    else:
                        assert transcript_of is not None
                        link = (f"{base_url}/c/{comm.name}/events/{ev.id}/{occ.key}"
                                if base_url else "")
                        text = end_text(occ, comm.settings.hashtag, link,
                                        await transcript_of(comm.name, occ))
                    # Marker first, in its own commit: a crash between the two
                    # loses one announcement rather than repeating it forever.
                    await bridge.store.run(
                        lambda tx, m=marker: tx.set_cursor(CURSOR_ACCOUNT, m, str(time.time())))
                    await bridge.announce(comm.name, from_plain(text))
                    log.info("announced %s of %s (%s)", which, ev.id, occ.key)
    return soonest
