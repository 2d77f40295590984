"""The chat directory (``/``, ``/events.ics``), chats from before the bridge, plurals and
chats nobody posted in (issue 17 §3), through the real bridge and web view."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import icalendar
import pytest
from webhelp import ADMIN_TOKEN, NETWORKS, live_bridge, start_web, stop_web

from bridge.contract.model import Author, ChannelKey, NativeId, Post, PostId
from bridge.contract.textconv import from_plain
from bridge.daemon.harness import running
from bridge.daemon.supervisor import Bridge
from bridge.features.chatevents import build_transcript, end_text, place
from bridge.runtime.config import Config, ConfigError, load, parse
from bridge.runtime.registry import load_factories
from bridge.runtime.schedule import ChatEventConfig, occurrence_at, occurrences
from bridge.store import archive
from bridge.web.feeds import calendar_of
from bridge.web.site import templates


def _multi(tmp_path: Path, communities: Sequence[Mapping[str, Any]]) -> Config:
    """Two sandbox networks per community (channels on its own account)."""
    nets = str(tmp_path / "networks")
    raw = {"bridge": {"data_dir": str(tmp_path / "data"),
                      "web": {"listen": "127.0.0.1:0", "admin_token": ADMIN_TOKEN}},
           "accounts": {f"sb_{c['name']}": {"platform": "sandbox", "dir": nets,
                                            "display_name": c["name"].title()}
                        for c in communities},
           "communities": [{**c, "channels": [{"account": f"sb_{c['name']}",
                                               "network": f"{c['name']}-{side}"}
                                              for side in ("a", "b")]}
                           for c in communities]}
    return parse(raw, load_factories(), {})


@asynccontextmanager
async def _serving(cfg: Config) -> AsyncIterator[tuple[Bridge, str]]:
    async with running(cfg) as bridge:
        web = await start_web(bridge)
        try:
            yield bridge, bridge.services.web_url
        finally:
            await stop_web(web)


async def _get(url: str, **kw: Any) -> tuple[int, str, Mapping[str, str]]:
    async with aiohttp.ClientSession() as s, s.get(url, **kw) as r:
        return r.status, await r.text(), r.headers


def _local(dt: datetime) -> str:
    return dt.replace(tzinfo=None, microsecond=0).isoformat()


async def test_directory_lists_every_community_soonest_first(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    # Started before any of beta's hour-long chats could have: first even if one runs.
    running_event = {"id": "now", "title": "Running chat", "rrule": "FREQ=DAILY",
                     "dtstart": _local(now - timedelta(minutes=90)), "timezone": "UTC",
                     "duration_minutes": 240}
    soon = {"id": "soon", "title": "Soon chat", "rrule": "FREQ=MONTHLY;BYDAY=-1FR",
            "dtstart": "2026-01-30T19:00:00", "timezone": "Europe/Paris"}
    hourly = {"id": "hourly", "title": "Office hours", "rrule": "FREQ=HOURLY;COUNT=5",
              "dtstart": _local((now + timedelta(days=3)).astimezone(ZoneInfo("Asia/Kolkata"))),
              "timezone": "Asia/Kolkata"}
    weekly = {"id": "weekly", "title": "Weekly chat", "day": "thursday", "time": "12:00",
              "timezone": "America/New_York"}
    cfg = _multi(tmp_path, [
        {"name": "zeta", "hashtag": "zetachat"},  # no chats: listed last
        {"name": "beta", "hashtag": "betachat", "events": [soon, weekly]},
        {"name": "alpha", "hashtag": "AlphaChat", "events": [running_event],
         "description": "Alpha people & <friends>, every day."},
        {"name": "gamma", "hashtag": "gammachat", "events": [hourly]},
    ])
    async with _serving(cfg) as (_, url):
        status, page, _ = await _get(url + "/")
        ics_status, ics, headers = await _get(url + "/events.ics")
        one_status, one, _ = await _get(url + "/c/beta/events.ics")
    assert status == 200
    order = re.findall(r'<li class="community" id="c-(\w+)"', page)
    # alpha is running; gamma's next hour and beta's next Thursday or Friday come
    # before zeta, which has none.
    assert order[0] == "alpha" and order[-1] == "zeta" and set(order) == {
        "alpha", "beta", "gamma", "zeta"}
    alpha = page.split('id="c-alpha"')[1].split("</li>")[0]
    assert "#AlphaChat" in alpha and "(alpha)" in alpha
    assert "Alpha people &amp; &lt;friends&gt;, every day." in alpha
    assert "Now: Running chat" in alpha
    assert "Daily, " in alpha and " UTC" in alpha
    assert 'href="/c/alpha"' in alpha and 'href="/c/alpha/events"' in alpha
    assert 'href="/c/alpha/events.ics"' in alpha
    beta = page.split('id="c-beta"')[1].split("</li>")[0]
    assert "Soon chat: Monthly on the last Friday, 19:00 Europe/Paris" in beta
    assert "Weekly chat: Weekly on Thursday, 12:00 America/New_York" in beta
    assert ("Next: " in beta or "Now: " in beta) and 'data-local="day"' in beta
    gamma = page.split('id="c-gamma"')[1].split("</li>")[0]
    assert "FREQ" not in page and "(Asia/Kolkata)" in gamma
    starts = (now + timedelta(days=3)).astimezone(ZoneInfo("Asia/Kolkata"))
    assert f"Next: {starts:%a} {starts.day} {starts:%b}, {starts:%H:%M}; " in gamma
    zeta = page.split('id="c-zeta"')[1].split("</li>")[0]
    assert "No chat scheduled" in zeta
    assert '<script src="/static/localtime.js"' in page
    assert 'href="/events.ics"' in page

    assert ics_status == 200 and headers["Content-Type"].startswith("text/calendar")
    cal = icalendar.Calendar.from_ical(ics)
    uids = {str(v["uid"]) for v in cal.walk("VEVENT")}
    assert uids == {"now.alpha@hashbridge", "soon.beta@hashbridge", "weekly.beta@hashbridge",
                    "hourly.gamma@hashbridge"}
    assert {tz["tzid"] for tz in cal.walk("VTIMEZONE")} >= {
        "Europe/Paris", "America/New_York", "Asia/Kolkata"}
    # The same events as each community's own calendar.
    own = icalendar.Calendar.from_ical(one)
    for v in own.walk("VEVENT"):
        same = next(w for w in cal.walk("VEVENT") if w["uid"] == v["uid"])
        assert same.decoded("dtstart") == v.decoded("dtstart")
        assert same["rrule"].to_ical() == v["rrule"].to_ical()
    assert one_status == 200


async def test_one_community_opens_its_live_page(tmp_path: Path) -> None:
    async with live_bridge(tmp_path) as live:
        status, _, headers = await _get(live.url + "/", allow_redirects=False)
        ics_status, ics, _ = await _get(live.url + "/events.ics")
    assert status == 302 and headers["Location"] == "/c/kmers"
    assert ics_status == 200 and b"BEGIN:VCALENDAR" in ics.encode()


def test_combined_calendar_folds_lines_at_75_octets_and_escapes_text() -> None:
    title = ("Ünïcode, semicolons; back\\slashes — 日本語のチャット 🎉🎉 " * 3).strip()
    ev = ChatEventConfig(id="long", title=title[:200], day="monday", time="19:00",
                         timezone="Europe/Paris",
                         description="line one\nline two, with; specials\\ and 日本語 " * 4)
    body = calendar_of([("kmers", "kmers", [ev], "https://example.org/c/kmers"),
                        ("other", "other", [ev], "https://example.org/c/other")],
                       "hashbridge chats", datetime(2026, 12, 7, tzinfo=UTC))
    assert body.endswith(b"\r\n")
    lines = body.split(b"\r\n")[:-1]
    assert all(len(line) <= 75 for line in lines), max(lines, key=len)
    for line in lines:
        line.decode("utf-8")  # never a character cut in two by a fold
    unfolded = re.sub(rb"\r\n[ \t]", b"", body).decode("utf-8")
    summary = re.findall(r"^SUMMARY:(.*?)\r?$", unfolded, re.M)
    assert summary and summary[0] == (title[:200].replace("\\", "\\\\").replace(";", "\\;")
                                      .replace(",", "\\,"))
    assert "line one\\nline two\\, with\\; specials\\\\ and" in unfolded
    cal = icalendar.Calendar.from_ical(body)
    events = cal.walk("VEVENT")
    assert [str(e["uid"]) for e in events] == ["long.kmers@hashbridge", "long.other@hashbridge"]
    assert str(events[0]["summary"]) == title[:200]
    assert str(events[0]["description"]).startswith("line one\nline two, with; specials\\ and")


def test_description_is_one_line_of_at_most_280_characters(tmp_path: Path) -> None:
    def config(description: str) -> str:
        return ('[accounts.a]\nplatform = "sandbox"\ndir = "nets"\n\n[[communities]]\n'
                f'name = "kmers"\nhashtag = "kmers"\ndescription = {description}\n'
                '[[communities.channels]]\naccount = "a"\nnetwork = "lobby"\n'
                '[[communities.channels]]\naccount = "a"\nnetwork = "garden"\n')

    def errors(description: str) -> list[str]:
        p = tmp_path / "cfg.toml"
        p.write_text(config(description))
        p.chmod(0o600)
        try:
            load(str(p), load_factories(), {})
        except ConfigError as e:
            return e.errors
        return []

    assert errors('"' + "x" * 280 + '"') == []
    assert errors('"Thursdays at noon: k-mers, tools, people."') == []
    too_long = errors('"' + "x" * 281 + '"')
    assert len(too_long) == 1 and too_long[0].startswith("communities[0].description: ")
    assert "281 characters; at most 280" in too_long[0]
    two_lines = errors('"""first line\nsecond line"""')
    assert len(two_lines) == 1 and two_lines[0].startswith("communities[0].description: ")
    assert "one line" in two_lines[0]


WEEKLY = {"id": "weekly", "title": "Weekly chat", "day": "monday", "time": "09:00",
          "timezone": "UTC", "duration_minutes": 60, "hosts": ["alice"]}


async def test_chats_before_the_first_start_are_not_listed_and_answer_404(
        tmp_path: Path) -> None:
    now = datetime.now(UTC)
    live_event = {"id": "daily", "title": "Daily chat", "rrule": "FREQ=DAILY",
                  "dtstart": _local(now - timedelta(minutes=5)), "timezone": "UTC",
                  "duration_minutes": 60, "hosts": ["alice"]}
    async with live_bridge(tmp_path, events=[WEEKLY, live_event]) as live:
        recorded = await live.bridge.store.run(
            lambda tx: tx.state_get(*archive.FIRST_START, "kmers"))
        assert recorded is not None
        first = float(recorded)
        assert abs(first - now.timestamp()) < 120
        past = [o for o in occurrences(ChatEventConfig(**WEEKLY), now - timedelta(days=60), now)
                if o.end.timestamp() < first]
        assert len(past) >= 7
        status, events_page, _ = await _get(live.url + "/c/kmers/events")
        old_status, old_page, _ = await _get(
            f"{live.url}/c/kmers/events/weekly/{past[-1].key}")
        place_status, _, _ = await _get(
            f"{live.url}/c/kmers/events/weekly/{past[-1].key}/place/01JNOSUCHPOST0000000000000")
        running_key = occurrences(ChatEventConfig(**live_event), now, now + timedelta(
            seconds=1))[0].key
        run_status, run_page, _ = await _get(f"{live.url}/c/kmers/events/daily/{running_key}")
    assert status == 200
    weekly = events_page.split('id="ev-weekly"')[1].split("</section>")[0]
    assert not any(o.key in weekly for o in past)
    on_now = [o for o in occurrences(ChatEventConfig(**WEEKLY), now, now) if o.contains(now)]
    if on_now:  # the weekly chat happens to run during the test: listed, no posts yet
        assert on_now[0].key in weekly and "(no posts yet)" in weekly
    else:
        assert "none yet" in weekly
    assert "Weekly on Monday, 09:00 UTC; next: " in weekly
    daily = events_page.split('id="ev-daily"')[1].split("</section>")[0]
    assert running_key in daily and "(no posts yet)" in daily
    assert old_status == 404 and place_status == 404
    assert "ended before the bridge started relaying #kmers" in old_page
    assert run_status == 200 and "No posts yet." in run_page
    assert 'id="no-posts" hidden' not in run_page
    assert "happening now" in run_page and ">refresh</a>" in run_page


async def test_first_start_is_kept_and_chats_after_it_with_no_posts_say_so(
        tmp_path: Path) -> None:
    three_weeks = (datetime.now(UTC) - timedelta(days=21)).timestamp()
    async with live_bridge(tmp_path, events=[WEEKLY]) as live:
        # As if the bridge had first run three weeks ago (the first writer wins:
        # the record is only written where there is none).
        await live.bridge.store.run(lambda tx: tx.state_put(
            *archive.FIRST_START, "kmers", repr(three_weeks)))
        again = await live.bridge.store.run(
            lambda tx: archive.first_starts(tx, ["kmers"], datetime.now(UTC).timestamp()))
        assert again == {"kmers": three_weeks}
        # A post from before the first start (caught up, imported) keeps its chat.
        now = datetime.now(UTC)
        ev = ChatEventConfig(**WEEKLY)
        weeks = [o for o in occurrences(ev, now - timedelta(days=50), now) if o.end < now]
        old = weeks[0]
        assert old.end.timestamp() < three_weeks
        post = Post(id=PostId("01JOLDPOST0000000000000000"), community="kmers",
                    origin_channel=ChannelKey("kmers/sb_lobby"),
                    origin_native_id=NativeId("old-1"), permalink="",
                    author=Author(platform="sandbox", handle="bob", display_name="Bob"),
                    text=from_plain("A1: from the old days"),
                    created_at=old.start + timedelta(minutes=5))
        await live.bridge.store.run(lambda tx: tx.insert_post(post, "h-old"))
        status, page, _ = await _get(live.url + "/c/kmers/events")
        assert status == 200
        after = [o for o in weeks if o.end.timestamp() > three_weeks]
        assert after
        empty_status, empty_page, _ = await _get(
            f"{live.url}/c/kmers/events/weekly/{after[0].key}")
        old_status, old_page, _ = await _get(f"{live.url}/c/kmers/events/weekly/{old.key}")
        hidden = [o for o in weeks if o.end.timestamp() < three_weeks and o is not old]
        gone_status, _, _ = await _get(f"{live.url}/c/kmers/events/weekly/{hidden[-1].key}")
    weekly = page.split('id="ev-weekly"')[1].split("</section>")[0]
    for o in after:
        assert f"{o.key}</a>" not in weekly  # the link text is the date, the key in the href
        assert f"/weekly/{o.key}\"" in weekly
    assert weekly.count("(no posts)") == len(after)
    assert f"/weekly/{old.key}\"" in weekly
    assert not any(f"/weekly/{o.key}\"" in weekly for o in hidden)
    assert empty_status == 200 and "Nobody posted during this chat." in empty_page
    assert ">refresh</a>" not in empty_page and "transcript.js" not in empty_page
    assert old_status == 200 and "from the old days" in old_page and "1 answer<" in old_page
    assert gone_status == 404


async def test_plurals_in_transcripts_and_the_end_announcement(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    event = {"id": "daily", "title": "Daily chat", "rrule": "FREQ=DAILY",
             "dtstart": _local(now - timedelta(minutes=5)), "timezone": "UTC",
             "duration_minutes": 60, "hosts": ["alice"]}
    async with live_bridge(tmp_path, events=[event]) as live:
        lobby, garden = live.nets[NETWORKS[0]], live.nets[NETWORKS[1]]
        await lobby.post_as_member("alice", "Q1: one question?")
        await garden.post_as_member("bob", "A1: one answer")
        await garden.post_as_member("bob", "A2: an answer before its question")
        await live.settle()
        occ = occurrences(ChatEventConfig(**event), now, now + timedelta(seconds=1))[0]
        status, page, _ = await _get(f"{live.url}/c/kmers/events/daily/{occ.key}")
        md_status, md, _ = await _get(f"{live.url}/c/kmers/export.md?event=daily/{occ.key}")
        early = await live.post_id_of("an answer before its question")
        base = f"{live.url}/c/kmers/events/daily/{occ.key}/place/"
        async with aiohttp.ClientSession() as s:
            async with s.get(base + early) as r:
                assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
                at = await r.json()
            async with s.get(base + "01JNOSUCHPOST0000000000000") as r:
                nowhere = await r.json()
        t = await live.bridge.store.run(lambda tx: archive.between(
            tx, "kmers", occ.start.timestamp(), occ.end.timestamp()))
    assert status == 200
    sections = page.split('<section class="question"')[1:]
    assert len(sections) == 2
    assert "<h4 class=\"answer-count\">1 answer</h4>" in sections[0]
    assert "(answers to a question not found in the transcript)" in sections[1]
    assert "2 questions, 2 answers, 2 people." in page
    assert "1 answers" not in page
    assert md_status == 200 and "#### 1 answer\n" in md and "1 answers" not in md
    assert "- Lobby: 1 post by Alice" in md
    # Where the page of the running chat puts a post (static/transcript.js asks).
    assert (at["where"], at["number"], at["before"], at["empty"]) == ("answer", 2, None, False)
    assert "an answer before its question" in at["html"] and f'id="p-{early}"' in at["html"]
    assert at["section"].startswith('<section class="question" id="q2"')
    assert "(answers to a question not found in the transcript)" in at["section"]
    assert "2 questions, 2 answers, 2 people." in at["summary"]
    assert nowhere["where"] == "none" and "html" not in nowhere and "section" not in nowhere

    transcript = build_transcript(occ, t, lambda p: p.origin_channel)
    assert end_text(occ, "kmers", "https://x.example/t", transcript) == (
        "Daily chat is over: 2 answers from 2 people on 2 networks. Thank you! "
        "Transcript: https://x.example/t")
    one = build_transcript(occ, [p for p in t if "one answer" in str(p.text.to_json())],
                           lambda p: p.origin_channel)
    assert "over: 1 answer from 1 person on 1 network." in end_text(occ, "kmers", "", one)
    # A message written for the old placeholders keeps working, word ones too.
    old = ChatEventConfig(**{**event, "end_message": "{answers} answers, {people} people; "
                                                     "{questions_text}, {networks_text}"})
    occ_old = occurrence_at(old, occ.key)
    assert occ_old is not None
    assert end_text(occ_old, "kmers", "", one) == "1 answers, 1 people; 1 question, 1 network"


def test_static_archive_index_says_1_answer() -> None:
    page = templates().get_template("static_index.html").render(
        comm=SimpleNamespace(settings=SimpleNamespace(hashtag="kmers")), static=True,
        exported="2026-12-07T00:00:00Z",
        transcripts=[{"file": "a.html", "title": "One", "answers": 1, "people": 1},
                     {"file": "b.html", "title": "Two", "answers": 2, "people": 3}],
        pages=[{"file": "archive-1.html", "first": "a", "last": "b", "count": 1}])
    assert "(1 answer, 1 person)" in page and "(2 answers, 3 people)" in page
    assert "(1 post)" in page


@pytest.mark.parametrize("placeholder", ["{answer}", "{answers_txt}"])
def test_unknown_placeholders_are_still_refused(placeholder: str) -> None:
    with pytest.raises(ValueError, match="unknown placeholder"):
        ChatEventConfig(**{**WEEKLY, "end_message": f"over: {placeholder}"})


def test_place_of_a_post_in_a_transcript() -> None:
    occ = occurrence_at(ChatEventConfig(**WEEKLY), "20261207T090000Z")
    assert occ is not None

    def post(pid: str, who: str, text: str, minute: int, reply_to: str | None = None) -> Post:
        return Post(id=PostId(pid), community="kmers", origin_channel=ChannelKey("kmers/x"),
                    origin_native_id=NativeId(pid), permalink="",
                    author=Author(platform="sandbox", handle=who, display_name=who),
                    text=from_plain(text), created_at=occ.start + timedelta(minutes=minute),
                    reply_to=PostId(reply_to) if reply_to else None)

    posts = [post("a2", "bob", "A2: early", 1), post("q1", "alice", "Q1: first?", 2),
             post("a1", "bob", "A1: yes", 3), post("r1", "carol", "me too", 4, "q1"),
             post("hi", "dave", "hello all", 5), post("q2", "alice", "Q2: second?", 6)]
    t = build_transcript(occ, posts, lambda p: "X")
    assert place(t, "q1").where == "question" and place(t, "q1").number == 1
    assert (place(t, "a1").where, place(t, "a1").number, place(t, "a1").before) == (
        "answer", 1, "r1")
    assert place(t, "r1").before is None and place(t, "r1").number == 1
    assert (place(t, "a2").where, place(t, "a2").number) == ("answer", 2)
    assert place(t, "hi").where == "other" and place(t, "hi").post is posts[4]
    assert place(t, "nope").where == "none" and place(t, "nope").post is None
