"""Per-client limits of the web view (issue 12, items 6 and 9).

Against the real server ``hashbridge run`` starts (``serve_web``): clients that
never read, clients that open live streams without end, a request body that
never arrives.  Client addresses are told apart through ``trusted_proxies``
and X-Forwarded-For, as behind a real reverse proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from webhelp import Live, live_bridge

from bridge.contract.model import Author, ChannelKey, NativeId, Posted
from bridge.contract.richtext import RichText

LIMITS = {"trusted_proxies": ["127.0.0.1"], "send_timeout_seconds": 4.0,
          "body_timeout_seconds": 1.0, "max_exports": 2, "max_exports_per_client": 1,
          "max_live_streams": 3, "max_live_streams_per_client": 2}


@contextlib.asynccontextmanager
async def limited(tmp_path: Path) -> AsyncIterator[Live]:
    async with live_bridge(tmp_path, web_options=LIMITS) as lv:
        yield lv


class RawClient:
    """A client on a bare socket with a tiny receive buffer, that reads only
    what it is told to (a browser tab left open, or an attacker)."""

    def __init__(self, url: str) -> None:
        u = urlsplit(url)
        self.addr = (u.hostname or "127.0.0.1", u.port or 80)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.setblocking(False)

    async def request(self, path: str, client: str) -> bytes:
        """Send GET *path* as *client*; return the response head."""
        loop = asyncio.get_running_loop()
        await loop.sock_connect(self.sock, self.addr)
        await loop.sock_sendall(self.sock, (
            f"GET {path} HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: {client}\r\n\r\n").encode())
        head = b""
        async with asyncio.timeout(30):
            while b"\r\n\r\n" not in head:
                chunk = await loop.sock_recv(self.sock, 1)
                assert chunk, head
                head += chunk
        return head

    async def drain(self, timeout: float) -> tuple[bytes, bool]:
        """Read until the server closes; (what came, whether it was a reset)."""
        loop = asyncio.get_running_loop()
        got = b""
        async with asyncio.timeout(timeout):
            while True:
                try:
                    chunk = await loop.sock_recv(self.sock, 1 << 20)
                except ConnectionResetError:
                    return got, True
                if not chunk:
                    return got, False
                got += chunk

    def close(self) -> None:
        self.sock.close()


async def _big_archive(live: Live, repeat: int = 1200) -> None:
    """About 10 MB of export (3 MB of live page): far more than the socket
    buffers hold; *repeat* scales it."""
    words = ("lorem ipsum dolor sit amet " * repeat).strip()
    events = [Posted(channel=ChannelKey("kmers/sb_porch"), native_id=NativeId(f"big-{i}"),
                     author=Author(platform="sandbox", handle=f"writer{i % 7}"),
                     text=RichText.plain(f"{i}: {words}")) for i in range(110)]
    for k in range(0, len(events), 10):
        await live.bridge.ingest("sb_porch", events[k:k + 10], None)
    await live.settle(timeout=120)


async def _get(s: aiohttp.ClientSession, url: str, client: str) -> tuple[int, bytes, str]:
    async with s.get(url, headers={"X-Forwarded-For": client}) as r:
        return r.status, await r.read(), r.headers.get("Retry-After", "")


async def test_clients_that_never_read_cannot_hold_the_exports(tmp_path: Path) -> None:
    async with limited(tmp_path) as live:
        await _big_archive(live)
        url = f"{live.url}/c/kmers/export.jsonl"
        stalled = [RawClient(live.url), RawClient(live.url)]
        try:
            # Two clients (two addresses) start an export each and never read it.
            for i, c in enumerate(stalled):
                head = await c.request("/c/kmers/export.jsonl", f"203.0.113.{i + 1}")
                assert head.startswith(b"HTTP/1.1 200"), head
            async with aiohttp.ClientSession() as s:
                # The same stalled address asking again: its own share is used up.
                status, body, retry = await _get(s, url, "203.0.113.1")
                assert status == 429 and retry and b"already have 1 exports" in body
                # A third client is served: the stalled ones hold no build slot.
                status, body, _ = await _get(s, url, "198.51.100.7")
                assert status == 200 and body.count(b"\n") == 110
                # After send_timeout_seconds without reading, the stalled clients
                # are dropped: what they get is cut short, not the whole export ...
                await asyncio.sleep(LIMITS["send_timeout_seconds"] + 1.0)  # type: ignore[operator]
                for c in stalled:
                    got, _reset = await c.drain(timeout=30)
                    assert not got.endswith(b"0\r\n\r\n") and len(got) < 8_000_000, len(got)
                # ... and their address may export again.
                status, body, _ = await _get(s, url, "203.0.113.1")
                assert status == 200 and body.count(b"\n") == 110
        finally:
            for c in stalled:
                c.close()


async def test_live_streams_are_capped_per_client_and_in_all(tmp_path: Path) -> None:
    async with limited(tmp_path) as live, aiohttp.ClientSession() as s:
        url = f"{live.url}/c/kmers/stream"
        held: list[aiohttp.ClientResponse] = []
        try:
            for client in ("203.0.113.1", "203.0.113.1"):
                r = await s.get(url, headers={"X-Forwarded-For": client})
                assert r.status == 200
                held.append(r)
            # A third from the same address: 429 with a reason and Retry-After.
            status, body, retry = await _get(s, url, "203.0.113.1")
            assert status == 429 and retry == "30" and b"live streams" in body
            r = await s.get(url, headers={"X-Forwarded-For": "203.0.113.2"})
            assert r.status == 200
            held.append(r)
            # All three taken: the next client gets a clear 503 ...
            status, body, retry = await _get(s, url, "198.51.100.9")
            assert status == 503 and retry and b"too many live streams" in body
            # ... while the pages and /healthz still answer.
            async with s.get(f"{live.url}/healthz") as h:
                assert h.status == 200
            async with s.get(f"{live.url}/c/kmers") as p:
                assert p.status == 200
            # A client that goes away frees its slot (within a second or two).
            held.pop().close()
            deadline = time.monotonic() + 10
            while True:
                r = await s.get(url, headers={"X-Forwarded-For": "198.51.100.9"})
                if r.status == 200:
                    held.append(r)
                    break
                r.close()
                assert time.monotonic() < deadline, "the closed stream's slot never freed"
                await asyncio.sleep(0.3)
        finally:
            for r in held:
                r.close()


async def test_a_request_body_that_never_arrives_is_answered_408(tmp_path: Path) -> None:
    async with limited(tmp_path) as live:
        u = urlsplit(live.url)
        reader, writer = await asyncio.open_connection(u.hostname, u.port)
        try:
            writer.write(b"POST /admin/login HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Type: application/x-www-form-urlencoded\r\n"
                         b"Content-Length: 100\r\n\r\ntoken=abc")
            await writer.drain()
            started = time.monotonic()
            async with asyncio.timeout(20):
                status = await reader.readline()
                rest = await reader.read()  # and the connection is closed after it
            assert status.startswith(b"HTTP/1.1 408"), status
            assert b"did not arrive in time" in rest
            assert time.monotonic() - started < 15
        finally:
            writer.close()


def test_service_unit_gives_the_web_view_its_descriptors() -> None:
    """The unit's open-files limit holds the default connection cap with its
    reserve, and since its seccomp filter forbids setrlimit, a filtered call
    fails with an error the daemon handles rather than killing it."""
    from bridge.runtime.config import WebSettings
    from bridge.web.guard import FD_RESERVE

    root = Path(__file__).resolve().parents[2]
    unit = (root / "deploy" / "hashbridge.service").read_text()
    keys: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            k, _, v = line.partition("=")
            keys.setdefault(k.strip(), []).append(v.strip())
    assert int(keys["LimitNOFILE"][-1]) >= WebSettings().max_connections + FD_RESERVE
    if any("@resources" in v for v in keys.get("SystemCallFilter", [])):
        assert keys.get("SystemCallErrorNumber") == ["EPERM"]


def test_log_filter_keeps_a_few_and_counts_the_rest() -> None:
    import logging

    from bridge.web.guard import RateLimitFilter

    f = RateLimitFilter(burst=3, window=0.3)

    def rec(msg: str, *args: object) -> logging.LogRecord:
        return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, msg, args, None)

    passed = [r for r in (rec("accept failed\nsocket: %s", i) for i in range(100)) if f.filter(r)]
    assert len(passed) == 3 and "counted, not logged" in passed[-1].getMessage()
    assert f.filter(rec("another kind"))  # counted apart
    time.sleep(0.35)
    nxt = rec("accept failed\nsocket: %s", 7)
    assert f.filter(nxt) and "97 more like this suppressed" in nxt.getMessage()


async def _silent(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    u = urlsplit(url)
    return await asyncio.open_connection(u.hostname, u.port)


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            while await reader.read(4096):
                pass
        return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


async def test_header_timeout_closes_silent_and_slow_loris_connections(tmp_path: Path) -> None:
    async with live_bridge(tmp_path, web_options={"header_timeout_seconds": 1.0}) as live:
        silent = await _silent(live.url)
        loris = await _silent(live.url)
        loris[1].write(b"GET /c/kmers HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()

        async def trickle() -> None:
            for k in range(40):  # a header line every 0.2 s: never a whole head
                with contextlib.suppress(ConnectionError):
                    loris[1].write(f"X-{k}: y\r\n".encode())
                await asyncio.sleep(0.2)

        dripping = asyncio.create_task(trickle())
        try:
            assert await _closed_within(silent[0], 6)
            assert await _closed_within(loris[0], 6)
            assert time.monotonic() - started < 6
        finally:
            dripping.cancel()
            for _, w in (silent, loris):
                w.close()
        # A keep-alive client that asks promptly is not affected.
        async with aiohttp.ClientSession() as s:
            for _ in range(3):
                async with s.get(f"{live.url}/healthz") as r:
                    assert r.status == 200
                await asyncio.sleep(0.3)


async def test_at_the_cap_the_longest_waiting_connection_makes_room(tmp_path: Path) -> None:
    opts = {"max_connections": 16, "max_live_streams": 3, "header_timeout_seconds": 60.0,
            "body_timeout_seconds": 60.0}
    async with live_bridge(tmp_path, web_options=opts) as live:
        held = []
        for i in range(16):  # ones dribbling a request body, then silent ones
            r, w = await _silent(live.url)
            if i < 8:
                w.write(b"POST /admin/login HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n"
                        b"Content-Type: application/x-www-form-urlencoded\r\n\r\ntok")
            held.append((r, w))
            await asyncio.sleep(0.02)
        try:
            async with aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(force_close=True)) as s:
                for path in ("/healthz", "/c/kmers", "/healthz"):
                    async with s.get(live.url + path) as r:
                        assert r.status == 200, path
            # The first probe made room by closing the oldest waiting connection
            # (one whose body never comes is waiting, not busy); the later
            # probes found the room the earlier ones left.
            closed = [await _closed_within(r, 0.3) for r, _ in held]
            assert closed == [True] + [False] * 15, closed
            async with aiohttp.ClientSession() as s, s.get(f"{live.url}/metrics") as r:
                text = await r.text()
            assert 'hashbridge_web_connections_closed_total{reason="evicted"} 1' in text
            assert "\nhashbridge_web_connections 16\n" in text  # 15 still held, and this one

        finally:
            for _, w in held:
                w.close()


def test_check_validates_the_web_limits(tmp_path: Path) -> None:
    """``hashbridge check`` names each bad limit by its key, all at once."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    cfg = tmp_path / "bridge.toml"
    lines = ["[bridge]", f'data_dir = "{tmp_path / "data"}"', "", "[bridge.web]",
             "max_connections = 100", "max_live_streams = 100", "header_timeout_seconds = 0",
             'trusted_proxies = ["127.0.0.1", "not-an-address"]', ""]
    for n in ("lobby", "garden"):
        lines += [f"[accounts.sb_{n}]", 'platform = "sandbox"', f'dir = "{tmp_path}"', ""]
    lines += ["[[communities]]", 'name = "kmers"', 'hashtag = "kmers"', ""]
    for n in ("lobby", "garden"):
        lines += ["[[communities.channels]]", f'account = "sb_{n}"', f'network = "{n}"', ""]
    cfg.write_text("\n".join(lines))
    cfg.chmod(0o600)
    out = subprocess.run([sys.executable, "-m", "bridge.cli", "check", "-c", str(cfg)],
                         cwd=root, capture_output=True, text=True, timeout=120, check=False)
    text = out.stdout + out.stderr
    assert out.returncode == 78, text
    assert "bridge.web.max_live_streams" in text and "below max_connections (100)" in text
    assert "bridge.web.header_timeout_seconds" in text
    assert "bridge.web.trusted_proxies" in text and "not-an-address" in text


