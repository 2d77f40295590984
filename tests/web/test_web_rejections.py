"""Rejected inbound events on the web surfaces: the admin page counts them by
channel and kind and lists their reasons (escaped); ``/metrics`` counts them."""

from __future__ import annotations

import aiohttp
from webhelp import ADMIN_TOKEN, Live

from bridge.contract.model import ChannelKey, NativeId, Rejected, RejectKind

LOBBY = ChannelKey("kmers/sb_lobby")


async def test_admin_page_and_metrics_show_rejections(live: Live) -> None:
    await live.bridge.ingest("sb_lobby", [
        Rejected(channel=LOBBY, native_id=NativeId("7"),
                 reason="unreadable: ValueError: <b>Invalid</b> IPv6 URL"),
        Rejected(channel=LOBBY, native_id=NativeId("8"), kind=RejectKind.TOO_LARGE,
                 reason="too large: 812,345 bytes (Matrix events are at most 65,536)")], None)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as s:
        async with s.get(f"{live.url}/admin") as r:
            assert r.status == 200
            admin = await r.text()
        async with s.get(f"{live.url}/metrics") as r:
            metrics = await r.text()
    assert f"{LOBBY} unreadable: 1" in admin and f"{LOBBY} too large: 1" in admin
    assert "&lt;b&gt;Invalid&lt;/b&gt; IPv6 URL" in admin and "<b>Invalid" not in admin
    assert "812,345 bytes (Matrix events are at most 65,536)" in admin
    assert f'hashbridge_inbound_rejected_total{{channel="{LOBBY}",reason="unreadable"}} 1' \
        in metrics
    assert f'hashbridge_inbound_rejected_total{{channel="{LOBBY}",reason="too large"}} 1' \
        in metrics
