"""Hostile content through the real relay must never run in a real browser.

Each payload tries to set ``window.__pwned`` or open a dialog.  The check is made
in chromium (the flag, the dialog handler), not by looking at strings.  Payloads
enter as plain text through sandbox networks and as HTML through the relay's
ingest (the path HTML-speaking adapters such as Mastodon and Matrix take, via
``from_html``), together with hostile names, links, media and content warnings.
"""

from __future__ import annotations

import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from webhelp import Live, live_bridge

from bridge.contract.model import Attachment, Author, ChannelKey, NativeId, Posted
from bridge.contract.textconv import from_html

PWN = "window.__pwned=1"
CORPUS = [
    f"<script>{PWN}</script>",
    f"<img src=x onerror=\"{PWN}\">",
    f"<svg onload={PWN}><circle r=1 /></svg>",
    f"<svg><script>{PWN}</script></svg>",
    f"<a href=\"javascript:{PWN}\">click me</a>",
    f"<a href=\" JaVaScRiPt:{PWN}\">spaced scheme</a>",
    f"<a href=\"jav&#x09;ascript:{PWN}\">entity scheme</a>",
    "<iframe srcdoc=\"<script>parent.__pwned=1</script>\"></iframe>",
    f"<details open ontoggle=\"{PWN}\">x</details>",
    f"<style>body{{background:url('javascript:{PWN}')}}</style>styled",
    f"<div style=\"background-image:url(javascript:{PWN})\">css url</div>",
    "<div style=\"position:fixed;top:0;left:0;width:100%;height:100%\">overlay</div>",
    f"<math><mtext><table><mglyph><style><img src=x onerror=\"{PWN}\">",
    f"\"><img src=x onerror={PWN}>",
    f"</textarea></title><script>{PWN}</script>",
    f"<<script>script>{PWN}<</script>/script>",
    f"<img \"\"\"><script>{PWN}</script>\">",
    f"<object data=\"javascript:{PWN}\"></object>",
    f"<embed src=\"javascript:{PWN}\">",
    f"<meta http-equiv=\"refresh\" content=\"0;url=javascript:{PWN}\">",
    "<base href=\"javascript:/\">",
    f"<form action=\"javascript:{PWN}\"><button>go</button></form>",
    f"<a href=\"data:text/html,<script>{PWN}</script>\">data link</a>",
    f"<noscript><p title=\"</noscript><img src=x onerror={PWN}>\">",
    f"<template><script>{PWN}</script></template><p>after template</p>",
    "<script>alert('xss')</script><img src=x onerror=alert(1)>",
    f"<x onmouseover=\"{PWN}\" style=\"display:block;width:9999px;height:9999px\">hover</x>",
]


def hostile_events(start: int) -> list[Posted]:
    """The corpus as HTML-bearing posts, with hostile metadata around them."""
    out = []
    for i, payload in enumerate(CORPUS):
        out.append(Posted(
            channel=ChannelKey("kmers/sb_porch"), native_id=NativeId(f"html-{start + i}"),
            author=Author(platform="sandbox", handle=f"<img src=x onerror={PWN}>{i}",
                          display_name=f"\"><script>{PWN}</script>",
                          profile_url=f"javascript:{PWN}"),
            text=from_html(payload), permalink=f"javascript:{PWN}",
            content_warning=f"<b onclick={PWN}>cw</b>" if i % 5 == 0 else "",
            attachments=(Attachment(url=f"javascript:{PWN}", media_type="image/png",
                                    alt_text=f"\" onerror=\"{PWN}"),
                         Attachment(url="https://example.org/a.png", media_type="image/png",
                                    alt_text=f"\"><script>{PWN}</script>"))))
    return out


async def _assert_clean(page: Any) -> None:
    await page.wait_for_timeout(500)
    # Open every content warning (ontoggle payloads would fire) and hover the body.
    await page.eval_on_selector_all("details", "els => els.forEach(d => d.open = true)")
    await page.mouse.move(5, 5)
    await page.mouse.move(200, 400)
    await page.wait_for_timeout(300)
    assert await page.evaluate("window.__pwned") is None
    assert await page.evaluate("parent.__pwned") is None
    assert page.dialogs == []
    # Defence in depth, checked in the DOM the browser built:
    bad = await page.evaluate("""() => {
        const found = [];
        for (const el of document.querySelectorAll('.post *, .event *, .summary *')) {
            if (['SCRIPT','IFRAME','OBJECT','EMBED','STYLE','BASE','META','FORM','SVG']
                    .includes(el.tagName.toUpperCase()))
                found.push(el.tagName);
            for (const a of el.attributes) {
                if (a.name.startsWith('on') || a.name === 'style') found.push(a.name);
                if (['href','src','action','data'].includes(a.name) &&
                        /^\\s*(javascript|data|vbscript):/i.test(a.value)) found.push(a.value);
            }
        }
        return found;
    }""")
    assert bad == []


async def test_xss_corpus_never_executes(tmp_path: Path, browser_page: Any) -> None:
    page = browser_page
    start = datetime.now(UTC) - timedelta(minutes=1)
    event = {"id": "xss", "title": f"<script>{PWN}</script> chat", "rrule": "FREQ=DAILY",
             "dtstart": start.replace(tzinfo=None).isoformat(timespec="seconds"),
             "duration_minutes": 60, "description": f"<img src=x onerror={PWN}>",
             "hosts": [f"<script>{PWN}</script>"]}
    async with live_bridge(tmp_path, events=[event]) as live:
        await _inject(live, 0)
        await live.settle()
        await page.goto(f"{live.url}/c/kmers")
        count = await page.locator("#posts > li").count()
        assert count >= 2 * len(CORPUS)
        await _assert_clean(page)

        # The same corpus arriving live over SSE while the page is open.
        await _inject(live, 1000)
        await page.wait_for_function("n => document.querySelectorAll('#posts > li').length "
                                     ">= n", arg=count + 2 * len(CORPUS), timeout=20000)
        await _assert_clean(page)

        for path in ("/c/kmers/events", f"/c/kmers/events/xss/{_key(start)}"):
            await page.goto(live.url + path)
            await _assert_clean(page)

        # The static HTML export, opened from disk.
        zpath = tmp_path / "site.zip"
        async with aiohttp.ClientSession() as s, s.get(f"{live.url}/c/kmers/export.zip") as r:
            assert r.status == 200
            zpath.write_bytes(await r.read())
    site = tmp_path / "site"
    with zipfile.ZipFile(zpath) as z:
        z.extractall(site)
    for html in sorted(site.glob("*.html")):
        await page.goto(html.as_uri())
        await _assert_clean(page)


def _key(start: datetime) -> str:
    return start.replace(microsecond=0).strftime("%Y%m%dT%H%M%SZ")


async def _inject(live: Live, base: int) -> None:
    for i, payload in enumerate(CORPUS):
        await live.nets["lobby"].post_as_member(f"mallory{i}", payload)
    await live.bridge.ingest("sb_porch", hostile_events(base), None)
