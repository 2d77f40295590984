"""Every response carries the security headers, streamed ones too (issue 12, item 12).

A streamed response (the live stream, each export format) sends its headers in
``prepare()`` inside the handler; a middleware that adds headers afterwards is
too late.  Each route of the app is asked here, and the streamed ones are the
point.
"""

from __future__ import annotations

import aiohttp
from webhelp import ADMIN_TOKEN, Live

EXPECTED = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer"}
STREAMED = ("/c/kmers/stream", "/c/kmers/export.jsonl", "/c/kmers/export.mbox",
            "/c/kmers/export.md", "/c/kmers/export.zip")
PLAIN = ("/c/kmers", "/c/kmers/posts", "/c/kmers/feed.atom", "/c/kmers/events",
         "/c/kmers/events.ics", "/healthz", "/metrics", "/static/style.css", "/admin",
         "/c/nope", "/c/kmers/export.exe", "/favicon.ico")


def _check(path: str, r: aiohttp.ClientResponse) -> None:
    for name, value in EXPECTED.items():
        assert r.headers.get(name) == value, (path, r.status, name, dict(r.headers))
    csp = r.headers.get("Content-Security-Policy", "")
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp, (path, csp)


async def test_streamed_responses_carry_the_security_headers(live: Live) -> None:
    await live.nets["lobby"].post_as_member("alice", "something to export")
    await live.settle()
    async with aiohttp.ClientSession() as s:
        for path in STREAMED:
            async with s.get(live.url + path) as r:
                assert r.status == 200, path
                _check(path, r)  # the stream is open: its headers went out in prepare()
                if "export" in path:
                    assert await r.read()


async def test_every_other_route_carries_them(live: Live) -> None:
    async with aiohttp.ClientSession() as s:
        for path in PLAIN:
            async with s.get(live.url + path, allow_redirects=False) as r:
                _check(path, r)
        async with s.post(live.url + "/admin/login", data={"token": "wrong"},
                          allow_redirects=False) as r:
            _check("/admin/login", r)
        async with s.get(live.url + "/admin",
                         headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as r:
            assert r.status == 200
            _check("/admin (logged in)", r)
