"""An aiohttp emulator of the X API v2 routes tweepy 4.17's AsyncClient calls.

Faithful where the bridge depends on it (checked against the official OpenAPI
spec and the recorded tweepy cassettes in the tests): payload shapes (``data``,
``includes``, ``meta``, ``errors``), ``x-rate-limit-*`` headers on every
response with 15-minute windows per user (OAuth 1.0a) or per app (Bearer),
the 429 problem bodies (rate limit and the distinct usage cap), 403 on
duplicate content and on replies the bot was not summoned to, 401 on bad or
badly signed credentials.  OAuth 1.0a signatures are verified against the
public URL ``https://api.twitter.com`` the client signed, so a client pointed
here by a URL-rewriting session middleware (:func:`rewrite_middleware`) is
checked exactly as X would check it.

``GET /2/usage/tweets`` (app-only) reports the posts read against
``state.read_cap``; ``state.not_enrolled`` makes routes answer X's 403
``client-not-enrolled`` (an access level without them).

Fault injection: :meth:`XEmulator.fail` (5xx), :meth:`XEmulator.slow`,
:meth:`XEmulator.rate_limit_storm`, ``state.read_cap`` for the usage cap.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from oauthlib.common import Request as OAuthRequest
from oauthlib.oauth1.rfc5849 import signature as oauth_sig
from oauthlib.oauth1.rfc5849 import utils as oauth_utils
from yarl import URL

from adapters.twitter.emulator.state import (
    RECENT_SEARCH_DAYS,
    SNOWFLAKE_EPOCH_MS,
    Fault,
    Media,
    Tweet,
    User,
    XState,
    snowflake_time,
    weighted_length,
)
from adapters.twitter.emulator.wire import (
    APP_ONLY,
    DUPLICATE,
    NOT_SUMMONED,
    PROBLEM,
    PROBLEM_TYPE,
    PUBLIC_BASE,
    TOO_MANY,
    UNAUTHORIZED,
    USAGE_CAPPED,
    USER_CONTEXT,
    client_forbidden,
    csv_param,
    invalid,
    not_found,
    problem,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def rewrite_middleware(base: str) -> Any:
    """An aiohttp *client* middleware sending ``api.twitter.com`` and
    ``upload.twitter.com`` traffic to *base* (the emulator), keeping the Host
    header and so the URL the client signed."""
    target = URL(base)

    async def middleware(req: Any, handler: Any) -> Any:
        if req.url.host in ("api.twitter.com", "upload.twitter.com", "api.x.com"):
            req.url = req.url.with_scheme(target.scheme).with_host(
                target.host or "127.0.0.1").with_port(target.port)
        return await handler(req)

    return middleware


@dataclass(frozen=True)
class Principal:
    user: User | None
    app: bool

    @property
    def key(self) -> str:
        return "app" if self.app else (self.user.id if self.user else "?")


PRINCIPAL = web.RequestKey("principal", Principal)
APP_ONLY_BUCKETS = frozenset({"usage"})
"""Routes whose spec ``security`` is ``BearerToken`` alone."""
USAGE_FIELDS = frozenset({"cap_reset_day", "daily_client_app_usage", "daily_project_usage",
                          "project_cap", "project_id", "project_usage"})
"""The spec's ``UsageFieldsParameter`` enum."""


