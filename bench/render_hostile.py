"""CPU per post for hostile shapes rendered to each target (issue 12, item 3).

Each shape is a post of about 40,000 characters (or 10,000 tags / mentions)
taken through ``bridge.outbound.render.render`` for X (threaded; links on and off),
Mastodon (instance defaults: 500 characters, URLs count 23), Matrix (64 KiB
events, HTML) and email (HTML, no length limit), with each target's own
counting and mention rules, as the workers do.  The tree is built from the
plain text by ``textconv.from_plain`` (the inbound path of a plain-text
network: URLs, tags and mentions become nodes) once, outside the timing;
the figure is the CPU time of ``render`` alone, the best of ``--repeat``
runs, each with the renderer's per-text cache emptied first (what the first
target of a post pays).  The target is at most 50 ms per post.  (Building
the trees of the `@a`, tags and mentions shapes takes seconds where
``from_plain``'s linkifying is still quadratic: setup, not measured.)

    .venv/bin/python bench/render_hostile.py              # table
    .venv/bin/python bench/render_hostile.py --json       # machine-readable
    .venv/bin/python bench/render_hostile.py --shape urls --repeat 5
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.email.adapter import EmailAdapter
from adapters.email.config import EmailAccount, EmailChannel, MailServer
from adapters.mastodon.adapter import MastodonAdapter
from adapters.mastodon.config import MastodonAccount, MastodonChannel
from adapters.matrix.adapter import MatrixAdapter
from adapters.matrix.config import MatrixAccount
from adapters.twitter.adapter import TwitterAdapter
from adapters.twitter.config import TwitterAccount, TwitterChannel
from bridge.contract.adapter import Capabilities, ChannelSpec
from bridge.contract.model import Author, ChannelKey, NativeId, Post, PostId
from bridge.contract.richtext import RichText
from bridge.contract.textconv import from_plain
from bridge.outbound import render as render_mod
from bridge.outbound.render import Target, render

KEY = ChannelKey("kmers/target")
SIZE = 40_000
TARGET_MS = 50.0


def _cycle(pieces: list[str], size: int = SIZE) -> str:
    out: list[str] = []
    n = 0
    for p in itertools.cycle(pieces):
        if n >= size:
            break
        out.append(p)
        n += len(p)
    return "".join(out)[:size]


def _words() -> str:
    return _cycle(["lorem ", "ipsum ", "dolor ", "sit ", "amet, ", "consectetur ",
                   "adipiscing ", "elit. "])


def _urls() -> str:
    # A URL every 35 characters: "see https://example.org/p/000123 ok "
    return _cycle([f"see https://ex{i % 97}.org/p/{i:06d} ok " for i in range(4000)])


def _emoji() -> str:
    return _cycle(["👍", "👩‍👩‍👧", "🇫🇷", "1️⃣", "©", "🏳️‍🌈", "👍🏻", "✨", " "])


def _ats() -> str:
    return _cycle(["@a "])


def _cjk() -> str:
    return _cycle(["漢字", "ひらがな", "カタカナ", "한국어", "。"])


def _tags() -> str:
    return " ".join(f"#t{i}" for i in range(10_000))


def _mentions() -> str:
    return " ".join(f"@u{i}" for i in range(10_000))


def _one_url() -> str:
    return "https://example.org/" + "a" * (SIZE - 20)


def _no_spaces() -> str:
    return _cycle(["abcdefghij"])


def _dots() -> str:
    # Domain-looking words without spaces: a.b.c.d... (linkified and defused).
    return _cycle(["a.b"])


SHAPES: dict[str, Callable[[], str]] = {
    "words": _words,
    "urls": _urls,
    "emoji": _emoji,
    "at_a": _ats,
    "cjk": _cjk,
    "tags_10k": _tags,
    "mentions_10k": _mentions,
    "one_url": _one_url,
    "no_spaces": _no_spaces,
    "dots": _dots,
}


def _spec(options: object) -> ChannelSpec:
    return ChannelSpec(key=KEY, community="kmers", hashtag="kmers", direction="both",
                       options=options)  # type: ignore[arg-type]


def targets() -> dict[str, Target]:
    x = TwitterAdapter(TwitterAccount(consumer_key="a", consumer_secret="b", access_token="c",
                                      access_token_secret="d"),
                       (_spec(TwitterChannel(query="#kmers")),)).capabilities(KEY)
    masto = MastodonAdapter(MastodonAccount(base_url="https://m.example", access_token="t"),
                            (_spec(MastodonChannel(hashtag="kmers")),),
                            name="t").capabilities(KEY)
    matrix = MatrixAdapter(MatrixAccount(homeserver="http://127.0.0.1:1",
                                         user_id="@bot:hs.example", access_token="t"),
                           ()).capabilities(KEY)
    server = MailServer(host="127.0.0.1", port=1)
    mail = EmailAdapter(EmailAccount(address="bot@example.org", imap=server, smtp=server),
                        (_spec(EmailChannel(list="kmers@lists.example.org")),)
                        ).capabilities(KEY)
    caps: dict[str, Capabilities] = {"x": x, "mastodon": masto, "matrix": matrix,
                                     "email": mail}
    return {
        "x": Target(caps=caps["x"], hashtag="kmers"),
        "x_links": Target(caps=caps["x"], hashtag="kmers", links=True),
        "mastodon": Target(caps=caps["mastodon"], hashtag="kmers"),
        "matrix": Target(caps=caps["matrix"], hashtag="kmers"),
        "email": Target(caps=caps["email"], hashtag="kmers"),
    }


def post(rt: RichText) -> Post:
    return Post(id=PostId("01TEST0000000000000000000A"), community="kmers",
                origin_channel=ChannelKey("kmers/masto"), origin_native_id=NativeId("1"),
                permalink="https://m.example/@alice/1",
                author=Author(platform="mastodon", handle="alice", display_name="Alice"),
                text=rt)


def measure(rt: RichText, target: Target, repeat: int) -> tuple[float, int]:
    """(best CPU ms of *repeat* renders, parts)."""
    best = float("inf")
    parts = 0
    p = post(rt)
    for _ in range(repeat):
        render_mod._PREPARED.clear()
        t0 = time.process_time()
        out = render(p, target, "Mastodon", reference="https://bridge.example/p/1")
        best = min(best, (time.process_time() - t0) * 1000)
        parts = len(out)
    return best, parts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", action="append", choices=sorted(SHAPES),
                    help="only these shapes (repeatable)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    tg = targets()
    names = args.shape or list(SHAPES)
    rows = []
    worst = 0.0
    for name in names:
        text = SHAPES[name]()
        rt = from_plain(text)
        row: dict[str, object] = {"shape": name, "chars": len(text)}
        for tname, target in tg.items():
            ms, parts = measure(rt, target, args.repeat)
            row[tname] = round(ms, 1)
            row[f"{tname}_parts"] = parts
            worst = max(worst, ms)
        rows.append(row)
    load = os.getloadavg()[0]
    if args.json:
        print(json.dumps({"rows": rows, "worst_ms": round(worst, 1), "load": load}))
        return
    cols = list(tg)
    # (the table indented: run_all.py takes unindented lines as figures)
    print(f"  {'shape':<14}{'chars':>8}" + "".join(f"{c:>10}" for c in cols)
          + f"   (CPU ms per post, best of {args.repeat}; parts X/Mastodon)")
    for r in rows:
        print(f"  {r['shape']:<14}{r['chars']:>8}" + "".join(f"{r[c]:>10}" for c in cols)
              + f"   {r['x_parts']}/{r['mastodon_parts']}")
    print(f"render_hostile_worst_ms {worst:.1f} (target {TARGET_MS:.0f}; "
          f"load average {load:.2f})")


if __name__ == "__main__":
    main()
