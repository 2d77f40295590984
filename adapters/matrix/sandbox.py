"""A real local Synapse as the Matrix side of ``hashbridge demo``, the end-to-end
tests and the benchmarks (:class:`bridge.contract.sandbox.PlatformSandbox`).

It registers the bridge's bot and, on first use, one Matrix user per community
member, creates one room (members join, the bot is invited) and reads what the
room shows back through the client-server API: counts come from the platform,
never from our store.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp

from adapters.matrix.convert import HTML_FORMAT, ORIGIN_KEY
from adapters.matrix.testserver import RegisteredUser, SynapseServer
from bridge.contract.sandbox import (
    Endpoint,
    FailureAnswer,
    Fault,
    PoisonKind,
    SandboxFeatures,
    SandboxMedia,
    SandboxMessage,
)

NESTED = "<p>" + "<b>" * 1000 + "deep nesting" + "</b>" * 1000 + "</p>"


def _q(s: str) -> str:
    return quote(s, safe="")


class MatrixSandbox:
    platform = "matrix"
    kind = "real server (Synapse)"
    features = SandboxFeatures(commands=True, member_polls=True)

    def __init__(self, workdir: str, *, relaxed: bool = True, bot: str = "bridgebot") -> None:
        self.server = SynapseServer(Path(workdir) / "synapse", relaxed=relaxed)
        self.bot_name = bot
        self.bot: RegisteredUser | None = None
        self.room_id = ""
        self._members: dict[str, RegisteredUser] = {}
        self._sender_of: dict[str, str] = {}
        self._http: aiohttp.ClientSession | None = None
        self._txn = 0

    async def start(self) -> None:
        self.server.spawn()        # on the loop's thread: the server dies with this process
        await asyncio.to_thread(self.server.wait_ready)
        self._http = aiohttp.ClientSession()
        self.bot = await asyncio.to_thread(self.server.register, self.bot_name)
        host = await self._member("host")
        r = await self._call("POST", "/_matrix/client/v3/createRoom", host.access_token,
                             {"name": "hashbridge sandbox", "preset": "public_chat",
                              "invite": [self.bot.user_id]})
        self.room_id = r["room_id"]

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
        await asyncio.to_thread(self.server.stop)

    def account_config(self) -> dict[str, Any]:
        assert self.bot is not None, "start() first"
        # Synapse listens on 127.0.0.1: opt in to private media hosts (testing only).
        return {"homeserver": self.server.url, "user_id": self.bot.user_id,
                "access_token": self.bot.access_token, "allow_private_media_hosts": True}

    def channel_config(self) -> dict[str, Any]:
        return {"room": self.room_id}

    async def _member(self, author: str) -> RegisteredUser:
        localpart = re.sub(r"[^a-z0-9._=\-]", "_", author.lower().lstrip("@"))[:64] or "member"
        if localpart not in self._members:
            user = await asyncio.to_thread(self.server.register, localpart)
            if self.room_id:
                await self._call("POST", f"/_matrix/client/v3/join/{_q(self.room_id)}",
                                 user.access_token, {})
            self._members[localpart] = user
        return self._members[localpart]

    async def _call(self, method: str, path: str, token: str, body: Any = None) -> Any:
        assert self._http is not None, "start() first"
        async with self._http.request(method, self.server.url + path, json=body,
                                      headers={"Authorization": f"Bearer {token}"}) as r:
            data = await r.json(content_type=None)
            if r.status >= 400:
                raise RuntimeError(f"{method} {path}: {r.status} {data}")
            return data

    async def _send(self, token: str, content: dict[str, Any],
                    event_type: str = "m.room.message") -> str:
        self._txn += 1
        txn = f"sb{self._txn}-{secrets.token_hex(4)}"
        r = await self._call(
            "PUT", f"/_matrix/client/v3/rooms/{_q(self.room_id)}/send/{event_type}/{txn}",
            token, content)
        return str(r["event_id"])

    async def post_as_member(self, author: str, text: str,
                             reply_to: str | None = None) -> str:
        user = await self._member(author)
        content: dict[str, Any] = {"msgtype": "m.text", "body": text, "m.mentions": {}}
        if reply_to:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
        eid = await self._send(user.access_token, content)
        self._sender_of[eid] = user.user_id
        return eid

    def _token_of(self, native_id: str) -> str:
        uid = self._sender_of.get(native_id)
        user = next((u for u in self._members.values() if u.user_id == uid), None)
        if user is None:
            raise KeyError(f"{native_id} was not posted through this sandbox")
        return user.access_token

    async def edit_as_member(self, native_id: str, text: str) -> None:
        await self._send(self._token_of(native_id), {
            "msgtype": "m.text", "body": f"* {text}", "m.mentions": {},
            "m.new_content": {"msgtype": "m.text", "body": text, "m.mentions": {}},
            "m.relates_to": {"rel_type": "m.replace", "event_id": native_id}})

    async def delete_as_member(self, native_id: str) -> None:
        self._txn += 1
        await self._call(
            "PUT", f"/_matrix/client/v3/rooms/{_q(self.room_id)}/redact/{_q(native_id)}/"
                   f"sbr{self._txn}", self._token_of(native_id), {})

    async def post_with_media(self, author: str, text: str, data: bytes, media_type: str,
                              alt_text: str) -> str:
        raise NotImplementedError(
            "Matrix members' images carry a filename or a caption, no alt text")

    async def post_poll_as_member(self, author: str, text: str, options: list[str]) -> str:
        """An MSC3381 poll (stable ``m.poll.start``) with its text fallback."""
        user = await self._member(author)
        fallback = "\n".join([text, *(f"{i}. {o}" for i, o in enumerate(options, 1))])
        content = {"m.poll": {"kind": "m.disclosed", "max_selections": 1,
                              "question": {"m.text": [{"body": text}]},
                              "answers": [{"m.id": f"a{i}", "m.text": [{"body": o}]}
                                          for i, o in enumerate(options)]},
                   "m.text": [{"body": fallback}]}
        eid = await self._send(user.access_token, content, "m.poll.start")
        self._sender_of[eid] = user.user_id
        return eid

    async def post_quote_as_member(self, author: str, text: str, quoted: str) -> str:
        raise NotImplementedError("Matrix has no quote posts (a reply quotes its parent)")

    async def command_as_member(self, author: str, command: str) -> str:
        return await self.post_as_member(author, command)

    async def post_poison(self, author: str, tag: str) -> dict[str, PoisonKind]:
        """HTML nested a thousand deep in ``formatted_body``."""
        user = await self._member(author)
        eid = await self._send(user.access_token, {
            "msgtype": "m.text", "body": f"{tag} deep nesting", "format": HTML_FORMAT,
            "formatted_body": NESTED})
        return {eid: PoisonKind.EITHER}

    # ------------------------------------------------------------ faults
    def endpoints(self) -> list[Endpoint]:
        port = urlsplit(self.server.url).port
        assert port is not None, "start() first"
        return [Endpoint(name="homeserver", port=port)]

    def account_config_via(self, ports: Mapping[str, int], timeout: float) -> dict[str, Any]:
        cfg = self.account_config() | {"request_timeout": timeout, "sync_timeout_ms":
                                       int(min(3.0, timeout / 2) * 1000)}
        if "homeserver" in ports:
            cfg["homeserver"] = f"http://127.0.0.1:{ports['homeserver']}"
        return cfg

    def failure(self, endpoint: str, fault: Fault, n: int, until: float
                ) -> FailureAnswer | None:
        if fault == "ratelimit":
            left = max(0.0, until - time.time())
            body = {"errcode": "M_LIMIT_EXCEEDED", "error": "Too Many Requests",
                    "retry_after_ms": int(left * 1000)}
            return FailureAnswer(status=429, body=json.dumps(body).encode(),
                                 headers={"Retry-After": str(math.ceil(left))})
        if n % 2 == 0:  # the reverse proxy in front of Synapse
            page = ("<html><head><title>502 Bad Gateway</title></head><body><center>"
                    "<h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body>"
                    "</html>\n")
            return FailureAnswer(status=502, body=page.encode(), content_type="text/html")
        return FailureAnswer(status=500, body=json.dumps(
            {"errcode": "M_UNKNOWN", "error": "Internal server error"}).encode())

    def unthrottle(self) -> None:
        pass  # the sandbox's Synapse runs with relaxed rate limits already

    async def raw_events(self) -> list[dict[str, Any]]:
        """Every m.room.message and redaction in the room, oldest first."""
        host = await self._member("host")
        out: list[dict[str, Any]] = []
        frm = ""
        while True:
            path = (f"/_matrix/client/v3/rooms/{_q(self.room_id)}/messages?dir=f&limit=500"
                    + (f"&from={_q(frm)}" if frm else ""))
            data = await self._call("GET", path, host.access_token)
            chunk = data.get("chunk", [])
            out.extend(e for e in chunk if e.get("type") in ("m.room.message",
                                                             "m.room.redaction"))
            if not chunk or not data.get("end") or data["end"] == frm:
                return out
            frm = data["end"]

    async def messages(self) -> list[SandboxMessage]:
        assert self.bot is not None
        events = await self.raw_events()
        edits: dict[str, str] = {}
        # The bridge sends a post's media as events of their own next to its text (the
        # copy's extra ids): shown as the attachments of the post's first text event, the
        # way clients group them.  Both carry the post's origin.
        texts: dict[str, str] = {}
        media: dict[str, list[SandboxMedia]] = {}
        for e in events:
            c = e.get("content", {})
            if e["type"] != "m.room.message" or not isinstance(c.get(ORIGIN_KEY), dict):
                continue
            if c.get("msgtype") in MEDIA:
                media.setdefault(_origin(c), []).append(_media(c))
            elif c.get("m.relates_to", {}).get("rel_type") != "m.replace":
                texts.setdefault(_origin(c), e["event_id"])
        for e in events:
            rel = e.get("content", {}).get("m.relates_to", {})
            if rel.get("rel_type") == "m.replace":
                new = e["content"].get("m.new_content", {})
                edits[rel.get("event_id", "")] = str(new.get("body", ""))
        out: list[SandboxMessage] = []
        for e in events:
            c = e.get("content", {})
            if e["type"] != "m.room.message" or (
                    c.get("m.relates_to", {}).get("rel_type") == "m.replace"):
                continue
            if c.get("msgtype") in MEDIA and _origin(c) in texts:
                continue  # shown as the attachment of its post's text (below)
            deleted = not c       # a redacted event keeps its trace with empty content
            reply = c.get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id")
            by_bridge = e["sender"] == self.bot.user_id or ORIGIN_KEY in c
            # Intentional mentions: whom the event pings (its m.mentions, and the whole
            # room for "room": true); Synapse then ignores the legacy body rules.
            mentions = c.get("m.mentions", {}) if isinstance(c.get("m.mentions"), dict) else {}
            pings = [str(u) for u in mentions.get("user_ids", [])]
            if mentions.get("room"):
                pings.append("@room")
            if "m.mentions" not in c and not deleted:
                pings.append("(no m.mentions: the body's names ping)")
            out.append(SandboxMessage(
                pings=tuple(pings),
                native_id=e["event_id"], author=e["sender"],
                text="" if deleted else edits.get(e["event_id"], str(c.get("body", ""))),
                by_bridge=by_bridge, reply_to=reply, edited=e["event_id"] in edits,
                deleted=deleted,
                media=(_media(c),) if c.get("msgtype") in MEDIA else
                tuple(media.get(_origin(c), ())) if texts.get(_origin(c)) == e["event_id"]
                else ()))
        return out


MEDIA = ("m.image", "m.video", "m.audio", "m.file")


def _origin(content: dict[str, Any]) -> str:
    return json.dumps(content.get(ORIGIN_KEY), sort_keys=True) \
        if isinstance(content.get(ORIGIN_KEY), dict) else ""


def _media(content: dict[str, Any]) -> SandboxMedia:
    """An attachment as clients show it: ``body`` is its textual representation (the alt
    text the bridge sent, else the file's name)."""
    raw = content.get("info")
    info: dict[str, Any] = raw if isinstance(raw, dict) else {}
    size = info.get("size")
    return SandboxMedia(media_type=str(info.get("mimetype", "")),
                        alt_text=str(content.get("body", "")),
                        size=size if isinstance(size, int) else None)
