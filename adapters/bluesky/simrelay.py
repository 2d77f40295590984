"""A simulated firehose relay for the seek's tests and ``bench/bluesky_seek.py``:
``subscribeRepos`` over a websocket, answering a ``?cursor=`` as a relay does (the
first event after it, an ``OutdatedCursor`` info before events it no longer keeps,
``FutureCursor`` past its newest), over an arithmetic history: event *seq* was
sequenced at ``start + (seq - 1) / rate``.  No real relay keeps days of history
on a test machine; this one computes any frame on demand."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

import libipld
from aiohttp import web

PATH = "/xrpc/com.atproto.sync.subscribeRepos"


@dataclass
class SimulatedRelay:
    start: float
    """When event 1 was sequenced (Unix seconds)."""
    rate: float
    """Events per second."""
    last_seq: int
    """The newest event."""
    first_kept: int = 1
    """The oldest event still kept (older ones were dropped)."""
    connections: int = 0
    _runner: web.AppRunner | None = field(default=None, repr=False)
    url: str = ""

    def time_of(self, seq: int) -> float:
        """When *seq* was sequenced, to the millisecond (as frames say it)."""
        return math.floor((self.start + (seq - 1) / self.rate) * 1000) / 1000

    def first_at_or_after(self, at: float) -> int:
        """The first kept event sequenced at or after *at* (the expected seek)."""
        seq = max(self.first_kept, int((at - self.start) * self.rate) + 1)
        while seq > self.first_kept and self.time_of(seq - 1) >= at:
            seq -= 1
        while self.time_of(seq) < at:
            seq += 1
        return seq

    def _frame(self, header: dict[str, object], body: dict[str, object]) -> bytes:
        return bytes(libipld.encode_dag_cbor(header)) + bytes(libipld.encode_dag_cbor(body))

    async def _subscribe(self, request: web.Request) -> web.WebSocketResponse:
        self.connections += 1
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        raw = request.query.get("cursor")
        cursor = int(raw) if raw and raw.isdigit() else self.last_seq
        if cursor > self.last_seq:
            await ws.send_bytes(self._frame({"op": -1}, {"error": "FutureCursor",
                                                         "message": "Cursor in the future."}))
            await ws.close()
            return ws
        if cursor < self.last_seq:
            seq = max(cursor + 1, self.first_kept)
            if cursor + 1 < self.first_kept:
                await ws.send_bytes(self._frame({"op": 1, "t": "#info"},
                                                {"name": "OutdatedCursor"}))
            when = datetime.fromtimestamp(self.time_of(seq), UTC)
            await ws.send_bytes(self._frame(
                {"op": 1, "t": "#identity"},
                {"seq": seq, "did": "did:plc:sim", "time": when.isoformat(
                    timespec="milliseconds").replace("+00:00", "Z")}))
        with contextlib.suppress(ConnectionError):
            await ws.receive()          # until the prober hangs up
        return ws

    async def __aenter__(self) -> SimulatedRelay:
        app = web.Application()
        app.router.add_get(PATH, self._subscribe)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"ws://127.0.0.1:{port}{PATH}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

