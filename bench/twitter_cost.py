"""What one hour of a busy hashtag chat costs on X under each outbound mode.

Simulates 300 messages in 60 minutes: 100 written on X (read by search polling
every 60 s) and 200 written elsewhere (relayed out to X by ``send``).  Runs the
real adapter and tweepy against the in-process X emulator on a simulated clock,
and prices what the adapter's own ledger recorded (X pay-per-use, 2026-04).

    .venv/bin/python bench/twitter_cost.py            # table
    .venv/bin/python bench/twitter_cost.py --json     # machine-readable
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "twitter"))

from twitter_support import make_create, make_spec

from adapters.twitter.adapter import TwitterAdapter
from adapters.twitter.config import TwitterAccount
from adapters.twitter.emulator.app import XEmulator
from bridge.contract.adapter import TransientError
from bridge.contract.testing import FakeContext

HOUR = 3600


async def simulate(mode: str, *, links: float = 0.0, budget: dict[str, Any] | None = None,
                   seed: int = 7) -> dict[str, Any]:
    rnd = random.Random(seed)
    now = [1_800_000_000.0]

    def clock() -> float:
        return now[0]

    emu = XEmulator()
    emu.state.clock = clock
    creds = emu.add_account("kmbridge")
    runner = web.AppRunner(emu.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    acct = TwitterAccount(**{k: v for k, v in creds.items() if k != "bearer_token"},
                          api_base=f"http://127.0.0.1:{port}",
                          **(budget if budget is not None else
                             {"max_posts_per_day": 10_000, "max_usd_per_day": 10_000,
                              "max_usd_per_month": 10_000}))
    spec = make_spec(direction="out", mode=mode, digest_minutes=15)
    ad = TwitterAdapter(acct, (spec,), clock=clock)
    ad.client.clock = clock
    ctx = FakeContext((spec,), name="bench")
    task = asyncio.create_task(ad.run(ctx))
    await ad._ready.wait()
    # 300 messages at random times in the hour; 1 in 3 from X.
    times = sorted(rnd.uniform(0, HOUR) for _ in range(300))
    origin = ["x"] * 100 + ["elsewhere"] * 200
    rnd.shuffle(origin)
    events = list(zip(times, origin, strict=True))
    queued, refused, sent = 0, 0, 0
    start = now[0]
    await ad.poll_once(spec)
    i = 0
    for minute in range(1, 61):
        t_end = start + minute * 60
        while i < len(events) and start + events[i][0] <= t_end:
            t, where = events[i]
            now[0] = start + t
            body = f"message {i} about k-mer counting"
            if rnd.random() < links:
                body += f" https://example.org/{i}"
            if where == "x":
                emu.state.create(emu.state.user(f"xuser{i % 9}"), f"#kmers {body}")
            elif mode != "off":
                try:
                    await ad.send(make_create(f"Member{i % 13} (Mastodon): {body}", f"k{i}"))
                    sent += 1
                except TransientError:
                    refused += 1
            i += 1
        now[0] = t_end
        await ad.poll_once(spec)  # a poll every 60 s
        if mode == "digest" and minute % 15 == 0:
            await ad.flush_digest(spec.key)
    led = ad.ledger
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await runner.cleanup()
    return {"mode": mode + (f"+{int(links * 100)}%links" if links else ""),
            "read_from_x": len(ctx.events), "posts_on_x": led.posts_total,
            "refused_by_budget": refused, "queued": queued + refused,
            "reads_usd": round(led.reads_total * acct.prices.read, 3),
            "posts_usd": round(led.usd_total - led.reads_total * acct.prices.read, 3),
            "total_usd": round(led.usd_total, 3), "sent_ok": sent}


async def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = [await simulate("each"), await simulate("digest"), await simulate("off"),
            await simulate("each", links=0.1), await simulate("digest", links=0.1),
            await simulate("each", budget={})]
    rows[-1]["mode"] = "each (default budget: 50 posts/day)"
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"{'mode':40} {'read':>5} {'posts':>5} {'held':>5} {'reads $':>8} {'posts $':>8} "
          f"{'total $':>8}")
    for r in rows:
        print(f"{r['mode']:40} {r['read_from_x']:5} {r['posts_on_x']:5} "
              f"{r['refused_by_budget']:5} {r['reads_usd']:8.3f} {r['posts_usd']:8.3f} "
              f"{r['total_usd']:8.3f}")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