@dataclass
class XEmulator:
    state: XState = field(default_factory=XState)
    consumer_key: str = field(default_factory=lambda: "ck-" + secrets.token_hex(8))
    consumer_secret: str = field(default_factory=lambda: secrets.token_hex(16))
    bearer_token: str = field(default_factory=lambda: "AAAA" + secrets.token_hex(16))
    tokens: dict[str, tuple[str, str]] = field(default_factory=dict)
    """access token -> (token secret, user id)."""
    record: bool = False
    exchanges: list[dict[str, Any]] = field(default_factory=list)

    # ------------------------------------------------------------ accounts
    def add_account(self, username: str, name: str = "") -> dict[str, str]:
        """Create a user with API credentials; the keys tweepy's client takes."""
        u = self.state.user(username, name)
        token = f"{u.id}-{secrets.token_hex(12)}"
        self.tokens[token] = (secrets.token_hex(16), u.id)
        return {"bearer_token": self.bearer_token, "consumer_key": self.consumer_key,
                "consumer_secret": self.consumer_secret, "access_token": token,
                "access_token_secret": self.tokens[token][0]}

    # ------------------------------------------------------------ faults
    def fail(self, status: int = 500, count: int = 1, route: str = "",
             method: str = "") -> None:
        self.state.faults.append(Fault(kind="status", status=status, count=count, route=route,
                                       method=method))

    def slow(self, delay: float, count: int = 1, route: str = "") -> None:
        self.state.faults.append(Fault(kind="slow", delay=delay, count=count, route=route))

    def rate_limit_storm(self, seconds: float, route: str = "") -> None:
        self.state.faults.append(Fault(kind="rate_limit", route=route,
                                       until=self.state.clock() + seconds))

    # ------------------------------------------------------------ app
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=16 * 2**20)
        r = app.router
        r.add_post("/2/tweets", self.create_tweet)
        r.add_get("/2/tweets", self.lookup_many)
        r.add_get("/2/tweets/search/recent", self.search_recent)
        r.add_get("/2/tweets/{id}", self.lookup_one)
        r.add_delete("/2/tweets/{id}", self.delete_tweet)
        r.add_get("/2/users/me", self.users_me)
        r.add_get("/2/usage/tweets", self.usage)
        r.add_get("/2/users/{id}/tweets", self.user_tweets)
        r.add_post("/1.1/media/upload.json", self.media_upload)
        r.add_post("/1.1/media/metadata/create.json", self.media_metadata)
        return app

    def _bucket(self, request: web.Request) -> tuple[str, bool]:
        """(rate-limit bucket, needs user context)."""
        p, m = request.path, request.method
        if p.startswith("/1.1/media"):
            return "upload", True
        if p == "/2/tweets" and m == "POST":
            return "create", True
        if p.startswith("/2/tweets/") and m == "DELETE":
            return "delete", True
        if p == "/2/tweets/search/recent":
            return "search", False
        if p == "/2/usage/tweets":
            return "usage", False
        if p == "/2/users/me":
            return "me", True
        if p.startswith("/2/users/"):
            return "timeline", False
        return "lookup", False

    def _auth(self, request: web.Request) -> Principal | None:
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return Principal(None, True) if auth[7:] == self.bearer_token else None
        if not auth.startswith("OAuth "):
            return None
        params = dict(oauth_utils.parse_authorization_header(auth))
        token = self.tokens.get(params.get("oauth_token", ""))
        if params.get("oauth_consumer_key") != self.consumer_key or token is None:
            return None
        uri = PUBLIC_BASE + request.raw_path
        if request.host.startswith("upload."):
            uri = "https://upload.twitter.com" + request.raw_path
        oreq = OAuthRequest(uri, request.method, headers={"Authorization": auth})
        oreq.params = oauth_sig.collect_parameters(
            uri_query=URL(uri).raw_query_string, headers={"Authorization": auth},
            exclude_oauth_signature=True)
        oreq.signature = oauth_utils.unescape(params.get("oauth_signature", ""))
        if not oauth_sig.verify_hmac_sha1(oreq, self.consumer_secret, token[0]):
            return None
        return Principal(self.state.users[token[1]], False)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        multipart = request.content_type.startswith("multipart/")
        body = await request.read() if self.record and not multipart else b""
        resp = await self._serve(request, handler)
        if self.record and isinstance(resp, web.Response):
            self.exchanges.append({
                "method": request.method, "path": request.path, "query": dict(request.query),
                "body": body, "status": resp.status, "headers": dict(resp.headers),
                "content_type": resp.content_type, "response": resp.body})
        return resp

    async def _serve(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        st = self.state
        fault = st.take_fault(request.path, request.method)
        if fault and fault.kind == "slow":
            await asyncio.sleep(fault.delay)
        elif fault and fault.kind == "status":
            return web.json_response({"title": "Internal Server Error", "type": "about:blank",
                                      "status": fault.status, "detail": "Internal Server Error"},
                                     status=fault.status, content_type=PROBLEM)
        bucket, user_only = self._bucket(request)
        who = self._auth(request)
        if who is None:
            return problem(UNAUTHORIZED)
        if who.app and user_only:
            return problem(APP_ONLY)
        if not who.app and bucket in APP_ONLY_BUCKETS:
            return problem(USER_CONTEXT)
        if bucket in st.not_enrolled:
            return problem(client_forbidden(st.client_app_id), 403)
        if fault and fault.kind == "rate_limit":
            storm = problem(TOO_MANY)
            self._headers(storm, 1, 0, int(fault.until))
            return storm
        ok, limit, remaining, reset = st.take(bucket, who.key, who.app)
        resp: web.StreamResponse
        if not ok:
            resp = problem(TOO_MANY)
        elif bucket in ("search", "lookup", "timeline") and st.reads >= st.read_cap:
            resp = problem(USAGE_CAPPED)
        else:
            request[PRINCIPAL] = who
            resp = await handler(request)
        if isinstance(resp, web.Response):
            self._headers(resp, limit, remaining, reset)
        return resp

    @staticmethod
    def _headers(resp: web.Response, limit: int, remaining: int, reset: int) -> None:
        resp.headers["x-rate-limit-limit"] = str(limit)
        resp.headers["x-rate-limit-remaining"] = str(remaining)
        resp.headers["x-rate-limit-reset"] = str(reset)
        resp.headers["api-version"] = "2.167"

    # ------------------------------------------------------------ payloads
    def _page(self, request: web.Request, tweets: list[Tweet]) -> dict[str, Any]:
        """``data`` + ``includes`` for *tweets* per the request's fields and
        expansions; counts every returned post as a billed read."""
        st = self.state
        tf = csv_param(request, "tweet.fields", "post.fields")
        uf, mf = csv_param(request, "user.fields"), csv_param(request, "media.fields")
        exp = csv_param(request, "expansions")
        out: dict[str, Any] = {"data": [st.tweet_json(t, tf) for t in tweets]}
        st.count_reads(len(tweets))
        users: dict[str, User] = {}
        refs: dict[str, Tweet] = {}
        media: dict[str, Media] = {}
        polls: dict[str, dict[str, object]] = {}
        pf = csv_param(request, "poll.fields")
        errors: list[dict[str, Any]] = []
        for t in tweets:
            if "attachments.poll_ids" in exp and t.poll is not None:
                polls[str(t.poll["id"])] = {k: v for k, v in t.poll.items()
                                            if k == "id" or k in pf}
            if "author_id" in exp:
                users[t.author_id] = st.users[t.author_id]
            if "referenced_tweets.id" in exp:
                for rid in (t.reply_to, t.quote_of, t.retweet_of):
                    ref = st.tweets.get(rid or "")
                    if ref and not ref.deleted:
                        refs[ref.id] = ref
                    elif rid:
                        errors.append(not_found(rid))
            if "attachments.media_keys" in exp:
                for k in t.media_keys:
                    m = next((m for m in st.media.values() if m.media_key == k), None)
                    if m:
                        media[k] = m
        if "referenced_tweets.id.author_id" in exp:
            for ref in refs.values():
                users[ref.author_id] = st.users[ref.author_id]
        inc: dict[str, Any] = {}
        if users:
            inc["users"] = [st.user_json(u, uf) for u in users.values()]
        if refs:
            inc["tweets"] = [st.tweet_json(r, tf) for r in refs.values()]
        if media:
            inc["media"] = [st.media_json(m, mf) for m in media.values()]
        if polls:
            inc["polls"] = list(polls.values())
        if inc:
            out["includes"] = inc
        if errors:
            out["errors"] = errors
        return out

    def _paged(self, request: web.Request, found: list[Tweet], lo: int, hi: int,
               token_name: str) -> web.Response:
        raw = request.query.get("max_results", str(lo if lo >= 10 else 10))
        if not raw.isdigit() or not lo <= int(raw) <= hi:
            return invalid(f"The `max_results` query parameter value [{raw}] is not "
                            f"between {lo} and {hi}", max_results=raw)
        token = request.query.get(token_name)
        if token:
            try:
                before = int(base64.urlsafe_b64decode(token.encode()).decode())
            except ValueError:
                return invalid(f"The `{token_name}` query parameter value [{token}] is "
                                "not valid", **{token_name: token})
            found = [t for t in found if int(t.id) < before]
        page, rest = found[: int(raw)], found[int(raw):]
        body = self._page(request, page) if page else {}
        meta: dict[str, Any] = {"result_count": len(page)}
        if page:
            meta.update(newest_id=page[0].id, oldest_id=page[-1].id)
        if rest:
            meta["next_token"] = base64.urlsafe_b64encode(page[-1].id.encode()).decode()
        body["meta"] = meta
        return web.json_response(body)

    # ------------------------------------------------------------ routes
    async def search_recent(self, request: web.Request) -> web.Response:
        query = request.query.get("query", "")
        if not query or len(query) > 512:
            return invalid("The `query` parameter is missing or longer than 512", query=query)
        try:
            found = self.state.search(query, request.query.get("since_id"),
                                      request.query.get("until_id"),
                                      request.query.get("start_time"))
        except ValueError:
            return invalid("Invalid start_time", start_time=request.query["start_time"])
        if (too_old := self._before_recent_search(request)) is not None:
            return too_old
        return self._paged(request, found, 10, 100, "next_token")

    def _before_recent_search(self, request: web.Request) -> web.Response | None:
        """X's 400 for a ``start_time`` or ``since_id`` older than the 7 days recent
        search covers (the ``start_time`` wording is X's, as in its counts/all
        answer; the ``since_id`` one is recalled, not recorded)."""
        oldest = self.state.clock() - RECENT_SEARCH_DAYS * 86400
        edge = datetime.fromtimestamp(oldest, UTC).strftime("%Y-%m-%dT%H:%MZ")
        start = request.query.get("start_time")
        if start and datetime.fromisoformat(start.replace("Z", "+00:00")).timestamp() < oldest:
            return invalid(f"Invalid 'start_time':'{start}'. 'start_time' must be on or "
                           f"after {edge}", start_time=start)
        since = request.query.get("since_id")
        if since and since.isdigit() and snowflake_time(since) < oldest:
            smallest = (int(oldest * 1000) - SNOWFLAKE_EPOCH_MS) << 22
            return invalid(f"Invalid 'since_id':'{since}'. 'since_id' must be a tweet id "
                           f"created after {edge}. Please use a 'since_id' that is larger "
                           f"than {smallest}", since_id=since)
        return None

    async def user_tweets(self, request: web.Request) -> web.Response:
        uid = request.match_info["id"]
        since = request.query.get("since_id")
        start = request.query.get("start_time")
        after = datetime.fromisoformat(start.replace("Z", "+00:00")) if start else None
        found = sorted((t for t in self.state.tweets.values()
                        if t.author_id == uid and not t.deleted
                        and (since is None or int(t.id) > int(since))
                        and (after is None or t.created_at >= after)),
                       key=lambda t: int(t.id), reverse=True)
        return self._paged(request, found, 5, 100, "pagination_token")

    async def lookup_one(self, request: web.Request) -> web.Response:
        tid = request.match_info["id"]
        t = self.state.tweets.get(tid)
        if t is None or t.deleted:
            return web.json_response({"errors": [not_found(tid)]})
        body = self._page(request, [t])
        body["data"] = body["data"][0]
        return web.json_response(body)

    async def lookup_many(self, request: web.Request) -> web.Response:
        ids = [x for x in request.query.get("ids", "").split(",") if x]
        if not 1 <= len(ids) <= 100:
            return invalid("The `ids` query parameter must hold 1 to 100 ids",
                            ids=request.query.get("ids", ""))
        live = [t for i in ids if (t := self.state.tweets.get(i)) and not t.deleted]
        body = self._page(request, live) if live else {}
        if not live:
            body.pop("data", None)
        missing = [not_found(i) for i in ids if i not in {t.id for t in live}]
        if missing:
            body["errors"] = body.get("errors", []) + missing
        return web.json_response(body)

    async def usage(self, request: web.Request) -> web.Response:
        """``GET /2/usage/tweets`` (spec operation ``getUsage``, ``GetUsageResponse``):
        the project's posts read this cycle against its cap.  Without ``usage.fields``
        X answers ``cap_reset_day``, ``project_cap``, ``project_id`` and
        ``project_usage`` (docs.x.com's example); the daily breakdowns cover ``days``
        (1 to 90, default 7).  Counts are strings, ``cap_reset_day`` an integer."""
        st = self.state
        fields = csv_param(request, "usage.fields")
        unknown = fields - USAGE_FIELDS
        if unknown:
            bad = sorted(unknown)[0]
            return invalid(f"The `usage.fields` query parameter value [{bad}] is not one of "
                           f"[{', '.join(sorted(USAGE_FIELDS))}]", **{"usage.fields": bad})
        raw = request.query.get("days", "7")
        if not raw.isdigit() or not 1 <= int(raw) <= 90:
            return invalid(f"The `days` query parameter value [{raw}] is not between 1 and 90",
                           days=raw)
        today = datetime.fromtimestamp(st.clock(), UTC).replace(hour=0, minute=0, second=0,
                                                                microsecond=0)
        days = [today - timedelta(days=n) for n in range(int(raw))]
        daily = [{"date": d.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                  "usage": str(st.reads_by_day.get(d.strftime("%Y-%m-%d"), 0))} for d in days]
        data: dict[str, Any] = {"cap_reset_day": st.cap_reset_day,
                                "project_cap": str(st.read_cap), "project_id": st.project_id,
                                "project_usage": str(st.reads)}
        if "daily_project_usage" in fields:
            data["daily_project_usage"] = {"project_id": st.project_id, "usage": daily}
        if "daily_client_app_usage" in fields:
            data["daily_client_app_usage"] = [{"client_app_id": st.client_app_id,
                                               "usage": daily, "usage_result_count": len(daily)}]
        return web.json_response({"data": data})

    async def users_me(self, request: web.Request) -> web.Response:
        who: Principal = request[PRINCIPAL]
        assert who.user is not None
        return web.json_response({"data": self.state.user_json(who.user,
                                                               csv_param(request, "user.fields"))})

    async def create_tweet(self, request: web.Request) -> web.Response:
        st, who = self.state, request[PRINCIPAL]
        assert who.user is not None  # user context is enforced by the middleware
        try:
            body = await request.json()
        except ValueError:
            return invalid("Request body is not valid JSON")
        text = body.get("text", "")
        media_ids = tuple(str(x) for x in (body.get("media") or {}).get("media_ids", []))
        reply_to = str((body.get("reply") or {}).get("in_reply_to_tweet_id") or "") or None
        if not isinstance(text, str) or (not text and not media_ids):
            return invalid("Post text or media is required", text=text)
        if weighted_length(text) > 280:
            return problem({"title": "Forbidden", "type": "about:blank", "status": 403,
                             "detail": "Your Tweet text is too long. For more information on"
                             " how X counts characters, see https://docs.x.com."})
        if any(m not in st.media for m in media_ids):
            return invalid("Your media IDs are invalid.", media_ids=",".join(media_ids))
        if reply_to:
            parent = st.tweets.get(reply_to)
            if parent is None or parent.deleted:
                return invalid("The post you are replying to does not exist",
                                in_reply_to_tweet_id=reply_to)
            if not st.summoned(parent, who.user):
                return problem(NOT_SUMMONED)
        if st.is_duplicate(who.user, text):
            return problem(DUPLICATE)
        t = st.create(who.user, text, reply_to=reply_to, media_ids=media_ids,
                      quote_of=body.get("quote_tweet_id"), via_api=True)
        st.posts_created += 1
        return web.json_response(
            {"data": {"id": t.id, "text": t.text, "edit_history_tweet_ids": [t.id]}},
            status=201, headers={"location": f"{PUBLIC_BASE}/2/tweets/{t.id}"})

    async def delete_tweet(self, request: web.Request) -> web.Response:
        tid, who = request.match_info["id"], request[PRINCIPAL]
        assert who.user is not None
        t = self.state.tweets.get(tid)
        if t is None or t.deleted:
            return problem({"title": "Not Found Error", "status": 404,
                             "type": PROBLEM_TYPE + "resource-not-found",
                             "detail": f"Could not find tweet with id: [{tid}].",
                             "resource_type": "tweet", "parameter": "id", "value": tid,
                             "resource_id": tid})
        if t.author_id != who.user.id:
            return problem({"title": "Forbidden", "type": "about:blank", "status": 403,
                             "detail": "You are not authorized to delete this Tweet."})
        t.deleted = True
        return web.json_response({"data": {"deleted": True}})

    async def media_upload(self, request: web.Request) -> web.Response:
        # v1.1 simple upload (multipart ``media``) as tweepy's API.media_upload
        # sends it; v1.1 errors are ``{"errors":[{code,message}]}``.
        form = await request.post()
        f = form.get("media")
        if not isinstance(f, web.FileField):
            return web.json_response({"errors": [{"code": 38, "message": "media parameter "
                                                  "is missing."}]}, status=400)
        data = f.file.read()
        ctype = f.content_type or "application/octet-stream"
        limit = 5 * 2**20 if ctype.startswith("image/") and ctype != "image/gif" else 15 * 2**20
        if len(data) > limit:
            return web.json_response({"errors": [{"code": 324, "message": f"File size "
                                                  f"exceeds {limit} bytes."}]}, status=400)
        mid = self.state._next_id()
        m = Media(media_key="3_" + mid, media_id=mid, media_type=ctype, size=len(data),
                  url=f"https://pbs.twimg.com/media/{mid}.png")
        self.state.media[mid] = m
        body: dict[str, Any] = {"media_id": int(mid), "media_id_string": mid,
                                "media_key": m.media_key, "size": len(data),
                                "expires_after_secs": 86400}
        if ctype.startswith("image/"):
            body["image"] = {"image_type": ctype, "w": 1, "h": 1}
        return web.json_response(body)

    async def media_metadata(self, request: web.Request) -> web.Response:
        body = json.loads(await request.text() or "{}")
        m = self.state.media.get(str(body.get("media_id", "")))
        if m is None:
            return web.json_response({"errors": [{"code": 324, "message": "Invalid media "
                                                  "id"}]}, status=400)
        m.alt_text = str((body.get("alt_text") or {}).get("text", ""))[:1000]
        return web.Response(status=200)
