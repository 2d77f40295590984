"""An aiohttp app emulating the Mastodon REST and SSE streaming routes the
adapter uses, faithfully enough that Mastodon.py itself is the client in tests.

Served: ``/api/v1/apps/verify_credentials``, ``/api/v1/accounts/verify_credentials``,
``/api/v1/accounts/:id``, ``/api/v1/accounts/lookup``, ``/api/v1/instance`` and
``/api/v2/instance`` (with and without the trailing slash Mastodon.py uses),
``/api/v1/statuses`` (POST with ``Idempotency-Key``), ``/api/v1/statuses/:id``
(GET/PUT/DELETE), ``/api/v1/statuses/:id/favourite`` and ``/unfavourite``,
``/api/v1/notifications`` (mentions and favourites; ``types[]``, ``exclude_types[]``),
``/api/v1/timelines/tag/:tag`` (``min_id/max_id/since_id/limit/local/remote`` and
``Link``),
``/api/v2/media``, ``/api/v1/media/:id``, and the SSE streams
``/api/v1/streaming/hashtag[/local]`` and ``/api/v1/streaming/health``.

Every REST answer carries ``X-RateLimit-Limit/Remaining/Reset`` (ISO-8601) from
per-token fixed windows (300 per 5 min, deletes 30 per 30 min, media 30 per
30 min by default); errors are ``{"error": "..."}`` with 401/403/404/422/429 as
the real server sends them; a route refuses a token whose app's scopes do not
cover the route's (its ``security`` in the OpenAPI spec) with 403.  Faults
(429 storm, 500s, slow answers, silent or abrupt stream drops) are switched on through
:class:`adapters.mastodon.emulator.server.MastodonEmulator`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import operator
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import BodyPartReader, web

from adapters.mastodon.emulator import instance as emulator_instance
from adapters.mastodon.emulator.state import (
    EmuAccount,
    EmulatorState,
    EmuMedia,
    EmuStatus,
    covers,
    id_key,
    iso,
    iso_micro,
    snowflake,
)
from adapters.mastodon.recheck import version

_CLOSE = ("__close__", "")
_NO_LIMIT = ("/api/v1/streaming",)
_STATE: web.AppKey[EmulatorState] = web.AppKey("state", EmulatorState)
_ACCOUNT: web.RequestKey[EmuAccount] = web.RequestKey("account", EmuAccount)
_UPLOAD: web.RequestKey[tuple[str, bytes]] = web.RequestKey("upload", tuple)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def _account(request: web.Request) -> EmuAccount | None:
    return request.get(_ACCOUNT)


def _scoped(*scopes: str) -> Callable[[Handler], Handler]:
    """Refuse a token whose scopes cover none of *scopes* with the 403 Mastodon
    (Doorkeeper) sends; a request without a token goes on (the route itself
    decides).  The scopes are the ``security`` of the route in the OpenAPI spec
    (``mastodon-openapi-4.7.0.json``); the 403 body is its ``Error403Example``."""
    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def scoped(request: web.Request) -> web.StreamResponse:
            acc = _account(request)
            if acc is not None and not any(covers(acc.scopes, s) for s in scopes):
                return _error(403, "This action is outside the authorized scopes")
            return await handler(request)
        return scoped
    return wrap


async def _params(request: web.Request) -> dict[str, list[str]]:
    """Query, form, multipart or JSON parameters as lists (``media_ids[]`` -> ``media_ids``)."""
    out: dict[str, list[str]] = {}

    def put(key: str, value: Any) -> None:
        key = key.removesuffix("[]")
        values = value if isinstance(value, list) else [value]
        out.setdefault(key, []).extend("" if v is None else v if isinstance(v, str)
                                       else json.dumps(v) if isinstance(v, dict) else str(v)
                                       for v in values)

    for k, v in request.query.items():
        put(k, v)
    if request.can_read_body:
        if request.content_type == "application/json":
            with contextlib.suppress(ValueError):
                for k, v in (await request.json() or {}).items():
                    put(k, v)
        elif request.content_type == "multipart/form-data":
            async for part in await request.multipart():
                if not isinstance(part, BodyPartReader):
                    continue  # a nested multipart: Mastodon's API takes none
                if part.filename is not None:
                    request[_UPLOAD] = (part.headers.get("Content-Type",
                                                          "application/octet-stream"),
                                         await part.read())
                else:
                    put(part.name or "", await part.text())
        else:
            for field, value in (await request.post()).items():
                put(field, value)
    return out


def _first(p: dict[str, list[str]], key: str, default: str | None = None) -> str | None:
    return p[key][0] if p.get(key) else default


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "on", "yes")


@web.middleware
async def _middleware(request: web.Request,
                      handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                      ) -> web.StreamResponse:
    st = request.app[_STATE]
    st.requests.append((request.method, request.path))
    if st.faults.delay:
        await asyncio.sleep(st.faults.delay)
    token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip() \
        or request.query.get("access_token", "")
    if token:
        acc = st.by_token(token)
        if acc is None:
            return _error(401, "The access token is invalid", **{
                "WWW-Authenticate": 'Bearer realm="Doorkeeper", error="invalid_token", '
                                    'error_description="The access token is invalid"'})
        request[_ACCOUNT] = acc
    if request.path.startswith(_NO_LIMIT):
        return await handler(request)
    now = time.time()
    who = token or (request.remote or "ip")
    checks = [("overall", *st.limits.overall)]
    if request.method == "DELETE" and request.path.startswith("/api/v1/statuses/"):
        checks.append(("deletes", *st.limits.deletes))
    if request.method == "POST" and request.path in ("/api/v2/media", "/api/v1/media"):
        checks.append(("media", *st.limits.media))
    hits = [st.windows.hit(who, name, limit, period, now) for name, limit, period in checks]
    limit, remaining, reset = min(hits, key=lambda h: (h[1], h[0]))
    if st.faults.storm_until > now:
        limit, remaining, reset = hits[0][0], 0, st.faults.storm_until
    headers = {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(max(remaining, 0)),
               "X-RateLimit-Reset": iso_micro(reset)}
    if remaining < 0 or st.faults.storm_until > now:
        return _error(429, "Too many requests", **headers)
    if st.faults.fail_500 > 0 and request.path.startswith(st.faults.fail_500_path):
        st.faults.fail_500 -= 1
        return _error(500, "We're sorry, but something went wrong on our end.", **headers)
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # an unknown route: aiohttp's 404, raised on
        exc.headers.update(headers)
        raise
    response.headers.update(headers)
    return response


# ---------------------------------------------------------------- accounts & instance

async def verify_app(request: web.Request) -> web.Response:
    """``GET /api/v1/apps/verify_credentials``: the token's Application, with the
    ``scopes`` it was registered with (4.3+; any valid token may ask)."""
    acc = _account(request)
    if acc is None:
        return _error(401, "The access token is invalid")
    return web.json_response({"id": "1", "name": "hashbridge", "website": None,
                              "scopes": list(acc.scopes),
                              "redirect_uri": "urn:ietf:wg:oauth:2.0:oob",
                              "redirect_uris": ["urn:ietf:wg:oauth:2.0:oob"],
                              "vapid_key": "emulated"})


@_scoped("profile", "read:accounts")
async def verify_credentials(request: web.Request) -> web.Response:
    acc = _account(request)
    if acc is None:
        return _error(401, "The access token is invalid")
    return web.json_response(request.app[_STATE].account_json(acc, credentials=True))


async def account_by_id(request: web.Request) -> web.Response:
    st = request.app[_STATE]
    acc = st.accounts.get(request.match_info["id"])
    return web.json_response(st.account_json(acc)) if acc else _error(404, "Record not found")


async def account_lookup(request: web.Request) -> web.Response:
    st = request.app[_STATE]
    acc = st.by_username(request.query.get("acct", ""))
    return web.json_response(st.account_json(acc)) if acc else _error(404, "Record not found")


async def instance_v2(request: web.Request) -> web.Response:
    return web.json_response(emulator_instance.instance_v2(request.app[_STATE]))


async def instance_v1(request: web.Request) -> web.Response:
    return web.json_response(emulator_instance.instance_v1(request.app[_STATE]))


async def instance_rules(request: web.Request) -> web.Response:
    """``GET /api/v1/instance/rules`` (Mastodon 3.4+): an array of Rule, no token
    needed."""
    st = request.app[_STATE]
    if st.rules is None:  # before 3.4 the route does not exist
        return _error(404, "Record not found")
    return web.json_response(st.rules_json())


# ---------------------------------------------------------------- statuses

@_scoped("write:statuses")
async def status_create(request: web.Request) -> web.Response:
    st, acc = request.app[_STATE], _account(request)
    if acc is None:
        return _error(401, "The access token is invalid")
    key = request.headers.get("Idempotency-Key", "")
    if key and (first := st.idempotent_hit(acc, key)):
        return web.json_response(st.status_json(first))
    p = await _params(request)
    text, spoiler = _first(p, "status", "") or "", _first(p, "spoiler_text", "") or ""
    media_ids = p.get("media_ids", [])
    visibility = _first(p, "visibility", "public") or "public"
    if visibility not in ("public", "unlisted", "private", "direct"):
        return _error(422, "Validation failed: Visibility is not included in the list")
    if any(m not in st.media or st.media[m].account_id != acc.id for m in media_ids):
        return _error(422, "Validation failed: Media attachments are invalid")
    if (reason := st.validate(text, spoiler, media_ids)) is not None:
        return _error(422, reason)
    reply = _first(p, "in_reply_to_id")
    if reply and st.visible(reply) is None:
        return _error(404, "Record not found")
    status = st.create(acc, text, visibility=visibility, spoiler_text=spoiler,
                       sensitive=_truthy(_first(p, "sensitive")), in_reply_to_id=reply,
                       media_ids=media_ids, language=_first(p, "language", "en"),
                       idempotency_key=key, application="hashbridge")
    return web.json_response(st.status_json(status))


def _own(request: web.Request) -> tuple[EmuStatus | None, web.Response | None]:
    st, acc = request.app[_STATE], _account(request)
    if acc is None:
        return None, _error(401, "The access token is invalid")
    status = st.visible(request.match_info["id"])
    if status is None:
        return None, _error(404, "Record not found")
    if status.account is not acc:
        return None, _error(403, "This action is not allowed")
    return status, None


@_scoped("read:statuses")
async def status_get(request: web.Request) -> web.Response:
    st = request.app[_STATE]
    status = st.visible(request.match_info["id"])
    if status is None or not st.can_see(status, _account(request)):
        return _error(404, "Record not found")
    return web.json_response(st.status_json(status))


STATUSES_LIMIT = 20
"""Ids one ``GET /api/v1/statuses`` may ask for (Mastodon's ``DEFAULT_STATUSES_LIMIT``;
more is a 422 from its ``check_statuses_limit``)."""


async def statuses_get(request: web.Request) -> web.Response:
    """``GET /api/v1/statuses?id[]=`` (``getStatuses``, Mastodon 4.3+): the statuses of
    those ids that exist and may be seen, in the order asked, the others left out."""
    st = request.app[_STATE]
    if version(st.version) < (4, 3):
        return _error(404, "Not Found")  # no such route before 4.3
    ids = list(dict.fromkeys(request.query.getall("id[]", []) + request.query.getall("id", [])))
    if len(ids) > STATUSES_LIMIT:
        return _error(422, "Validation failed: too many statuses requested")
    found = [s for i in ids if (s := st.visible(i)) is not None
             and st.can_see(s, _account(request))]
    return web.json_response([st.status_json(s) for s in found])


@_scoped("write:statuses")
async def status_edit(request: web.Request) -> web.Response:
    status, err = _own(request)
    if err is not None or status is None:
        return err or _error(404, "Record not found")
    st, p = request.app[_STATE], await _params(request)
    text = _first(p, "status", "") or ""
    spoiler = _first(p, "spoiler_text")
    media_ids = p.get("media_ids")
    reason = st.validate(text, status.spoiler_text if spoiler is None else spoiler,
                         status.media_ids if media_ids is None else media_ids)
    if reason is not None:
        return _error(422, reason)
    sensitive = _first(p, "sensitive")
    st.edit(status, text, spoiler_text=spoiler, media_ids=media_ids,
            sensitive=None if sensitive is None else _truthy(sensitive),
            language=_first(p, "language"))
    return web.json_response(st.status_json(status))


@_scoped("write:statuses")
async def status_delete(request: web.Request) -> web.Response:
    status, err = _own(request)
    if err is not None or status is None:
        return err or _error(404, "Record not found")
    st = request.app[_STATE]
    st.delete(status)
    return web.json_response(st.status_json(status, deleted_form=True))


async def tag_timeline(request: web.Request) -> web.Response:
    # No scope check: Mastodon asks read:statuses here only when the public
    # preview is off (TagController ``require_auth?``); this instance has it on.
    st, q = request.app[_STATE], request.query
    tag = request.match_info["tag"]
    try:
        limit = max(1, min(int(q.get("limit", "20")), 40))
    except ValueError:
        return _error(422, "limit is invalid")
    found = st.hashtag_timeline(tag, local=_truthy(q.get("local")),
                                remote=_truthy(q.get("remote")))
    if q.get("only_media") in ("true", "1"):
        found = [s for s in found if s.media_ids]
    for name, keep in (("max_id", operator.lt), ("since_id", operator.gt),
                       ("min_id", operator.gt)):
        if q.get(name):
            bound = id_key(q[name])
            found = [s for s in found if keep(id_key(s.id), bound)]
    # min_id pages forward from the cursor: the statuses right after it, not the newest.
    page = list(reversed(list(reversed(found))[:limit])) if q.get("min_id") else found[:limit]
    headers = {}
    if page:
        base = f"{st.base_url}/api/v1/timelines/tag/{tag}"
        headers["Link"] = (f'<{base}?max_id={page[-1].id}>; rel="next", '
                           f'<{base}?min_id={page[0].id}>; rel="prev"')
    return web.json_response([st.status_json(s) for s in page], headers=headers)


@_scoped("read:notifications")
async def notifications(request: web.Request) -> web.Response:
    """Mentions and favourites of the caller's statuses (the types the emulator
    produces), newest first, paged like the timelines; ``types[]`` and
    ``exclude_types[]`` filter them."""
    st, acc = request.app[_STATE], _account(request)
    if acc is None:
        return _error(401, "The access token is invalid")
    q = request.query
    types = set(q.getall("types[]", []) + q.getall("types", [])) or {"mention", "favourite"}
    types -= set(q.getall("exclude_types[]", []) + q.getall("exclude_types", []))
    limit = max(1, min(int(q.get("limit", "40") or 40), 80))
    notes = [(nid, "mention", sid, "") for nid, to, sid in st.notifications
             if to == acc.id and "mention" in types]
    notes += [(nid, "favourite", sid, who) for nid, to, sid, who in st.favourite_notes()
              if to == acc.id and "favourite" in types]
    found = sorted(notes, key=lambda n: id_key(n[0]), reverse=True)
    for name, newer in (("max_id", False), ("since_id", True), ("min_id", True)):
        if q.get(name):
            bound = id_key(q[name])
            found = [n for n in found if (id_key(n[0]) > bound) == newer
                     and id_key(n[0]) != bound]
    page = list(reversed(list(reversed(found))[:limit])) if q.get("min_id") else found[:limit]
    out = []
    for nid, kind, sid, who in page:
        status = st.statuses[sid]
        if status.deleted:
            continue
        actor = st.accounts[who] if who else status.account
        out.append({"id": nid, "type": kind, "created_at": iso(status.created_at),
                    "group_key": f"ungrouped-{nid}", "account": st.account_json(actor),
                    "status": st.status_json(status)})
    headers = {}
    if page:
        base = f"{st.base_url}/api/v1/notifications"
        headers["Link"] = (f'<{base}?max_id={page[-1][0]}>; rel="next", '
                           f'<{base}?min_id={page[0][0]}>; rel="prev"')
    return web.json_response(out, headers=headers)


@_scoped("write:favourites")
async def status_favourite(request: web.Request) -> web.Response:
    """Favourite (or, on ``/unfavourite``, take back) a status the caller can see."""
    st, acc = request.app[_STATE], _account(request)
    if acc is None:
        return _error(401, "The access token is invalid")
    status = st.visible(request.match_info["id"])
    if status is None or not st.can_see(status, acc):
        return _error(404, "Record not found")
    adding = request.path.endswith("/favourite")
    (st.favourite if adding else st.unfavourite)(acc, status)
    return web.json_response({**st.status_json(status), "favourited": adding})


# ---------------------------------------------------------------- media

@_scoped("write:media")
async def media_upload(request: web.Request) -> web.Response:
    st, acc = request.app[_STATE], _account(request)
    if acc is None:
        return _error(401, "The access token is invalid")
    p = await _params(request)
    upload = request.get(_UPLOAD)
    if upload is None:
        return _error(422, "Validation failed: File can't be blank")
    mime, data = upload
    if mime not in emulator_instance.MIME_TYPES:
        return _error(422, f"Validation failed: File content type {mime} is not supported")
    # Images are processed at once (200); audio and video later (202, url null).
    slow = not mime.startswith("image/")
    m = EmuMedia(id=snowflake(), account_id=acc.id, mime=mime, data=data,
                 description=_first(p, "description"), processing=slow)
    st.media[m.id] = m
    return web.json_response(st.media_json(m), status=202 if slow else 200)


@_scoped("write:media")
async def media_get(request: web.Request) -> web.Response:
    st = request.app[_STATE]
    m = st.media.get(request.match_info["id"])
    if m is None or _account(request) is None or m.account_id != _account(request).id:  # type: ignore[union-attr]
        return _error(404, "Record not found")
    was_processing, m.processing = m.processing, False
    return web.json_response(st.media_json(m), status=206 if was_processing else 200)


async def media_file(request: web.Request) -> web.Response:
    m = request.app[_STATE].media.get(request.match_info["id"])
    if m is None:
        raise web.HTTPNotFound()
    return web.Response(body=m.data, content_type=m.mime)


# ---------------------------------------------------------------- streaming

async def stream_health(request: web.Request) -> web.Response:
    return web.Response(text="OK")


async def stream_hashtag(request: web.Request) -> web.StreamResponse:
    st = request.app[_STATE]
    acc = _account(request)
    if acc is None:
        # Since 4.2 the hashtag stream needs a user token.
        return _error(401, "Error while trying to authenticate")
    if not covers(acc.scopes, "read:statuses"):
        # The streaming server's own refusal (an AuthenticationError, 401).
        return _error(401, "Access token does not have the required scopes")
    tag = request.query.get("tag")
    if not tag and request.can_read_body:
        tag = (await request.post()).get("tag")  # type: ignore[assignment]
    if not tag:
        return _error(400, "Missing tag name parameter")
    queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    sub = (str(tag).casefold(), request.path.endswith("/local"), queue)
    st.subscribers.add(sub)
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                       "Cache-Control": "no-store"})
    try:
        await resp.prepare(request)
        await resp.write(b":)\n")
        while True:
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the
                # cancellation of a stream being shut down when an event arrives with it.
                async with asyncio.timeout(st.heartbeat):
                    event, payload = await queue.get()
            except TimeoutError:
                if not st.faults.streams_silent:
                    await resp.write(b":thump\n")
                continue
            if (event, payload) == _CLOSE:
                break
            if st.faults.streams_silent:
                continue
            await resp.write(f"event: {event}\ndata: {payload}\n\n".encode())
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        st.subscribers.discard(sub)
    return resp


def build_app(state: EmulatorState) -> web.Application:
    app = web.Application(middlewares=[_middleware], client_max_size=64 * 1024 * 1024)
    app[_STATE] = state
    r = app.router
    r.add_get("/api/v1/apps/verify_credentials", verify_app)
    r.add_get("/api/v1/accounts/verify_credentials", verify_credentials)
    r.add_get("/api/v1/accounts/lookup", account_lookup)
    r.add_get("/api/v1/accounts/{id}", account_by_id)
    for path, handler in (("/api/v1/instance", instance_v1), ("/api/v2/instance", instance_v2)):
        r.add_get(path, handler)
        r.add_get(path + "/", handler)
    r.add_get("/api/v1/instance/rules", instance_rules)
    r.add_post("/api/v1/statuses", status_create)
    r.add_get("/api/v1/statuses", statuses_get)
    r.add_get("/api/v1/statuses/{id}", status_get)
    r.add_put("/api/v1/statuses/{id}", status_edit)
    r.add_delete("/api/v1/statuses/{id}", status_delete)
    r.add_post("/api/v1/statuses/{id}/favourite", status_favourite)
    r.add_post("/api/v1/statuses/{id}/unfavourite", status_favourite)
    r.add_get("/api/v1/timelines/tag/{tag}", tag_timeline)
    r.add_get("/api/v1/notifications", notifications)
    r.add_post("/api/v2/media", media_upload)
    r.add_post("/api/v1/media", media_upload)
    r.add_get("/api/v1/media/{id}", media_get)
    r.add_get("/system/media_attachments/files/{id}/{size}/{name}", media_file)
    r.add_get("/api/v1/streaming/health", stream_health)
    r.add_get("/api/v1/streaming/hashtag", stream_hashtag)
    r.add_get("/api/v1/streaming/hashtag/local", stream_hashtag)
    return app
