"""The admin page: adapter health, dead deliveries, consent, moderation.

Behind ``[bridge.web] admin_token``.  The browser logs in by posting the token
once; it gets an HttpOnly, SameSite=Strict cookie holding an HMAC of the token
(never the token itself).  Scripts may send ``Authorization: Bearer TOKEN``.
Every state-changing request is a POST that must carry the CSRF field (another
HMAC of the token) and, when the browser sends one, an ``Origin`` of this site.
All comparisons are constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from typing import Any

from aiohttp import web

from bridge.model import PostId
from bridge.relay import IngestResult
from bridge.store import archive
from bridge.web.site import Site, site_of

log = logging.getLogger("hashbridge.web.admin")

COOKIE = "hb_admin"


def _mac(token: str, purpose: str) -> str:
    return hmac.new(token.encode(), purpose.encode(), hashlib.sha256).hexdigest()


def _token(site: Site) -> str:
    web_settings = site.config.bridge.web
    return web_settings.admin_token if web_settings is not None else ""


def is_admin(request: web.Request) -> bool:
    token = _token(site_of(request))
    if not token:
        return False
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].encode(), token.encode()):
        return True
    cookie = request.cookies.get(COOKIE, "")
    return bool(cookie) and hmac.compare_digest(cookie.encode(),
                                                _mac(token, "session:v1").encode())


def _require_token_configured(request: web.Request) -> str:
    token = _token(site_of(request))
    if not token:
        raise web.HTTPNotFound(text="the admin page is disabled (set [bridge.web] admin_token)")
    return token


async def _checked_post(request: web.Request) -> Any:
    """The form of an authorised, same-origin POST with a valid CSRF field."""
    token = _require_token_configured(request)
    if not is_admin(request):
        raise web.HTTPForbidden(text="log in first")
    origin = request.headers.get("Origin")
    if origin and origin != "null":
        expected = f"{request.scheme}://{request.host}"
        if origin != expected:
            raise web.HTTPForbidden(text="cross-site request refused")
    form = await request.post()
    sent = str(form.get("csrf", ""))
    if not hmac.compare_digest(sent.encode(), _mac(token, "csrf:v1").encode()):
        raise web.HTTPForbidden(text="missing or wrong CSRF field; reload the admin page")
    return form


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/admin", page)
    r.add_post("/admin/login", login)
    r.add_post("/admin/logout", logout)
    r.add_post("/admin/retry", retry)
    r.add_post("/admin/hide", hide)
    r.add_post("/admin/block", block)
    r.add_post("/admin/unblock", unblock)


async def page(request: web.Request) -> web.StreamResponse:
    site = site_of(request)
    token = _require_token_configured(request)
    headers = {"Cache-Control": "no-store"}
    if not is_admin(request):
        return web.Response(text=site.render("login.html", error=request.query.get("error")),
                            content_type="text/html", charset="utf-8", headers=headers)

    def unit(tx: Any) -> dict[str, Any]:
        return {"health": tx.health(), "depths": tx.queue_depths(), "dead": tx.dead(200),
                "consents": tx.consents(), "blocks": archive.blocks(tx),
                "rejections": tx.rejections(50), "rejection_counts": tx.rejection_counts(),
                "hidden": {c.name: archive.hidden_posts(tx, c.name)
                           for c in site.config.communities},
                "recent": {c.name: [site.card_of(v) for v in archive.page(tx, c.name, limit=30)]
                           for c in site.config.communities}}

    data = await site.bridge.store.run(unit)
    live = {name: (rt.health.value, rt.detail) for name, rt in site.bridge.accounts.items()}
    body = site.render("admin.html", csrf=_mac(token, "csrf:v1"), live=live, now=time.time(),
                       msg=request.query.get("msg", ""), communities=site.config.communities,
                       **data)
    return web.Response(text=body, content_type="text/html", charset="utf-8", headers=headers)


async def login(request: web.Request) -> web.StreamResponse:
    token = _require_token_configured(request)
    form = await request.post()
    sent = str(form.get("token", ""))
    if not hmac.compare_digest(sent.encode(), token.encode()):
        log.warning("admin login refused from %s", request.remote)
        raise web.HTTPSeeOther("/admin?error=1")
    resp = web.HTTPSeeOther("/admin")
    resp.set_cookie(COOKIE, _mac(token, "session:v1"), httponly=True, samesite="Strict",
                    path="/admin", secure=request.secure, max_age=12 * 3600)
    raise resp


async def logout(request: web.Request) -> web.StreamResponse:
    await _checked_post(request)
    resp = web.HTTPSeeOther("/admin")
    resp.del_cookie(COOKIE, path="/admin")
    raise resp


def _done(msg: str) -> web.HTTPSeeOther:
    from urllib.parse import quote

    return web.HTTPSeeOther(f"/admin?msg={quote(msg)}")


async def retry(request: web.Request) -> web.StreamResponse:
    form = await _checked_post(request)
    site = site_of(request)
    delivery = str(form.get("delivery", "")) or None
    n = await site.bridge.store.run(lambda tx: tx.requeue_dead(None, delivery))
    site.bridge.publish(IngestResult(wake=set(site.bridge.workers)))
    log.info("admin: re-queued %d dead deliveries", n)
    raise _done(f"re-queued {n} deliveries")


async def hide(request: web.Request) -> web.StreamResponse:
    """Hide a post everywhere: off every page and export, copies deleted."""
    form = await _checked_post(request)
    site = site_of(request)
    post_id = str(form.get("post", "")).strip()

    def unit(tx: Any) -> list[str] | None:
        community = archive.post_community(tx, post_id)
        if community is None:
            return None
        comm = site.community(community)
        channels = tuple(ch.key for ch in comm.channels if ch.writes) if comm else ()
        return archive.hide_everywhere(tx, post_id, channels)

    woken = await site.bridge.store.run(unit)
    if woken is None:
        raise _done(f"no post {post_id}")
    site.bridge.publish(IngestResult(wake=set(woken), changed=[("hidden", PostId(post_id))]))
    log.info("admin: hid post %s; removing %d copies", post_id, len(woken))
    raise _done(f"post {post_id} hidden; its copies are being removed")


async def block(request: web.Request) -> web.StreamResponse:
    form = await _checked_post(request)
    site = site_of(request)
    platform = str(form.get("platform", "")).strip()
    handle = str(form.get("handle", "")).strip()
    reason = str(form.get("reason", "")).strip()[:500]
    if not platform or not handle:
        raise _done("platform and handle are required")
    await site.bridge.store.run(lambda tx: tx.block(platform, handle, reason))
    log.info("admin: blocked an author on %s", platform)
    raise _done(f"blocked {handle} on {platform}")


async def unblock(request: web.Request) -> web.StreamResponse:
    form = await _checked_post(request)
    site = site_of(request)
    platform = str(form.get("platform", ""))
    handle = str(form.get("handle", ""))
    ok = await site.bridge.store.run(lambda tx: archive.unblock(tx, platform, handle))
    raise _done(f"unblocked {handle}" if ok else "not blocked")
