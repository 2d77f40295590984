"""HTTP routes of the public web view; admin routes are in :mod:`bridge.web.admin`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from aiohttp import web

from bridge.daemon.cluster import lease_name
from bridge.features.chatevents import place
from bridge.features.schedule_text import next_chat, rule_words, schedule_text, short_date
from bridge.inbound import held
from bridge.runtime.config import CommunityConfig
from bridge.runtime.logs import Redactor
from bridge.runtime.schedule import Occurrence, upcoming
from bridge.web import admin, feeds, guard
from bridge.web.live import pump
from bridge.web.present import card, mask_emails
from bridge.web.site import SITE, Busy, Site, community_or_404, now_utc, site_of
from bridge.web.static_site import render_transcript

log = logging.getLogger("hashbridge.web")

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; "
       "media-src https:; connect-src 'self'; form-action 'self'; base-uri 'none'; "
       "frame-ancestors 'none'")
HEARTBEAT = 15.0
STATIC = {"style.css": "text/css", "live.js": "text/javascript",
          "follow.js": "text/javascript", "transcript.js": "text/javascript",
          "localtime.js": "text/javascript"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


async def security_headers(request: web.Request, resp: web.StreamResponse) -> None:
    """On every response, just before its headers are sent.

    A signal, not a middleware: a streamed response (an export, the live
    stream) sends its headers in ``prepare()``, inside the handler, before a
    middleware would see it.  A handler's own value (none today) wins.
    """
    for name, value in SECURITY_HEADERS.items():
        resp.headers.setdefault(name, value)


@web.middleware
async def error_text(request: web.Request, handler: Handler) -> web.StreamResponse:
    """An error without a body gets its status line as text (never an empty page)."""
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status >= 400 and not e.text:
            e.text = f"{e.status} {e.reason}"
        raise


def make_app(bridge: Any) -> web.Application:
    site = Site(bridge)
    app = web.Application(middlewares=[error_text, guard.middleware])
    app[guard.BODY_TIMEOUT] = site.limits.body_timeout_seconds
    app.on_response_prepare.append(security_headers)
    app[SITE] = site
    app.cleanup_ctx.append(_live_pump)
    r = app.router
    r.add_get("/", index)
    r.add_get("/events.ics", feeds.ical_all)
    r.add_get("/healthz", healthz)
    r.add_get("/metrics", metrics)
    r.add_get("/static/{name}", static)
    r.add_get("/favicon.ico", no_icon)
    r.add_get("/c/{community}", live_page)
    r.add_get("/c/{community}/about", about_page)
    r.add_get("/c/{community}/posts", posts_fragment)
    r.add_get("/c/{community}/stream", stream)
    r.add_get("/c/{community}/feed.atom", feeds.community_feed)
    r.add_get("/c/{community}/events", events_page)
    r.add_get("/c/{community}/events.ics", feeds.ical)
    r.add_get("/c/{community}/events/{event}/feed.atom", feeds.event_feed)
    r.add_get("/c/{community}/events/{event}/{occ}", transcript_page)
    r.add_get("/c/{community}/events/{event}/{occ}/place/{post}", transcript_place)
    r.add_get("/c/{community}/export.{fmt}", feeds.export)
    admin.add_routes(app)
    return app


async def _live_pump(app: web.Application) -> AsyncIterator[None]:
    site = app[SITE]
    task = asyncio.create_task(pump(site.bridge, site.changelog, site.live_payload),
                               name="web:live-pump")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


# ---------------------------------------------------------------- pages

async def index(request: web.Request) -> web.StreamResponse:
    """The directory of every community, soonest chat first (with one community,
    its live page)."""
    site = site_of(request)
    if len(site.config.communities) == 1:
        raise web.HTTPFound(f"/c/{site.config.communities[0].name}")
    return html(site.render("index.html", entries=directory(site.config.communities,
                                                            now_utc())))


def directory(communities: Iterable[CommunityConfig], now: datetime) -> list[dict[str, Any]]:
    """What the directory shows of each community: running chats first, then by
    the next chat's start, then communities with none ahead (by name)."""
    out = []
    for comm in communities:
        events = list(comm.settings.events)
        occ = next_chat(events, now)
        out.append({"comm": comm, "occ": occ, "running": occ is not None and occ.contains(now),
                    "short": short_date(occ.local_start()) if occ else "",
                    "schedules": [(ev.title, schedule_text(ev, now)) for ev in events]})
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(out, key=lambda d: (d["occ"].start if d["occ"] else far, d["comm"].name))


