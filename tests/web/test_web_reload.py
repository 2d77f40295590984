"""The admin page shows each process's last configuration reload (time, ok or
refused, what changed, what needs a restart), secrets never shown.

Real bridge, store, sandbox networks and web server (``webhelp.live_bridge``).
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from webhelp import ADMIN_TOKEN, eventually, live_bridge

from adapters.sandbox import SandboxPlatform
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


async def test_a_community_added_by_a_reload_is_served_and_relayed(tmp_path: Path) -> None:
    nets = tmp_path / "networks"
    text = '[bridge]\ndata_dir = "data"\n'
    for n in ("lobby", "garden", "porch"):
        text += (f'[accounts.sb_{n}]\nplatform = "sandbox"\ndir = "{nets}"\n'
                 f'display_name = "{n.title()}"\n')
    for name in ("kmers", "pkm"):
        text += (f'[[communities]]\nname = "{name}"\nhashtag = "{name}"\n'
                 'author_rate_per_minute = 1000\n')
        for n in ("lobby", "garden", "porch") if name == "kmers" else ("lobby", "garden"):
            net = n if name == "kmers" else f"pkm-{n}"
            text += f'[[communities.channels]]\naccount = "sb_{n}"\nnetwork = "{net}"\n'
    path = tmp_path / "c.toml"
    path.write_text(text)
    async with live_bridge(tmp_path) as live, aiohttp.ClientSession() as s:
        async with s.get(f"{live.url}/c/pkm") as r:
            assert r.status == 404
        reloader = Reloader(live.bridge)
        reloader.path = str(path)
        out = await reloader.reload()
        assert out.ok and "community added: pkm" in out.changes, out
        # lobby's and garden's accounts serve one more channel each: they restart
        assert "account restarted: sb_lobby (its channels changed)" in out.changes
        assert not [c for c in out.changes if "sb_porch" in c]
        async with s.get(f"{live.url}/c/pkm") as r:
            assert r.status == 200
        pkm_lobby = SandboxPlatform(str(nets), "pkm-lobby")
        pkm_garden = SandboxPlatform(str(nets), "pkm-garden")
        await pkm_lobby.start()
        await pkm_garden.start()
        try:
            await pkm_lobby.post_as_member("alice", "hello pkm")

            async def arrived() -> bool:
                return any("hello pkm" in m.text for m in await pkm_garden.messages())

            await eventually(arrived, 30, "the new community's post relayed")
        finally:
            await pkm_lobby.stop()
            await pkm_garden.stop()
