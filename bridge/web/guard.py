"""Connections a stranger cannot use to take the web view down.

aiohttp on its own waits forever for a request head and accepts connections
until the process runs out of file descriptors; from then on ``accept()``
fails, ``/healthz`` and every page are unreachable, and asyncio logs a
traceback per attempt.  This module puts a bound on each of those:

* **A connection cap.**  Every connection is counted by :class:`Guarded`, a
  thin protocol wrapped around aiohttp's own request handler.  At the cap, a
  new connection closes the one that has been *waiting* longest (no request
  in progress: idle, or still sending its head), so a fresh client that sends
  its request at once (a health check, a reader) still gets in.  Only when
  every connection is busy is the newcomer answered ``503`` and closed.
* **A header timeout.**  A connection that has not delivered a complete
  request head within ``header_timeout_seconds`` of opening (or of its last
  response) is closed, a slow-loris one as well as a silent one.  While a
  response is still leaving (the write buffer shrinks) it is given more time.
* **A body timeout** (:func:`middleware`): a request body not received in
  ``body_timeout_seconds`` is answered 408; until it is there, the connection
  still counts as waiting (evictable).  A connection is *busy* only while a
  handler runs; the handlers that run long (live streams, exports) have caps
  of their own well below the connection cap.
* **File descriptors** (:func:`fit_to_open_files`): the process' soft limit
  is raised towards the hard one so the cap fits with room to spare for the
  adapters and the store; if it cannot be, the cap is lowered and that is
  logged, so ``accept()`` itself never runs out.
* **Quiet logs** (:class:`RateLimitFilter`): a storm of identical errors
  (asyncio's accept failure, aiohttp's request errors) is logged a few times a
  minute with a count of what was suppressed.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.web_runner import BaseSite

log = logging.getLogger("hashbridge.web")

BACKLOG = 128
"""Also how many connections asyncio accepts in one go, before any of them
reaches :meth:`Guarded.connection_made` and can be turned away."""
FD_RESERVE = 3 * BACKLOG + 128
"""Descriptors kept free beyond the connection cap: connections accepted in
the few loop turns before the cap closes them (a batch a turn, and a closed
descriptor is released a turn later), the store, the adapters' connections."""

_BUSY_TEXT = b"503 the web view is at its connection limit; try again shortly\n"
BUSY_RESPONSE = (b"HTTP/1.1 503 Service Unavailable\r\n"
                 b"Content-Type: text/plain; charset=utf-8\r\n"
                 b"X-Content-Type-Options: nosniff\r\n"
                 b"Retry-After: 10\r\nConnection: close\r\n"
                 b"Content-Length: " + str(len(_BUSY_TEXT)).encode() + b"\r\n\r\n" + _BUSY_TEXT)


class Pool:
    """Every open connection of the web view, and the waiting ones in age order."""

    def __init__(self, cap: int, header_timeout: float) -> None:
        self.cap = cap
        self.header_timeout = header_timeout
        self.open: dict[Guarded, None] = {}
        self.waiting: OrderedDict[Guarded, None] = OrderedDict()
        self.by_transport: dict[Any, Guarded] = {}
        self.evicted = 0
        self.refused = 0
        self.timed_out = 0
        self._said = 0.0

    def admit(self, g: Guarded) -> bool:
        if len(self.open) >= self.cap:
            if not self.waiting:
                self.refused += 1
                self._report()
                return False
            oldest, _ = self.waiting.popitem(last=False)
            self.evicted += 1
            self._report()
            oldest.drop()
        self.open[g] = None
        return True

    def forget(self, g: Guarded) -> None:
        self.open.pop(g, None)
        self.waiting.pop(g, None)
        if g.transport is not None:
            self.by_transport.pop(g.transport, None)

    def of(self, request: web.BaseRequest) -> Guarded | None:
        return self.by_transport.get(request.transport)

    def _report(self) -> None:
        now = time.monotonic()
        if now - self._said >= 60:
            self._said = now
            log.warning("web view at its connection cap (%d): %d idle connections closed, "
                        "%d refused so far (max_connections, header_timeout_seconds)",
                        self.cap, self.evicted, self.refused)

    def stats(self) -> dict[str, int]:
        return {"open": len(self.open), "waiting": len(self.waiting), "cap": self.cap,
                "evicted": self.evicted, "refused": self.refused,
                "timed_out": self.timed_out}


