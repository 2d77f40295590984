"""How many probes, and how long, the Bluesky adapter's first start takes to find
the firehose's cursor of a moment (``adapters/bluesky/seek.py``), over a simulated
relay keeping 72 hours at 1,000 events/s (259.2 M events; the real relay's
replay window), each probe a real websocket connection on 127.0.0.1.

    python bench/bluesky_seek.py [--hours 72] [--rate 1000] [--latency 0]

``--latency`` adds that many seconds to each probe (a far relay's round trips);
the figures printed are the probes and the wall time for a few windows.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.bluesky.seek import seek, ws_probe
from adapters.bluesky.simrelay import SimulatedRelay


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hours", type=float, default=72.0)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--latency", type=float, default=0.0)
    args = ap.parse_args()
    now = time.time()
    events = int(args.hours * 3600 * args.rate)
    dropped = events // 10  # the relay already dropped its oldest tenth
    async with SimulatedRelay(start=now - args.hours * 3600, rate=args.rate,
                              last_seq=events, first_kept=dropped + 1) as relay, \
            aiohttp.ClientSession() as http:
        plain = ws_probe(http, relay.url, wait=1.0)

        async def probe(cursor: int) -> tuple[int, float] | None:
            if args.latency:
                await asyncio.sleep(args.latency)
            return await plain(cursor)

        for window in (0, 600, 3600, 86400, args.hours * 3600):
            at = now - window
            t0 = time.perf_counter()
            found = await seek(probe, at)
            took = time.perf_counter() - t0
            want = relay.first_at_or_after(at) - 1 if window else relay.last_seq
            ok = "ok" if found.cursor == want else f"WRONG (want {want})"
            print(f"bluesky_seek window={window:>9.0f}s events={events} probes={found.probes} "
                  f"seconds={took:.3f} cursor={found.cursor} {ok}"
                  + (" (window reaches past the oldest kept event)" if found.dropped and
                     found.oldest_time and found.oldest_time > at else ""))


if __name__ == "__main__":
    asyncio.run(main())
