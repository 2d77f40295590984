"""What a poll and a long quote cost the renderer: CPU per render of a post with
a poll and a 2,600-character quote that must be shortened to fit (the quoted
words are cut first, by binary search on their length), against a plain post
of the same words, for X (280 weighted, links dropped) and Mastodon (500),
with the real adapters' capabilities and no network.

    .venv/bin/python bench/polls_quotes.py [-n 200]
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import load_note
from render_hostile import targets

from bridge.contract.model import (
    Author,
    ChannelKey,
    NativeId,
    Poll,
    PollOption,
    Post,
    PostId,
    QuotedPost,
)
from bridge.contract.richtext import RichText
from bridge.contract.textconv import from_plain
from bridge.outbound.render import render

OWN = "Q3 answer: we keep a shared glossary and review it every quarter. #kmers"
QUOTED = ("A long answer from the last chat, quoted here in full, sentence after sentence. "
          * 40)[:2600]


def posts() -> tuple[Post, Post]:
    base = Post(id=PostId("01BENCH"), community="kmers", origin_channel=ChannelKey("kmers/m"),
                origin_native_id=NativeId("1"), permalink="https://m.example/@alice/1",
                author=Author(platform="mastodon", handle="@alice@m.example",
                              display_name="Alice"), text=from_plain(OWN))
    extras = Post(**{**{f: getattr(base, f) for f in base.__slots__},  # type: ignore[arg-type]
                     "poll": Poll(options=(PollOption(title="Weekly"),
                                           PollOption(title="Monthly"),
                                           PollOption(title="Never")),
                                  ends_at=datetime(2099, 12, 10, 18, 0, tzinfo=UTC)),
                     "quote": QuotedPost(url="https://x.com/bob/status/42", network="X",
                                         author=Author(platform="twitter", handle="@bob",
                                                       display_name="Bob"),
                                         text=RichText.plain(QUOTED))})
    return base, extras


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=200, help="renders per figure")
    n = ap.parse_args().n
    plain, extras = posts()
    tg = targets()
    for name in ("x", "mastodon"):
        target = tg[name]
        times = {}
        for label, post in (("plain", plain), ("poll+quote", extras)):
            parts = render(post, target, "Mastodon", reference=post.permalink)  # warm up
            start = time.process_time()
            for _ in range(n):
                render(post, target, "Mastodon", reference=post.permalink)
            times[label] = (time.process_time() - start) / n * 1000
            if label == "poll+quote":
                assert len(parts) == 1 and OWN.split(" #")[0] in parts[0].plain
                shown = len(parts[0].plain)
        print(f"render_{name}_plain {times['plain']:.3f} ms CPU per post "
              f"({n} renders, {load_note()})")
        print(f"render_{name}_poll_quote {times['poll+quote']:.3f} ms CPU per post "
              f"(2,600-character quote shortened to fit one part of {shown} code points, "
              f"x{times['poll+quote'] / times['plain']:.1f} the plain post)")


if __name__ == "__main__":
    main()
