"""Inbound pipeline benchmark: the relay's own cost per event, without workers
or adapters (``Relay.ingest`` on a real SQLite store, pages of 100 as a
catch-up reads them).

Prints CPU microseconds per event (all threads: the store's writer included)
for posts relayed to 3 targets, posts read again (dropped at the first step),
edits, and posts refused by the policy (recorded), best of ``--repeat`` runs:
CPU time, not wall time, so that the figure holds on a busy machine.

    python bench/inbound.py [--events 5000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bridge.contract.model import (
    Author,
    ChannelKey,
    Edited,
    InboundEvent,
    NativeId,
    Posted,
)
from bridge.contract.richtext import RichText
from bridge.daemon.harness import build_config, sandbox_channels
from bridge.inbound.relay import Relay
from bridge.store.sqlite import SqliteStore

SRC = ChannelKey("kmers/sb_src")


def posted(i: int, *, public: bool = True) -> Posted:
    return Posted(channel=SRC, native_id=NativeId(f"p{i}"),
                  author=Author(platform="sandbox", handle=f"user{i % 50}",
                                display_name=f"User {i % 50}"),
                  text=RichText.plain(f"message {i}: what got you into k-mer counting? #kmers"),
                  public=public)


def edited(i: int) -> Edited:
    return Edited(channel=SRC, native_id=NativeId(f"p{i}"),
                  text=RichText.plain(f"message {i}, edited #kmers"))


async def measure(relay: Relay, events: Sequence[InboundEvent]) -> float:
    """CPU microseconds per event to ingest *events* in pages of 100."""
    cpu = time.process_time()
    for start in range(0, len(events), 100):
        await relay.ingest("sb_src", events[start:start + 100], ("bench", str(start)))
    return (time.process_time() - cpu) * 1e6 / len(events)


async def one_run(n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = build_config(tmp, sandbox_channels(tmp, ["src", "t1", "t2", "t3"]),
                           community_options={"author_rate_per_minute": 10**9,
                                              "duplicate_window": 600})
        store = await SqliteStore.open(os.path.join(tmp, "db.sqlite"))
        try:
            relay = Relay(cfg, store)
            phases: list[tuple[str, Callable[[int], InboundEvent]]] = [
                ("posted", posted), ("read_again", posted), ("edited", edited),
                ("refused", lambda i: posted(n + i, public=False))]
            return {name: await measure(relay, [make(i) for i in range(n)])
                    for name, make in phases}
        finally:
            await store.close()


async def main(n: int, repeat: int) -> None:
    best: dict[str, float] = {}
    for _ in range(repeat):
        for name, us in (await one_run(n)).items():
            best[name] = min(best.get(name, us), us)
    for name, us in best.items():
        print(f"inbound_cpu_us_per_event_{name} {us:.0f}  (best of {repeat}, {n} events, "
              f"pages of 100)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    asyncio.run(main(args.events, args.repeat))