async def no_icon(request: web.Request) -> web.StreamResponse:
    """Browsers ask for it on every page; an empty answer keeps logs clean."""
    return web.Response(status=204, headers={"Cache-Control": "public, max-age=86400"})


async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in STATIC:
        raise web.HTTPNotFound()
    body = resources.files("bridge.web").joinpath("static", name).read_text("utf-8")
    return web.Response(text=body, content_type=STATIC[name], charset="utf-8",
                        headers={"Cache-Control": "public, max-age=300"})


def _filter(request: web.Request, site: Site, comm: Any) -> tuple[str, tuple[str, ...]]:
    """The ``?network=`` filter: a network name, mapped to its channel keys."""
    wanted = request.query.get("network", "")
    if not wanted:
        return "", ()
    keys = tuple(k for k, n in site.networks(comm) if n == wanted)
    return wanted, keys or ("-",)


async def live_page(request: web.Request) -> web.StreamResponse:
    site = site_of(request)
    comm = community_or_404(request)
    network, channels = _filter(request, site, comm)
    before = request.query.get("before") or None
    last_id = site.changelog.last_id  # before the read: a change in between is replayed
    cards = await site.cards(comm.name, limit=100, before=before, channels=channels)
    networks = sorted({n for _, n in site.networks(comm)})
    nxt = upcoming(comm.settings.events, now_utc(), days=14)[:1]
    return html(site.render(
        "live.html", comm=comm, cards=cards, networks=networks, network=network,
        last_id=last_id, live=before is None, older=cards[0].id if len(cards) >= 100 else "",
        next_event=nxt[0] if nxt else None, now=now_utc(), join=site.join_page(comm)))


async def about_page(request: web.Request) -> web.StreamResponse:
    """How to take part from each network, and what the bridge does with posts."""
    site = site_of(request)
    comm = community_or_404(request)
    return html(site.render("about.html", comm=comm, page=site.join_page(comm)))


async def posts_fragment(request: web.Request) -> web.StreamResponse:
    """The list items alone, for a client whose resume id is no longer known."""
    site = site_of(request)
    comm = community_or_404(request)
    _, channels = _filter(request, site, comm)
    last_id = site.changelog.last_id
    cards = await site.cards(comm.name, limit=100, channels=channels)
    body = "".join(site.render("post.html", p=c) for c in cards)
    return web.Response(text=body, content_type="text/html", charset="utf-8",
                        headers={"X-Last-Event-Id": last_id, "Cache-Control": "no-store"})


async def stream(request: web.Request) -> web.StreamResponse:
    """Server-sent events: ``posted``/``edited``/``deleted``/``hidden`` and ``reset``."""
    site = site_of(request)
    comm = community_or_404(request)
    network = request.query.get("network", "")
    limits = site.limits
    try:
        async with site.streams.take(site.client_key(request), patience=2.0):
            return await _stream(request, site, comm.name, network)
    except Busy as e:
        raise feeds.busy_answer(e, "live streams", limits.max_live_streams_per_client) \
            from None


