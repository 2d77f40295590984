"""Shared state and data access of the web view (no HTTP here)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import jinja2
from aiohttp import web

from bridge.chatevents import (
    ChatEventConfig,
    Occurrence,
    Transcript,
    build_transcript,
    occurrence_at,
    occurrences,
)
from bridge.config import CommunityConfig, Config
from bridge.model import Post, PostId
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


class Site:
    """What the handlers share: the bridge, the templates, the live change log."""

    def __init__(self, bridge: Any) -> None:
        self.bridge = bridge
        self.config: Config = bridge.config
        self.env = templates()
        self.changelog = ChangeLog()
        self.public_url = ""
        self.exports = asyncio.Semaphore(2)
        """Exports read the whole archive: a public page must not pile them up."""
        """Base URL for absolute links (feeds, announcements); set by serve_web."""

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
