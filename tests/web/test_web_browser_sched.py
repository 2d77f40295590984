"""In a real headless chromium: the transcript of a running chat updating live, and the
chat directory in the reader's time zone.

With ``HASHBRIDGE_SCREENSHOTS`` set, the tests also write docs/screenshots/
transcript-{desktop,phone}.png and directory-{desktop,phone}.png.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from test_web_sched import _local, _multi, _serving
from webhelp import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, chromium_missing, live_bridge

from bridge.runtime.schedule import ChatEventConfig, occurrences, upcoming

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


@asynccontextmanager
async def _browser(name: str, **context: Any) -> AsyncIterator[Any]:
    reason = chromium_missing()
    if reason:
        pytest.skip(reason)
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            ctx = await browser.new_context(**{"viewport": PHONE, **context})
            page = await ctx.new_page()
            errors: list[str] = []
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.errors = errors
            try:
                yield page
            finally:
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                try:
                    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
                except Exception:
                    pass
        finally:
            await browser.close()


async def _screenshots(page: Any, name: str) -> None:
    """docs/screenshots/<name>-desktop.png and -phone.png, when asked for."""
    if not os.environ.get("HASHBRIDGE_SCREENSHOTS"):
        return
    SHOTS.mkdir(parents=True, exist_ok=True)
    for kind, size in (("desktop", DESKTOP), ("phone", PHONE)):
        await page.set_viewport_size(size)
        await page.screenshot(path=str(SHOTS / f"{name}-{kind}.png"), full_page=True)
    await page.set_viewport_size(PHONE)


async def _section_texts(page: Any) -> dict[str, Any]:
    return await page.evaluate("""() => Object.fromEntries(
        [...document.querySelectorAll('#questions > .question')].map(s => [s.id, {
          asked: [...s.querySelectorAll('.asked .body')].map(e => e.innerText.trim()),
          unasked: !!s.querySelector('.unasked'),
          count: s.querySelector('.answer-count').innerText,
          answers: [...s.querySelectorAll('.answers .body')].map(e => e.innerText.trim())}]))""")


async def _until(page: Any, check: str, arg: Any = None) -> None:
    await page.wait_for_function(check, arg=arg, timeout=30000)


async def test_transcript_updates_live_with_answers_edits_and_deletes(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    event = {"id": "daily", "title": "#kmers daily chat", "rrule": "FREQ=DAILY",
             "dtstart": _local(now - timedelta(minutes=5)), "timezone": "UTC",
             "duration_minutes": 60, "hosts": ["alice"]}
    occ = occurrences(ChatEventConfig(**event), now, now + timedelta(seconds=1))[0]
    async with live_bridge(tmp_path, events=[event]) as live, \
            _browser("transcript_live") as page:
        lobby, garden, porch = (live.nets[n] for n in ("lobby", "garden", "porch"))
        q1 = await lobby.post_as_member("alice", "Q1: what brought you here?")
        await live.settle()
        await page.goto(f"{live.url}/c/kmers/events/daily/{occ.key}")
        await _until(page, "() => document.getElementById('live-status').textContent"
                           " === 'Updating live.'")
        await page.evaluate("window.__marker = 'same document'")

        # An answer to a question not yet asked opens its section, after Q1's.
        early = await garden.post_as_member("bob", "A2: jellyfish, before you ask")
        await _until(page, "() => !!document.getElementById('q2')")
        got = await _section_texts(page)
        assert list(got) == ["q1", "q2"]
        assert got["q2"]["unasked"] and got["q2"]["answers"] == ["A2: jellyfish, before you ask"]
        assert got["q2"]["count"] == "1 answer"

        # An answer goes under its question; a reply to the question counts as one.
        carol = await porch.post_as_member("carol", "A1: curiosity")
        await _until(page, "() => document.querySelectorAll('#q1 .answers > li').length === 1")
        await lobby.post_as_member("erin", "memory, mostly", reply_to=q1)
        await _until(page, "() => document.querySelectorAll('#q1 .answers > li').length === 2")
        await lobby.post_as_member("dave", "Chatting from the lobby tonight")
        await _until(page, "() => document.querySelectorAll('#other-posts > li').length === 1")
        assert not await page.locator("#other").is_hidden()
        # The question asked after its answer takes the placeholder's place.
        await lobby.post_as_member("alice", "Q2: which tools do you use?")
        await _until(page, "() => !!document.querySelector('#q2 .asked > li')")
        got = await _section_texts(page)
        assert got["q1"] == {"asked": ["Q1: what brought you here?"], "unasked": False,
                             "count": "2 answers", "answers": ["A1: curiosity",
                                                               "memory, mostly"]}
        assert got["q2"]["asked"] == ["Q2: which tools do you use?"] and not got["q2"]["unasked"]

        # An edit moves the post where it now belongs.
        await porch.edit_as_member(carol, "A2: a corrected answer")
        await _until(page, "() => document.querySelectorAll('#q2 .answers > li').length === 2")
        got = await _section_texts(page)
        assert got["q1"]["answers"] == ["memory, mostly"] and got["q1"]["count"] == "1 answer"
        assert got["q2"]["answers"] == ["A2: jellyfish, before you ask",
                                        "A2: a corrected answer"]
        assert got["q2"]["count"] == "2 answers"

        # A delete removes it; the summary follows.
        await garden.delete_as_member(early)
        await _until(page, "() => document.querySelectorAll('#q2 .answers > li').length === 1")
        await _until(page, "() => document.querySelector('#summary .totals').innerText"
                           " === '2 questions, 2 answers, 4 people.'")
        got = await _section_texts(page)
        assert got["q2"]["answers"] == ["A2: a corrected answer"]
        assert got["q2"]["count"] == "1 answer"
        # Never a reload, nothing failed in the page.
        assert await page.evaluate("window.__marker") == "same document"
        assert page.errors == []
        # What the server renders now is what the page shows.
        await page.reload()
        assert await _section_texts(page) == got
        await _screenshots(page, "transcript")


async def test_directory_in_the_readers_time_zone(tmp_path: Path) -> None:
    weekly = {"id": "weekly", "title": "#kmers weekly", "day": "thursday", "time": "12:00",
              "timezone": "America/New_York"}
    monthly = {"id": "monthly", "title": "Deep dive", "rrule": "FREQ=MONTHLY;BYDAY=-1FR",
               "dtstart": "2026-01-30T19:00:00", "timezone": "Europe/Paris"}
    cfg = _multi(tmp_path, [
        {"name": "kmers", "hashtag": "kmers", "events": [weekly],
         "description": "Weekly talk on k-mer counting, tools and people."},
        {"name": "hcsm", "hashtag": "hcsm", "events": [monthly],
         "description": "Health care and social media, the last Friday of the month."},
        {"name": "quiet", "hashtag": "quietchat"},
    ])
    kolkata = ZoneInfo("Asia/Kolkata")
    async with _serving(cfg) as (_, url), \
            _browser("directory_kolkata", timezone_id="Asia/Kolkata") as page:
        await page.goto(url + "/")
        await _until(page, "() => document.querySelectorAll('time[data-local-done]').length"
                           " === 2")
        shown = await page.evaluate("""() => Object.fromEntries(
            [...document.querySelectorAll('.community')].map(li => [li.dataset.community,
              li.querySelector('.next').innerText]))""")
        titles = await page.eval_on_selector_all("time[data-local]", "els => els.map(e => e.title)")
        await _screenshots(page, "directory")
        await page.goto(url + "/c/kmers/events")
        await _until(page, "() => !!document.querySelector('time[data-local-done]')")
        events_next = await page.locator(".schedule").first.inner_text()
        assert page.errors == []
    now = datetime.now(UTC)
    nxt = {name: upcoming([ChatEventConfig(**ev)], now, days=40)[0]
           for name, ev in (("kmers", weekly), ("hcsm", monthly))}

    def local(name: str) -> str:
        t = nxt[name].start.astimezone(kolkata)
        return f"{t:%a} {t.day} {t:%b}, {t:%H:%M} your time"

    # Thursday 12:00 in New York is 22:30 (or 21:30 in summer) in Kolkata.
    assert local("kmers").endswith(("22:30 your time", "21:30 your time"))
    def label(name: str) -> str:  # the chat may be on right now
        return "Now" if nxt[name].contains(now) else "Next"

    assert shown["kmers"] == f"{label('kmers')}: #kmers weekly, {local('kmers')}"
    assert shown["hcsm"] == f"{label('hcsm')}: Deep dive, {local('hcsm')}"
    assert shown["quiet"] == "No chat scheduled"
    assert sorted(titles) == sorted(f"{nxt[n].start:%Y-%m-%d %H:%M} UTC" for n in nxt)
    t = nxt["kmers"].start.astimezone(kolkata)
    assert events_next.startswith(f"Weekly on Thursday, 12:00 America/New_York; next: "
                                  f"{t.day} {t:%b}, {t:%H:%M} your time.")
