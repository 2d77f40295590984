"""Shared state and data access of the web view (no HTTP here)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import jinja2
from aiohttp import web

from bridge.contract.model import Post, PostId
from bridge.features.chatevents import Transcript, build_transcript
from bridge.runtime.config import CommunityConfig, Config, WebSettings
from bridge.runtime.schedule import ChatEventConfig, Occurrence, occurrence_at, occurrences
from bridge.store import archive
from bridge.web.live import ChangeLog
from bridge.web.present import PostCard, card


def network_name(config: Config, channel: str) -> str:
    try:
        acct = config.accounts[config.channel(channel).account]
    except KeyError:
        return "hashbridge" if channel.endswith("/bridge") else "?"
    custom = getattr(acct.options, "display_name", None)
    return str(custom or acct.factory.display_name)


def templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("bridge.web", "templates"),
        autoescape=True, trim_blocks=True, lstrip_blocks=True,
        undefined=jinja2.StrictUndefined)
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

    def __init__(self, bridge: Any) -> None:
        self.bridge = bridge
        self.env = templates()
        self.changelog = ChangeLog()
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
    def card_of(self, v: archive.PostView) -> PostCard:
        return card(v.post, self.network_of(v.post), edited_at=v.edited_at, parent=v.parent)

    async def cards(self, community: str, *, limit: int = 100, before: str | None = None,
                    channels: tuple[str, ...] = ()) -> list[PostCard]:
        views = await self.bridge.store.run(
            lambda tx: archive.page(tx, community, limit=limit, before=before,
                                    channels=channels))
        return [self.card_of(v) for v in views]

    async def live_payload(self, kind: str, post_id: PostId
                           ) -> tuple[str, str, dict[str, object]] | None:
        """What the live pump sends for one change: (community, network, data)."""
        def unit(tx: Any) -> tuple[str | None, archive.PostView | None]:
            return archive.post_community(tx, post_id), archive.view_of(tx, post_id)

        community, v = await self.bridge.store.run(unit)
        if community is None:
            return None
        if kind in ("deleted", "hidden") or v is None:
            if kind not in ("deleted", "hidden"):
                return None  # not public (a consent notice): nothing to show
            return community, "", {}
        c = self.card_of(v)
        html = self.render("post.html", p=c)
        return community, c.network, {"html": html}

    async def transcript(self, community: str, occ: Occurrence) -> Transcript:
        posts = await self.bridge.store.run(
            lambda tx: archive.between(tx, community, occ.start.timestamp(),
                                       occ.end.timestamp()))
        return build_transcript(occ, posts, self.network_of)

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
