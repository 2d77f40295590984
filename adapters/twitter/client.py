"""The I/O shell around tweepy's AsyncClient: one aiohttp session per account,
rate-limit headers captured, tweepy's exceptions mapped to the core's three
failure kinds.  Never sleeps or retries (``wait_on_rate_limit`` stays off: it
cannot tell a usage cap from a rate limit)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import tweepy
import tweepy.asynchronous
from multidict import CIMultiDictProxy

from adapters.twitter.budget import next_cap_reset
from adapters.twitter.emulator.app import rewrite_middleware
from bridge.contract.adapter import AuthError, PermanentError, TransientError

DEFAULT_BASE = "https://api.twitter.com"
T = TypeVar("T")

DUPLICATE = "duplicate content"
NOT_SUMMONED = "not been mentioned"


@dataclass(frozen=True, slots=True)
class Limits:
    limit: int | None
    remaining: int | None
    reset_at: float | None


class Forbidden403(PermanentError):
    """A 403 that is about the content, not the credentials (duplicate, reply rule)."""


class Gone(PermanentError):
    """404: the post does not exist (any more)."""


def _int(v: str | None) -> int | None:
    return int(v) if v and v.isdigit() else None


def _detail(err: tweepy.HTTPException) -> str:
    parts = [*err.api_messages]
    if not parts:
        body = problem_body(err)
        parts = [str(body.get("detail") or body.get("title") or "")]
    return "; ".join(p for p in parts if p) or f"HTTP {err.response.status}"


class XClient:
    def __init__(self, *, consumer_key: str, consumer_secret: str, access_token: str,
                 access_token_secret: str, bearer_token: str | None, api_base: str,
                 logger: logging.Logger, clock: Callable[[], float] = time.time,
                 timeout: float = 30.0) -> None:
        self._keys = (consumer_key, consumer_secret, access_token, access_token_secret)
        self._bearer = bearer_token
        self._base = api_base.rstrip("/")
        self.timeout = timeout
        self.log = logger
        self.clock = clock
        self.session: aiohttp.ClientSession | None = None
        self.tweepy: tweepy.asynchronous.AsyncClient | None = None
        self.reader: tweepy.asynchronous.AsyncClient | None = None
        """The same client returning pages as parsed JSON (``call_raw``): tweepy's
        own objects raise on a malformed post, which would cost the whole page."""
        self.limits: dict[str, Limits] = {}
        self.last_problem: dict[str, Any] = {}
        self.on_health: Callable[[str], None] = lambda problem: None

    def _open(self) -> tweepy.asynchronous.AsyncClient:
        if self.tweepy is None or self.session is None or self.session.closed:
            mws: list[Any] = [self._capture]
            if self._base != DEFAULT_BASE:
                mws.append(rewrite_middleware(self._base))
            self.session = aiohttp.ClientSession(
                middlewares=tuple(mws), timeout=aiohttp.ClientTimeout(total=self.timeout))
            ck, cs, at, ats = self._keys
            self.tweepy = tweepy.asynchronous.AsyncClient(
                bearer_token=self._bearer, consumer_key=ck, consumer_secret=cs,
                access_token=at, access_token_secret=ats, wait_on_rate_limit=False)
            self.tweepy.session = self.session
            self.reader = tweepy.asynchronous.AsyncClient(
                bearer_token=self._bearer, consumer_key=ck, consumer_secret=cs,
                access_token=at, access_token_secret=ats, wait_on_rate_limit=False,
                return_type=dict)
            self.reader.session = self.session
        return self.tweepy

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def _capture(self, req: Any, handler: Any) -> Any:
        resp = await handler(req)
        h: CIMultiDictProxy[str] = resp.headers
        key = f"{req.method} {bucket_of(req.url.path)}"
        if "x-rate-limit-reset" in h:
            self.limits[key] = Limits(_int(h.get("x-rate-limit-limit")),
                                      _int(h.get("x-rate-limit-remaining")),
                                      float(h["x-rate-limit-reset"]))
        return resp

    @property
    def app_search(self) -> bool:
        """Search with the app's Bearer token when there is one (450 vs 300 per window)."""
        return bool(self._bearer)

    async def call(self, what: str, fn: Callable[[tweepy.asynchronous.AsyncClient],
                                                 Awaitable[T]]) -> T:
        """Run one tweepy call; map every failure to the core's kinds and tell
        ``on_health`` whether the API answered ("" when it did)."""
        try:
            result = await self._call(what, fn)
        except TransientError as e:
            self.on_health(str(e))
            raise
        self.on_health("")
        return result

    async def call_raw(self, what: str, fn: Callable[[tweepy.asynchronous.AsyncClient],
                                                     Awaitable[Any]]) -> dict[str, Any]:
        """:meth:`call` with a client that returns the parsed JSON page, for the
        reading path: the converters read it post by post (one malformed post
        costs that post only)."""
        try:
            result = await self._call(what, fn, raw=True)
        except TransientError as e:
            self.on_health(str(e))
            raise
        self.on_health("")
        return result if isinstance(result, dict) else {}

    async def _call(self, what: str, fn: Callable[[tweepy.asynchronous.AsyncClient],
                                                  Awaitable[T]], *, raw: bool = False) -> T:
        client = self._open()
        if raw:
            assert self.reader is not None
            client = self.reader
        try:
            return await fn(client)
        except tweepy.TooManyRequests as e:
            body = problem_body(e)
            self.last_problem = body
            if str(body.get("type", "")).endswith("usage-capped"):
                wait = await self._cap_reset() - self.clock()
                raise TransientError(f"{what}: X usage cap reached "
                                     f"({body.get('detail', '')})", retry_after=wait) from e
            reset = e.reset_time or int(self.clock()) + 60
            raise TransientError(f"{what}: rate limited until {reset}",
                                 retry_after=max(1.0, reset - self.clock())) from e
        except tweepy.Unauthorized as e:
            raise AuthError(f"{what}: X refused the credentials ({_detail(e)})") from e
        except tweepy.Forbidden as e:
            detail = _detail(e)
            low = detail.lower()
            if DUPLICATE in low or NOT_SUMMONED in low or "too long" in low:
                raise Forbidden403(detail) from e
            if "authenticat" in low or "suspended" in low or "oauth" in low:
                raise AuthError(f"{what}: {detail}") from e
            raise PermanentError(f"{what}: {detail}") from e
        except tweepy.TwitterServerError as e:
            raise TransientError(f"{what}: X server error {e.response.status}") from e
        except tweepy.NotFound as e:
            raise Gone(f"{what}: {_detail(e)}") from e
        except tweepy.BadRequest as e:
            raise PermanentError(f"{what}: {_detail(e)}") from e
        except tweepy.HTTPException as e:
            raise PermanentError(f"{what}: {_detail(e)}") from e
        except aiohttp.ContentTypeError as e:  # tweepy reads the body as JSON first
            raise TransientError(f"{what}: X answered HTTP {e.status} with a page that is "
                                 "not JSON (an outage page from a proxy)") from e
        except TimeoutError as e:
            raise TransientError(f"{what}: no answer from X in {self.timeout:g}s") from e
        except aiohttp.ClientError as e:
            raise TransientError(f"{what}: network error {type(e).__name__}: {e}") from e

    async def _cap_reset(self) -> float:
        """When the usage cap lifts: the project's ``cap_reset_day`` asked of ``GET
        /2/usage/tweets`` (app-only, not billed), the 1st of next month without it."""
        day = None
        if self._bearer and self.tweepy is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(min(self.timeout, 15.0)):
                    resp = await self.tweepy.request("GET", "/2/usage/tweets", params={
                        "usage.fields": "cap_reset_day"}, user_auth=False)
                    data = (await resp.json()).get("data") or {}
                got = data.get("cap_reset_day")
                day = got if isinstance(got, int) and not isinstance(got, bool) else None
        return next_cap_reset(self.clock(), day)

    def limits_for(self, method: str, path: str) -> Limits | None:
        return self.limits.get(f"{method} {bucket_of(path)}")


def bucket_of(path: str) -> str:
    if path.startswith("/2/tweets/search"):
        return "/2/tweets/search/recent"
    if path.startswith("/2/tweets/") and path.rsplit("/", 1)[-1].isdigit():
        return "/2/tweets/:id"
    if path.startswith("/2/users/") and path.endswith("/tweets"):
        return "/2/users/:id/tweets"
    return path


def problem_body(e: tweepy.HTTPException) -> dict[str, Any]:
    """The JSON body of X's error answer (its problem ``type``, ``reason``...), or {}."""
    # tweepy keeps only the messages; the aiohttp response it read still holds
    # the body, whose problem ``type`` tells a usage cap from a rate limit.
    try:
        data = json.loads(getattr(e.response, "_body", None) or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
