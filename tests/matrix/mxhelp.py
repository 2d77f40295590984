"""Helpers of the Matrix tests: users, rooms, running the adapter with a FakeContext."""


from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from nio import AsyncClient, AsyncClientConfig, RoomCreateResponse

from adapters.matrix import MatrixFactory, generate_registration
from adapters.matrix.adapter import MatrixAdapter
from adapters.matrix.config import MatrixAccount, MatrixChannel
from adapters.matrix.testserver import (
    SERVER_NAME,
    RegisteredUser,
    SynapseServer,
    free_port,
    synapse_python,
)
from bridge.contract.adapter import ChannelSpec, Rendered, SendCreate, SendDelete, SendEdit
from bridge.contract.model import Author, ChannelKey, NativeId, Post, new_delivery_id, new_post_id
from bridge.contract.services import Services
from bridge.contract.testing import FakeContext
from bridge.contract.textconv import from_plain, to_html, to_markdown, to_plain
from bridge.daemon.harness import eventually as eventually  # for the Matrix tests

AS_TOKEN = "as-" + secrets.token_hex(12)
HS_TOKEN = "hs-" + secrets.token_hex(12)


def need_synapse() -> None:
    if synapse_python() is None:
        pytest.skip("Synapse not installed: create .venv-synapse or set SYNAPSE_PYTHON "
                    "(uv pip install --python .venv-synapse/bin/python matrix-synapse)")


class AsForwarder:
    """Session-long appservice endpoint in a thread: Synapse backs off for seconds
    when its appservice is unreachable, and a test's adapter lives only for that
    test.  Transactions go to the attached adapter (``target`` port), or are
    acknowledged and dropped while none is attached."""

    def __init__(self) -> None:
        self.port = free_port()
        self.target: int | None = None
        fwd = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, data = 200, b"{}"
                if fwd.target is not None:
                    req = urllib.request.Request(
                        f"http://127.0.0.1:{fwd.target}{self.path}", data=body or None,
                        method=self.command, headers=dict(self.headers))
                    try:
                        with urllib.request.urlopen(req, timeout=30) as r:
                            status, data = r.status, r.read()
                    except urllib.error.HTTPError as e:
                        status, data = e.code, e.read()
                    except OSError:
                        status, data = 503, b"{}"
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_PUT = do_POST = do_GET = _relay

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Hs:
    server: SynapseServer
    forwarder: AsForwarder
    users: dict[str, RegisteredUser] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    def user(self, name: str) -> RegisteredUser:
        if name not in self.users:
            self.users[name] = self.server.register(name)
        return self.users[name]

    def appservice_account(self, **kw: Any) -> MatrixAccount:
        """An appservice account listening on a fresh port the forwarder sends to."""
        port = free_port()
        self.forwarder.target = port
        return MatrixAccount(homeserver=self.url, user_id=f"@hbbot:{SERVER_NAME}",
                             mode="appservice", as_token=AS_TOKEN, hs_token=HS_TOKEN,
                             as_listen=f"127.0.0.1:{port}", as_url=self.forwarder.url, **kw)


def start_server(tmp: Path, *, relaxed: bool) -> Hs:
    """Forwarder first, then Synapse with the generated registration pointing at it."""
    fwd = AsForwarder()
    reg = tmp / "appservice.yaml"
    probe = MatrixAccount(homeserver="http://127.0.0.1:1", user_id=f"@hbbot:{SERVER_NAME}",
                          mode="appservice", as_token=AS_TOKEN, hs_token=HS_TOKEN,
                          as_url=fwd.url)
    reg.write_text(generate_registration(probe))
    srv = SynapseServer(tmp / "hs", relaxed=relaxed, appservice_files=(str(reg),))
    try:
        srv.start()
    except BaseException:
        fwd.close()
        raise
    return Hs(srv, fwd)








async def member_client(hs: Hs, name: str) -> AsyncClient:
    u = hs.user(name)
    c = AsyncClient(hs.url, u.user_id, config=AsyncClientConfig(max_limit_exceeded=0))
    c.access_token, c.device_id, c.user_id = u.access_token, u.device_id, u.user_id
    return c


@dataclass
class Room:
    room_id: str
    alice: AsyncClient
    bob: AsyncClient





async def make_room(hs: Hs, *, invite_bot: bool = True, encrypted: bool = False) -> Room:
    alice, bob = await member_client(hs, "alice"), await member_client(hs, "bob")
    bot = hs.user("bridgebot")
    initial = [{"type": "m.room.encryption", "state_key": "",
                "content": {"algorithm": "m.megolm.v1.aes-sha2"}}] if encrypted else []
    r = await alice.room_create(name="bridge test",
                                invite=[bob.user_id] + ([bot.user_id] if invite_bot else []),
                                initial_state=initial)
    assert isinstance(r, RoomCreateResponse), r
    await bob.join(r.room_id)
    return Room(r.room_id, alice, bob)


