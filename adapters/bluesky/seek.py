"""Finding the firehose's sequence number at a given time.

``com.atproto.sync.subscribeRepos`` takes a ``cursor`` (a sequence number: the
stream starts with the first event after it) but no time.  Each event carries the
``time`` it was sequenced, and times grow with ``seq``, so the cursor of a moment
is found by probing: connect with ``?cursor=N``, read the first frame's ``seq`` and
``time``, hang up.  An exponential search from the oldest event kept finds a
cursor past the moment, then a binary search closes in: about 2·log2(events)
probes (``bench/bluesky_seek.py`` counts them over a 72-hour relay).

A probe past the newest event gets ``FutureCursor`` (or, exactly at the newest,
nothing until the next event): either way, no event after it is older than the
moment.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import aiohttp
import libipld

Probe = Callable[[int], Awaitable[tuple[int, float] | None]]
"""``probe(cursor)``: the ``(seq, time)`` of the first event after *cursor* (time
in Unix seconds), or None when there is none yet (at or past the newest)."""

FIRST_STEP = 1024
"""The exponential search's first jump in sequence numbers (then 4 times more
each probe)."""


@dataclass(frozen=True, slots=True)
class Seek:
    cursor: int
    """Subscribe with ``?cursor=`` this: every event after it was sequenced at or
    after the moment asked, every event up to it before."""
    probes: int
    """Connections made to find it."""
    oldest_seq: int | None
    """The first event the firehose still keeps (None: it keeps none)."""
    oldest_time: float | None
    """When that event was sequenced (Unix seconds)."""

    @property
    def dropped(self) -> bool:
        """The firehose no longer keeps its first events (its oldest kept is not
        seq 1): a moment before :attr:`oldest_time` is out of its reach."""
        return self.oldest_seq is not None and self.oldest_seq > 1


async def seek(probe: Probe, at: float) -> Seek:
    """The cursor of moment *at* (Unix seconds) on the firehose *probe* reads."""
    probes = 0

    async def first_after(cursor: int) -> tuple[int, float] | None:
        nonlocal probes
        probes += 1
        return await probe(cursor)

    oldest = await first_after(0)
    if oldest is None:
        return Seek(cursor=0, probes=probes, oldest_seq=None, oldest_time=None)
    if oldest[1] >= at:
        return Seek(cursor=oldest[0] - 1, probes=probes, oldest_seq=oldest[0],
                    oldest_time=oldest[1])
    # lo: a cursor whose next event is older than *at*; hi: one whose next is not.
    lo, step = oldest[0] - 1, FIRST_STEP
    while True:
        got = await first_after(lo + step)
        if got is None or got[1] >= at:
            hi = lo + step
            break
        lo, step = got[0] - 1, step * 4
    while hi - lo > 1:
        mid = (lo + hi) // 2
        got = await first_after(mid)
        if got is None or got[1] >= at:
            hi = mid
        else:
            lo = max(mid, got[0] - 1)
    return Seek(cursor=hi, probes=probes, oldest_seq=oldest[0], oldest_time=oldest[1])


def frame_seq_time(data: bytes) -> tuple[int, float] | str | None:
    """A firehose frame's ``(seq, time)``; the error's name for an error frame;
    None for a frame without both (``#info``)."""
    try:
        header, body = libipld.decode_dag_cbor_multi(data)[:2]
    except (ValueError, TypeError):
        return None
    if not isinstance(header, dict) or not isinstance(body, dict):
        return None
    if header.get("op") == -1:
        return str(body.get("error") or "error")
    seq, when = body.get("seq"), body.get("time")
    if type(seq) is not int or not isinstance(when, str):
        return None
    try:
        return seq, datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def ws_probe(http: aiohttp.ClientSession, firehose: str, *, wait: float,
             connect_timeout: float = 30.0, max_frame: int = 16 * 1024 * 1024) -> Probe:
    """A :data:`Probe` over the websocket firehose at *firehose*; *wait*: seconds
    to wait for a frame before taking the silence for "no event after it";
    *connect_timeout*: a handshake not answered by then raises TimeoutError."""

    async def probe(cursor: int) -> tuple[int, float] | None:
        url = f"{firehose}{'&' if '?' in firehose else '?'}cursor={cursor}"
        async with asyncio.timeout(connect_timeout):
            ws = await http.ws_connect(url, max_msg_size=max_frame,
                                       timeout=aiohttp.ClientWSTimeout(ws_receive=None,
                                                                       ws_close=2.0))
        async with ws:
            while True:
                try:
                    msg = await ws.receive(timeout=wait)
                except TimeoutError:
                    return None
                if msg.type != aiohttp.WSMsgType.BINARY:
                    if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                    aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR):
                        raise aiohttp.ClientConnectionError(
                            f"firehose closed while seeking ({ws.close_code})")
                    continue
                got = frame_seq_time(msg.data)
                if got == "FutureCursor":
                    return None
                if isinstance(got, str):
                    raise aiohttp.ClientConnectionError(f"firehose error {got} while seeking")
                if got is not None:
                    return got

    return probe
