"""Digest mode's durable queue (pure data; persisted as one cursor per channel).

Design: ``send`` appends the rendered message to ``items`` and persists the
state through the context's cursor store *before* returning, so a message the
core counts as delivered is on disk here.  The digest loop marks the post it is
about to make in ``posting`` (its exact text and the keys it covers) and
persists that before calling X; only after X answers are the covered items
dropped.  After a crash with ``posting`` set, the adapter looks for that text
among the account's recent posts and either completes the digest or posts it
again: nothing is lost and nothing is posted twice.  When the budget is spent
the items simply stay and join the next digest.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from adapters.twitter.compose import fit, weighted_length
from adapters.twitter.textrules import neutralise


@dataclass(frozen=True, slots=True, kw_only=True)
class Item:
    key: str
    author: str
    text: str
    network: str = ""
    at: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Posting:
    text: str
    keys: tuple[str, ...]
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class DigestState:
    seq: int = 0
    items: tuple[Item, ...] = ()
    posting: Posting | None = None
    posted: tuple[tuple[str, str], ...] = field(default=())
    """(item key, digest post id) of recent digests, for replies and reports."""

    def add(self, item: Item) -> DigestState:
        if any(i.key == item.key for i in self.items):
            return self  # a retried send: already queued
        return replace(self, items=(*self.items, item))

    def remove(self, key: str) -> tuple[DigestState, bool]:
        kept = tuple(i for i in self.items if i.key != key)
        return replace(self, items=kept), len(kept) != len(self.items)

    def begin(self, text: str, at: float) -> DigestState:
        return replace(self, posting=Posting(text=text, keys=tuple(i.key for i in self.items),
                                             at=at))

    def complete(self, post_id: str) -> DigestState:
        assert self.posting is not None
        done = set(self.posting.keys)
        posted = (*self.posted, *((k, post_id) for k in self.posting.keys))[-500:]
        return replace(self, seq=self.seq + 1, posting=None, posted=posted,
                       items=tuple(i for i in self.items if i.key not in done))

    def abandon(self) -> DigestState:
        return replace(self, posting=None)

    def post_of(self, key: str) -> str | None:
        return next((p for k, p in self.posted if k == key), None)

    def dumps(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def loads(cls, raw: str | None) -> DigestState:
        if not raw:
            return cls()
        d: dict[str, Any] = json.loads(raw)
        p = d.get("posting")
        return cls(seq=int(d.get("seq", 0)), items=tuple(Item(**i) for i in d.get("items", [])),
                   posting=Posting(text=p["text"], keys=tuple(p["keys"]), at=p["at"])
                   if p else None,
                   posted=tuple((str(a), str(b)) for a, b in d.get("posted", [])))


def digest_post_text(text: str, limit: int) -> str:
    """The digest as posted: under X's mention rule as the last step (items
    queued before names were neutralised, or a line cut to fit, can hold a
    live mention), still within *limit*."""
    out = neutralise(text)
    room = limit
    while weighted_length(out) > limit and room > 10:
        room -= 2  # each word joiner weighs 2
        out = neutralise(fit(out, room))
    return out
