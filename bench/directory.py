"""The chat directory with many communities: size and time of ``/`` and of the
combined calendar ``/events.ics``.

A bridge runs in this process with N communities (default 100) on the in-memory
``memnet`` platform, each with a weekly chat in its own time zone; every third one
also has a monthly ``rrule`` and every tenth an hourly one (shown as its next
dates).  The web view is the one ``hashbridge run`` serves; each page is fetched
over HTTP ``--runs`` times: the first fetch, then the median of the others.

    python bench/directory.py [--communities 100] [--runs 21]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import aiohttp

from bench._common import MemAdapter, load_note, registry_with_memnet
from bridge.daemon.harness import running
from bridge.runtime.config import parse

ZONES = ("Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Sydney", "UTC",
         "America/Los_Angeles", "Africa/Nairobi")
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def raw_config(data: str, n: int) -> dict[str, Any]:
    communities = []
    for i in range(n):
        events: list[dict[str, Any]] = [{
            "id": "weekly", "title": f"#chat{i} weekly", "day": DAYS[i % 7],
            "time": f"{(9 + i) % 24:02d}:{(i * 5) % 60:02d}", "timezone": ZONES[i % len(ZONES)],
            "description": "An hour of questions and answers."}]
        if i % 3 == 0:
            events.append({"id": "monthly", "title": f"#chat{i} deep dive",
                           "rrule": "FREQ=MONTHLY;BYDAY=-1FR", "dtstart": "2026-01-30T19:00:00",
                           "timezone": ZONES[(i + 1) % len(ZONES)]})
        if i % 10 == 0:
            events.append({"id": "office", "title": "Office hours",
                           "rrule": "FREQ=HOURLY;BYDAY=MO,WE", "dtstart": "2026-01-05T09:00:00",
                           "timezone": "UTC", "duration_minutes": 30})
        communities.append({
            "name": f"chat{i}", "hashtag": f"chat{i}",
            "description": f"Community number {i}: a weekly chat and its people.",
            "events": events,
            "channels": [{"account": "mem", "spot": f"{i}-a"},
                         {"account": "mem", "spot": f"{i}-b"}]})
    return {"bridge": {"data_dir": data, "log_level": "warning",
                       "web": {"listen": "127.0.0.1:0", "admin_token": "bench-token-5a1c9e"}},
            "accounts": {"mem": {"platform": "memnet", "display_name": "Mem"}},
            "communities": communities}


async def fetch(session: aiohttp.ClientSession, url: str) -> tuple[int, float]:
    t0 = time.perf_counter()
    async with session.get(url) as r:
        body = await r.read()
        assert r.status == 200, (url, r.status)
    return len(body), time.perf_counter() - t0


async def main(n: int, runs: int) -> None:
    from bridge.web import serve_web

    adapters: dict[str, MemAdapter] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = parse(raw_config(os.path.join(tmp, "data"), n), registry_with_memnet(adapters), {})
        async with running(cfg) as bridge:
            web = asyncio.create_task(serve_web(bridge))
            try:
                async with asyncio.timeout(60):
                    while not bridge.services.web_url:
                        if web.done():
                            web.result()  # raises what stopped it
                        await asyncio.sleep(0.05)
                base = bridge.services.web_url
                async with aiohttp.ClientSession() as s:
                    for path in ("/", "/events.ics"):
                        size, first = await fetch(s, base + path)
                        rest = [(await fetch(s, base + path))[1] for _ in range(runs - 1)]
                        median = statistics.median(rest) if rest else first
                        print(f"directory {path} communities {n} bytes {size} "
                              f"first_ms {first * 1000:.1f} median_ms {median * 1000:.1f} "
                              f"(over {len(rest)} fetches; {load_note()})")
            finally:
                web.cancel()
                try:
                    await web
                except asyncio.CancelledError:
                    pass


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--communities", type=int, default=100)
    ap.add_argument("--runs", type=int, default=21)
    args = ap.parse_args()
    asyncio.run(main(args.communities, args.runs))
