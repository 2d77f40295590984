"""A fault-injecting TCP proxy for the outage suite: one mechanism for every
platform, at the network level.

A :class:`FaultProxy` listens on a free 127.0.0.1 port and forwards to one
platform endpoint (the Mastodon or X emulator, Synapse, Dovecot's IMAP, the
list's SMTP).  The bridge's account is configured with the proxy's address, so
everything the relay says to that platform goes through it.  Modes:

* ``pass``: forward both ways.
* ``refuse``: the listener is closed (connects get ECONNREFUSED) and open
  connections are reset, as when the server process is gone.
* ``stall``: new connections are accepted and read, never answered, never
  closed; open ones stop forwarding the same way (a hung server).
* ``drop``: open connections go silent both ways and stay open (a stream or
  long-poll that drops silently: NAT timeout, a dead middlebox); new
  connections pass.
* ``error``: the protocol's injector answers instead of the platform: for HTTP
  every request gets the response a callback builds (500s, 429s with the
  platform's own rate-limit headers and bodies, or lets it through, or leaves
  it unanswered); for SMTP new sessions get the
  configured reply (``421`` greeting or ``451``/``450`` to ``MAIL``); for IMAP
  open sessions get ``* BYE`` and are closed, new ones are greeted with BYE.

Connections that went silent (``stall``/``drop``) stay silent after the proxy
is set back to ``pass``: only the client's own timeout gets it out, which is
the point.  HTTP requests are parsed on the way in (never the responses: an
HTTP/1.1 client without pipelining sends its next request only after the
previous response ended), so an injected answer can take the place of any
request on a kept-alive connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import http
import logging
import socket
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

log = logging.getLogger("hashbridge.conformance.faultproxy")

Kind = Literal["http", "smtp", "imap", "tcp"]
MAX_HEAD = 256 * 1024


class Mode(enum.StrEnum):
    PASS = "pass"
    REFUSE = "refuse"
    STALL = "stall"
    DROP = "drop"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    target: str
    headers: dict[str, str]
    """Lower-cased names."""

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    def encode(self) -> bytes:
        reason = http.HTTPStatus(self.status).phrase
        lines = [f"HTTP/1.1 {self.status} {reason}",
                 f"Content-Type: {self.content_type}",
                 f"Content-Length: {len(self.body)}", "Connection: keep-alive",
                 *(f"{k}: {v}" for k, v in self.headers.items())]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


FORWARD = HttpResponse(0)
"""An injector's answer meaning: let this request through to the platform."""
HttpInjector = Callable[[HttpRequest], HttpResponse | None]
"""Builds the answer to a request: a response, ``FORWARD``, or None to leave
this connection without an answer for good (a stall aimed at one request)."""


@dataclass(frozen=True, slots=True)
class SmtpFault:
    """What a failing mail submission server says: ``greeting`` (a full
    reply line, e.g. ``421 4.3.2 Service not available``) closes at once;
    otherwise the session is greeted and ``MAIL FROM`` gets ``mail_reply``."""

    greeting: str = ""
    mail_reply: str = "451 4.3.0 Temporary server failure, try again later"


