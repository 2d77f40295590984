"""The I/O shell over the ``atproto`` SDK: one logged-in account on its PDS, XRPC
calls with their failures mapped onto the core's three kinds, the session kept
and refreshed, rate-limit headers and Bluesky's write-points budget reported.

Records go out as raw JSON (not through the SDK's models), so a record keeps
every field we give it (the bridge's key field among them).
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import httpx
from atproto_client import AsyncClient
from atproto_client.client.base import InvokeType
from atproto_client.exceptions import (
    LoginRequiredError,
    RateLimitExceededError,
    RequestErrorBase,
)
from atproto_client.models.common import XrpcError
from atproto_client.request import AsyncRequest, Response
from atproto_core.exceptions import AtProtocolError

from adapters.bluesky.config import BlueskyAccount
from bridge.contract.adapter import AdapterError, AuthError, PermanentError, TransientError

APP_PASSWORD_HINT = ("use an app password: bsky.app → Settings → Privacy and security → "
                     "App passwords (the account's main password is never needed)")
_AUTH_ERRORS = frozenset({"AuthenticationRequired", "InvalidToken", "AccountTakedown",
                          "AccountDeactivated", "AuthFactorTokenRequired"})
_GONE_ERRORS = frozenset({"RecordNotFound", "RepoNotFound", "NotFound"})

# Bluesky's write budget per account (docs.bsky.app "Rate Limits"): points per
# hour and per day; a create costs 3, an update 2, a delete 1.
POINTS_PER_HOUR = 5000
POINTS_PER_DAY = 35000
COST = {"create": 3, "update": 2, "delete": 1}


class Gone(PermanentError):
    """The record (or its repo) does not exist (any more)."""


class ExpiredSession(TransientError):
    """The access token expired between refreshes: log in again and retry."""


def _error_name(resp: Response | None) -> tuple[str, str]:
    content = resp.content if resp is not None else None
    if isinstance(content, XrpcError):
        return content.error or "", content.message or ""
    return "", ""


def map_error(exc: Exception, *, now: float | None = None) -> AdapterError:
    """An SDK (or transport) failure as one of the core's three kinds."""
    if isinstance(exc, AdapterError):
        return exc
    resp = exc.response if isinstance(exc, RequestErrorBase) else None
    status = resp.status_code if resp is not None else 0
    name, message = _error_name(resp)
    detail = f"{name}: {message}" if message else name or f"HTTP {status}"
    if isinstance(exc, RateLimitExceededError) or status == 429:
        assert isinstance(exc, RequestErrorBase)
        wait = _retry_after(resp, now)
        return TransientError(f"rate limited (429 {detail})", retry_after=wait)
    if name == "ExpiredToken":
        return ExpiredSession("session expired", retry_after=0)
    if isinstance(exc, LoginRequiredError):
        return ExpiredSession("not logged in", retry_after=0)
    if status == 401 or name in _AUTH_ERRORS:
        return AuthError(f"{detail} ({APP_PASSWORD_HINT})")
    if status == 403:
        return AuthError(f"forbidden (403 {detail})")
    if name in _GONE_ERRORS or (status == 400 and "could not locate record" in message.lower()):
        return Gone(detail)
    if status == 413:
        return PermanentError(f"too large (413 {detail})")
    if status >= 500 or status in (408, 409) or resp is None:
        return TransientError(f"server or network error: {detail if resp is not None else exc!r}")
    return PermanentError(f"HTTP {status} {detail}")


def _retry_after(resp: Response | None, now: float | None) -> float | None:
    """Seconds until the window resets: ``ratelimit-reset`` is an epoch time in
    seconds (not a delta), ``retry-after`` a delta; the later of the two.  The PDS
    rounds the reset *down* to the second and ``retry-after`` up: a reset read
    alone is up to a second early, and a retry then meets another 429."""
    headers = resp.headers if resp is not None else {}
    now = time.time() if now is None else now
    reset = _int(headers.get("ratelimit-reset"))
    waits = [reset - now] if reset is not None else []
    after = headers.get("retry-after")
    try:
        if after is not None:
            waits.append(float(after))
    except ValueError:
        pass
    return max(0.0, *waits) if waits else None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


class WriteBudget:
    """Bluesky's per-account write points (5,000 an hour, 35,000 a day), counted
    here because a PDS may not send headers for them: a write that would pass
    either window waits until enough points are back."""

    def __init__(self, per_hour: int = POINTS_PER_HOUR, per_day: int = POINTS_PER_DAY,
                 clock: Callable[[], float] = time.time) -> None:
        self.per_hour, self.per_day, self.clock = per_hour, per_day, clock
        self._spent: deque[tuple[float, int]] = deque()

    def wait_for(self, action: str) -> float:
        """Seconds until *action* fits both windows (0: now)."""
        now, cost = self.clock(), COST[action]
        while self._spent and self._spent[0][0] <= now - 86400:
            self._spent.popleft()
        wait = 0.0
        for window, cap in ((3600.0, self.per_hour), (86400.0, self.per_day)):
            inside = [(t, p) for t, p in self._spent if t > now - window]
            used = sum(p for _, p in inside)
            for t, p in inside:  # oldest first: when enough of them leave the window
                if used + cost <= cap:
                    break
                used -= p
                wait = max(wait, t + window - now)
        return wait

    def spend(self, action: str) -> None:
        self._spent.append((self.clock(), COST[action]))