async def test_an_ipv6_client_is_counted_by_its_64(tmp_path: Path) -> None:
    async with limited(tmp_path) as live, aiohttp.ClientSession() as s:
        url = f"{live.url}/c/kmers/stream"
        held = []
        try:
            for client in ("2001:db8:1:1::1", "2001:db8:1:1::2"):
                r = await s.get(url, headers={"X-Forwarded-For": client})
                assert r.status == 200
                held.append(r)
            status, body, _ = await _get(s, url, "2001:db8:1:1:ffff::9")  # same /64
            assert status == 429, body
            r = await s.get(url, headers={"X-Forwarded-For": "2001:db8:1:2::1"})
            assert r.status == 200  # another /64
            held.append(r)
        finally:
            for r in held:
                r.close()


async def test_when_every_connection_is_busy_a_newcomer_gets_503(tmp_path: Path) -> None:
    """The last resort, with a handler that holds its connection: nothing to
    evict, so the newcomer is answered 503 and closed (never left hanging)."""
    from aiohttp import web

    from bridge.web import guard

    release = asyncio.Event()
    both_held = asyncio.Event()
    holding = 0

    async def hold(request: web.Request) -> web.Response:
        nonlocal holding
        holding += 1
        if holding == 2:
            both_held.set()
        await release.wait()
        return web.Response(text="done")

    app = web.Application(middlewares=[guard.middleware])
    app.router.add_get("/hold", hold)
    pool = guard.Pool(cap=2, header_timeout=30.0)
    app[guard.POOL] = pool
    runner = web.AppRunner(app)
    await runner.setup()
    site = guard.GuardedSite(runner, "127.0.0.1", 0, pool)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as s:
            busy = [asyncio.create_task(s.get(f"http://127.0.0.1:{port}/hold"))
                    for _ in range(2)]
            async with asyncio.timeout(10):
                await both_held.wait()
            assert sum(1 for g in pool.open if g.busy) == 2
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            async with asyncio.timeout(5):
                answer = await reader.read()
            writer.close()
            assert answer.startswith(b"HTTP/1.1 503") and b"Retry-After: 10" in answer
            assert b"connection limit" in answer and pool.refused == 1
            release.set()
            for t in busy:
                r = await t
                assert r.status == 200
                r.close()
    finally:
        await runner.cleanup()


