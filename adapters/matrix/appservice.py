"""Appservice (puppet) mode: each remote author posts as a ghost user.

Why plain aiohttp and not mautrix's ``AppService``: the bridge needs five
client-server calls with ``?user_id=`` masquerading (register, profile, invite,
join, send/redact) and one pushed route (``PUT /transactions/{txnId}``).  aiohttp
is already our HTTP stack; mautrix would add its own state store, intent cache
and asyncpg/sqlite layers for that, and its own retry policy where ours lives in
the core worker.  Inbound events of both modes end in the same ``_inbound``.

Appservice users may not ``/sync`` (Synapse raises NotImplementedError), so in
this mode inbound comes from transactions: persisted with ``emit_many`` and the
transaction id as the cursor *before* answering 200, so a crash makes the
homeserver resend, and a resent id already persisted is acknowledged unread.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from adapters.matrix.client import RawApi, q
from adapters.matrix.config import MatrixAccount
from bridge.contract.adapter import INLINE_MAX_BYTES
from bridge.contract.model import Author
from bridge.contract.textconv import clean_text


def generate_registration(account: MatrixAccount) -> str:
    """The registration YAML the homeserver admin adds to ``app_service_config_files``.

    JSON is valid YAML, so the output is JSON under a comment header.
    """
    server = re.escape(account.server_name)
    reg = {
        "id": account.as_id,
        "url": account.appservice_url,
        "as_token": account.as_token,
        "hs_token": account.hs_token,
        "sender_localpart": account.user_id[1:].split(":", 1)[0],
        "rate_limited": False,
        "receive_ephemeral": False,
        "namespaces": {
            "users": [{"exclusive": True,
                       "regex": "@" + re.escape(account.ghost_prefix) + ".*:" + server}],
            "aliases": [],
            "rooms": [],
        },
    }
    return ("# hashbridge appservice registration; add this file to Synapse's\n"
            "# app_service_config_files and restart it.  The homeserver pushes room\n"
            "# events to url, where hashbridge listens (accounts.*.as_listen).\n"
            + json.dumps(reg, indent=2) + "\n")


def ghost_localpart(prefix: str, author: Author) -> str:
    """A stable, valid localpart for a remote author (``hb_mastodon_alice=40host``)."""
    raw = f"{author.platform}_{author.handle.lstrip('@')}".lower()
    out = []
    for ch in raw:
        if re.fullmatch(r"[a-z0-9._\-/]", ch):
            out.append(ch)
        else:
            out.append("".join(f"={b:02x}" for b in ch.encode()))
    return (prefix + "".join(out))[:200]


def ghost_display_name(author: Author, network: str) -> str:
    return clean_text(f"{author.name} ({network})")[:255]


class Ghosts:
    """Creates ghosts on first use and keeps their profile and membership current."""

    def __init__(self, api: RawApi, account: MatrixAccount) -> None:
        self.api = api
        self.account = account
        self._ready: set[tuple[str, str]] = set()
        self._names: dict[str, str] = {}

    def user_id(self, author: Author) -> str:
        return f"@{ghost_localpart(self.account.ghost_prefix, author)}:{self.account.server_name}"

    def is_ghost(self, user_id: str) -> bool:
        return (user_id.startswith("@" + self.account.ghost_prefix)
                and user_id.endswith(":" + self.account.server_name))

    async def ensure(self, author: Author, network: str, room_id: str) -> str:
        """The ghost's user id, registered, named and joined to *room_id*."""
        uid = self.user_id(author)
        name = ghost_display_name(author, network)
        if uid not in self._names:
            await self.api.call("POST", "/_matrix/client/v3/register",
                                {"type": "m.login.application_service",
                                 "username": uid[1:].split(":", 1)[0]},
                                what="register ghost", ok_errcodes=frozenset({"M_USER_IN_USE"}))
        if self._names.get(uid) != name:
            # Only on change: profile updates are rate limited (rc_profile) and fan out
            # a member event into every room the ghost is in.
            await self.api.call("PUT", f"/_matrix/client/v3/profile/{q(uid)}/displayname",
                                {"displayname": name}, user_id=uid, what="ghost profile")
            self._names[uid] = name
        if (uid, room_id) not in self._ready:
            await self.api.call("POST", f"/_matrix/client/v3/rooms/{q(room_id)}/invite",
                                {"user_id": uid}, what="invite ghost",
                                ok_errcodes=frozenset({"M_FORBIDDEN"}))
            await self.api.call("POST", f"/_matrix/client/v3/join/{q(room_id)}", {},
                                user_id=uid, what="ghost join")
            self._ready.add((uid, room_id))
        return uid

    def forget(self, uid: str, room_id: str) -> None:
        """After a failure that may mean the ghost left or was kicked."""
        self._ready.discard((uid, room_id))


TxnHandler = Callable[[str, list[dict[str, Any]]], Awaitable[None]]


class Listener:
    """The homeserver-facing HTTP endpoint of the appservice."""

    def __init__(self, account: MatrixAccount, on_transaction: TxnHandler,
                 logger: logging.Logger) -> None:
        self.account = account
        self.on_transaction = on_transaction
        self.log = logger
        self._runner: web.AppRunner | None = None

    def _authorised(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else \
            request.query.get("access_token", "")
        return hmac.compare_digest(token.encode(), self.account.hs_token.encode())

    async def _transaction(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"errcode": "M_FORBIDDEN"}, status=403)
        raw = await request.read()
        try:
            # A transaction can be megabytes (up to 100 events): parsed off the loop.
            body = json.loads(raw) if len(raw) <= INLINE_MAX_BYTES else \
                await asyncio.to_thread(json.loads, raw)
        except (ValueError, RecursionError):   # not JSON, or nested beyond parsing
            return web.json_response({"errcode": "M_NOT_JSON"}, status=400)
        events = body.get("events") if isinstance(body, dict) else None
        events = [e for e in events if isinstance(e, dict)] if isinstance(events, list) else []
        try:
            await self.on_transaction(request.match_info["txn"], events)
        except Exception:
            # Not acknowledged: the homeserver sends this transaction again.
            self.log.exception("transaction %s not persisted", request.match_info["txn"])
            return web.json_response({"errcode": "M_UNKNOWN"}, status=500)
        return web.json_response({})

    async def _user(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"errcode": "M_FORBIDDEN"}, status=403)
        # Ghosts are created on first use by the bridge, never on a homeserver query.
        return web.json_response({"errcode": "M_NOT_FOUND"}, status=404)

    async def _ping(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"errcode": "M_FORBIDDEN"}, status=403)
        return web.json_response({})

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        for prefix in ("/_matrix/app/v1", ""):   # "" = legacy unprefixed routes
            app.router.add_put(prefix + "/transactions/{txn}", self._transaction)
            app.router.add_get(prefix + "/users/{user}", self._user)
        app.router.add_post("/_matrix/app/v1/ping", self._ping)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        host, port = self.account.as_listen.rsplit(":", 1)
        await web.TCPSite(self._runner, host, int(port)).start()
        self.log.info("appservice endpoint on %s", self.account.as_listen)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
