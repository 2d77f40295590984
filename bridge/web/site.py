"""Shared state and data access of the web view (no HTTP here)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import jinja2
from aiohttp import web

from bridge.contract.model import Post, PostId
from bridge.features.chatevents import Transcript, build_transcript
from bridge.features.schedule_text import plural
from bridge.runtime.blend import Blend
from bridge.runtime.config import CommunityConfig, Config, WebSettings
from bridge.runtime.schedule import ChatEventConfig, Occurrence, occurrence_at, occurrences
from bridge.store import archive
from bridge.web.about import JoinPage, join_page
from bridge.web.live import ChangeLog, Rendered
from bridge.web.present import PostCard, card, shown_reactions
from bridge.web.roles import Roles

BLEND_LOOKBACK = 7 * 86400.0
"""How far back the live page looks for a blended partner's posts when its own
posts do not fill a page."""


def network_name(config: Config, channel: str) -> str:
    try:
        acct = config.accounts[config.channel(channel).account]
    except KeyError:
        return "hashbridge" if channel.endswith("/bridge") else "?"
    custom = getattr(acct.options, "display_name", None)
    return str(custom or acct.factory.display_name)


def platform_name(config: Config, platform: str) -> str:
    """The name a network is shown by (reaction counts are stored by platform)."""
    for acct in config.accounts.values():
        if acct.platform == platform:
            return str(acct.factory.display_name)
    return platform


def templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("bridge.web", "templates"),
        autoescape=True, trim_blocks=True, lstrip_blocks=True,
        undefined=jinja2.StrictUndefined)
    env.filters["plural"] = lambda n, noun: plural(int(n), noun)
    return env


class Busy(Exception):
    """No slot: *per_client* says whether this client's own share is used up."""

    def __init__(self, per_client: bool) -> None:
        super().__init__("per client" if per_client else "all taken")
        self.per_client = per_client


class Slots:
    """At most *total* at once, and at most *per_client* of them for one client."""

    def __init__(self, total: int, per_client: int) -> None:
        self.total = total
        self.per_client = per_client
        self.held: dict[str, int] = {}
        self._freed = asyncio.Condition()

    @property
    def in_use(self) -> int:
        return sum(self.held.values())

    def _check(self, client: str) -> Busy | None:
        if self.held.get(client, 0) >= self.per_client:
            return Busy(per_client=True)
        if self.in_use >= self.total:
            return Busy(per_client=False)
        return None

    @contextlib.asynccontextmanager
    async def take(self, client: str, patience: float = 0.0) -> AsyncIterator[None]:
        """Raises :class:`Busy` when no slot frees within *patience* seconds (a
        client's previous request may still be finishing as it sends the next)."""
        busy = self._check(client)
        if busy is not None and patience > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(patience), self._freed:
                    await self._freed.wait_for(lambda: self._check(client) is None)
            busy = self._check(client)
        if busy is not None:
            raise busy
        self.held[client] = self.held.get(client, 0) + 1
        try:
            yield
        finally:
            left = self.held[client] - 1
            if left:
                self.held[client] = left
            else:
                del self.held[client]
            async with self._freed:
                self._freed.notify_all()


