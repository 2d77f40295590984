"""Reaction counts on the live page (updated over SSE) and in transcripts."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from test_web_http import SSE, _last_id, _page
from webhelp import Live, live_bridge

from bridge.contract.model import Author, ChannelKey, NativeId, PostId, Reacted

GARDEN = ChannelKey("kmers/sb_garden")


async def _copy_on_garden(live: Live, post_id: str) -> NativeId:
    [copy] = await live.bridge.store.run(lambda tx: tx.copies(post_id, GARDEN))
    return copy.native_id


async def _react(live: Live, native_id: NativeId, who: str, *, added: bool = True) -> None:
    await live.bridge.ingest("sb_garden", [Reacted(
        channel=GARDEN, native_id=native_id, added=added,
        reactor=Author(platform="sandbox", handle=who))], None)


def _card(page: str, post_id: str) -> str:
    m = re.search(rf'<li [^>]*id="p-{post_id}".*?</li>', page, re.S)
    assert m, "the post's card is on the page"
    return m.group(0)


async def test_count_appears_and_updates_live(live: Live) -> None:
    await live.nets["lobby"].post_as_member("alice", "A1: reactions please")
    await live.settle()
    post_id = await live.post_id_of("reactions please")
    copy = await _copy_on_garden(live, post_id)
    async with aiohttp.ClientSession() as s:
        page = await _page(s, f"{live.url}/c/kmers")
        assert "♥" not in _card(page, post_id)
        async with s.get(f"{live.url}/c/kmers/stream",
                         params={"since": _last_id(page)}) as r:
            sse = SSE(r)
            await _react(live, copy, "bob")
            _, _, data = await sse.next(timeout=30)
            assert data["kind"] == "reacted" and data["id"] == post_id
            assert 'title="Sandbox 1"' in data["html"] and "♥ 1" in data["html"]
            await _react(live, copy, "carol")
            _, _, data = await sse.next(timeout=30)
            assert "♥ 2" in data["html"]
            await _react(live, copy, "carol", added=False)
            _, _, data = await sse.next(timeout=30)
            assert "♥ 1" in data["html"]
        card = _card(await _page(s, f"{live.url}/c/kmers"), post_id)
        assert "♥ 1" in card and 'aria-label="1 reaction: Sandbox 1"' in card


async def test_transcript_shows_the_counts(tmp_path: Path) -> None:
    start = (datetime.now(UTC) - timedelta(minutes=1)).replace(second=0, microsecond=0)
    event = {"id": "chat", "title": "Reaction chat", "rrule": "FREQ=DAILY", "timezone": "UTC",
             "dtstart": start.replace(tzinfo=None).isoformat(), "duration_minutes": 60,
             "hosts": ["alice"]}
    async with live_bridge(tmp_path, events=[event]) as live:
        await live.nets["lobby"].post_as_member("alice", "Q1: liked question? #kmers")
        await live.nets["lobby"].post_as_member("bob", "A1: unliked answer")
        await live.settle()
        liked = PostId(await live.post_id_of("liked question"))
        unliked = await live.post_id_of("unliked answer")
        copy = await _copy_on_garden(live, liked)
        for who in ("bob", "carol", "dave"):
            await _react(live, copy, who)
        async with aiohttp.ClientSession() as s:
            page = await _page(s, f"{live.url}/c/kmers/events/chat/{start:%Y%m%dT%H%M%SZ}")
        assert "♥ 3" in _card(page, liked) and 'title="Sandbox 3"' in _card(page, liked)
        assert "♥" not in _card(page, unliked)


async def test_count_updates_in_the_browser_without_reload(live: Live,
                                                           browser_page: Any) -> None:
    page = browser_page
    await live.nets["lobby"].post_as_member("alice", "A2: liked in a browser")
    await live.settle()
    post_id = await live.post_id_of("liked in a browser")
    copy = await _copy_on_garden(live, post_id)
    await page.goto(f"{live.url}/c/kmers")
    await page.wait_for_function(
        "() => document.getElementById('status').textContent === 'Live'", timeout=30000)
    await page.evaluate("window.__marker = 'same document'")
    card = page.locator(f"#p-{post_id}")
    assert await card.locator(".reactions").count() == 0
    for who in ("bob", "carol"):
        await _react(live, copy, who)
    await page.wait_for_function(
        "id => (document.querySelector('#p-' + id + ' .reactions') || {}).textContent"
        " === '♥ 2'", arg=post_id, timeout=30000)
    assert await card.locator(".reactions").get_attribute("title") == "Sandbox 2"
    assert await page.evaluate("window.__marker") == "same document"
