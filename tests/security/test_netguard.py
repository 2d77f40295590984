"""The SSRF guard on media fetches, against a real local aiohttp server."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bridge.contract import netguard
from bridge.contract.netguard import MediaRefused, address_refusal, fetch_media

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
seen_auth: list[str | None] = []


async def _img(request: web.Request) -> web.Response:
    seen_auth.append(request.headers.get("Authorization"))
    return web.Response(body=PNG, content_type="image/png")


async def _big(request: web.Request) -> web.Response:
    return web.Response(body=b"x" * 50_000, content_type="image/png")


async def _chunked_big(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "image/png"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for _ in range(100):
        await resp.write(b"y" * 1000)
    return resp


async def _drip(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "image/png"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for _ in range(100):  # a byte every 0.1 s: each read is quick, the whole is not
        await resp.write(b"z")
        await asyncio.sleep(0.1)
    return resp


async def _gzip(request: web.Request) -> web.Response:
    return web.Response(body=b"\x1f\x8b...", headers={"Content-Encoding": "gzip"})


def _redirect(to: str, status: int = 302) -> Any:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, headers={"Location": to})
    return handler


def _status(code: int) -> Any:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=code)
    return handler


async def _redirect_to(request: web.Request) -> web.Response:
    return web.Response(status=302, headers={"Location": request.query["to"]})


async def _loop(request: web.Request) -> web.Response:
    n = int(request.match_info["n"])
    return web.Response(status=302, headers={"Location": f"/loop/{n + 1}"})


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, int]]:
    app = web.Application()
    app.add_routes([
        web.get("/img.png", _img), web.get("/big", _big), web.get("/chunked", _chunked_big),
        web.get("/drip", _drip), web.get("/gzip", _gzip), web.get("/to", _redirect_to),
        web.get("/loop/{n}", _loop), web.get("/redir-ok", _redirect("/img.png", 301)),
        web.get("/notfound", _status(404)), web.get("/oops", _status(503)),
    ])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    seen_auth.clear()
    yield "127.0.0.1", port
    await runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # Credentials on the caller's session must never reach a media host.
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer CALLER-SECRET",
                                              "User-Agent": "hashbridge-test"}) as s:
        yield s


async def get(http: aiohttp.ClientSession, url: str, hosts: list[str], **kw: Any) -> Any:
    opts: dict[str, Any] = {"max_bytes": 20_000, "timeout": 5.0, "allow_private": True}
    opts.update(kw)
    return await fetch_media(http, url, allowed_hosts=hosts, **opts)


async def test_fetches_from_allowed_host(server: tuple[str, int],
                                         http: aiohttp.ClientSession) -> None:
    host, port = server
    got = await get(http, f"http://{host}:{port}/img.png", [f"{host}:{port}"])
    assert got.data == PNG and got.content_type == "image/png"
    assert got.address == "127.0.0.1"
    assert seen_auth == [None]


async def test_follows_a_checked_redirect_on_the_same_host(server: tuple[str, int],
                                                           http: aiohttp.ClientSession) -> None:
    host, port = server
    got = await get(http, f"http://{host}:{port}/redir-ok", [f"{host}:{port}"])
    assert got.data == PNG and got.final_url.endswith("/img.png")


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.8.9.1", "10.1.2.3", "172.16.0.9", "192.168.1.1", "169.254.169.254",
    "0.0.0.0", "100.64.0.1", "224.0.0.1", "240.0.0.1", "255.255.255.255", "::1", "::",
    "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
    "::ffff:169.254.169.254", "2002:7f00:1::1", "64:ff9b::a00:1", "::127.0.0.1",
    "2001:db8::1",
])
def test_non_public_addresses_are_refused(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)), address


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1::1",
                                     "::ffff:93.184.216.34", "1.1.1.1"])
def test_public_addresses_pass(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) == ""


@pytest.mark.parametrize("host", ["127.0.0.1", "10.0.0.1", "169.254.169.254", "[::1]",
                                  "[::ffff:127.0.0.1]", "localhost"])
async def test_private_targets_refused_even_when_allow_listed(
        host: str, http: aiohttp.ClientSession) -> None:
    bare = host.strip("[]")
    with pytest.raises(MediaRefused) as e:
        await get(http, f"http://{host}/latest/meta-data/", [host], allow_private=False)
    assert not e.value.transient
    assert "address" in e.value.reason or bare in e.value.reason


async def test_redirect_to_private_address_is_refused(
        server: tuple[str, int], http: aiohttp.ClientSession,
        monkeypatch: pytest.MonkeyPatch) -> None:
    host, port = server
    real = netguard.address_refusal
    # Only the test server itself is exempt; every other address gets the real check.
    monkeypatch.setattr(netguard, "address_refusal",
                        lambda ip: "" if str(ip) == "127.0.0.1" else real(ip))
    allowed = [f"{host}:{port}", "169.254.169.254", "10.0.0.1:8080"]
    for target in ("http://169.254.169.254/latest/meta-data/", "http://10.0.0.1:8080/x"):
        with pytest.raises(MediaRefused, match=r"link-local|private"):
            await get(http, f"http://{host}:{port}/to?to={target}", allowed,
                      allow_private=False)
    got = await get(http, f"http://{host}:{port}/img.png", allowed, allow_private=False)
    assert got.data == PNG  # the exemption really lets the server through


@pytest.mark.parametrize("target", ["http://evil.example/x.png", "file:///etc/passwd",
                                    "gopher://127.0.0.1:25/_HELO", "http://127.0.0.1:1/x"])
async def test_redirect_elsewhere_is_refused(server: tuple[str, int],
                                             http: aiohttp.ClientSession, target: str) -> None:
    host, port = server
    with pytest.raises(MediaRefused, match=r"scheme|not one of"):
        await get(http, f"http://{host}:{port}/to?to={target}", [f"{host}:{port}"])


async def test_redirect_chain_is_capped(server: tuple[str, int],
                                        http: aiohttp.ClientSession) -> None:
    host, port = server
    with pytest.raises(MediaRefused, match="more than 3 redirects"):
        await get(http, f"http://{host}:{port}/loop/0", [f"{host}:{port}"])


async def test_request_headers_do_not_follow_a_redirect_to_another_origin(
        server: tuple[str, int], http: aiohttp.ClientSession) -> None:
    host, port = server
    hosts = [f"{host}:{port}", f"localhost:{port}"]
    other = f"http://localhost:{port}/img.png"
    await get(http, f"http://{host}:{port}/to?to={other}", hosts,
              headers={"Authorization": "Bearer MEDIA-TOKEN"})
    await get(http, f"http://{host}:{port}/img.png", hosts,
              headers={"Authorization": "Bearer MEDIA-TOKEN"})
    assert seen_auth == [None, "Bearer MEDIA-TOKEN"]


@pytest.mark.parametrize("path", ["/big", "/chunked"])
async def test_size_limit(server: tuple[str, int], http: aiohttp.ClientSession,
                          path: str) -> None:
    host, port = server
    with pytest.raises(MediaRefused, match="byte limit") as e:
        await get(http, f"http://{host}:{port}{path}", [f"{host}:{port}"], max_bytes=10_000)
    assert not e.value.transient
    got = await get(http, f"http://{host}:{port}{path}", [f"{host}:{port}"],
                    max_bytes=100_000)
    assert len(got.data) in (50_000, 100_000)


async def test_slow_drip_hits_the_total_time_limit(server: tuple[str, int],
                                                   http: aiohttp.ClientSession) -> None:
    host, port = server
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    with pytest.raises(MediaRefused, match="longer than 1 s") as e:
        await get(http, f"http://{host}:{port}/drip", [f"{host}:{port}"], timeout=1.0)
    assert e.value.transient and loop.time() - t0 < 2.0


async def test_compressed_media_refused(server: tuple[str, int],
                                        http: aiohttp.ClientSession) -> None:
    host, port = server
    with pytest.raises(MediaRefused, match="gzip"):
        await get(http, f"http://{host}:{port}/gzip", [f"{host}:{port}"])


@pytest.mark.parametrize(("path", "transient"), [("/notfound", False), ("/oops", True)])
async def test_http_errors(server: tuple[str, int], http: aiohttp.ClientSession,
                           path: str, transient: bool) -> None:
    host, port = server
    with pytest.raises(MediaRefused, match="HTTP") as e:
        await get(http, f"http://{host}:{port}{path}", [f"{host}:{port}"])
    assert e.value.transient is transient


@pytest.mark.parametrize(("url", "reason"), [
    ("file:///etc/passwd", "scheme"), ("gopher://media.example/_x", "scheme"),
    ("ftp://media.example/x", "scheme"), ("data:image/png;base64,AAAA", "scheme"),
    ("//media.example/x", "scheme"), ("http://media.example@evil.example/x", "user info"),
    ("http://evil.example/x.png", "not one of"), ("http://media.example.evil.example/x",
                                                  "not one of"),
    ("http://media.example:8080/x", "not one of"), ("https://127.0.0.1/x", "not one of"),
])
async def test_url_policy(http: aiohttp.ClientSession, url: str, reason: str) -> None:
    with pytest.raises(MediaRefused, match=reason):
        await get(http, url, ["media.example"], allow_private=False)


async def test_dns_is_resolved_once_and_the_answer_pinned(
        server: tuple[str, int], http: aiohttp.ClientSession,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A rebinding DNS server answers the check with the good address and the connect
    with another: the fetch must still reach the checked address, asking DNS once."""
    _, port = server
    loop = asyncio.get_running_loop()
    answers = iter(["127.0.0.1", "10.255.255.1", "10.255.255.1"])
    asked: list[str] = []

    async def rebinding(host: str, port: int, **kw: Any) -> list[Any]:
        asked.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    monkeypatch.setattr(loop, "getaddrinfo", rebinding)
    got = await get(http, f"http://media.test:{port}/img.png", [f"media.test:{port}"],
                    timeout=3.0)
    assert got.data == PNG and got.address == "127.0.0.1"
    assert asked == ["media.test"]


async def test_any_private_answer_refuses_the_name(
        http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()

    async def mixed(host: str, port: int, **kw: Any) -> list[Any]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.168.0.10", port))]

    monkeypatch.setattr(loop, "getaddrinfo", mixed)
    with pytest.raises(MediaRefused, match=r"192\.168\.0\.10 is a private"):
        await get(http, "https://media.example/x.png", ["media.example"], allow_private=False)
