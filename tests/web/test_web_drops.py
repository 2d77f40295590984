"""The inbound steps on the admin page and ``/metrics``: every declared step
with what it does, and its drops by reason, since the start and recorded."""

from __future__ import annotations

import html
import re

import aiohttp
from webhelp import ADMIN_TOKEN, Live

from bridge.contract.model import Author, ChannelKey, NativeId, Posted
from bridge.contract.textconv import from_plain
from bridge.inbound.steps import declared

LOBBY = ChannelKey("kmers/sb_lobby")


def _post(nid: str, **kw: object) -> Posted:
    return Posted(channel=LOBBY, native_id=NativeId(nid),
                  author=Author(platform="sandbox", handle="alice"),
                  text=from_plain("hello #kmers"), **kw)  # type: ignore[arg-type]


def _cells(page: str, row_id: str) -> list[str]:
    row = re.search(rf'<tr id="{re.escape(row_id)}">(.*?)</tr>', page, re.S)
    assert row is not None, f"no row {row_id}"
    return [html.unescape(c).strip() for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>",
                                                         row.group(1), re.S)]


async def test_admin_page_and_metrics_count_drops_by_step(live: Live) -> None:
    await live.bridge.ingest("sb_lobby", [_post("1", public=False), _post("2"), _post("2")],
                             None)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as s:
        async with s.get(f"{live.url}/admin") as r:
            assert r.status == 200
            admin = await r.text()
        async with s.get(f"{live.url}/metrics") as r:
            metrics = await r.text()
    table = admin[admin.index('<table id="inbound-steps">'):]
    table = table[:table.index("</table>")]
    shown = re.findall(r'<th scope="row"[^>]*>(.*?)</th>', table)
    assert shown == [step.name for _, step in declared()]
    for _, step in declared():
        assert step.description in html.unescape(table)
    # reason, since start, recorded (the policy's refusals are kept in the store)
    assert _cells(table, "step-visibility-1")[-3:] == ["not public", "1", "1"]
    assert _cells(table, "step-echo-2")[-3:] == ["already ingested", "1", ""]
    assert _cells(table, "step-echo-1")[-3:] == ["echo", "0", ""]
    assert _cells(table, "step-persist")[-3:] == ["never drops", "", ""]
    assert 'hashbridge_inbound_dropped_total{step="visibility",reason="not public"} 1' \
        in metrics
    assert 'hashbridge_inbound_dropped_total{step="echo",reason="already ingested"} 1' \
        in metrics
    assert f'hashbridge_posts_dropped_total{{channel="{LOBBY}",reason="not public"}} 1' \
        in metrics
    assert 'hashbridge_inbound_step_info{event="posted",step="echo"' in metrics
