"""The I/O shell around matrix-nio: session, error mapping, raw appservice calls.

nio is configured so it never sleeps or retries on its own
(``max_limit_exceeded=0``, ``max_timeouts=0``): a 429 comes back as an error
response and a timeout as an exception, and both become ``TransientError`` for
the core's delivery worker, which owns retries.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from nio import AsyncClient, AsyncClientConfig, LoginResponse, WhoamiResponse

from adapters.matrix.config import MatrixAccount
from bridge.contract.adapter import AuthError, PermanentError, TransientError

AUTH_ERRCODES = frozenset({"M_UNKNOWN_TOKEN", "M_MISSING_TOKEN"})


def nio_config(request_timeout: float = 60.0) -> AsyncClientConfig:
    return AsyncClientConfig(max_limit_exceeded=0, max_timeouts=0,
                             request_timeout=request_timeout,
                             store_sync_tokens=False, encryption_enabled=False)


def network_error(what: str, exc: BaseException, timeout: float) -> TransientError:
    """A failed request as operators should read it (a timeout has no text)."""
    if isinstance(exc, TimeoutError):
        return TransientError(f"{what}: no answer from the homeserver in {timeout:g}s")
    return TransientError(f"{what}: {type(exc).__name__} {exc}")


def error_from(resp: Any, what: str) -> Exception:
    """The core's failure kind for a nio error response."""
    code = getattr(resp, "status_code", None) or ""
    msg = getattr(resp, "message", "") or str(resp)
    status = getattr(getattr(resp, "transport_response", None), "status", 0) or 0
    if code == "M_LIMIT_EXCEEDED" or status == 429:
        ms = getattr(resp, "retry_after_ms", None)
        return TransientError(f"{what}: rate limited", retry_after=(ms or 5000) / 1000)
    if code in AUTH_ERRCODES or status == 401:
        return AuthError(f"{what}: {code} {msg}")
    if status >= 500 or status == 0:
        return TransientError(f"{what}: {status} {code} {msg}")
    return PermanentError(f"{what}: {code or status} {msg}")


def error_from_json(status: int, body: dict[str, Any], what: str,
                    retry_after_header: str | None = None) -> Exception:
    code = str(body.get("errcode", ""))
    msg = str(body.get("error", ""))
    if status == 429 or code == "M_LIMIT_EXCEEDED":
        retry = None
        if retry_after_header and retry_after_header.isdigit():
            retry = float(retry_after_header)  # spec v1.10: the header wins
        elif isinstance(body.get("retry_after_ms"), int):
            retry = body["retry_after_ms"] / 1000
        return TransientError(f"{what}: rate limited", retry_after=retry or 5.0)
    if code in AUTH_ERRCODES or status == 401:
        return AuthError(f"{what}: {code} {msg}")
    if status >= 500:
        return TransientError(f"{what}: {status} {code} {msg}")
    return PermanentError(f"{what}: {code or status} {msg}")


class Session:
    """Login state of one account; the token it gets is kept in the data dir so a
    restart reuses the same device and its transaction-id scope."""

    def __init__(self, account: MatrixAccount, data_dir: str, name: str,
                 logger: logging.Logger) -> None:
        self.account = account
        self.log = logger
        self.token_file = Path(data_dir) / f"matrix-{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.json"
        self.client = AsyncClient(account.homeserver, account.user_id,
                                  config=nio_config(account.request_timeout))

    async def open(self) -> None:
        """Log in (saved token, configured token or password) and verify with whoami.

        Raises AuthError when the homeserver refuses the credentials.
        """
        a = self.account
        token = a.as_token if a.mode == "appservice" else a.access_token
        if not token and self.token_file.exists():
            saved = json.loads(self.token_file.read_text())
            if saved.get("user_id") == a.user_id:
                token = saved.get("access_token", "")
                self.client.device_id = saved.get("device_id", "")
        if token:
            self.client.access_token = token
            self.client.user_id = a.user_id
            who = await self.client.whoami()
            if isinstance(who, WhoamiResponse):
                self.client.device_id = self.client.device_id or (who.device_id or "")
                return
            err = error_from(who, "whoami")
            if not (isinstance(err, AuthError) and a.password and not a.access_token):
                raise err
            self.log.warning("saved access token refused; logging in with the password")
        resp = await self.client.login(a.password, device_name=a.device_name)
        if not isinstance(resp, LoginResponse):
            err = error_from(resp, "login")
            raise AuthError(str(err)) if isinstance(err, PermanentError) else err
        self.token_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.token_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"user_id": resp.user_id, "access_token": resp.access_token,
                       "device_id": resp.device_id}, f)
        os.replace(tmp, self.token_file)
        self.log.info("logged in as %s (device %s); token saved", resp.user_id, resp.device_id)

    async def close(self) -> None:
        await self.client.close()


class RawApi:
    """Plain client-server API calls with the appservice token (masquerading ghosts,
    which matrix-nio cannot do)."""

    def __init__(self, http: aiohttp.ClientSession, homeserver: str, token: str) -> None:
        self.http = http
        self.base = homeserver.rstrip("/")
        self.token = token

    async def call(self, method: str, path: str, body: Any = None, *,
                   user_id: str | None = None, what: str = "",
                   ok_errcodes: frozenset[str] = frozenset(),
                   query: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
        """One request; the JSON answer, or the error body when its errcode is one of
        *ok_errcodes*.  *query* adds parameters (a key may repeat: ``via``)."""
        params = [*query, *((("user_id", user_id),) if user_id else ())] or None
        try:
            async with self.http.request(
                    method, self.base + path, params=params,
                    json=body if body is not None else ({} if method != "GET" else None),
                    headers={"Authorization": f"Bearer {self.token}"},
                    timeout=aiohttp.ClientTimeout(total=60)) as r:
                try:
                    data = await r.json(content_type=None)
                except (json.JSONDecodeError, aiohttp.ContentTypeError):
                    data = {}
                data = data if isinstance(data, dict) else {}
                if r.status < 300 or data.get("errcode") in ok_errcodes:
                    return data
                raise error_from_json(r.status, data, what or path,
                                      r.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError) as e:
            raise TransientError(f"{what or path}: {type(e).__name__} {e}") from e


def q(s: str) -> str:
    return quote(s, safe="")