async def test_a_slow_reader_of_a_big_page_is_served_and_a_stalled_one_dropped(
        tmp_path: Path) -> None:
    """The header clock restarts after each response, but a response that is
    still leaving (the client takes it, slowly) is given the time it needs."""
    timeout = 2.0
    async with live_bridge(tmp_path, web_options={"header_timeout_seconds": timeout}) as live:
        await _big_archive(live, repeat=4000)  # a 4 MB page (cards are cut)
        slow, stalled = RawClient(live.url), RawClient(live.url)
        loop = asyncio.get_running_loop()
        try:
            await slow.request("/c/kmers", "x")
            await stalled.request("/c/kmers", "x")
            started = time.monotonic()
            body = b""
            async with asyncio.timeout(120):
                while not body.rstrip().endswith(b"</html>"):
                    chunk = await loop.sock_recv(slow.sock, 4096)
                    assert chunk, f"cut after {len(body)} bytes"
                    body += chunk
                    await asyncio.sleep(0.004)  # >= 4 s for the page: > timeout
            took = time.monotonic() - started
            assert len(body) > 3_500_000 and took > timeout + 1, (len(body), took)
            # The one that read nothing was closed, its page cut short.
            await asyncio.sleep(max(0.0, 2 * timeout + 1 - took))
            got, _ = await stalled.drain(timeout=30)
            assert not got.rstrip().endswith(b"</html>") and len(got) < len(body)
        finally:
            slow.close()
            stalled.close()