@dataclass(eq=False)
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    up_reader: asyncio.StreamReader | None = None
    up_writer: asyncio.StreamWriter | None = None
    silent: bool = False
    """Forwarding stopped for good (stall/drop): read and discard, never answer."""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class FaultProxy:
    """One proxy in front of one endpoint; ``await start()``, then ``set_mode``."""

    def __init__(self, name: str, upstream_host: str, upstream_port: int, *,
                 kind: Kind = "tcp") -> None:
        self.name = name
        self.upstream = (upstream_host, upstream_port)
        self.kind = kind
        self.port = 0
        self.mode = Mode.PASS
        self.stats: Counter[str] = Counter()
        self._http: HttpInjector | None = None
        self._smtp = SmtpFault()
        self._imap_bye = "* BYE Server shutting down."
        self._server: asyncio.Server | None = None
        self._conns: set[_Conn] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------ control
    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        await self._listen()

    async def stop(self) -> None:
        await self._close_listener()
        for conn in list(self._conns):
            self._abort(conn)
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=5)

    async def set_mode(self, mode: Mode, *, http: HttpInjector | None = None,
                       smtp: SmtpFault | None = None, imap_bye: str | None = None) -> None:
        """Switch; the injector arguments only matter for ``error``."""
        if mode == Mode.ERROR:
            if self.kind == "http" and http is None:
                raise ValueError("an HTTP error mode needs an injector")
            self._http = http
            self._smtp = smtp or SmtpFault()
            self._imap_bye = imap_bye or self._imap_bye
        log.info("%s: %s -> %s", self.name, self.mode.value, mode.value)
        self.mode = mode
        self.stats[f"mode:{mode.value}"] += 1
        if mode == Mode.REFUSE:
            await self._close_listener()
            for conn in list(self._conns):
                self._abort(conn)
        elif self._server is None:
            await self._listen()
        if mode in (Mode.STALL, Mode.DROP):
            for conn in self._conns:
                conn.silent = True
        if mode == Mode.ERROR and self.kind == "imap":
            for conn in list(self._conns):
                if not conn.silent:
                    self._bye(conn)

    # ------------------------------------------------------------ listener
    async def _listen(self) -> None:
        for attempt in range(50):
            try:
                self._server = await asyncio.start_server(
                    self._accept, "127.0.0.1", self.port, reuse_address=True,
                    limit=MAX_HEAD)
                break
            except OSError:  # the old port, freed a moment ago
                if attempt == 49:
                    raise
                await asyncio.sleep(0.1)
        assert self._server is not None
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close_listener(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            # wait_closed() would wait for the open connections (3.12): not wanted.
            await asyncio.sleep(0)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        conn = _Conn(reader, writer)
        self._conns.add(conn)
        self.stats["accepted"] += 1
        try:
            if self.mode == Mode.STALL:
                self.stats["stalled"] += 1
                conn.silent = True
                await self._discard(conn.reader)
            elif self.mode == Mode.ERROR and self.kind == "smtp":
                await self._smtp_session(conn)
            elif self.mode == Mode.ERROR and self.kind == "imap":
                self.stats["injected"] += 1
                writer.write(self._imap_bye.encode() + b"\r\n")
                await writer.drain()
            elif self.kind == "http":
                await self._http_session(conn)
            else:
                await self._raw_session(conn)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._conns.discard(conn)
            for t in conn.tasks:
                t.cancel()
            self._close(conn)
            self._handlers.discard(task)

    # ------------------------------------------------------------ forwarding
    async def _connect_up(self, conn: _Conn) -> bool:
        try:
            conn.up_reader, conn.up_writer = await asyncio.open_connection(
                *self.upstream, limit=MAX_HEAD)
        except OSError:
            self.stats["upstream_refused"] += 1
            return False
        conn.tasks.append(asyncio.create_task(self._pump_down(conn)))
        return True

    async def _pump_down(self, conn: _Conn) -> None:
        """Upstream to client, raw; a silenced connection swallows it all."""
        assert conn.up_reader is not None
        try:
            while data := await conn.up_reader.read(65536):
                if conn.silent:
                    continue
                conn.writer.write(data)
                await conn.writer.drain()
        except (ConnectionError, OSError):
            pass
        if not conn.silent:  # the platform hung up: so do we (a silent one never does)
            self._close(conn)

    async def _raw_session(self, conn: _Conn) -> None:
        if not await self._connect_up(conn):
            return
        assert conn.up_writer is not None
        while data := await conn.reader.read(65536):
            if conn.silent:
                continue
            conn.up_writer.write(data)
            await conn.up_writer.drain()

    async def _discard(self, reader: asyncio.StreamReader) -> None:
        while await reader.read(65536):
            pass

    async def _http_session(self, conn: _Conn) -> None:
        while True:
            try:
                head = await conn.reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            req = _parse_head(head)
            body = await self._read_body(conn.reader, req)
            if conn.silent:
                continue
            resp = self._http(req) if self.mode == Mode.ERROR and self._http else FORWARD
            if resp is None:
                self.stats["stalled"] += 1
                conn.silent = True
                continue
            if resp is not FORWARD:
                self.stats["injected"] += 1
                conn.writer.write(resp.encode())
                await conn.writer.drain()
                continue
            if self.mode == Mode.STALL:  # a request on a connection accepted before
                conn.silent = True
                continue
            if (conn.up_writer is None or conn.up_writer.is_closing()) \
                    and not await self._connect_up(conn):
                return  # nothing listens there: hang up, as a dead upstream would
            assert conn.up_writer is not None
            self.stats["forwarded"] += 1
            conn.up_writer.write(head + body)
            await conn.up_writer.drain()

    async def _read_body(self, reader: asyncio.StreamReader, req: HttpRequest) -> bytes:
        if "chunked" in req.headers.get("transfer-encoding", "").lower():
            out = bytearray()
            while True:
                line = await reader.readuntil(b"\r\n")
                out += line
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while True:  # trailers, then the empty line
                        trailer = await reader.readuntil(b"\r\n")
                        out += trailer
                        if trailer == b"\r\n":
                            return bytes(out)
                out += await reader.readexactly(size + 2)
        n = int(req.headers.get("content-length", "0") or 0)
        return await reader.readexactly(n) if n else b""

    # ------------------------------------------------------------ injected protocols
    async def _smtp_session(self, conn: _Conn) -> None:
        w = conn.writer
        self.stats["injected"] += 1
        if self._smtp.greeting:
            w.write(self._smtp.greeting.encode() + b"\r\n")
            await w.drain()
            return
        w.write(b"220 proxy.test ESMTP\r\n")
        while line := await conn.reader.readline():
            verb = line.split(b" ", 1)[0].strip().upper()
            if verb in (b"EHLO", b"HELO"):
                w.write(b"250-proxy.test\r\n250 8BITMIME\r\n")
            elif verb in (b"RSET", b"NOOP"):
                w.write(b"250 2.0.0 OK\r\n")
            elif verb == b"QUIT":
                w.write(b"221 2.0.0 Bye\r\n")
                await w.drain()
                return
            else:
                w.write(self._smtp.mail_reply.encode() + b"\r\n")
            await w.drain()

    def _bye(self, conn: _Conn) -> None:
        """An IMAP server going away: untagged BYE, then the connection closes."""
        self.stats["injected"] += 1
        with contextlib.suppress(Exception):
            conn.writer.write(self._imap_bye.encode() + b"\r\n")
        self._close(conn)

    # ------------------------------------------------------------ closing
    def _close(self, conn: _Conn) -> None:
        for w in (conn.writer, conn.up_writer):
            if w is not None and not w.is_closing():
                with contextlib.suppress(Exception):
                    w.close()

    def _abort(self, conn: _Conn) -> None:
        """Reset (RST) both sides, as a crashed server's kernel would."""
        conn.silent = True
        for w in (conn.writer, conn.up_writer):
            if w is None:
                continue
            sock = w.get_extra_info("socket")
            with contextlib.suppress(Exception):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with contextlib.suppress(Exception):
                w.transport.abort()


def _parse_head(head: bytes) -> HttpRequest:
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = [*lines[0].split(" ", 2), "", ""][:3]
    headers: dict[str, str] = {}
    for ln in lines[1:]:
        if ":" in ln:
            k, v = ln.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return HttpRequest(method=method, target=target, headers=headers)
