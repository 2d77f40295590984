"""Scheduled questions: posted on time in the host's name on every writing
network, once (across a restart on the same store too), at most five minutes
late and never after the occurrence ends.

The real bridge, relay and store; the platforms are the shipped FakeAdapter.  The
clock is the one argument the loop takes: each test names the instant."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bridge.contract.adapter import SendCreate
from bridge.contract.testing import FakeAdapter, FakeFactory
from bridge.daemon.harness import quiescent, running
from bridge.daemon.supervisor import Bridge
from bridge.features.chatevents import build_transcript
from bridge.features.questions import post_due
from bridge.runtime.config import Config, parse
from bridge.runtime.registry import load_factories

START = datetime(2026, 1, 1, 18, 0, tzinfo=UTC).timestamp()
"""The one occurrence: 18:00-19:00 UTC."""


def config(tmp_path: Path, fakes: dict[str, FakeAdapter]) -> Config:
    base = load_factories()
    reg = type(base)({**base.factories, "fake": FakeFactory(fakes)})
    raw: dict[str, Any] = {
        "bridge": {"data_dir": str(tmp_path / "data")},
        "accounts": {"fa": {"platform": "fake", "display_name": "FA"},
                     "fb": {"platform": "fake", "display_name": "FB"}},
        "communities": [{
            "name": "kmers", "hashtag": "kmers",
            "channels": [{"account": "fa", "spot": "a"}, {"account": "fb", "spot": "b"}],
            "events": [{"id": "weekly", "title": "#kmers chat", "timezone": "UTC",
                        "rrule": "FREQ=DAILY;COUNT=1", "dtstart": datetime(2026, 1, 1, 18),
                        "duration_minutes": 60, "announce": False,
                        "hosts": ["fake:hostess"],
                        "questions": [{"offset": "10m", "text": "Q1: what do you count?"},
                                      {"offset": "58m", "text": "Q2: last words?"}]}]}]}
    return parse(raw, reg, {})


class Env:
    def __init__(self, bridge: Bridge, fakes: dict[str, FakeAdapter]) -> None:
        self.bridge, self.fakes = bridge, fakes

    def sent(self, account: str) -> list[str]:
        return [op.rendered.plain for op in self.fakes[account].sent
                if isinstance(op, SendCreate)]

    async def at(self, t: float) -> None:
        await post_due(self.bridge, t)
        await quiescent(self.bridge, timeout=30, settle=0.15)


@pytest.fixture
def fakes() -> dict[str, FakeAdapter]:
    return {"FA": FakeAdapter(), "FB": FakeAdapter()}


@pytest.fixture
async def env(tmp_path: Path, fakes: dict[str, FakeAdapter]) -> AsyncIterator[Env]:
    async with running(config(tmp_path, fakes)) as bridge:
        yield Env(bridge, fakes)


async def test_posted_on_time_in_the_hosts_name_on_every_network_once(env: Env) -> None:
    await env.at(START + 9 * 60)
    assert env.sent("FA") == env.sent("FB") == []
    await env.at(START + 10 * 60 + 1)
    for account in ("FA", "FB"):
        [text] = env.sent(account)
        assert "hostess" in text and text.endswith("Q1: what do you count?")
    await env.at(START + 12 * 60)  # asked again later: already posted
    assert len(env.sent("FA")) == len(env.sent("FB")) == 1
    # The transcript sees the host's question.
    posts = await env.bridge.store.run(lambda tx: tx.recent_posts("kmers"))
    ev = env.bridge.config.communities[0].settings.events[0]
    from bridge.runtime.schedule import occurrences

    [occ] = occurrences(ev, datetime.fromtimestamp(START, UTC),
                        datetime.fromtimestamp(START + 1, UTC))
    transcript = build_transcript(occ, posts, lambda p: "Fake")
    [q] = transcript.questions
    assert q.number == 1 and q.post is not None and q.post.author.handle == "hostess"


async def test_at_most_five_minutes_late(env: Env) -> None:
    await env.at(START + 10 * 60 + 301)  # the bridge was down past the grace
    assert env.sent("FA") == []


async def test_never_after_the_occurrence_ends(env: Env) -> None:
    # Q2 is due at 18:58; at 19:00:30 it is within the grace but the chat is over.
    await env.at(START + 60 * 60 + 30)
    assert env.sent("FA") == []
    await env.at(START + 59 * 60)
    assert [t.endswith("Q2: last words?") for t in env.sent("FA")] == [True]


async def test_not_posted_twice_across_a_restart_on_the_same_store(
        tmp_path: Path, fakes: dict[str, FakeAdapter]) -> None:
    async with running(config(tmp_path, fakes)) as bridge:
        await Env(bridge, fakes).at(START + 10 * 60 + 5)
    assert len(Env(None, fakes).sent("FA")) == 1  # type: ignore[arg-type]
    async with running(config(tmp_path, fakes)) as bridge:
        await Env(bridge, fakes).at(START + 11 * 60)
        posts = await bridge.store.run(lambda tx: tx.recent_posts("kmers"))
    assert len(posts) == 1
    assert len(Env(None, fakes).sent("FA")) == 1  # type: ignore[arg-type]


async def test_two_loops_on_one_store_post_it_once(env: Env) -> None:
    # Two processes' loops (each with its own memory) due at the same moment.
    await asyncio.gather(post_due(env.bridge, START + 10 * 60 + 2, done=set()),
                         post_due(env.bridge, START + 10 * 60 + 3, done=set()))
    await quiescent(env.bridge, timeout=30, settle=0.15)
    assert len(env.sent("FA")) == len(env.sent("FB")) == 1


async def test_two_processes_on_one_postgresql_post_it_once(pg: Any, tmp_path: Path) -> None:
    """Two bridges on one PostgreSQL database (two processes' worth, in one event
    loop), both due at once: one question, one copy per network."""
    from adapters.sandbox import SandboxPlatform
    from bridge.daemon.harness import build_config, eventually, sandbox_channels

    url = pg.create_database("questions_twice")
    event = {"id": "weekly", "title": "#kmers chat", "timezone": "UTC",
             "rrule": "FREQ=DAILY;COUNT=1", "dtstart": datetime(2026, 1, 1, 18),
             "duration_minutes": 60, "announce": False, "hosts": ["sandbox:hostess"],
             "questions": [{"offset": "10m", "text": "Q1: what do you count?"}]}
    cfg = build_config(tmp_path, sandbox_channels(tmp_path),
                       bridge_options={"database": url, "failover_seconds": 3},
                       community_options={"events": [event]})
    nets = {n: SandboxPlatform(str(tmp_path / "networks"), n) for n in ("lobby", "garden")}
    for n in nets.values():
        await n.start()

    async def copies() -> dict[str, int]:
        return {name: sum(1 for m in await net.messages() if "Q1: what do you count?" in m.text)
                for name, net in nets.items()}

    try:
        async with running(cfg) as a, running(cfg) as b:
            await asyncio.gather(post_due(a, START + 10 * 60 + 1, done=set()),
                                 post_due(b, START + 10 * 60 + 1, done=set()))
            await eventually(lambda: _all_one(copies), timeout=60, what="one copy each")
            await quiescent(a, timeout=60)
            await quiescent(b, timeout=60)
            posts = await a.store.run(lambda tx: tx.recent_posts("kmers"))
        assert len(posts) == 1
        assert await copies() == {"lobby": 1, "garden": 1}
    finally:
        for n in nets.values():
            await n.stop()


async def _all_one(copies: Any) -> bool:
    got = await copies()
    return bool(got) and all(v >= 1 for v in got.values())