async def _stream(request: web.Request, site: Site, community: str,
                  network: str) -> web.StreamResponse:
    log_ = site.changelog
    resume = request.headers.get("Last-Event-ID") or request.query.get("since")
    seq = log_.parse(resume)
    resp = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-store",
        "X-Accel-Buffering": "no"})
    await resp.prepare(request)

    async def send(data: bytes) -> None:
        if not await feeds.send(request, resp, data):
            raise ConnectionResetError

    try:
        await send(b"retry: 2000\n\n")
        boot = log_.boot
        if seq is None:
            seq = log_.seq
            await send(f"id: {log_.last_id}\nevent: reset\ndata: {{}}\n\n".encode())
        while True:
            if log_.boot != boot:  # the log restarted under us: the client reloads
                boot, seq = log_.boot, log_.seq
                await send(f"id: {log_.last_id}\nevent: reset\ndata: {{}}\n\n".encode())
            for e in log_.after(seq):
                seq = e.seq
                if not e.shown_in(community):
                    continue
                if network and e.network and e.network != network:
                    continue
                # A payload scrubbed after a later delete: the client only needs
                # to know the post is gone.
                data = e.payload if e.payload is not None else json.dumps(
                    {"kind": "deleted", "id": e.post_id})
                await send(f"id: {log_.boot}:{e.seq}\ndata: {data}\n\n".encode())
            before = log_.seq
            waited = 0.0
            # In short steps: a client that has gone frees its slot within a
            # second, not at the next heartbeat's failed write.
            while log_.seq == before and log_.boot == boot and waited < HEARTBEAT:
                if request.transport is None or request.transport.is_closing():
                    return resp
                await log_.wait_beyond(seq, 1.0)
                waited += 1.0
            if log_.seq == before:
                await send(b": keep-alive\n\n")
    except ConnectionResetError:
        pass  # the client went away: its slot is freed by the caller's context manager
    return resp


async def events_page(request: web.Request) -> web.StreamResponse:
    site = site_of(request)
    comm = community_or_404(request)
    now = now_utc()
    events = []
    for ev in comm.settings.events:
        nxt = upcoming([ev], now, days=60)[:5]
        events.append({"ev": ev, "next": nxt, "words": rule_words(ev),
                       "text": schedule_text(ev, now),
                       "next_short": short_date(nxt[0].local_start()) if nxt else "",
                       "past": await site.past_listed(comm.name, ev, now)})
    return html(site.render("events.html", comm=comm, events=events, now=now))


async def _occurrence_or_404(request: web.Request, site: Site,
                             comm: CommunityConfig) -> Occurrence:
    occ = site.occurrence(comm, request.match_info["event"], request.match_info["occ"])
    if occ is None:
        raise web.HTTPNotFound(text="no such event occurrence")
    if await site.before_bridge(comm.name, occ):
        first = datetime.fromtimestamp(await site.first_start(comm.name), UTC)
        raise web.HTTPNotFound(text=(
            f"404 no transcript: this {occ.event.title} "
            f"({occ.local_start():%d %b %Y, %H:%M %Z}) ended before the bridge started "
            f"relaying #{comm.settings.hashtag} (on {first:%d %b %Y, %H:%M} UTC), "
            "so nothing of it was recorded."))
    return occ


async def transcript_page(request: web.Request) -> web.StreamResponse:
    site = site_of(request)
    comm = community_or_404(request)
    occ = await _occurrence_or_404(request, site, comm)
    last_id = site.changelog.last_id  # before the read: a change in between is replayed
    t = await site.transcript(comm.name, occ)
    posts = [*t.other, *(p for q in t.questions for p in (q.post, *q.answers) if p)]
    return html(render_transcript(site, comm, occ, t, live=now_utc() < occ.end,
                                  last_id=last_id, reactions=await site.reactions_of(posts)))


async def transcript_place(request: web.Request) -> web.StreamResponse:
    """Where one post goes in a transcript, for the page of a running chat
    (``static/transcript.js``): its section, the post it comes before, its HTML,
    and the participants summary as it is now."""
    site = site_of(request)
    comm = community_or_404(request)
    occ = await _occurrence_or_404(request, site, comm)
    t = await site.live_transcript(comm.name, occ)
    at = place(t, request.match_info["post"])
    body: dict[str, Any] = {"id": request.match_info["post"], "where": at.where,
                            "number": at.number, "before": at.before,
                            "summary": site.render("transcript_summary.html", t=t),
                            "empty": not t.counts}
    if at.post is not None:
        body["html"] = site.render("post.html", p=card(at.post, site.network_of(at.post)))
    if at.number is not None:
        body["section"] = site.render(
            "question.html", q={"number": at.number, "question": None, "answers": []})
    return web.json_response(body, headers={"Cache-Control": "no-store"})


