"""Blended chat events (#chatmixer) and places: where a post's copies go.

An event of one community can name a guest community (``guest = "pkmchat"`` on
``[[communities.events]]``).  During an occurrence the two are *partners*: a post
of either is relayed to the channels of both and shown on both live pages.

A *place* is where members read a copy: a Matrix room, a mailing list, a sandbox
network, or, on the networks read by hashtag (Mastodon, X, Bluesky: the
channel's locator is a hashtag or a query), the bridge's account, whose posts
its followers see whatever the hashtag.  Two channels at one place get one copy,
never two: the post's own community's channel is kept (so on a shared Mastodon
account the single copy carries only its own community's hashtag).

Everything here is pure and per post cheap: the partner check is a dict lookup
and a scan of the few windows of that day; targets are cached per (community,
origin channel, partners).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from bridge.contract.model import ChannelKey
from bridge.runtime.config import ChannelConfig, CommunityConfig, Config
from bridge.runtime.schedule import ChatEventConfig, Occurrence, occurrences

DAY = 86400.0
BLOCK_DAYS = 16
"""Days of windows worked out together (see :meth:`Blend._day`)."""
_BY_HASHTAG = ("hashtag", "query")
"""Channel locators that select posts by hashtag or search on a shared
timeline: their place is the bridge's account."""

Place = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class Window:
    """One occurrence of a blended event: *host* and *guest* are partners in
    [start, end) (epoch seconds)."""

    start: float
    end: float
    host: str
    guest: str
    occurrence: Occurrence

    def partner_of(self, community: str) -> str | None:
        if community == self.host:
            return self.guest
        if community == self.guest:
            return self.host
        return None


def place_of(channel: ChannelConfig, locator_kind: str) -> Place:
    """Where *channel*'s copies are read (see the module's docstring)."""
    if locator_kind in _BY_HASHTAG:
        return (channel.platform, "account", channel.account)
    return (channel.platform, locator_kind, channel.locator.strip().casefold())


class Blend:
    """Partners and targets for one config (build once, ask per post)."""

    def __init__(self, config: Config, *, cache_days: int = 128) -> None:
        self._communities = {c.name: c for c in config.communities}
        self._events: dict[str, list[tuple[ChatEventConfig, str, str]]] = {}
        for comm in config.communities:
            for ev in comm.settings.events:
                if ev.guest and ev.guest in self._communities and ev.guest != comm.name:
                    entry = (ev, comm.name, ev.guest)
                    self._events.setdefault(comm.name, []).append(entry)
                    self._events.setdefault(ev.guest, []).append(entry)
        kinds = {name: a.factory.channel_locator for name, a in config.accounts.items()}
        self._place: dict[str, Place] = {
            ch.key: place_of(ch, kinds.get(ch.account, "")) for ch in config.all_channels()}
        at: dict[Place, list[ChannelConfig]] = {}
        for ch in config.all_channels():
            at.setdefault(self._place[ch.key], []).append(ch)
        self._same_place: dict[str, tuple[ChannelConfig, ...]] = {
            ch.key: tuple(o for o in at[self._place[ch.key]] if o.community != ch.community)
            for ch in config.all_channels()}
        self._days: dict[int, tuple[Window, ...]] = {}
        self._cache_days = cache_days
        self._targets: dict[tuple[str, str, frozenset[str], str], tuple[ChannelKey, ...]] = {}

    @property
    def any(self) -> bool:
        """Whether any event of the config has a guest."""
        return bool(self._events)

    def blended(self, community: str) -> bool:
        return community in self._events

    # ------------------------------------------------------------ when
    def windows(self, community: str, start: float, end: float) -> list[Window]:
        """The blended occurrences *community* takes part in overlapping [start, end)."""
        if community not in self._events:
            return []
        lo, hi = datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)
        out = [Window(o.start.timestamp(), o.end.timestamp(), host, guest, o)
               for ev, host, guest in self._events[community]
               for o in occurrences(ev, lo, hi)]
        return sorted(out, key=lambda w: (w.start, w.host))

    def _day(self, day: int) -> tuple[Window, ...]:
        got = self._days.get(day)
        if got is None:
            # A miss computes a whole block of days at once: the rule is parsed
            # and walked once per block, not once per day.
            first = day - day % BLOCK_DAYS
            seen: dict[tuple[float, str, str], Window] = {}
            for community in self._events:
                for w in self.windows(community, first * DAY, (first + BLOCK_DAYS) * DAY):
                    seen[(w.start, w.host, w.guest)] = w
            while len(self._days) + BLOCK_DAYS > self._cache_days:
                self._days.pop(next(iter(self._days)))
            for d in range(first, first + BLOCK_DAYS):
                self._days[d] = tuple(w for w in seen.values()
                                      if w.start < (d + 1) * DAY and w.end > d * DAY)
            got = self._days[day]
        return got

    def partners(self, community: str, when: float) -> frozenset[str]:
        """The communities blended with *community* at epoch *when*."""
        if community not in self._events:
            return frozenset()
        found = [p for w in self._day(math.floor(when / DAY)) if w.start <= when < w.end
                 and (p := w.partner_of(community)) is not None]
        return frozenset(found)

    # ------------------------------------------------------------ where
    def place(self, channel: str) -> Place | None:
        return self._place.get(channel)

    def by_hashtag(self, channel: str) -> bool:
        """Whether *channel* selects posts by hashtag (or search) on a shared timeline."""
        place = self._place.get(channel)
        return place is not None and place[1] == "account"

    def same_place(self, channel: str) -> tuple[ChannelConfig, ...]:
        """Channels of other communities at *channel*'s place."""
        return self._same_place.get(channel, ())

    def targets(self, community: CommunityConfig, origin: str | None, when: float, *,
                skip_platform: str = "") -> tuple[ChannelKey, ...]:
        """The channels a post of *community* first read on *origin* (None: the
        bridge's own post) at *when* is copied to: the writable channels of the
        community and of its partners then, one per place, never the origin's
        place; with *skip_platform*, none of that platform (a post read through
        ``also_read`` is not copied back onto its network)."""
        partners = self.partners(community.name, when)
        key = (community.name, origin or "", partners, skip_platform)
        got = self._targets.get(key)
        if got is None:
            got = self._targets[key] = self._choose(community, origin, partners, skip_platform)
        return got

    def _choose(self, community: CommunityConfig, origin: str | None,
                partners: Iterable[str], skip_platform: str) -> tuple[ChannelKey, ...]:
        taken: set[Place] = set()
        if origin is not None and (p := self._place.get(origin)) is not None:
            taken.add(p)
        # The community's own channels as without a blend (two of its own at one
        # place are the operator's choice); a partner's only where no copy is yet.
        out = [ch.key for ch in community.channels
               if ch.writes and ch.key != origin and ch.platform != skip_platform]
        taken.update(self._place[k] for k in out if k in self._place)
        for name in sorted(partners):
            for ch in self._communities[name].channels:
                if not ch.writes or ch.key == origin or ch.platform == skip_platform:
                    continue
                place = self._place.get(ch.key, ("", "", ch.key))
                if place in taken:
                    continue
                taken.add(place)
                out.append(ch.key)
        return tuple(out)
