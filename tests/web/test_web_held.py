"""The admin page's posts held over their author's rate: listed, released now or
discarded (CSRF-protected like every admin action), counted in ``/metrics``.

Real bridge, store, sandbox networks and web server (``webhelp.live_bridge``).
"""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
from webhelp import ADMIN_TOKEN, Live, eventually, live_bridge

from bridge.inbound import held


async def _page(s: aiohttp.ClientSession, url: str) -> str:
    async with s.get(url) as r:
        assert r.status == 200
        return await r.text()


async def _garden(live: Live) -> list[str]:
    return [m.text for m in await live.nets["garden"].messages() if m.by_bridge]


async def _held_ids(live: Live) -> list[str]:
    return [h.post.id for h in await live.bridge.store.run(held.pending)]


async def test_admin_releases_and_discards_held_posts(tmp_path: Path) -> None:
    # One post a minute: Alice's second, third and fourth posts wait minutes.
    async with live_bridge(tmp_path, community={"author_rate_per_minute": 1}) as live:
        lobby = live.nets["lobby"]
        for i in range(4):
            await lobby.post_as_member("alice", f"question {i}")

        async def three_held() -> bool:
            return len(await _held_ids(live)) == 3

        await eventually(three_held, timeout=20, what="three posts held")
        first, second, third = await _held_ids(live)
        assert not [t for t in await _garden(live) if "question" in t and "question 0" not in t]

        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
            async with s.post(f"{live.url}/admin/login", data={"token": ADMIN_TOKEN},
                              allow_redirects=False) as r:
                assert r.status == 303
            admin = await _page(s, f"{live.url}/admin")
            csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', admin)
            assert csrf
            for pid in (first, second, third):
                assert f'<tr id="h-{pid}">' in admin
            assert "question 3" in admin and "Release now" in admin and "Discard" in admin

            # Without the CSRF field, or from another site, nothing happens.
            async with s.post(f"{live.url}/admin/held/discard", data={"post": third},
                              allow_redirects=False) as r:
                assert r.status == 403
            async with s.post(f"{live.url}/admin/held/release",
                              data={"csrf": csrf.group(1), "post": second},
                              headers={"Origin": "https://evil.example"},
                              allow_redirects=False) as r:
                assert r.status == 403
            assert await _held_ids(live) == [first, second, third]

            async with s.post(f"{live.url}/admin/held/discard",
                              data={"csrf": csrf.group(1), "post": third},
                              allow_redirects=False) as r:
                assert r.status == 303
            # Releasing the second releases the first too: their order holds.
            async with s.post(f"{live.url}/admin/held/release",
                              data={"csrf": csrf.group(1), "post": second},
                              allow_redirects=False) as r:
                assert r.status == 303
                assert "released%202%20held%20posts" in r.headers["Location"]
            async with s.post(f"{live.url}/admin/held/release",
                              data={"csrf": csrf.group(1), "post": third},
                              allow_redirects=False) as r:
                assert "is%20not%20held" in r.headers["Location"]
            await live.settle()
            for name in ("garden", "porch"):
                got = [m.text for m in await live.nets[name].messages()
                       if m.by_bridge and "question" in m.text]
                assert got == [f"Alice (Lobby): question {i}" for i in range(3)], name
            assert await _held_ids(live) == []
            metrics = await _page(s, f"{live.url}/metrics")
            assert "hashbridge_posts_held 0\n" in metrics
            assert "hashbridge_posts_held_released_total 2\n" in metrics
            assert "hashbridge_posts_held_discarded_total 1\n" in metrics
            assert "hashbridge_posts_held_refused_total 0\n" in metrics
            # The discarded post is off the archive too.
            body = await _page(s, f"{live.url}/c/kmers")
            assert "question 2" in body and "question 3" not in body
