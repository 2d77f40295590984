"""The live page in a real headless chromium, fed by the real relay."""

from __future__ import annotations

from typing import Any

from webhelp import Live


async def _texts(page: Any) -> list[str]:
    return await page.eval_on_selector_all("#posts > li .body", "els => els.map(e => e.innerText)")


async def _wait_text(page: Any, text: str, timeout: float = 15000) -> None:
    await page.wait_for_function(
        "t => [...document.querySelectorAll('#posts > li .body')]"
        ".some(e => e.innerText.includes(t))",
        arg=text, timeout=timeout)


async def _wait_live(page: Any) -> None:
    await page.wait_for_function(
        "() => document.getElementById('status').textContent === 'Live'", timeout=10000)


async def test_post_edit_delete_appear_live_without_reload(live: Live, browser_page: Any) -> None:
    page = browser_page
    lobby, garden = live.nets["lobby"], live.nets["garden"]
    await lobby.post_as_member("alice", "already here before the page opened")
    await live.settle()
    await page.goto(f"{live.url}/c/kmers")
    await _wait_live(page)
    await page.evaluate("window.__marker = 'same document'")
    assert "already here before the page opened" in " ".join(await _texts(page))

    nid = await garden.post_as_member("bob", "hello from the garden, live")
    await _wait_text(page, "hello from the garden, live")
    badge = await page.locator("#posts > li").last.locator(".badge").inner_text()
    assert badge == "Garden"

    await garden.edit_as_member(nid, "hello from the garden, edited live")
    await _wait_text(page, "edited live")
    texts = await _texts(page)
    assert not any(t.endswith("hello from the garden, live") for t in texts)
    assert await page.locator("#posts > li .edited").count() == 1

    await garden.delete_as_member(nid)
    await page.wait_for_function(
        "() => ![...document.querySelectorAll('#posts .body')].some(e => e.innerText.includes("
        "'from the garden'))", timeout=15000)
    # No reload happened at any point.
    assert await page.evaluate("window.__marker") == "same document"


async def test_reconnect_resumes_without_gaps_or_duplicates(live: Live, browser_page: Any) -> None:
    page = browser_page
    lobby, porch = live.nets["lobby"], live.nets["porch"]
    await page.goto(f"{live.url}/c/kmers")
    await _wait_live(page)
    await lobby.post_as_member("alice", "seen live before the cut")
    await _wait_text(page, "seen live before the cut")

    await page.evaluate("window.hashbridgeLive.disconnect()")
    ids = [await porch.post_as_member("carol", f"while away {i}") for i in range(8)]
    await porch.edit_as_member(ids[2], "while away 2, corrected")
    await porch.delete_as_member(ids[5])
    await live.settle()
    # Nothing of it reached the page while disconnected.
    assert not any("while away" in t for t in await _texts(page))

    await page.evaluate("window.hashbridgeLive.connect()")
    await _wait_text(page, "while away 7")
    await page.wait_for_timeout(300)
    texts = await _texts(page)
    away = [t for t in texts if "while away" in t]
    expected = [f"while away {i}" for i in range(8) if i != 5]
    expected[2] = "while away 2, corrected"
    assert away == expected, away
    # Every post exactly once, in the order of the archive.
    dom_ids = await page.eval_on_selector_all("#posts > li", "els => els.map(e => e.dataset.id)")
    assert len(dom_ids) == len(set(dom_ids))
    assert dom_ids == await live.post_ids()

    # And the stream is live again.
    await lobby.post_as_member("alice", "after the reconnect")
    await _wait_text(page, "after the reconnect")


async def test_pause_holds_updates_and_filter_by_network(live: Live, browser_page: Any) -> None:
    page = browser_page
    lobby, garden = live.nets["lobby"], live.nets["garden"]
    await page.goto(f"{live.url}/c/kmers")
    await _wait_live(page)
    await page.get_by_role("button", name="Pause").click()
    assert await page.get_by_role("button", name="Resume").get_attribute("aria-pressed") == "true"
    await lobby.post_as_member("alice", "posted during the pause")
    await page.wait_for_function("() => !document.getElementById('waiting').hidden")
    assert not any("during the pause" in t for t in await _texts(page))
    await page.get_by_role("button", name="Resume").click()
    await _wait_text(page, "posted during the pause")

    # The filter works without JavaScript (a GET form) and keeps the stream filtered.
    await page.select_option("#network", "Garden")
    await page.get_by_role("button", name="Show").click()
    await page.wait_for_url("**network=Garden")
    await _wait_live(page)
    await lobby.post_as_member("alice", "lobby post, filtered out")
    await garden.post_as_member("bob", "garden post, shown")
    await _wait_text(page, "garden post, shown")
    await live.settle()
    await page.wait_for_timeout(300)
    nets = await page.eval_on_selector_all("#posts > li", "els => els.map(e => e.dataset.network)")
    assert set(nets) == {"Garden"}


async def test_page_works_without_javascript(live: Live, browser_page: Any) -> None:
    await live.nets["lobby"].post_as_member("alice", "readable with scripts off")
    await live.settle()
    ctx = await browser_page.context.browser.new_context(java_script_enabled=False)
    page = await ctx.new_page()
    await page.goto(f"{live.url}/c/kmers")
    assert "readable with scripts off" in await page.locator("#posts").inner_text()
    assert await page.locator("#controls").is_hidden()
    await ctx.close()


