"""The per-post cost of blending (#chatmixer): the partner check and the choice
of targets (one copy per place) the relay makes for every post, edit and delete.

Two sandbox communities of four channels each (kmers, pkmchat), an event of kmers
with pkmchat as its guest.  Measured over ``--calls`` posts spread across two
weeks (inside and outside the event's occurrences, as a real archive is):

  * partners: ``Blend.partners(community, when)``;
  * targets: ``Blend.targets(...)`` (the partner check included);
  * baseline: the list of the community's writable channels the relay built
    before blending existed, for comparison.

    python bench/blend.py [--calls 20000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._common import load_note
from bridge.runtime.blend import Blend
from bridge.runtime.config import parse
from bridge.runtime.registry import load_factories


def config(tmp: str) -> object:
    nets = {"kmers": ("lobby", "garden", "porch", "yard"),
            "pkmchat": ("hall", "lobby", "attic", "cellar")}  # lobby: one place, both
    accounts = {f"sb_{c}_{n}": {"platform": "sandbox", "dir": tmp}
                for c, names in nets.items() for n in names}
    event = {"id": "mixer", "title": "mixer", "day": "thursday", "time": "18:00",
             "timezone": "Europe/Paris", "duration_minutes": 60, "guest": "pkmchat"}
    return parse({"bridge": {"data_dir": tmp}, "accounts": accounts, "communities": [
        {"name": c, "hashtag": c, **({"events": [event]} if c == "kmers" else {}),
         "channels": [{"account": f"sb_{c}_{n}", "network": n} for n in names]}
        for c, names in nets.items()]}, load_factories(), {})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=20000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config(tmp)
        blend = Blend(cfg)  # type: ignore[arg-type]
        kmers = cfg.communities[0]  # type: ignore[attr-defined]
        start = datetime(2026, 12, 3, 16, 30, tzinfo=UTC).timestamp()  # Thu 17:30 Paris
        # Every post a minute apart from half an hour before a Thursday's chat on:
        # the first 90 in or around the event, the rest over the following days.
        whens = [start + 60.0 * i * (1 if i < 90 else 7) for i in range(args.calls)]
        origin = kmers.channels[1].key
        blended = sum(1 for w in whens if blend.partners("kmers", w))

        t0 = time.perf_counter()
        for w in whens:
            blend.partners("kmers", w)
        t_partners = time.perf_counter() - t0

        t0 = time.perf_counter()
        for w in whens:
            blend.targets(kmers, origin, w)
        t_targets = time.perf_counter() - t0

        t0 = time.perf_counter()
        for _ in whens:
            [t.key for t in kmers.channels if t.writes and t.key != origin]
        t_base = time.perf_counter() - t0

    n = args.calls
    print(f"blend bench: {n} posts over {(whens[-1] - whens[0]) / 86400:.1f} days, "
          f"{blended} during the blended event ({load_note()})")
    print(f"  partner check:          {t_partners / n * 1e6:8.2f} µs/post")
    print(f"  targets (with check):   {t_targets / n * 1e6:8.2f} µs/post")
    print(f"  baseline (no blending): {t_base / n * 1e6:8.2f} µs/post")
    print(f"  targets during the event: {list(blend.targets(kmers, origin, start + 3600))}")


if __name__ == "__main__":
    main()