class Site:
    """What the handlers share: the bridge, the templates, the live change log."""

    @property
    def config(self) -> Config:
        """The bridge's config now (a reload replaces it: added communities show)."""
        cfg: Config = self.bridge.config
        return cfg

    @property
    def blend(self) -> Blend:
        """Blended events (the partner's posts on the live page and transcript), of
        the config now: a reload that adds or ends a guest shows at once."""
        cfg, blend = self._blend
        if cfg is not self.config:
            self._blend: tuple[Config, Blend] = (self.config, Blend(self.config))
            blend = self._blend[1]
        return blend

    def __init__(self, bridge: Any) -> None:
        self.bridge = bridge
        self.env = templates()
        self.changelog = ChangeLog()
        self._blend = (self.config, Blend(self.config))
        self.public_url = ""
        """Base URL for absolute links (feeds, announcements); set by serve_web."""
        self.limits: WebSettings = self.config.bridge.web or WebSettings()
        self._proxies = [ipaddress.ip_network(a, strict=False)
                         for a in self.limits.trusted_proxies]
        self.exports = Slots(self.limits.max_exports, self.limits.max_exports)
        """Exports being built read the whole archive: a public page must not pile them up."""
        self.downloads = Slots(
            max(1, (self.limits.max_connections - self.limits.max_live_streams) // 2),
            self.limits.max_exports_per_client)
        """Exports in progress, built or being sent: per client, and at most half
        the connections the live streams leave (the rest serve pages)."""
        self.streams = Slots(self.limits.max_live_streams,
                             self.limits.max_live_streams_per_client)
        """Live-page subscribers: each holds a connection for as long as it reads."""
        self._roles: dict[str, tuple[Config, Roles]] = {}
        self._first_start: dict[str, float] = {}
        self.calendar_cache: tuple[int, str, float, bytes] | None = None
        """``/events.ics`` as last built: (id of the config, base URL, monotonic
        time, body)."""
        self._built: dict[tuple[str, str, str], tuple[str, int, Transcript]] = {}
        self._building = asyncio.Lock()

    def client(self, request: web.BaseRequest) -> str:
        """The client's address: the peer's, or, when the peer is one of
        ``trusted_proxies``, the nearest address in X-Forwarded-For that is not."""
        peer = request.remote or "?"
        if not self._proxies or not self._trusted(peer):
            return peer
        hops = [h.strip() for h in ",".join(request.headers.getall("X-Forwarded-For", []))
                .split(",") if h.strip()]
        for hop in reversed(hops):
            if not self._trusted(hop):
                return hop
        return hops[0] if hops else peer

    def client_key(self, request: web.BaseRequest) -> str:
        """What the per-client limits count by: the client's address, or its
        /64 for IPv6 (one subscriber line holds a whole /64)."""
        address = self.client(request)
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return address
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.ipv4_mapped is not None:
                return str(ip.ipv4_mapped)
            return str(ipaddress.ip_network(f"{ip}/64", strict=False))
        return str(ip)

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self._proxies)

    # ------------------------------------------------------------ lookups
    def community(self, name: str) -> CommunityConfig | None:
        return next((c for c in self.config.communities if c.name == name), None)

    def networks(self, comm: CommunityConfig) -> list[tuple[str, str]]:
        """(channel key, network name) of the channels the community reads."""
        return [(ch.key, network_name(self.config, ch.key)) for ch in comm.channels
                if ch.reads]

    def event(self, comm: CommunityConfig, event_id: str) -> ChatEventConfig | None:
        return next((e for e in comm.settings.events if e.id == event_id), None)

    def network_of(self, post: Post) -> str:
        return network_name(self.config, post.origin_channel)

    def render(self, template: str, **ctx: Any) -> str:
        return self.env.get_template(template).render(**ctx)

    # ------------------------------------------------------------ data
    def roles(self, community: str) -> Roles:
        """Who asks questions in *community* (its events' hosts), kept per config."""
        got = self._roles.get(community)
        if got is None or got[0] is not self.config:
            comm = self.community(community)
            got = (self.config, Roles(comm.settings.events if comm else ()))
            self._roles[community] = got
        return got[1]

    def join_page(self, comm: CommunityConfig) -> JoinPage:
        """How to take part from each network (the about page, the join panel)."""
        return join_page(self.config, comm)

    def card_of(self, v: archive.PostView) -> PostCard:
        role = self.roles(v.post.community).of(v.post, v.parent)
        return card(v.post, self.network_of(v.post), edited_at=v.edited_at, parent=v.parent,
                    role=role.label, host=role.host,
                    reactions=self.shown_reactions(v.reactions or {}))

    def shown_reactions(self, counts: dict[str, int]) -> dict[str, int]:
        return shown_reactions(counts, lambda p: platform_name(self.config, p))

    async def reactions_of(self, posts: Iterable[Post]) -> dict[str, dict[str, int]]:
        """The posts' reaction counts by shown network name (those with any)."""
        ids = [p.id for p in posts]
        got = await self.bridge.store.run(lambda tx: archive.reaction_counts(tx, ids))
        return {pid: self.shown_reactions(c) for pid, c in got.items()}

    async def cards(self, community: str, *, limit: int = 100, before: str | None = None,
                    channels: tuple[str, ...] = ()) -> list[PostCard]:
        blended = not channels and self.blend.blended(community)
        now = time.time()

        def unit(tx: Any) -> list[archive.PostView]:
            views = archive.page(tx, community, limit=limit, before=before, channels=channels)
            if not blended:
                return views
            # The partner's posts during blended events, between the page's oldest
            # post and its end (now, or the post an older page starts before).
            anchor = tx.get_post(before) if before else None
            hi = anchor.created_at.timestamp() if anchor else now + 1
            lo = (views[0].post.created_at.timestamp() if len(views) >= limit
                  else hi - BLEND_LOOKBACK)
            for w in self.blend.windows(community, lo, hi):
                partner = w.partner_of(community)
                if partner is None:
                    continue
                views += [archive.view(tx, p) for p in archive.between(
                    tx, partner, max(w.start, lo), min(w.end, hi))
                    if anchor is None or (p.created_at, p.id) < (anchor.created_at, anchor.id)]
            views.sort(key=lambda v: (v.post.created_at, v.post.id))
            return views[-limit:]

        views = await self.bridge.store.run(unit)
        return [self.card_of(v) for v in views]

    async def live_payload(self, kind: str, post_id: PostId) -> Rendered | None:
        """What the live pump sends for one change: (community, network, data);
        a post of a blended event names its partner too (shown on both pages)."""
        def unit(tx: Any) -> tuple[str | None, archive.PostView | None, Post | None]:
            return (archive.post_community(tx, post_id), archive.view_of(tx, post_id),
                    tx.get_post(post_id))

        community, v, post = await self.bridge.store.run(unit)
        if community is None:
            return None
        shown: str | tuple[str, ...] = community
        if post is not None and self.blend.blended(community):
            partners = self.blend.partners(community, post.created_at.timestamp())
            shown = (community, *sorted(partners))
        if kind in ("deleted", "hidden") or v is None:
            if kind not in ("deleted", "hidden"):
                return None  # not public (a consent notice): nothing to show
            return shown, "", {}
        c = self.card_of(v)
        html = self.render("post.html", p=c)
        return shown, c.network, {"html": html}

    async def transcript(self, community: str, occ: Occurrence) -> Transcript:
        """The occurrence's transcript: the community's posts in its window, and
        the guest's when the event blends one in."""
        start, end = occ.start.timestamp(), occ.end.timestamp()
        guest = occ.event.guest if self.blend.blended(community) else None

        def unit(tx: Any) -> list[Post]:
            posts = archive.between(tx, community, start, end)
            if guest and guest != community:
                posts += archive.between(tx, guest, start, end)
                posts.sort(key=lambda p: (p.created_at, p.id))
            return posts

        posts = await self.bridge.store.run(unit)
        return build_transcript(occ, posts, self.network_of)

    async def live_transcript(self, community: str, occ: Occurrence) -> Transcript:
        """:meth:`transcript`, built once per change of the live log: every reader
        of a running chat asks where the same new post goes at the same moment."""
        key = (community, occ.event.id, occ.key)
        async with self._building:
            # The log's position before the read: a change committed meanwhile
            # makes the next call build again (never an older state than asked).
            boot, seq = self.changelog.boot, self.changelog.seq
            got = self._built.get(key)
            if got is not None and got[:2] == (boot, seq):
                return got[2]
            t = await self.transcript(community, occ)
            if len(self._built) >= 64:
                self._built.clear()
            self._built[key] = (boot, seq, t)
            return t

    async def first_start(self, community: str) -> float:
        """When the bridge first ran this community (recorded in the store at its
        first start; a community added while running is recorded now)."""
        if community not in self._first_start:
            self._first_start.update(await self.bridge.store.run(
                lambda tx: archive.first_starts(tx, [community], time.time())))
        return self._first_start[community]

    async def before_bridge(self, community: str, occ: Occurrence) -> bool:
        """Whether *occ* ended before the community's first start with nobody's
        post in it: not part of its history on this bridge."""
        if occ.end.timestamp() > await self.first_start(community):
            return False
        return not await self.bridge.store.run(lambda tx: archive.has_posts(
            tx, community, occ.start.timestamp(), occ.end.timestamp()))

    async def past_listed(self, community: str, ev: ChatEventConfig, now: datetime,
                          limit: int = 20) -> list[tuple[Occurrence, bool]]:
        """The newest *limit* occurrences that have started, newest first, with
        whether anyone posted in each; those from before the bridge are left out."""
        first = await self.first_start(community)
        past = self.past(ev, now)[:limit]

        def unit(tx: Any) -> list[bool]:
            return [archive.has_posts(tx, community, o.start.timestamp(), o.end.timestamp())
                    for o in past]

        posted = await self.bridge.store.run(unit)
        return [(o, p) for o, p in zip(past, posted, strict=True)
                if p or o.end.timestamp() > first]

    def occurrence(self, comm: CommunityConfig, event_id: str,
                   key: str) -> Occurrence | None:
        ev = self.event(comm, event_id)
        return occurrence_at(ev, key) if ev else None

    def past(self, ev: ChatEventConfig, now: datetime, days: int = 120) -> list[Occurrence]:
        return [o for o in occurrences(ev, now - timedelta(days=days), now)
                if o.start <= now][::-1]


def now_utc() -> datetime:
    return datetime.now(UTC)


SITE: web.AppKey[Site] = web.AppKey("site", Site)


def site_of(request: web.Request) -> Site:
    return request.app[SITE]


def community_or_404(request: web.Request) -> CommunityConfig:
    comm = site_of(request).community(request.match_info["community"])
    if comm is None:
        raise web.HTTPNotFound(text="no such community")
    return comm
