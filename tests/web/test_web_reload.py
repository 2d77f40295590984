"""The admin page shows each process's last configuration reload (time, ok or
refused, what changed, what needs a restart), secrets never shown.

Real bridge, store, sandbox networks and web server (``webhelp.live_bridge``).
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from webhelp import ADMIN_TOKEN, live_bridge

from bridge.daemon.reload import Reloader


async def test_admin_page_shows_the_last_reload_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    jar = aiohttp.CookieJar(unsafe=True)
    async with live_bridge(tmp_path) as live, aiohttp.ClientSession(cookie_jar=jar) as s:
        async with s.post(f"{live.url}/admin/login", data={"token": ADMIN_TOKEN},
                          allow_redirects=False) as r:
            assert r.status == 303
        async with s.get(f"{live.url}/admin") as r:
            assert "No reload since" in await r.text()
        bad = tmp_path / "bad.toml"
        bad.write_text('[bridge]\ndata_dir = "data"\n[accounts.a]\nplatform = "sandbox"\n'
                       'dir = "nets"\n[[communities]]\nname = "kmers"\nhashtag = "kmers"\n'
                       'consent = "${ADMIN_TOKEN}"\n[[communities.channels]]\naccount = "a"\n'
                       'network = "x"\n[[communities.channels]]\naccount = "a"\n'
                       'network = "y"\n')
        monkeypatch.setenv("ADMIN_TOKEN", "hidden-admin-value-99")
        reloader = Reloader(live.bridge)
        reloader.path = str(bad)
        out = await reloader.reload()
        assert not out.ok
        async with s.get(f"{live.url}/admin") as r:
            page = await r.text()
    assert 'class="reload-refused"' in page
    assert "refused at" in page and "communities[0].consent: must be one of" in page
    assert "hidden-admin-value-99" not in page
