"""Scheduled questions: ``[[communities.events.questions]]``, posted by the bridge
in the host's name at their offset after each occurrence's start.

A question is the event's first host's post (author, network), so the live page
and the transcript treat it as the host's question.  It goes out on every
writable channel of the community (and of a blended event's guest).  The record
that it was posted is written in the same store transaction as the post
(:meth:`bridge.inbound.relay.Relay.post_question`): a restart, or a second
process on the same database, never posts it twice.  A question missed by at
most :data:`GRACE` seconds (the bridge was restarting) is still posted; never
after the occurrence ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from bridge.contract.model import Author, ChannelKey, NativeId, Post, new_post_id
from bridge.contract.textconv import from_plain
from bridge.runtime.config import CommunityConfig
from bridge.runtime.schedule import ChatEventConfig, Occurrence, ScheduledQuestion, occurrences

log = logging.getLogger("hashbridge.questions")

GRACE = 300.0
"""Seconds late a question may still be posted."""


def host_author(ev: ChatEventConfig, comm: CommunityConfig) -> tuple[Author, ChannelKey]:
    """The event's first host as a post's author, and the channel whose network the
    question is shown from (a channel of the host's platform, else the first that
    reads)."""
    entry = ev.hosts[0]
    platform, sep, handle = entry.partition(":")
    if not sep or entry.startswith("@") or not platform.isalpha():
        platform, handle = "", entry
    channels = [c for c in comm.channels if c.reads] or list(comm.channels)
    shown = next((c for c in channels if c.platform == platform), channels[0])
    name = handle.strip()
    return Author(platform=platform or shown.platform, handle=name, display_name=name), \
        shown.key


def question_post(comm: CommunityConfig, occ: Occurrence, index: int,
                  q: ScheduledQuestion, at: datetime) -> Post:
    author, shown = host_author(occ.event, comm)
    return Post(id=new_post_id(), community=comm.name, origin_channel=shown,
                origin_native_id=NativeId(f"question:{occ.event.id}/{occ.key}/{index}"),
                permalink="", author=author, text=from_plain(q.text), created_at=at)


def marker(comm: CommunityConfig, occ: Occurrence, index: int) -> str:
    return f"{comm.name}/{occ.event.id}/{occ.key}/{index}"


async def post_due(bridge: Any, t: float, *, grace: float = GRACE,
                   done: set[str] | None = None) -> float:
    """Post the questions due at epoch *t*; return when the next one is due.
    *done*: markers this process knows are posted (saves a store round trip)."""
    current = datetime.fromtimestamp(t, UTC)
    soonest = t + 60.0
    for comm in bridge.config.communities:
        for ev in comm.settings.events:
            if not ev.questions:
                continue
            for occ in occurrences(ev, current - timedelta(seconds=grace),
                                   current + timedelta(days=1)):
                for index, q in enumerate(ev.questions):
                    due = occ.start.timestamp() + q.seconds
                    if due > t:
                        soonest = min(soonest, due)
                        continue
                    if t - due > grace or t >= occ.end.timestamp():
                        continue
                    mark = marker(comm, occ, index)
                    if done is not None and mark in done:
                        continue
                    at = datetime.fromtimestamp(t, UTC)
                    posted = await bridge.post_question(
                        comm.name, mark, question_post(comm, occ, index, q, at))
                    if done is not None:
                        done.add(mark)
                    if posted:
                        log.info("posted %s's question %d of %s (%s), %.0fs after its time",
                                 comm.name, index + 1, ev.id, occ.key, t - due)
    return soonest


async def run_questions(bridge: Any, *, now: Callable[[], float] = time.time,
                        grace: float = GRACE) -> None:
    """Post every event's scheduled questions on time, until cancelled."""
    if not any(ev.questions for c in bridge.config.communities for ev in c.settings.events):
        return
    done: set[str] = set()
    while True:
        t = now()
        try:
            soonest = await post_due(bridge, t, grace=grace, done=done)
        except Exception:  # the store refused: try again shortly
            log.exception("scheduled questions failed; retrying in ten seconds")
            soonest = t + 10.0
        await asyncio.sleep(max(0.05, min(soonest, t + 60.0) - now()))