async def test_the_live_page_waits_out_a_full_server(tmp_path: Path, browser_page: object) -> None:
    """With every live-stream slot taken the browser's stream is answered 503;
    the page keeps its posts, says it is reconnecting, backs off, and goes live
    by itself once a slot frees."""
    from typing import Any

    page: Any = browser_page
    opts = {"max_live_streams": 1}
    async with live_bridge(tmp_path, web_options=opts) as live, aiohttp.ClientSession() as s:
        await live.nets["lobby"].post_as_member("alice", "visible without a stream")
        await live.settle()
        hog = await s.get(f"{live.url}/c/kmers/stream")
        assert hog.status == 200
        try:
            await page.goto(f"{live.url}/c/kmers")
            assert "visible without a stream" in await page.inner_text("#posts")
            await page.wait_for_function(
                "() => document.getElementById('status').textContent.startsWith('Reconnect')",
                timeout=10000)
            await asyncio.sleep(3.0)  # a few refused attempts, backing off
            hog.close()
            await page.wait_for_function(
                "() => document.getElementById('status').textContent === 'Live'",
                timeout=30000)
            await live.nets["garden"].post_as_member("bob", "arrives live after the wait")
            await page.wait_for_function(
                "t => document.getElementById('posts').innerText.includes(t)",
                arg="arrives live after the wait", timeout=15000)
        finally:
            hog.close()
