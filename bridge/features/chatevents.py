"""Chat events: the Q1/A1 convention, transcripts and announcements.

A community declares recurring events (``[[communities.events]]``); the schedule and its
occurrences are :mod:`bridge.runtime.schedule`.  During an occurrence the host's numbered
questions and the members' answers make the transcript; the start and end are announced
on every network.  Everything here but :func:`run_announcements` is pure.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from bridge.contract.model import Post
from bridge.contract.textconv import to_plain
from bridge.features.schedule_text import plural
from bridge.runtime.schedule import ChatEventConfig, Occurrence, occurrences

log = logging.getLogger("hashbridge.chatevents")

CURSOR_ACCOUNT = "hashbridge.chatevents"
"""Announcements already made are recorded in the cursors table under this name,
so a restart never announces twice."""


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

_SHOWN_PLATFORM = {"twitter": "X", "mastodon": "Mastodon", "matrix": "Matrix",
                   "email": "email", "bluesky": "Bluesky"}


def shown_host(entry: str) -> str:
    """A ``hosts`` entry as members see the person: ``twitter:kmershost`` is
    ``@kmershost on X``, never the config's text."""
    platform, sep, handle = entry.partition(":")
    if not sep or entry.startswith("@") or not platform.isalpha():
        return entry
    if platform in ("twitter", "mastodon", "bluesky") and not handle.startswith("@") \
            and not handle.isdigit():
        handle = "@" + handle
    return f"{handle} on {_SHOWN_PLATFORM.get(platform, platform.title())}"


def start_text(occ: Occurrence, hashtag: str, url: str) -> str:
    ev = occ.event
    end = occ.end.astimezone(ev.zone).strftime("%H:%M %Z")
    return ev.start_message.format(title=ev.title, end=end, hashtag=hashtag, url=url,
                                   hosts=", ".join(map(shown_host, ev.hosts))
                                   or "the community",
                                   **counts(0, 0, 0, 0)).strip()


def end_text(occ: Occurrence, hashtag: str, url: str, transcript: Transcript) -> str:
    ev = occ.event
    return ev.end_message.format(
        title=ev.title, end="", hashtag=hashtag, url=url,
        hosts=", ".join(map(shown_host, ev.hosts)),
        **counts(transcript.answer_count, transcript.people, len(transcript.participants),
                 len(transcript.questions))).strip()


def counts(answers: int, people: int, networks: int, questions: int) -> dict[str, Any]:
    """The numbers an announcement may name: bare (``{answers}``, as before) and in
    words with their plural (``{answers_text}``: "1 answer", "2 answers")."""
    return {"answers": answers, "people": people, "networks": networks, "questions": questions,
            "answers_text": plural(answers, "answer"), "people_text": plural(people, "person"),
            "networks_text": plural(networks, "network"),
            "questions_text": plural(questions, "question")}


TranscriptOf = Callable[[str, Occurrence], Awaitable[Transcript]]


async def run_announcements(bridge: Any, *, base_url: Callable[[], str] = lambda: "",
                            now: Callable[[], float] = time.time, grace: float = 900.0,
                            transcript_of: TranscriptOf | None = None) -> None:
    """Announce every event's start and end on every channel, until cancelled.

    A boundary missed by less than *grace* seconds (the bridge was restarting)
    is still announced; older ones are not (a stale "starts now" misleads).
    The events' scheduled questions are posted alongside
    (:func:`bridge.features.questions.run_questions`).
    """
    from bridge.features.questions import run_questions

    async with asyncio.TaskGroup() as tg:
        tg.create_task(run_questions(bridge, now=now), name="scheduled-questions")
        await _announce_forever(bridge, base_url=base_url, now=now, grace=grace,
                                transcript_of=transcript_of)


async def _announce_forever(bridge: Any, *, base_url: Callable[[], str],
                            now: Callable[[], float], grace: float,
                            transcript_of: TranscriptOf | None) -> None:
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
    from bridge.contract.textconv import from_plain

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
                    # Several processes on one database all run this loop: one
                    # claims the announcement (an insert only the first gets in).
                    if not await bridge.store.run(lambda tx, m=marker: tx.state_add(
                            CURSOR_ACCOUNT, "claimed", m, str(time.time()))):
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


# ---------------------------------------------------------------- live transcript

Where = Literal["question", "answer", "other", "none"]


@dataclass(frozen=True, slots=True)
class Place:
    """Where a post stands in a transcript (for a page updating it live)."""

    where: Where
    """``none``: not part of it (outside the window, deleted, hidden, a notice)."""
    number: int | None = None
    """The question's number, for ``question`` and ``answer``."""
    before: str | None = None
    """The id of the post it comes just before in its list (None: it is the last)."""
    post: Post | None = None


def place(t: Transcript, post_id: str) -> Place:
    """Where post *post_id* goes in *t*: under which question, or among the others."""
    def after(posts: Sequence[Post]) -> str | None:
        ids: list[str] = [p.id for p in posts]
        i = ids.index(post_id)
        return ids[i + 1] if i + 1 < len(ids) else None

    for q in t.questions:
        if q.post is not None and q.post.id == post_id:
            return Place("question", q.number, None, q.post)
        for a in q.answers:
            if a.id == post_id:
                return Place("answer", q.number, after(q.answers), a)
    for p in t.other:
        if p.id == post_id:
            return Place("other", None, after(t.other), p)
    return Place("none")