@dataclass
class Running:
    adapter: MatrixAdapter
    ctx: FakeContext
    task: asyncio.Task[None]
    http: aiohttp.ClientSession

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task
        await self.http.close()


def bot_account(hs: Hs, **kw: Any) -> MatrixAccount:
    u = hs.user("bridgebot")
    kw.setdefault("access_token", u.access_token)
    kw.setdefault("user_id", u.user_id)
    return MatrixAccount(homeserver=hs.url, sync_timeout_ms=2000, **kw)


async def start_adapter(account: MatrixAccount, room_id: str, data_dir: Path, *,
                        ctx: FakeContext | None = None, threads: bool = False,
                        key: str = "kmers/mx", catchup_window: float = 3600.0) -> Running:
    spec = ChannelSpec(key=ChannelKey(key), community="kmers", hashtag="kmers",
                       direction="both", options=MatrixChannel(room=room_id, threads=threads),
                       catchup_window=catchup_window)
    http = aiohttp.ClientSession()
    if ctx is None:
        ctx = FakeContext([spec], name="mx", http=http, data_dir=str(data_dir))
    else:
        ctx._http, ctx.channels = http, (spec,)
    adapter = MatrixFactory().create(account, (spec,), Services())
    assert isinstance(adapter, MatrixAdapter)
    task = asyncio.create_task(adapter.run(ctx))
    async with asyncio.timeout(60):
        while not adapter._ready.is_set() or (
                account.mode == "relay" and "next_batch" not in ctx.cursors):
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
    return Running(adapter, ctx, task, http)


def rendered(text: str, *, notice: bool = False, html: str | None = None) -> Rendered:
    rt = from_plain(text)
    return Rendered(text=rt, plain=to_plain(rt), html=to_html(rt) if html is None else html,
                    markdown=to_markdown(rt), is_notice=notice)


def post(text: str = "hi", *, handle: str = "@carol@masto.example", name: str = "Carol",
         platform: str = "mastodon") -> Post:
    return Post(id=new_post_id(), community="kmers", origin_channel=ChannelKey("kmers/masto"),
                origin_native_id=NativeId(str(secrets.randbelow(10**12))),
                permalink="https://masto.example/@carol/1",
                author=Author(platform=platform, handle=handle, display_name=name),
                text=from_plain(text))


def create_op(text: str, *, key: str | None = None, reply_to: str | None = None,
              thread_root: str | None = None, notice: bool = False, p: Post | None = None,
              channel: str = "kmers/mx", html: str | None = None) -> SendCreate:
    d = new_delivery_id()
    return SendCreate(delivery_id=d, idempotency_key=key or f"{d}:0",
                      channel=ChannelKey(channel), post=p or post(text),
                      rendered=rendered(text, notice=notice, html=html),
                      reply_to=NativeId(reply_to) if reply_to else None,
                      thread_root=NativeId(thread_root) if thread_root else None)


def edit_op(native_id: str, text: str, p: Post | None = None) -> SendEdit:
    d = new_delivery_id()
    return SendEdit(delivery_id=d, idempotency_key=f"{d}:0", channel=ChannelKey("kmers/mx"),
                    post=p or post(text), native_id=NativeId(native_id), rendered=rendered(text))


def delete_op(native_id: str, p: Post | None = None) -> SendDelete:
    d = new_delivery_id()
    return SendDelete(delivery_id=d, idempotency_key=f"{d}:0", channel=ChannelKey("kmers/mx"),
                      post=p or post(), native_id=NativeId(native_id))


async def room_events(hs: Hs, room_id: str, token: str,
                      types: tuple[str, ...] = ("m.room.message", "m.room.redaction"),
                      ) -> list[dict[str, Any]]:
    """Every event of *types* in the room, oldest first, read from the server itself."""
    out: list[dict[str, Any]] = []
    frm = ""
    while True:
        path = (f"/_matrix/client/v3/rooms/{room_id}/messages?dir=f&limit=500"
                + (f"&from={frm}" if frm else ""))
        data = await asyncio.to_thread(hs.server.request, "GET", path, token)
        out.extend(e for e in data.get("chunk", []) if e.get("type") in types)
        if not data.get("chunk") or not data.get("end") or data.get("end") == frm:
            return out
        frm = data["end"]
