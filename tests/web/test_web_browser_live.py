"""The live page's join panel, the host's questions, grouping and local times, in a
real headless chromium (reader in America/New_York), fed by the real relay.

With ``HASHBRIDGE_SCREENSHOTS=1`` the tests also write the screenshots kept in
``docs/screenshots/`` (``live-desktop.png`` 1280 px wide, ``live-phone.png`` and
``live-grouped-phone.png`` 390 px)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from webhelp import CHROMIUM, CHROMIUM_ARGS, Live, chromium_missing, live_bridge

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
ZONE = "America/New_York"
EVENT = {"id": "weekly", "title": "Weekly #kmers chat", "day": "thursday", "time": "12:00",
         "timezone": ZONE, "hosts": ["hosty"], "announce": False}
"""(No start announcement: a test run on a Thursday at noon in New York sees the same page.)"""
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    async with live_bridge(tmp_path, events=[EVENT]) as lv:
        yield lv


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    reason = chromium_missing()
    if reason:
        pytest.skip(reason)
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


@contextlib.asynccontextmanager
async def reader(browser: Any, viewport: dict[str, int]) -> AsyncIterator[Any]:
    """A page of a reader in New York (en-US); fails the test on a script error."""
    ctx = await browser.new_context(viewport=viewport, timezone_id=ZONE, locale="en-US")
    page = await ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    try:
        yield page
        assert errors == []
    finally:
        await ctx.close()


async def shot(page: Any, name: str) -> None:
    if os.environ.get("HASHBRIDGE_SCREENSHOTS"):
        SHOTS.mkdir(parents=True, exist_ok=True)
        await page.wait_for_timeout(2500)  # the arrival highlight fades first
        await page.screenshot(path=str(SHOTS / name), full_page=True)


async def open_live(page: Any, live: Live) -> None:
    await page.goto(f"{live.url}/c/kmers")
    await page.wait_for_function(
        "() => document.getElementById('status').textContent === 'Live'", timeout=30000)


async def wait_card(page: Any, text: str) -> None:
    await page.wait_for_function(
        "t => [...document.querySelectorAll('#posts > li .body')]"
        ".some(e => e.innerText.includes(t))", arg=text, timeout=30000)


async def chat(live: Live) -> dict[str, str]:
    """A chat under way: the host's Q1, answers from two networks, a member's
    look-alike "Q2", chatter.  Native ids by a short name."""
    lobby, garden, porch = (live.nets[n] for n in ("lobby", "garden", "porch"))
    ids = {}
    # One at a time: each network is read on its own, so posts made on two
    # networks within a moment may be relayed in either order.
    for key, net, who, text in (
            ("hello", porch, "carol", "Hello all, first time here!"),
            ("q1", lobby, "hosty",
             "Q1: Which tool would you keep if you could keep only one? #kmers"),
            ("a1-bob", garden, "bob", "A1 A paper notebook, always."),
            ("fake", porch, "mallory", "Q2: not from the host, not a question"),
            ("a1-carol", porch, "carol", "A1: my wiki, links make it grow")):
        ids[key] = await net.post_as_member(who, text)
        await live.settle()
    copy = next(m for m in await garden.messages() if m.by_bridge and "Which tool" in m.text)
    ids["reply"] = await garden.post_as_member("dave", "the outliner, for me",
                                               reply_to=copy.native_id)
    await live.settle()
    return ids


async def cards(page: Any) -> list[dict[str, str]]:
    """The cards in the order shown: id, Q/A label, body text, count shown."""
    return await page.eval_on_selector_all("#posts > li", """els => els.map(e => ({
        id: e.dataset.id, qa: e.dataset.qa || '', seq: e.dataset.seq,
        text: e.querySelector('.body').innerText.trim(),
        grouped: e.classList.contains('grouped-answer'),
        count: (e.querySelector('.answer-count') || {}).textContent || ''}))""")


async def test_join_panel_open_on_desktop_folded_on_phone(live: Live, browser: Any) -> None:
    await chat(live)
    async with reader(browser, DESKTOP) as page:
        await open_live(page, live)
        wide, narrow = page.locator(".join-wide"), page.locator(".join-narrow")
        assert await wide.is_visible() and await narrow.is_hidden()
        text = await wide.inner_text()
        for net in ("Lobby", "Garden", "Porch"):
            assert net in text
        await shot(page, "live-desktop.png")
    async with reader(browser, PHONE) as page:
        await open_live(page, live)
        wide, narrow = page.locator(".join-wide"), page.locator(".join-narrow")
        assert await wide.is_hidden() and await narrow.is_visible()
        assert await narrow.get_attribute("open") is None
        more = narrow.get_by_role("link", name="How to join")
        assert await more.is_hidden()
        await shot(page, "live-phone.png")
        await narrow.locator("summary").click()
        assert await more.is_visible()
        await more.click()
        await page.wait_for_url("**/c/kmers/about")
        assert await page.locator("h2").first.inner_text() == "How to take part in #kmers"


async def test_host_questions_stand_out(live: Live, browser: Any) -> None:
    await chat(live)
    async with reader(browser, PHONE) as page:
        await open_live(page, live)
        q1 = page.locator("#posts > li.is-question")
        assert await q1.count() == 1
        assert "Which tool" in await q1.inner_text()
        assert await q1.locator(".qa-label").inner_text() == "Q1"
        assert await q1.locator(".host-badge").inner_text() == "Host"
        amber = await q1.evaluate("e => getComputedStyle(e).backgroundColor")
        assert amber == "rgb(255, 243, 214)"
        # The member's look-alike is no question, and has no badge.
        fake = page.locator("#posts > li", has_text="not from the host")
        assert await fake.get_attribute("class") is not None
        assert "is-question" not in (await fake.get_attribute("class") or "")
        assert await fake.locator(".host-badge").count() == 0
        # Answers are labelled, the unnumbered reply to Q1 too.
        labels = {c["text"][:12]: c["qa"] for c in await cards(page)}
        assert labels["A1 A paper n"] == "A1" and labels["the outliner"] == "A1"
        # A question that arrives live is highlighted as it arrives.
        await live.nets["garden"].post_as_member("hosty", "Q2: And which would you drop?")
        await wait_card(page, "which would you drop")
        q2 = page.locator("#posts > li.is-question", has_text="which would you drop")
        assert await q2.locator(".qa-label").inner_text() == "Q2"


async def test_group_answers_under_questions(live: Live, browser: Any) -> None:
    ids = await chat(live)
    lobby, garden, porch = (live.nets[n] for n in ("lobby", "garden", "porch"))
    async with reader(browser, PHONE) as page:
        await open_live(page, live)
        arrival = [c["id"] for c in await cards(page)]
        box = page.get_by_label("Group answers under questions")
        await box.check()
        got = await cards(page)
        texts = [c["text"][:14] for c in got]
        assert texts == ["Hello all, fir", "Q1: Which tool", "A1 A paper not", "A1: my wiki, l",
                         "the outliner, ", "Q2: not from t"]
        assert got[1]["count"] == "3 answers"
        assert [c["grouped"] for c in got] == [False, False, True, True, True, False]

        # Live arrivals: an answer to Q1 after the chatter; Q2 with one answer.
        await porch.post_as_member("erin", "some chatter in between")
        await lobby.post_as_member("hosty", "Q2: And which would you drop?")
        a2 = await porch.post_as_member("carol", "A2 the fax machine")
        await garden.post_as_member("frank", "A1: late, but: index cards")
        await wait_card(page, "index cards")
        await page.wait_for_function(
            "() => [...document.querySelectorAll('.answer-count')].map(e => e.textContent)"
            ".join('|') === '4 answers|1 answer'", timeout=30000)
        got = await cards(page)
        q1 = [c["text"][:10] for c in got].index("Q1: Which ")
        assert got[q1 + 4]["text"].startswith("A1: late, but")
        q2 = [c["text"][:10] for c in got].index("Q2: And wh")
        assert got[q2 + 1]["text"] == "A2 the fax machine" and got[q2 + 1]["grouped"]
        await shot(page, "live-grouped-phone.png")

        # An edit that renumbers an answer moves it under its new question.
        await porch.edit_as_member(ids["a1-carol"], "A2: my wiki, on second thought")
        await page.wait_for_function(
            "() => [...document.querySelectorAll('.answer-count')].map(e => e.textContent)"
            ".join('|') === '3 answers|2 answers'", timeout=30000)
        got = await cards(page)
        q2 = [c["text"][:10] for c in got].index("Q2: And wh")
        assert {got[q2 + 1]["text"][:9], got[q2 + 2]["text"][:9]} == {"A2 the fa", "A2: my wi"}
        await porch.edit_as_member(a2, "A2 the fax machine, gladly")
        await wait_card(page, "gladly")
        got = await cards(page)
        assert got[q2 + 1]["grouped"] and got[q2 + 2]["grouped"]

        # Off: the arrival order again, no counts, no indent.
        await box.uncheck()
        got = await cards(page)
        assert [c["id"] for c in got][:len(arrival)] == arrival
        # (data-seq: the order the page received the cards in)
        assert [int(c["seq"]) for c in got] == sorted(int(c["seq"]) for c in got)
        assert not any(c["count"] or c["grouped"] for c in got)
        assert sorted(c["text"][:9] for c in got[len(arrival):]) == [
            "A1: late,", "A2 the fa", "Q2: And w", "some chat"]


async def test_times_in_the_readers_zone_with_utc_on_hover(live: Live, browser: Any) -> None:
    await chat(live)
    async with reader(browser, PHONE) as page:
        await open_live(page, live)
        await page.wait_for_function(
            "() => document.querySelectorAll('#posts time[data-local=\"1\"]').length >= 6")
        await live.nets["garden"].post_as_member("bob", "a time that arrives live")
        await wait_card(page, "a time that arrives live")
        times = await page.eval_on_selector_all(
            "#posts time", "els => els.map(e => [e.getAttribute('datetime'), e.textContent, "
            "e.title, e.dataset.local || ''])")
        assert len(times) == 7
        for iso, text, title, local in times:
            at = datetime.fromisoformat(iso.replace("Z", "+00:00"))
            here = at.astimezone(ZoneInfo(ZONE))
            assert local == "1"
            assert here.strftime("%I:%M") in text and ("EST" in text or "EDT" in text), text
            assert title == at.strftime("%Y-%m-%d %H:%M UTC")
        # The next chat event's time, too.
        nxt = page.locator(".next-event time")
        assert "EST" in await nxt.inner_text() or "EDT" in await nxt.inner_text()
    # Without scripts the server's UTC text stays.
    ctx = await browser.new_context(java_script_enabled=False, timezone_id=ZONE)
    page = await ctx.new_page()
    await page.goto(f"{live.url}/c/kmers")
    first = page.locator("#posts time").first
    assert (await first.inner_text()).endswith(" UTC")
    await ctx.close()
