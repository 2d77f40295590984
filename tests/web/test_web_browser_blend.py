"""A blended chat event (#chatmixer) in a real headless chromium: during it, a post
of either community appears live on both communities' pages, and the host's
transcript holds the guest's posts.  The real relay, store, sandbox adapters and
web server."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from webhelp import start_web, stop_web

from adapters.sandbox import SandboxPlatform
from bridge.daemon.harness import eventually, quiescent, running
from bridge.daemon.supervisor import Bridge
from bridge.runtime.config import parse
from bridge.runtime.registry import load_factories
from bridge.runtime.schedule import occurrences

NETS = {"kmers": ("lobby", "garden"), "pkmchat": ("yard", "porch")}
MIXER = {"id": "mixer", "title": "#chatmixer", "timezone": "UTC", "rrule": "FREQ=DAILY",
         "dtstart": datetime(2026, 1, 1), "duration_minutes": 1440, "announce": False,
         "guest": "pkmchat"}
"""Blended all day, every day: whenever the test runs, it is during the event."""


@contextlib.asynccontextmanager
async def blended(tmp_path: Path) -> AsyncIterator[tuple[Bridge, str, dict[str, Any]]]:
    net_dir = str(tmp_path / "networks")
    accounts = {f"sb_{n}": {"platform": "sandbox", "dir": net_dir, "display_name": n.title()}
                for names in NETS.values() for n in names}
    raw = {"bridge": {"data_dir": str(tmp_path / "data"),
                      "web": {"listen": "127.0.0.1:0"}},
           "accounts": accounts,
           "communities": [
               {"name": name, "hashtag": name, "author_rate_per_minute": 1000,
                **({"events": [MIXER]} if name == "kmers" else {}),
                "channels": [{"account": f"sb_{n}", "network": n} for n in nets]}
               for name, nets in NETS.items()]}
    cfg = parse(raw, load_factories(), {})
    nets = {n: SandboxPlatform(net_dir, n) for names in NETS.values() for n in names}
    async with running(cfg) as bridge:
        web = await start_web(bridge)
        try:
            yield bridge, bridge.services.web_url, nets
        finally:
            await stop_web(web)
            for n in nets.values():
                await n.stop()


async def _texts(page: Any) -> list[str]:
    return await page.eval_on_selector_all("#posts > li .body", "els => els.map(e => e.innerText)")


async def _wait_text(page: Any, text: str) -> None:
    await page.wait_for_function(
        "t => [...document.querySelectorAll('#posts > li .body')]"
        ".some(e => e.innerText.includes(t))", arg=text, timeout=30000)


async def _wait_live(page: Any) -> None:
    await page.wait_for_function(
        "() => document.getElementById('status').textContent === 'Live'", timeout=30000)


async def test_a_blended_event_is_shown_on_both_live_pages(
        tmp_path: Path, browser_page: Any) -> None:
    async with blended(tmp_path) as (bridge, url, nets):
        await nets["yard"].post_as_member("paula", "pkmchat said this before the pages opened")
        await quiescent(bridge, timeout=30)
        host = browser_page
        other = await host.context.browser.new_context(viewport={"width": 1280, "height": 900})
        guest = await other.new_page()
        await host.goto(f"{url}/c/kmers")
        await guest.goto(f"{url}/c/pkmchat")
        await _wait_live(host)
        await _wait_live(guest)
        # The list each page opened with has the partner's post too.
        assert any("before the pages opened" in t for t in await _texts(host))
        assert any("before the pages opened" in t for t in await _texts(guest))

        await nets["lobby"].post_as_member("alice", "Q1: what do you keep notes in?")
        await nets["porch"].post_as_member("pete", "A1: a paper notebook")
        for page in (host, guest):
            await _wait_text(page, "what do you keep notes in?")
            await _wait_text(page, "a paper notebook")
        for page in (host, guest):
            dom_ids = await page.eval_on_selector_all(
                "#posts > li", "els => els.map(e => e.dataset.id)")
            assert len(dom_ids) == len(set(dom_ids)) == 3  # each post once

        # The host community's transcript holds the guest's answer.
        now = datetime.now(UTC)
        [occ] = [o for o in occurrences(bridge.config.communities[0].settings.events[0],
                                        now, now + timedelta(seconds=1))]
        async with aiohttp.ClientSession() as http:
            async def transcript() -> str | None:
                async with http.get(f"{url}/c/kmers/events/mixer/{occ.key}") as r:
                    body = await r.text()
                return body if r.status == 200 and "a paper notebook" in body else None

            body = await eventually(transcript, timeout=30, what="the transcript")
        assert "what do you keep notes in?" in body

