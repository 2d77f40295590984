"""An edit flood against a paced platform: what it costs the flooder's post and
everyone else's (issue 12, item 5).

Two ``sandbox`` networks: ``lobby`` (the source) and ``garden`` (the target,
paced with ``rate_per_minute`` like a platform's limit, burst 1).  A member
posts, waits for the copy, then edits it ``--edits`` times, one edit every
``--interval`` seconds (longer than the sandbox's poll, so the bridge reads each
edit on its own); right after the last edit another member posts an unrelated
message.  Counted on the garden network itself:

  * edit sends: how many edits reached the target (coalescing: the rest never left);
  * unrelated delay: from the unrelated post on the lobby to its copy on the
    garden (before the fix: behind every edit, 107 s in the report);
  * final text delay: from the last edit to the garden showing its text (held
    edits wait for the author's rate, ``--author-rate`` a minute);
  * the platform's own pacing (one send) for comparison.

    python bench/edit_flood.py [--edits 60] [--rate-per-minute 120] [--author-rate 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from adapters.sandbox.network import Network
from bench._common import load_note
from bridge.daemon.harness import ChannelDef, build_config, eventually, running, sandbox_channels


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        lobby_def, garden_def = sandbox_channels(tmp, ("lobby", "garden"))
        garden_def = ChannelDef(garden_def.account, garden_def.platform,
                                {**garden_def.account_table,
                                 "rate_per_minute": args.rate_per_minute, "rate_burst": 1},
                                garden_def.channel_table)
        cfg = build_config(tmp, [lobby_def, garden_def],
                           community_options={"author_rate_per_minute": args.author_rate})
        nets = os.path.join(tmp, "networks")
        async with running(cfg):
            lobby = Network(os.path.join(nets, "lobby.sqlite"))
            garden = Network(os.path.join(nets, "garden.sqlite"))
            try:
                mid = lobby.post("alice", "draft 0 #kmers")

                async def copied() -> bool:
                    return any("draft 0" in m.text for m in garden.messages() if m.by_bridge)

                await eventually(copied, timeout=args.timeout, what="the first copy")
                before = garden.last_seq()
                for i in range(1, args.edits + 1):
                    lobby.edit(mid, f"draft {i} #kmers")
                    await asyncio.sleep(args.interval)
                last_edit = time.time()
                lobby.post("bob", "unrelated news #kmers")
                unrelated_at = time.time()
                unrelated = final = 0.0
                deadline = time.monotonic() + args.timeout
                while not (unrelated and final) and time.monotonic() < deadline:
                    for m in garden.messages():
                        if not m.by_bridge:
                            continue
                        if not unrelated and "unrelated news" in m.text:
                            unrelated = time.time() - unrelated_at
                        if not final and m.text.endswith(f"draft {args.edits} #kmers"):
                            final = time.time() - last_edit
                    await asyncio.sleep(0.02)
                edits = [e for e in garden.events_after(before, limit=1_000_000)
                         if e.kind == "edited" and e.message.by_bridge]
            finally:
                lobby.close()
                garden.close()
    pace = 60 / args.rate_per_minute
    note = load_note()
    print(f"edit_flood_edit_sends {len(edits)}  ({args.edits} edits, one every "
          f"{args.interval:g} s; target paced at {args.rate_per_minute:g}/min; {note})")
    print(f"edit_flood_unrelated_delay_s {unrelated:.2f}  (another member's post, lobby to "
          f"garden; the platform's pacing is {pace:.2f} s a send)" if unrelated else
          "edit_flood_unrelated_delay_s timeout")
    print(f"edit_flood_final_text_s {final:.2f}  (last edit to its text on the garden; "
          f"author rate {args.author_rate}/min)" if final else "edit_flood_final_text_s timeout")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--edits", type=int, default=60)
    p.add_argument("--interval", type=float, default=0.03)
    p.add_argument("--rate-per-minute", type=float, default=120.0)
    p.add_argument("--author-rate", type=int, default=30)
    p.add_argument("--timeout", type=float, default=150.0)
    asyncio.run(main(p.parse_args()))
