"""Admin login (issue 12, item 11): wrong tokens are throttled per client
address; a session is a random id the server keeps and logout revokes."""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path

import aiohttp
from webhelp import ADMIN_TOKEN, live_bridge

from bridge.web.admin import COOKIE, LOGIN_FAILURES

PROXIED = {"trusted_proxies": ["127.0.0.1"]}


def _jar() -> aiohttp.CookieJar:
    return aiohttp.CookieJar(unsafe=True)  # accept cookies from an IP host, as browsers do


async def _login(s: aiohttp.ClientSession, url: str, token: str,
                 client: str = "192.0.2.10") -> aiohttp.ClientResponse:
    async with s.post(f"{url}/admin/login", data={"token": token}, allow_redirects=False,
                      headers={"X-Forwarded-For": client}) as r:
        await r.read()
        return r


def _cookie(s: aiohttp.ClientSession) -> str:
    return next(c.value for c in s.cookie_jar if c.key == COOKIE)


async def _admin_page(s: aiohttp.ClientSession, url: str, **kw: object) -> str:
    async with s.get(f"{url}/admin", **kw) as r:  # type: ignore[arg-type]
        assert r.status == 200
        return await r.text()


async def test_wrong_tokens_are_throttled_per_address(tmp_path: Path) -> None:
    async with live_bridge(tmp_path, web_options=PROXIED) as live, \
            aiohttp.ClientSession(cookie_jar=_jar()) as s:
        for _ in range(LOGIN_FAILURES):
            r = await _login(s, live.url, "wrong-guess", "203.0.113.5")
            assert r.status == 303 and "error" in r.headers["Location"]
        # The next attempt is refused before its token is even compared ...
        r = await _login(s, live.url, "another-guess", "203.0.113.5")
        assert r.status == 429 and 0 < int(r.headers["Retry-After"]) <= 15 * 60
        r = await _login(s, live.url, ADMIN_TOKEN, "203.0.113.5")
        assert r.status == 429 and COOKIE not in r.cookies
        async with s.post(f"{live.url}/admin/login", data={"token": "x"},
                          headers={"X-Forwarded-For": "203.0.113.5"}) as resp:
            assert "too many wrong admin tokens" in await resp.text()
        # ... while another address logs in as usual.
        r = await _login(s, live.url, ADMIN_TOKEN, "198.51.100.20")
        assert r.status == 303 and r.headers["Location"] == "/admin"
        # Guessing through the Authorization header counts the same.
        for _ in range(LOGIN_FAILURES):
            async with s.get(f"{live.url}/admin", headers={
                    "Authorization": "Bearer wrong", "X-Forwarded-For": "203.0.113.6"}) as resp:
                assert resp.status == 200 and 'name="token"' in await resp.text()
        async with s.get(f"{live.url}/admin", headers={
                "Authorization": f"Bearer {ADMIN_TOKEN}",
                "X-Forwarded-For": "203.0.113.6"}) as resp:
            assert resp.status == 429 and resp.headers["Retry-After"]


async def test_sessions_are_random_and_logout_revokes_them(tmp_path: Path) -> None:
    async with live_bridge(tmp_path) as live, \
            aiohttp.ClientSession(cookie_jar=_jar()) as a, \
            aiohttp.ClientSession(cookie_jar=_jar()) as b, \
            aiohttp.ClientSession(cookie_jar=_jar()) as thief:
        assert (await _login(a, live.url, ADMIN_TOKEN)).status == 303
        assert (await _login(b, live.url, ADMIN_TOKEN)).status == 303
        first, second = _cookie(a), _cookie(b)
        assert first != second and len(first) >= 40
        # Nothing derived from the token: the old fixed cookie opens nothing.
        fixed = hmac.new(ADMIN_TOKEN.encode(), b"session:v1", hashlib.sha256).hexdigest()
        assert fixed not in (first, second)
        thief.cookie_jar.update_cookies({COOKIE: fixed})
        assert 'name="token"' in await _admin_page(thief, live.url)
        page_a = await _admin_page(a, live.url)
        page_b = await _admin_page(b, live.url)
        csrf_a = re.search(r'name="csrf" value="([0-9a-f]+)"', page_a).group(1)  # type: ignore[union-attr]
        csrf_b = re.search(r'name="csrf" value="([0-9a-f]+)"', page_b).group(1)  # type: ignore[union-attr]
        assert csrf_a != csrf_b
        # A CSRF field of one session is worthless in another.
        async with b.post(f"{live.url}/admin/retry", data={"csrf": csrf_a}) as r:
            assert r.status == 403
        # A copy of the cookie works until its session logs out ...
        thief.cookie_jar.clear()
        thief.cookie_jar.update_cookies({COOKIE: first})
        assert "Dead deliveries" in await _admin_page(thief, live.url)
        async with a.post(f"{live.url}/admin/logout", data={"csrf": csrf_a},
                          allow_redirects=False) as r:
            assert r.status == 303
        # ... then it is dead on the server, not only deleted in one browser.
        assert 'name="token"' in await _admin_page(thief, live.url)
        async with thief.post(f"{live.url}/admin/retry", data={"csrf": csrf_a}) as r:
            assert r.status == 403
        # The other session is untouched.
        assert "Dead deliveries" in await _admin_page(b, live.url)


async def test_session_cookie_is_secure_behind_a_tls_proxy(tmp_path: Path) -> None:
    opts = {"public_url": "https://chat.example.org"}
    async with live_bridge(tmp_path, web_options=opts) as live, \
            aiohttp.ClientSession(cookie_jar=_jar()) as s:
        r = await _login(s, live.url, ADMIN_TOKEN)
        assert r.status == 303
        cookie = r.headers["Set-Cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