# ---------------------------------------------------------------- operations

async def healthz(request: web.Request) -> web.StreamResponse:
    """Liveness (200 while the process and its store answer) and adapter health.
    ``?strict=1`` answers 503 unless every adapter is connected."""
    site = site_of(request)
    bridge = site.bridge
    storage = bridge.store.storage
    if not storage.ok:  # writes are held (a full disk): do not queue behind them
        return web.json_response({"status": "storage", "storage": storage.as_dict()},
                                 status=503, headers={"Cache-Control": "no-store"})
    try:
        async with asyncio.timeout(5):
            depths = await bridge.store.run(lambda tx: tx.queue_depths())
    except Exception as e:
        return web.json_response({"status": "store unavailable", "error": type(e).__name__},
                                 status=503)
    redact = _redactor(site)
    adapters = {name: {"platform": rt.account.platform, "health": rt.health.value,
                       "detail": redact(rt.detail)} for name, rt in bridge.accounts.items()}
    if bridge.cluster is not None:  # accounts another process runs: as it last reported
        for account, platform, state, detail, _at in await bridge.store.run(
                lambda tx: tx.health()):
            if account in adapters and lease_name(account) not in bridge.cluster.running:
                adapters[account] = {"platform": platform, "health": state,
                                     "detail": redact(detail), "elsewhere": True}
    healthy = all(a["health"] == "connected" for a in adapters.values())
    body = {"status": "ok" if healthy else "degraded", "uptime": time.time() - bridge.started_at,
            "adapters": adapters, "storage": storage.as_dict(),
            "pending": sum(q.get("pending", 0) for q in depths.values()),
            "dead": sum(q.get("dead", 0) for q in depths.values())}
    strict = request.query.get("strict") in ("1", "true")
    return web.json_response(body, status=503 if strict and not healthy else 200,
                             headers={"Cache-Control": "no-store"})


def _redactor(site: Site) -> Callable[[str], str]:
    """The log redactor's rules (every quoted, escaped and encoded form of a
    secret) for what ``/healthz`` shows, and members' addresses masked."""
    scrub = Redactor(site.config.secrets).scrub
    return lambda text: mask_emails(scrub(text))


def web_metrics(request: web.Request) -> str:
    """The web view's own gauges and counters: what an attack on it looks like."""
    site = site_of(request)
    lines = ["# HELP hashbridge_web_live_streams Live-page subscribers connected.",
             "# TYPE hashbridge_web_live_streams gauge",
             f"hashbridge_web_live_streams {site.streams.in_use}",
             "# HELP hashbridge_web_exports Exports in progress (built or being sent).",
             "# TYPE hashbridge_web_exports gauge",
             f"hashbridge_web_exports {site.downloads.in_use}"]
    pool = request.app.get(guard.POOL)
    if pool is not None:
        st = pool.stats()
        lines += ["# HELP hashbridge_web_connections Open connections of the web view.",
                  "# TYPE hashbridge_web_connections gauge",
                  f"hashbridge_web_connections {st['open']}",
                  "# HELP hashbridge_web_connections_closed_total Connections the web view "
                  "closed to stay up: evicted at the cap, refused, header timeout.",
                  "# TYPE hashbridge_web_connections_closed_total counter"]
        lines += [f'hashbridge_web_connections_closed_total{{reason="{r}"}} {st[r]}'
                  for r in ("evicted", "refused", "timed_out")]
    return "\n".join(lines) + "\n"


async def metrics(request: web.Request) -> web.StreamResponse:
    bridge = site_of(request).bridge
    depths, held_now = await bridge.store.run(
        lambda tx: (tx.queue_depths(), held.figures(tx)))
    text = bridge.metrics.prometheus(depths, held_now)
    return web.Response(text=text + ("" if text.endswith("\n") else "\n") + web_metrics(request),
                        content_type="text/plain", charset="utf-8",
                        headers={"Cache-Control": "no-store"})
