"""What the live page's question highlighting costs per card.

Each card the live page renders (on load, and once per change for the SSE
clients) now also asks who the post is: ``Q3`` from a host, ``A3``, the Host
badge (:mod:`bridge.web.roles`: a Q/A match on the first paragraph, the hosts
matched by account).  This measures, on the same mix of posts (questions,
answers, replies, long posts, plain chatter; three events with named hosts):

  * roles alone: ``Roles.of`` per card;
  * a card without roles (``present.card``, as before) and with them
    (``Site.card_of``'s work: the role, then the card);
  * the rendered HTML of a card (``post.html``), the part the SSE pump sends.

Printed as ms per 100 cards (best of nine runs).

    python bench/live_roles.py [--cards 2000]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime

from bridge.contract.model import Author, ChannelKey, NativeId, Post, PostId
from bridge.contract.textconv import from_plain
from bridge.runtime.schedule import ChatEventConfig
from bridge.web.present import card
from bridge.web.roles import Roles
from bridge.web.site import templates

TEXTS = [
    "Q{n}: what is the one tool you would keep if you could keep only one? #kmers",
    "A{n}: my notebook, paper, nothing beats it #kmers",
    "@alice A{n} - a wiki, because links make it grow",
    "I agree with everyone here, great chat tonight",
    "A{n}. " + "A long answer that goes on. " * 120,
    "Welcome everyone! Introduce yourselves while we wait for Q1",
]


def posts(n: int) -> list[Post]:
    out = []
    for i in range(n):
        text = TEXTS[i % len(TEXTS)].format(n=i // len(TEXTS) + 1)
        host = i % len(TEXTS) == 0
        out.append(Post(
            id=PostId(f"01HB{i:022d}"), community="kmers",
            origin_channel=ChannelKey("kmers/masto"), origin_native_id=NativeId(str(i)),
            permalink="", text=from_plain(text),
            author=Author(platform="mastodon",
                          handle="@host@example.social" if host else f"@m{i % 50}@example.org",
                          display_name="Host" if host else f"Member {i % 50}"),
            created_at=datetime.now(UTC)))
    return out


def best_of(runs: int, fn: Callable[[], object]) -> float:
    """The fastest of *runs* timings (the machine is shared: the least disturbed)."""
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cards", type=int, default=2000)
    args = ap.parse_args()
    events = [ChatEventConfig(id=f"e{k}", title="chat", day="thursday", time="17:00",
                              hosts=["mastodon:@host@example.social", "twitter:@kmhost",
                                     "matrix:@host:example.org"]) for k in range(3)]
    roles = Roles(events)
    batch = posts(args.cards)
    parents = [batch[i - 1] if i % 4 == 3 else None for i in range(len(batch))]
    tpl = templates().get_template("post.html")
    per100 = 100 / len(batch) * 1000
    pairs = list(zip(batch, parents, strict=True))

    t_roles = best_of(9, lambda: [roles.of(p, parent) for p, parent in pairs])
    t_plain = best_of(9, lambda: [card(p, "Mastodon", parent=parent)
                                  for p, parent in pairs])

    def with_roles() -> None:
        for p, parent in pairs:
            r = roles.of(p, parent)
            card(p, "Mastodon", parent=parent, role=r.label, host=r.host)

    t_cards = best_of(9, with_roles)
    cards = [card(p, "Mastodon", parent=parent, role=roles.of(p, parent).label)
             for p, parent in pairs]
    t_html = best_of(9, lambda: [tpl.render(p=c) for c in cards])
    marked = sum(1 for c in cards if c.role)
    print(f"{len(batch)} cards ({marked} with a Q/A label), 3 events with hosts")
    print(f"roles alone:                 {t_roles * per100:7.3f} ms per 100 cards")
    print(f"card without roles:          {t_plain * per100:7.3f} ms per 100 cards")
    print(f"card with roles:             {t_cards * per100:7.3f} ms per 100 cards")
    print(f"roles / card without roles:  {t_roles / t_plain * 100:7.1f} %")
    print(f"post.html render:            {t_html * per100:7.3f} ms per 100 cards")


if __name__ == "__main__":
    main()
