"""Chat events: schedule arithmetic, Q1/A1 recognition, transcripts, and a scripted
event run end to end through the real relay, announcer and web view."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from xml.etree import ElementTree as ET

import aiohttp
import icalendar
import pytest
from dateutil.rrule import rrulestr
from webhelp import NETWORKS, eventually, live_bridge

from bridge.contract.model import Author, ChannelKey, NativeId, Post, PostId
from bridge.contract.textconv import from_plain
from bridge.daemon.harness import build_config, sandbox_channels
from bridge.features.chatevents import build_transcript, is_host, recognise
from bridge.runtime.config import ConfigError
from bridge.runtime.schedule import (
    ChatEventConfig,
    Occurrence,
    occurrence_at,
    occurrences,
    upcoming,
)
from bridge.web.feeds import calendar

WEEKLY = ChatEventConfig(id="weekly", title="#kmers chat", day="wednesday", time="20:00",
                         timezone="Europe/Paris", hosts=["alice", "mastodon:@bob@ex.social"])


def test_weekly_keeps_local_time_across_daylight_saving() -> None:
    occ = occurrences(WEEKLY, datetime(2026, 3, 16, tzinfo=UTC), datetime(2026, 4, 6, tzinfo=UTC))
    assert [o.local_start().strftime("%a %H:%M") for o in occ] == ["Wed 20:00"] * 3
    # Paris moves to summer time on 29 March: the UTC hour changes, the local one does not.
    assert [o.start.hour for o in occ] == [19, 19, 18]
    assert all(o.end - o.start == timedelta(hours=1) for o in occ)


def test_rrule_and_occurrence_keys() -> None:
    ev = ChatEventConfig(id="monthly", title="t", rrule="FREQ=MONTHLY;BYDAY=1TU",
                         dtstart=datetime(2026, 1, 6, 18, 0), timezone="America/New_York",
                         duration_minutes=90)
    occ = upcoming([ev], datetime(2026, 2, 1, tzinfo=UTC), days=62)
    assert [o.local_start().date().isoformat() for o in occ] == ["2026-02-03", "2026-03-03"]
    again = occurrence_at(ev, occ[0].key)
    assert again == occ[0]
    assert occurrence_at(ev, "20260204T230000Z") is None
    assert occurrence_at(ev, "garbage") is None


@pytest.mark.parametrize(("text", "expected"), [
    ("Q1: what got you here?", ("Q", 1)), ("q2 - next", ("Q", 2)), ("A1: curiosity", ("A", 1)),
    ("a12. late answer", ("A", 12)), ("  A3 yes", ("A", 3)), ("Q1", ("Q", 1)),
    ("@alice @bob@ex.social A2: from a reply", ("A", 2)), ("@alice thanks", None),
    ("Quick question", None), ("A1B2 is a hex", None), ("Answer: 42", None), ("", None),
])
def test_recognise(text: str, expected: Any) -> None:
    assert recognise(text) == expected


def _post(pid: str, who: str, text: str, at: datetime, *, platform: str = "sandbox",
          channel: str = "kmers/sb_lobby", reply_to: str | None = None,
          notice: bool = False) -> Post:
    return Post(id=PostId(pid), community="kmers", origin_channel=ChannelKey(channel),
                origin_native_id=NativeId(pid), permalink="",
                author=Author(platform=platform, handle=who, display_name=who.title()),
                text=from_plain(text), reply_to=PostId(reply_to) if reply_to else None,
                created_at=at, is_notice=notice)


def test_is_host_by_handle_or_platform_qualified() -> None:
    t = datetime(2026, 3, 25, 19, 5, tzinfo=UTC)
    assert is_host(WEEKLY, _post("1", "alice", "Q1", t))
    assert is_host(WEEKLY, _post("2", "@bob@ex.social", "Q1", t, platform="mastodon"))
    assert not is_host(WEEKLY, _post("3", "@bob@ex.social", "Q1", t, platform="matrix"))
    assert not is_host(WEEKLY, _post("4", "mallory", "Q1", t))


def test_transcript_groups_by_question() -> None:
    occ = occurrence_at(WEEKLY, "20260325T190000Z")
    assert occ is not None
    t0 = occ.start
    net = {"kmers/sb_lobby": "Lobby", "kmers/sb_garden": "Garden"}
    posts = [
        _post("00", "carol", "A1 too early? still counts", t0 - timedelta(minutes=1)),
        _post("01", "alice", "Q1: why k-mers?", t0 + timedelta(minutes=1)),
        _post("02", "bob", "A1: speed", t0 + timedelta(minutes=2), channel="kmers/sb_garden"),
        _post("03", "mallory", "Q2: not a host", t0 + timedelta(minutes=3)),
        _post("04", "dave", "memory, mostly", t0 + timedelta(minutes=4), reply_to="01"),
        _post("05", "alice", "Q2: which tools?", t0 + timedelta(minutes=5)),
        _post("06", "erin", "a2 jellyfish", t0 + timedelta(minutes=6), channel="kmers/sb_garden"),
        _post("07", "bridge", "starts now", t0, notice=True),
        _post("08", "erin", "A3: answer to nothing", t0 + timedelta(minutes=7)),
        _post("09", "late", "A1 after the end", occ.end),
    ]
    t = build_transcript(occ, posts, lambda p: net[p.origin_channel])
    assert [(q.number, q.post.id if q.post else None, [a.id for a in q.answers])
            for q in t.questions] == [(1, "01", ["02", "04"]), (2, "05", ["06"]), (3, None, ["08"])]
    assert [p.id for p in t.other] == ["03"]
    assert t.participants == {"Lobby": ("Alice", "Mallory", "Dave", "Erin"),
                              "Garden": ("Bob", "Erin")}
    assert t.counts == {"Lobby": 5, "Garden": 2}
    assert t.answer_count == 4 and t.people == 5


def test_event_config_errors_have_dotted_paths(tmp_path: Any) -> None:
    bad = [{"id": "x", "title": "t", "day": "wednesday"},
           {"id": "y", "title": "t", "rrule": "FREQ=SOMETIMES", "dtstart": "2026-01-01T10:00:00"},
           {"id": "z", "title": "t", "day": "monday", "time": "25:00", "timezone": "Mars/Base"}]
    with pytest.raises(ConfigError) as e:
        build_config(tmp_path, sandbox_channels(tmp_path), community_options={"events": bad})
    text = "\n".join(e.value.errors)
    assert "communities[0].events[0]" in text and "needs both day and time" in text
    assert "communities[0].events[1]" in text and "rrule" in text
    assert "events[2].time" in text and "events[2].timezone" in text


def test_ical_feed_parses_and_recurs_like_the_schedule() -> None:
    monthly = ChatEventConfig(id="monthly", title="Monthly <deep dive>",
                              rrule="FREQ=MONTHLY;BYDAY=1TU", dtstart=datetime(2026, 1, 6, 18),
                              timezone="America/New_York", duration_minutes=90)
    now = datetime(2026, 3, 1, tzinfo=UTC)
    cal = icalendar.Calendar.from_ical(calendar("kmers", "kmers", [WEEKLY, monthly],
                                                "https://example.org/c/kmers", now))
    vevents = {str(v["uid"]): v for v in cal.walk("VEVENT")}
    assert set(vevents) == {"weekly.kmers@hashbridge", "monthly.kmers@hashbridge"}
    assert {tz["tzid"] for tz in cal.walk("VTIMEZONE")} == {"Europe/Paris", "America/New_York"}
    for ev in (WEEKLY, monthly):
        v = vevents[f"{ev.id}.kmers@hashbridge"]
        assert str(v["summary"]) == ev.title
        start = v.decoded("dtstart")
        assert v.decoded("duration") == ev.duration
        rule = rrulestr(v["rrule"].to_ical().decode(), dtstart=start.replace(tzinfo=None))
        theirs = [d.replace(tzinfo=start.tzinfo).astimezone(UTC)
                  for d in rule.between(datetime(2026, 3, 1), datetime(2026, 6, 1))]
        ours = [o.start for o in occurrences(ev, datetime(2026, 3, 1, tzinfo=UTC),
                                             datetime(2026, 6, 1, tzinfo=UTC))]
        assert theirs[:8] == ours[:8] and len(ours) >= 3


async def test_scripted_chat_event_end_to_end(tmp_path: Any) -> None:
    """Host Q1-Q3 on one network, answers from three: announcements on every
    channel at start and end, and a transcript grouped by question."""
    start = (datetime.now(UTC) + timedelta(seconds=3)).replace(microsecond=0)
    event = {"id": "live", "title": "Scripted chat", "rrule": "FREQ=DAILY", "timezone": "UTC",
             "dtstart": start.replace(tzinfo=None).isoformat(), "duration_minutes": 0.2,
             "hosts": ["alice"]}
    async with live_bridge(tmp_path, events=[event]) as live:
        lobby, garden, porch = (live.nets[n] for n in NETWORKS)

        async def announced(needle: str) -> bool:
            for box in live.nets.values():
                if not any(m.by_bridge and needle in m.text for m in await box.messages()):
                    return False
            return True

        await eventually(lambda: announced("starts now"), timeout=15, what="start announcement")
        q = {}
        for n in (1, 2, 3):
            q[n] = await lobby.post_as_member("alice", f"Q{n}: question number {n}? #kmers")
            await lobby.post_as_member("bob", f"A{n}: bob answers {n}")
            await garden.post_as_member("carol", f"A{n}: carol answers {n} from the garden")
            await porch.post_as_member("dave", f"A{n} dave answers {n} from the porch")
        await live.settle()
        assert datetime.now(UTC) < start + timedelta(seconds=12), "script ran past the event"
        await eventually(lambda: announced("is over"), timeout=20, what="end announcement")

        for box in live.nets.values():
            ends = [m for m in await box.messages() if m.by_bridge and "is over" in m.text]
            assert len(ends) == 1
            assert "9 answers from 4 people on 3 networks" in ends[0].text
            assert f"/c/kmers/events/live/{start:%Y%m%dT%H%M%SZ}" in ends[0].text
            starts = [m for m in await box.messages() if m.by_bridge and "starts now" in m.text]
            assert len(starts) == 1

        occ_key = start.strftime("%Y%m%dT%H%M%SZ")
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{live.url}/c/kmers/events/live/{occ_key}") as r:
                assert r.status == 200
                page = await r.text()
            async with s.get(f"{live.url}/c/kmers/events") as r:
                assert occ_key in await r.text()
            async with s.get(f"{live.url}/c/kmers/export.md?event=live/{occ_key}") as r:
                md = await r.text()
            async with s.get(f"{live.url}/c/kmers/events/live/feed.atom") as r:
                feed = ET.fromstring(await r.read())
    entries = feed.findall("{http://www.w3.org/2005/Atom}entry")
    assert len(entries) == 12  # three questions and nine answers, no announcements
    sections = page.split('<section class="question"')[1:]
    assert len(sections) == 3
    for n, sec in enumerate(sections, 1):
        assert f'id="q{n}"' in sec
        asked, answers = sec.split('class="posts answers"')
        assert f"question number {n}?" in asked
        got = re.findall(r"(bob|carol|dave) answers (\d)", answers)
        assert sorted(got) == [("bob", str(n)), ("carol", str(n)), ("dave", str(n))]
    rows = dict(re.findall(r'<tr class="participants" data-network="(\w+)"><th scope="row">'
                           r'\w+</th><td class="count">(\d+)</td>', page))
    assert rows == {"Lobby": "6", "Garden": "3", "Porch": "3"}
    assert "starts now" not in page  # the bridge's notices are not part of a transcript
    assert md.count("### Q") == 3 and "9 answers, 4 people" in md.replace("3 questions, ", "")


def test_occurrence_contains_is_half_open() -> None:
    s = datetime(2026, 1, 1, tzinfo=UTC)
    occ = Occurrence(WEEKLY, s, s + timedelta(hours=1))
    assert occ.contains(s) and not occ.contains(s + timedelta(hours=1))


async def test_announcements_once_each_across_restarts_and_never_stale(tmp_path: Any) -> None:
    from adapters.sandbox import SandboxPlatform
    from bridge.daemon.harness import quiescent, running
    from bridge.features.chatevents import announce_due

    weekly = {"id": "weekly", "title": "Weekly", "day": "wednesday", "time": "20:00",
              "timezone": "Europe/Paris", "duration_minutes": 60, "hosts": ["alice"]}
    cfg = build_config(tmp_path, sandbox_channels(tmp_path, NETWORKS),
                       community_options={"events": [weekly]})
    occ = occurrence_at(ChatEventConfig(**weekly), "20260325T190000Z")
    assert occ is not None
    start, end = occ.start.timestamp(), occ.end.timestamp()
    nets = [SandboxPlatform(str(tmp_path / "networks"), n) for n in NETWORKS]

    async def transcript_of(community: str, o: Occurrence) -> Any:
        return build_transcript(o, [], lambda p: "?")

    async def due(bridge: Any, t: float) -> float:
        return await announce_due(bridge, t, base_url="https://kmers.example", grace=900,
                                  transcript_of=transcript_of)

    async with running(cfg) as bridge:
        assert await due(bridge, start - 5) == start  # nothing yet; next one at the start
        await due(bridge, start + 10)
        await due(bridge, start + 11)
        await quiescent(bridge)
    async with running(cfg) as bridge:  # a restart inside the grace period
        await due(bridge, start + 30)
        await due(bridge, end + 5)
        await due(bridge, end + 1000 + 7 * 86400)  # next week's end, long missed
        await quiescent(bridge)
    for net in nets:
        texts = [m.text for m in await net.messages() if m.by_bridge]
        assert len(texts) == 2, texts
        assert "Weekly starts now and runs until 21:00 CET" in texts[0]
        assert "https://kmers.example/c/kmers" in texts[0]
        assert "Weekly is over: 0 answers" in texts[1]
        assert "https://kmers.example/c/kmers/events/weekly/20260325T190000Z" in texts[1]
        await net.stop()