async def test_admin_hide_removes_the_post_from_open_pages(live: Live, browser_page: Any) -> None:
    import re

    import aiohttp
    from webhelp import ADMIN_TOKEN

    page = browser_page
    await live.nets["garden"].post_as_member("mallory", "spam to be hidden")
    await live.nets["garden"].post_as_member("bob", "a fine post")
    await live.settle()
    await page.goto(f"{live.url}/c/kmers")
    await _wait_live(page)
    await _wait_text(page, "spam to be hidden")
    spam = await live.post_id_of("spam to be hidden")
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as s:
        async with s.get(f"{live.url}/admin") as r:
            csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', await r.text())
        assert csrf
        async with s.post(f"{live.url}/admin/hide", data={"csrf": csrf.group(1), "post": spam},
                          allow_redirects=False) as r:
            assert r.status == 303
    await page.wait_for_function(f"() => !document.getElementById('p-{spam}')", timeout=10000)
    assert "a fine post" in " ".join(await _texts(page))


async def test_keyboard_pauses_and_resumes(live: Live, browser_page: Any) -> None:
    page = browser_page
    await page.goto(f"{live.url}/c/kmers")
    await _wait_live(page)
    pause = page.locator("#pause")
    for _ in range(20):  # Tab through the page until the pause button has focus
        await page.keyboard.press("Tab")
        if await pause.evaluate("b => b === document.activeElement"):
            break
    assert await pause.evaluate("b => b === document.activeElement")
    await page.keyboard.press("Enter")
    assert await pause.get_attribute("aria-pressed") == "true"
    await page.keyboard.press("Space")
    assert await pause.get_attribute("aria-pressed") == "false"


async def test_every_page_renders_without_csp_violations(tmp_path: Any, browser_page: Any) -> None:
    """Our own pages need nothing the strict CSP forbids (no inline script or style):
    chromium reports every violation on the console."""
    from datetime import UTC, datetime, timedelta

    from webhelp import ADMIN_TOKEN, ARTIFACTS, live_bridge

    page = browser_page
    start = (datetime.now(UTC) - timedelta(minutes=5)).replace(microsecond=0)
    event = {"id": "chat", "title": "Weekly #kmers chat", "rrule": "FREQ=DAILY",
             "dtstart": start.replace(tzinfo=None).isoformat(), "duration_minutes": 60,
             "hosts": ["alice"], "announce": False}
    async with live_bridge(tmp_path, events=[event]) as lv:
        lobby, garden, porch = lv.nets["lobby"], lv.nets["garden"], lv.nets["porch"]
        q = await lobby.post_as_member("alice", "Q1: which k-mer counter do you use? #kmers")
        await garden.post_as_member("bob", "A1: jellyfish, for years")
        await porch.post_as_member("carol", "A1: KMC, it is fast")
        await lobby.post_as_member("dave", "A1: my own, in Rust", reply_to=q)
        await lv.settle()
        key = start.strftime("%Y%m%dT%H%M%SZ")
        pages = {"live": "/c/kmers", "events": "/c/kmers/events",
                 "transcript": f"/c/kmers/events/chat/{key}", "login": "/admin"}
        for name, path in pages.items():
            await page.goto(lv.url + path)
            await page.wait_for_load_state("networkidle") if name != "live" else None
            await page.screenshot(path=str(ARTIFACTS / f"page-{name}.png"), full_page=True)
        await page.fill("#token", ADMIN_TOKEN)
        await page.get_by_role("button", name="Log in").click()
        await page.wait_for_selector("text=Dead deliveries")
        await page.screenshot(path=str(ARTIFACTS / "page-admin.png"), full_page=True)
    assert page.console_errors == []


async def test_web_restart_browser_reconnects_by_itself(tmp_path: Any, browser_page: Any) -> None:
    """The web server goes away and comes back (its change log starts empty): the
    page reconnects by itself (EventSource's retry, or the script's own once the
    browser gives up), presents its old event id, is told to reset, and reloads
    the list with what it missed."""
    import socket

    from webhelp import live_bridge, start_web, stop_web

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    page = browser_page
    async with live_bridge(tmp_path, listen=f"127.0.0.1:{port}") as lv:
        await page.goto(f"{lv.url}/c/kmers")
        await _wait_live(page)
        await lv.nets["lobby"].post_as_member("alice", "before the restart")
        await _wait_text(page, "before the restart")
        assert lv.web is not None
        await stop_web(lv.web)
        await page.wait_for_function(
            "() => document.getElementById('status').textContent !== 'Live'", timeout=10000)
        await lv.nets["garden"].post_as_member("bob", "while the web view was down")
        await lv.settle()
        lv.web = await start_web(lv.bridge)
        await _wait_text(page, "while the web view was down", timeout=20000)
        await _wait_live(page)
        await lv.nets["porch"].post_as_member("carol", "after the restart")
        await _wait_text(page, "after the restart")
        dom_ids = await page.eval_on_selector_all("#posts > li",
                                                  "els => els.map(e => e.dataset.id)")
        assert dom_ids == await lv.post_ids()