class Guarded(asyncio.Protocol):
    """aiohttp's request handler with a place in the :class:`Pool` and a clock."""

    def __init__(self, pool: Pool, make_inner: Callable[[], asyncio.Protocol]) -> None:
        self.pool = pool
        self._make_inner = make_inner
        self.inner: asyncio.Protocol | None = None
        self.transport: asyncio.Transport | None = None
        self.busy = 0
        self._timer: asyncio.TimerHandle | None = None
        self._last_buffer = -1
        self._resumed = 0
        """Times the transport drained below its low-water mark since the last look."""
        self._closed = False

    # -------------------------------------------------------- states
    def _wait(self) -> None:
        """No request in progress: evictable, and on the header clock."""
        self.pool.waiting[self] = None
        self.pool.waiting.move_to_end(self)
        self._last_buffer = -1
        self._resumed = 0
        self._arm(self.pool.header_timeout)

    def _arm(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(delay, self._expire)

    def reading_body(self, timeout: float) -> None:
        """A request head has come and its body is awaited: still evictable (a
        body sent a byte at a time must not hold a connection the cap needs),
        on the body clock."""
        self._arm(timeout)

    def start_request(self) -> None:
        self.busy += 1
        self.pool.waiting.pop(self, None)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def end_request(self) -> None:
        self.busy -= 1
        if self.busy == 0 and not self._closed:
            self._wait()

    def _expire(self) -> None:
        self._timer = None
        if self._closed or self.busy or self.transport is None:
            return
        left = self.transport.get_write_buffer_size()
        moving = self._resumed or (0 <= left < self._last_buffer) or self._last_buffer < 0
        if left and moving:  # a response is still leaving, and the client takes it
            self._last_buffer = left
            self._resumed = 0
            self._arm(self.pool.header_timeout)
            return
        self.pool.timed_out += 1
        self.drop()

    def drop(self) -> None:
        """Close now, without lingering (the descriptor is what is scarce)."""
        self.pool.forget(self)
        if self.transport is not None and not self._closed:
            self._closed = True
            self.transport.abort()

    # -------------------------------------------------------- protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if not self.pool.admit(self):
            self._closed = True
            transport.write(BUSY_RESPONSE)
            transport.close()
            return
        self.pool.by_transport[transport] = self
        self.inner = self._make_inner()
        self.inner.connection_made(transport)
        if not self._closed:
            self._wait()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.pool.forget(self)
        if self.inner is not None:
            self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.inner is not None and not self._closed:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        self._resumed += 1
        if self.inner is not None:
            self.inner.resume_writing()


POOL: web.AppKey[Pool] = web.AppKey("connection_pool", Pool)
BODY_TIMEOUT: web.AppKey[float] = web.AppKey("body_timeout", float)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Marks the connection busy while its request is handled; bounds the body read."""
    pool = request.app.get(POOL)
    g = pool.of(request) if pool is not None else None
    if request.body_exists:
        timeout = request.app.get(BODY_TIMEOUT, 30.0)
        if g is not None:
            g.reading_body(timeout + 1.0)  # our 408 first, if the client still reads
        try:
            async with asyncio.timeout(timeout):
                await request.read()  # kept by aiohttp for post()/json()
        except TimeoutError:
            e = web.HTTPRequestTimeout(text="408 the request body did not arrive in time")
            e.force_close()
            raise e from None
    if g is not None:
        g.start_request()
    try:
        return await handler(request)
    finally:
        if g is not None:
            g.end_request()


class GuardedSite(BaseSite):
    """``web.TCPSite`` whose connections go through a :class:`Pool`."""

    __slots__ = ("_host", "_pool", "_port")

    def __init__(self, runner: web.BaseRunner, host: str, port: int, pool: Pool, *,
                 backlog: int = BACKLOG) -> None:
        super().__init__(runner, backlog=backlog)
        self._host = host
        self._port = port
        self._pool = pool

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        pool = self._pool
        self._server = await asyncio.get_running_loop().create_server(
            lambda: Guarded(pool, server), self._host, self._port, backlog=self._backlog,
            reuse_address=True)


def fit_to_open_files(cap: int) -> int:
    """The connection cap the process' open-files limit allows, raising the soft
    limit towards the hard one first.  Logs when the cap has to come down."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = cap + FD_RESERVE
    inf = resource.RLIM_INFINITY
    if soft != inf and soft < want:
        new = want if hard == inf else min(want, hard)
        if new > soft:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
                soft = new
            except (ValueError, OSError):  # e.g. a seccomp filter answering EPERM
                pass
    if soft == inf or soft >= want:
        return cap
    fitted = max(16, soft - FD_RESERVE) if soft > FD_RESERVE + 16 else max(4, soft // 2)
    log.warning("web view: max_connections lowered from %d to %d: this process may open "
                "only %d files (raise LimitNOFILE in the service unit, or ulimit -n)",
                cap, fitted, soft)
    return fitted


class RateLimitFilter(logging.Filter):
    """At most *burst* records of one kind (logger, level, first line of the
    message) per *window* seconds; the next one let through says how many
    were suppressed.  A storm stays a few lines, and is still visible."""

    def __init__(self, burst: int = 5, window: float = 60.0) -> None:
        super().__init__()
        self.burst = burst
        self.window = window
        self._seen: dict[tuple[str, int, str], list[float]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        first = str(record.msg).split("\n", 1)[0][:200]
        key = (record.name, record.levelno, first)
        now = time.monotonic()
        slot = self._seen.get(key)
        if slot is None or now - slot[0] >= self.window:
            suppressed = int(slot[2]) if slot is not None else 0
            self._seen[key] = [now, 1.0, 0.0]
            if len(self._seen) > 1000:  # kinds: bounded too
                self._seen.pop(next(iter(self._seen)))
            if suppressed:
                note = f" [{suppressed} more like this suppressed in {self.window:.0f} s]"
                record.msg = str(record.msg) + (note.replace("%", "%%") if record.args
                                                else note)
            return True
        if slot[1] < self.burst:
            slot[1] += 1
            if slot[1] == self.burst:
                left = self.window - (now - slot[0])
                note = f" [more like this in the next {left:.0f} s are counted, not logged]"
                record.msg = str(record.msg) + (note.replace("%", "%%") if record.args
                                                else note)
            return True
        slot[2] += 1
        return False


NOISY_LOGGERS = ("asyncio", "aiohttp.server", "aiohttp.web", "aiohttp.access",
                 "aiohttp.internal", "hashbridge.web", "hashbridge.web.admin",
                 "hashbridge.web.live")


def quiet_logs() -> Callable[[], None]:
    """Install one :class:`RateLimitFilter` on the web view's loggers (and
    asyncio's, where accept failures go); returns the undo."""
    f = RateLimitFilter()
    loggers = [logging.getLogger(n) for n in NOISY_LOGGERS]
    for lg in loggers:
        lg.addFilter(f)

    def undo() -> None:
        for lg in loggers:
            lg.removeFilter(f)

    return undo