class _Sdk(AsyncClient):  # type: ignore[misc]
    """The SDK client, keeping each response's headers (the rate-limit ones)."""

    last_headers: dict[str, Any]

    async def _invoke(self, invoke_type: InvokeType, **kwargs: Any) -> Response:
        try:
            resp = await super()._invoke(invoke_type, **kwargs)
        except RequestErrorBase as exc:
            if exc.response is not None:
                self.last_headers = exc.response.headers
            raise
        self.last_headers = resp.headers
        return resp


RateSink = Callable[[int | None, float | None, int | None], None]


class XrpcClient:
    """One account on its PDS.  ``login()`` first; every call raises only
    :class:`~bridge.contract.adapter.AdapterError` kinds."""

    def __init__(self, account: BlueskyAccount, *, log: logging.Logger | None = None) -> None:
        self.account = account
        self.log = log or logging.getLogger("hashbridge.adapter.bluesky")
        self.sdk = _Sdk(base_url=account.service,
                        request=AsyncRequest(timeout=httpx.Timeout(account.request_timeout)))
        self.sdk.last_headers = {}
        self.did = ""
        self.handle = ""
        self.app_password_scope: bool | None = None
        self.on_rate: RateSink | None = None
        self.on_session: Callable[[str], Awaitable[None]] | None = None
        self.sdk.on_session_change(self._session_changed)

    async def _session_changed(self, event: Any, session: Any) -> None:
        if self.on_session is not None:
            await self.on_session(self.sdk.export_session_string())

    async def login(self, stored: str | None = None) -> None:
        """Resume *stored* (an exported session string) when it is this account's,
        else log in with the app password (``createSession``)."""
        ident = self.account.handle
        if stored:
            try:
                await self.sdk.login(session_string=stored, fetch_bsky_profile=False)
                sess = self.sdk._session
                if sess is not None and ident in (sess.handle, sess.did):
                    self._logged_in()
                    return
            except (AtProtocolError, ValueError) as exc:
                self.log.info("stored session not usable (%s); logging in again",
                              type(exc).__name__)
        try:
            await self.sdk.login(ident, self.account.app_password, fetch_bsky_profile=False)
        except Exception as exc:
            err = map_error(exc)
            if isinstance(err, AuthError | PermanentError) and not isinstance(err, Gone):
                raise AuthError(f"Bluesky refused {ident} with this app password "
                                f"({_error_name(getattr(exc, 'response', None))[0] or err}); "
                                f"{APP_PASSWORD_HINT}") from exc
            raise err from exc
        self._logged_in()

    def _logged_in(self) -> None:
        sess = self.sdk._session
        assert sess is not None
        self.did, self.handle = sess.did, sess.handle
        self.app_password_scope = _app_password_scope(sess.access_jwt)

    async def _call(self, kind: InvokeType, nsid: str, *, params: dict[str, Any] | None = None,
                    body: bytes | None = None, content_type: str = "application/json",
                    retried: bool = False) -> Any:
        headers = {"Content-Type": content_type} if body is not None else {}
        try:
            if kind is InvokeType.QUERY:
                query = f"?{urlencode(params)}" if params else ""
                resp = await self.sdk._invoke(kind, url=self.sdk._build_url(nsid) + query,
                                              headers=headers)
            else:
                resp = await self.sdk._invoke(kind, url=self.sdk._build_url(nsid),
                                              content=body, headers=headers)
        except (AtProtocolError, httpx.HTTPError) as exc:
            err = map_error(exc)
            self._report(err)
            if isinstance(err, ExpiredSession) and not retried:
                await self.login()
                return await self._call(kind, nsid, params=params, body=body,
                                        content_type=content_type, retried=True)
            raise err from exc
        self._report(None)
        return resp.content

    def _report(self, err: AdapterError | None) -> None:
        h = self.sdk.last_headers
        if self.on_rate is None or "ratelimit-reset" not in h:
            return
        reset = float(_int(h.get("ratelimit-reset")) or 0) or None
        after = _int(h.get("retry-after")) if err is not None else None
        if reset is not None and after:   # a 429: not before its retry-after either
            reset = max(reset, time.time() + after)
        self.on_rate(_int(h.get("ratelimit-remaining")), reset, _int(h.get("ratelimit-limit")))

    async def query(self, nsid: str, **params: Any) -> dict[str, Any]:
        out = await self._call(InvokeType.QUERY, nsid, params=params)
        return out if isinstance(out, dict) else {}

    async def procedure(self, nsid: str, body: dict[str, Any]) -> dict[str, Any]:
        out = await self._call(InvokeType.PROCEDURE, nsid,
                               body=json.dumps(body, ensure_ascii=False).encode())
        return out if isinstance(out, dict) else {}

    async def upload_blob(self, data: bytes, mime: str) -> dict[str, Any]:
        out = await self._call(InvokeType.PROCEDURE, "com.atproto.repo.uploadBlob", body=data,
                               content_type=mime)
        blob = out.get("blob") if isinstance(out, dict) else None
        if not isinstance(blob, dict):
            raise TransientError("uploadBlob answered without a blob")
        return blob

    async def close(self) -> None:
        await self.sdk.request.close()


def _app_password_scope(jwt: str) -> bool | None:
    """True when the session comes from an app password (its access token's scope
    says ``com.atproto.appPass``), False for the main password, None if unknown."""
    try:
        payload = jwt.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    scope = str(claims.get("scope", ""))
    if not scope:
        return None
    return scope in ("com.atproto.appPass", "com.atproto.appPassPrivileged")
