"""Reload time: SIGHUP's work (read the file, compare, apply) in one relay process
serving N communities of 4 channels (the in-memory ``memnet`` platform of
``bench/_common.py``: 4 accounts, each serving one channel of every community).

Printed per case (the median and the worst of ``--runs``), from the reload's start
to its outcome recorded:

* the same file again (nothing changes);
* one channel's delivery option changed (nothing restarts);
* one community added (its 4 channels: each of the 4 accounts serves one more
  channel, so each restarts, with its N senders);
* an invalid file (refused; the running config stays).

    python bench/reload.py [--communities 1000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import tempfile
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._common import MemAdapter, load_note, registry_with_memnet, rss_mb
from bridge.daemon.harness import running
from bridge.daemon.reload import Reloader
from bridge.runtime.config import load

NETS = ("north", "south", "east", "west")


def config(data: str, n: int, *, option: str = "", extra: bool = False,
           invalid: bool = False) -> str:
    out = [f'[bridge]\ndata_dir = "{data}"\nlog_level = "error"\n']
    for net in NETS:
        out.append(f'[accounts.{net}]\nplatform = "memnet"\ndisplay_name = "{net}"\n')
    names = [f"c{i:04d}" for i in range(n)] + (["extra"] if extra else [])
    for i, name in enumerate(names):
        out.append(f'[[communities]]\nname = "{name}"\nhashtag = "{name}"\n'
                   + ('blocklist = "not a list"\n' if invalid and i == 0 else ""))
        for net in NETS:
            out.append(f'[[communities.channels]]\naccount = "{net}"\nspot = "{name}"\n'
                       + (option if i == n // 2 and net == "north" else ""))
    return "\n".join(out)


async def main(n: int, runs: int) -> None:
    logging.getLogger("hashbridge").setLevel(logging.CRITICAL)  # the reloads' own lines
    adapters: dict[str, MemAdapter] = {}
    registry = registry_with_memnet(adapters)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "c.toml")
        data = os.path.join(tmp, "data")
        with open(path, "w") as f:  # noqa: ASYNC230 - before the bridge starts
            f.write(config(data, n))
        cfg = load(path, registry)
        async with running(cfg, timeout=300) as bridge:
            reloader = Reloader(bridge, registry=registry)

            async def timed(text: str, ok: bool) -> float:
                with open(path, "w") as f:  # noqa: ASYNC230 - a bench, the loop is idle
                    f.write(text)
                out = await reloader.reload()
                assert out.ok == ok, out
                return out.seconds

            cases: list[tuple[str, Callable[[int], str], bool, str]] = [
                ("unchanged file", lambda r: config(data, n), True, ""),
                ("one option changed", lambda r: config(
                    data, n, option=f'reply_wait = {10 + r}\n'), True, ""),
                ("one community added", lambda r: config(data, n, extra=True), True,
                 config(data, n)),
                ("invalid file", lambda r: config(data, n, invalid=True), False, ""),
            ]
            print(f"reload of a bridge with {n} communities x 4 channels "
                  f"({len(bridge.workers)} senders); {load_note()}; RSS {rss_mb():.0f} MB")
            for name, make, ok, undo in cases:
                times = []
                for r in range(runs):
                    times.append(await timed(make(r), ok))
                    if undo:
                        await timed(undo, True)
                print(f"  {name:<22} median {statistics.median(times) * 1000:8.1f} ms   "
                      f"worst {max(times) * 1000:8.1f} ms   ({runs} runs)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--communities", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    asyncio.run(main(args.communities, args.runs))
