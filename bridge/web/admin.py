"""The admin page: adapter health, dead deliveries, consent, moderation.

Behind ``[bridge.web] admin_token``.  The browser logs in by posting the token
once; it gets an HttpOnly, SameSite=Strict cookie holding a random session id
(a new one at every login, never derived from the token).  The server keeps
the sessions in memory: logging out revokes one, and a restart ends them all.
Scripts may send ``Authorization: Bearer TOKEN``.  Wrong tokens (by form or
by header) are throttled per client address: after ``LOGIN_FAILURES`` within
``LOGIN_WINDOW`` seconds the address gets 429 with Retry-After, and its
guesses are not even compared.  Every state-changing request is a POST that
must carry the CSRF field (an HMAC of the token and the session) and, when
the browser sends one, an ``Origin`` of this site.  All token comparisons
are constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
import time
from collections import OrderedDict, deque
from typing import Any

from aiohttp import web

from bridge.contract.model import ChannelKey, PostId
from bridge.contract.textconv import to_plain
from bridge.daemon.reload import outcomes as reload_outcomes
from bridge.inbound import held
from bridge.inbound.relay import IngestResult
from bridge.inbound.steps import recorded_drops
from bridge.runtime.metrics import Metrics
from bridge.store import archive
from bridge.web.site import Site, site_of

log = logging.getLogger("hashbridge.web.admin")

COOKIE = "hb_admin"
SESSION_SECONDS = 12 * 3600
MAX_SESSIONS = 100
"""Beyond this, a new login ends the oldest session (logins are throttled anyway)."""
LOGIN_FAILURES = 5
LOGIN_WINDOW = 15 * 60
ADMIN_HELD_ROWS = 500
"""Held posts listed on the admin page (the ones due first)."""
TRACKED_CLIENTS = 10_000
"""Addresses whose failures are remembered; the oldest are forgotten first."""


class Sessions:
    """Admin sessions, by the SHA-256 of their random id (the id itself is only
    in the browser's cookie)."""

    def __init__(self) -> None:
        self._expiry: OrderedDict[str, float] = OrderedDict()

    @staticmethod
    def _key(session_id: str) -> str:
        return hashlib.sha256(session_id.encode()).hexdigest()

    def create(self) -> str:
        session_id = secrets.token_urlsafe(32)
        self._expiry[self._key(session_id)] = time.monotonic() + SESSION_SECONDS
        while len(self._expiry) > MAX_SESSIONS:
            self._expiry.popitem(last=False)
        return session_id

    def check(self, session_id: str) -> str | None:
        """The session's key when *session_id* is a live session, else None."""
        if not session_id:
            return None
        key = self._key(session_id)
        expiry = self._expiry.get(key)
        if expiry is None:
            return None
        if expiry < time.monotonic():
            del self._expiry[key]
            return None
        return key

    def revoke(self, session_id: str) -> bool:
        return self._expiry.pop(self._key(session_id), None) is not None


class LoginThrottle:
    """Failed token attempts per client address, in a sliding window."""

    def __init__(self, failures: int = LOGIN_FAILURES, window: float = LOGIN_WINDOW) -> None:
        self.failures = failures
        self.window = window
        self._failed: OrderedDict[str, deque[float]] = OrderedDict()

    def wait(self, client: str) -> float:
        """Seconds until *client* may try again (0: now)."""
        times = self._failed.get(client)
        if not times:
            return 0.0
        now = time.monotonic()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failed[client]
            return 0.0
        return times[0] + self.window - now if len(times) >= self.failures else 0.0

    def failed(self, client: str) -> None:
        times = self._failed.setdefault(client, deque(maxlen=self.failures))
        times.append(time.monotonic())
        self._failed.move_to_end(client)
        while len(self._failed) > TRACKED_CLIENTS:
            self._failed.popitem(last=False)

    def succeeded(self, client: str) -> None:
        self._failed.pop(client, None)


class AdminState:
    def __init__(self) -> None:
        self.sessions = Sessions()
        self.throttle = LoginThrottle()


ADMIN: web.AppKey[AdminState] = web.AppKey("admin", AdminState)


def _mac(token: str, purpose: str) -> str:
    return hmac.new(token.encode(), purpose.encode(), hashlib.sha256).hexdigest()


def _token(site: Site) -> str:
    web_settings = site.config.bridge.web
    return web_settings.admin_token if web_settings is not None else ""


def _throttled(request: web.Request) -> web.HTTPTooManyRequests | None:
    wait = request.app[ADMIN].throttle.wait(site_of(request).client_key(request))
    if not wait:
        return None
    seconds = math.ceil(wait)
    return web.HTTPTooManyRequests(
        text=f"429 too many wrong admin tokens from your address; try again in "
             f"{seconds} s", headers={"Retry-After": str(seconds), "Cache-Control": "no-store"})


def _wrong_token(request: web.Request, how: str) -> None:
    client = site_of(request).client_key(request)
    request.app[ADMIN].throttle.failed(client)
    log.warning("admin %s refused from %s (wrong token)", how, client)


def principal(request: web.Request) -> str | None:
    """Who is asking: ``"bearer"`` (the token in the Authorization header), a
    session's key (the cookie), or None.  A wrong bearer token counts as a
    failed login; a throttled address gets 429 before its token is compared."""
    token = _token(site_of(request))
    if not token:
        return None
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        refused = _throttled(request)
        if refused is not None:
            raise refused
        if hmac.compare_digest(auth[7:].encode(), token.encode()):
            return "bearer"
        _wrong_token(request, "bearer token")
        return None
    return request.app[ADMIN].sessions.check(request.cookies.get(COOKIE, ""))


def is_admin(request: web.Request) -> bool:
    return principal(request) is not None


def _csrf(token: str, who: str) -> str:
    """Bound to the session: a field seen in one session is worthless in another."""
    return _mac(token, "csrf:v1" if who == "bearer" else f"csrf:v2:{who}")


def _require_token_configured(request: web.Request) -> str:
    token = _token(site_of(request))
    if not token:
        raise web.HTTPNotFound(text="the admin page is disabled (set [bridge.web] admin_token)")
    return token


async def _checked_post(request: web.Request) -> Any:
    """The form of an authorised, same-origin POST with a valid CSRF field."""
    token = _require_token_configured(request)
    who = principal(request)
    if who is None:
        raise web.HTTPForbidden(text="log in first")
    origin = request.headers.get("Origin")
    if origin and origin != "null":
        expected = f"{request.scheme}://{request.host}"
        if origin != expected:
            raise web.HTTPForbidden(text="cross-site request refused")
    form = await request.post()
    sent = str(form.get("csrf", ""))
    if not hmac.compare_digest(sent.encode(), _csrf(token, who).encode()):
        raise web.HTTPForbidden(text="missing or wrong CSRF field; reload the admin page")
    return form


def add_routes(app: web.Application) -> None:
    app[ADMIN] = AdminState()
    r = app.router
    r.add_get("/admin", page)
    r.add_post("/admin/login", login)
    r.add_post("/admin/logout", logout)
    r.add_post("/admin/retry", retry)
    r.add_post("/admin/hide", hide)
    r.add_post("/admin/block", block)
    r.add_post("/admin/unblock", unblock)
    r.add_post("/admin/held/release", release_held)
    r.add_post("/admin/held/discard", discard_held)


async def page(request: web.Request) -> web.StreamResponse:
    site = site_of(request)
    token = _require_token_configured(request)
    headers = {"Cache-Control": "no-store"}
    who = principal(request)
    if who is None:
        return web.Response(text=site.render("login.html", error=request.query.get("error")),
                            content_type="text/html", charset="utf-8", headers=headers)

    def unit(tx: Any) -> dict[str, Any]:
        return {"health": tx.health(), "depths": tx.queue_depths(), "dead": tx.dead(200),
                "consents": tx.consents(), "blocks": archive.blocks(tx),
                "rejections": tx.rejections(50), "rejection_counts": tx.rejection_counts(),
                "refusals": tx.policy_refusal_counts(),
                "held": held.pending(tx, limit=ADMIN_HELD_ROWS),
                "held_count": held.figures(tx).held,
                "reloads": reload_outcomes(tx),
                "hidden": {c.name: archive.hidden_posts(tx, c.name)
                           for c in site.config.communities},
                "recent": {c.name: [site.card_of(v) for v in archive.page(tx, c.name, limit=30)]
                           for c in site.config.communities}}

    data = await site.bridge.store.run(unit)
    data["held_text"] = {h.post.id: to_plain(h.post.text) for h in data["held"]}
    data["pipeline"] = drops_by_step(site.bridge.metrics, data.pop("refusals"),
                                     data["rejection_counts"])
    live = {name: (rt.health.value, rt.detail) for name, rt in site.bridge.accounts.items()}
    body = site.render("admin.html", csrf=_csrf(token, who), live=live, now=time.time(),
                       msg=request.query.get("msg", ""), communities=site.config.communities,
                       **data)
    return web.Response(text=body, content_type="text/html", charset="utf-8", headers=headers)


def drops_by_step(metrics: Metrics, refusals: list[tuple[str, str, int, float]],
                  rejection_counts: list[tuple[str, str, int, float]]) -> list[dict[str, Any]]:
    """The inbound steps in order, each reason with its drops since the bridge
    started (in memory) and, for the steps whose drops the store keeps, all
    recorded so far."""
    recorded: dict[tuple[str, str], int] = {}
    for _, step, reason, n, _ in recorded_drops(refusals, rejection_counts):
        recorded[(step, reason)] = recorded.get((step, reason), 0) + n
    return [{"event": st.event, "name": st.name, "description": st.description,
             "reasons": [(r, metrics.step_drops[(st.name, r)],
                          recorded.get((st.name, r), 0) if r in st.kept else None)
                         for r in st.reasons]}
            for st in metrics.inbound_steps]


async def login(request: web.Request) -> web.StreamResponse:
    token = _require_token_configured(request)
    refused = _throttled(request)
    if refused is not None:
        raise refused
    form = await request.post()
    sent = str(form.get("token", ""))
    if not hmac.compare_digest(sent.encode(), token.encode()):
        _wrong_token(request, "login")
        raise web.HTTPSeeOther("/admin?error=1")
    state = request.app[ADMIN]
    state.throttle.succeeded(site_of(request).client_key(request))
    old = request.cookies.get(COOKIE, "")
    if old:
        state.sessions.revoke(old)  # a fresh id at every login (no fixation)
    resp = web.HTTPSeeOther("/admin")
    # Behind a TLS-terminating proxy the request itself is plain HTTP: the
    # public URL says whether browsers reach us over HTTPS.
    secure = request.secure or site_of(request).public_url.startswith("https://")
    resp.set_cookie(COOKIE, state.sessions.create(), httponly=True, samesite="Strict",
                    path="/admin", secure=secure, max_age=SESSION_SECONDS)
    raise resp


async def logout(request: web.Request) -> web.StreamResponse:
    await _checked_post(request)
    request.app[ADMIN].sessions.revoke(request.cookies.get(COOKIE, ""))
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
        # A blended event's post has copies in the partner community too.
        channels += tuple(dict.fromkeys(ch for ch, c in tx.all_copies(post_id)
                                        if c.role == "copy" and ch not in channels))
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


def _writable_channels(site: Site) -> set[ChannelKey]:
    return {ch.key for c in site.config.communities for ch in c.channels if ch.writes}


async def release_held(request: web.Request) -> web.StreamResponse:
    """Send a post held over its author's rate now (with that author's posts
    held before it, so their order holds)."""
    form = await _checked_post(request)
    site = site_of(request)
    post_id = str(form.get("post", "")).strip()
    ids = await site.bridge.store.run(lambda tx: held.release(tx, post_id))
    if not ids:
        raise _done(f"post {post_id} is not held")
    site.bridge.publish(IngestResult(wake=_writable_channels(site)))
    log.info("admin: released %d held posts (%s)", len(ids), ", ".join(ids))
    raise _done(f"released {len(ids)} held post{'' if len(ids) == 1 else 's'}")


async def discard_held(request: web.Request) -> web.StreamResponse:
    """Never relay a post held over its author's rate (hidden from the archive)."""
    form = await _checked_post(request)
    site = site_of(request)
    post_id = str(form.get("post", "")).strip()
    ok = await site.bridge.store.run(lambda tx: held.discard(tx, post_id))
    if not ok:
        raise _done(f"post {post_id} is not held")
    site.bridge.publish(IngestResult(changed=[("hidden", PostId(post_id))]))
    log.info("admin: discarded held post %s", post_id)
    raise _done(f"held post {post_id} discarded")
