"""A real local Bluesky for ``hashbridge demo``, the end-to-end and fault suites and
the benchmarks (:class:`bridge.contract.sandbox.PlatformSandbox`): the reference
PDS with an in-memory PLC (:mod:`adapters.bluesky.testserver`).

The bridge's account logs in with an app password, as in production.  Each
community member is a real account on the PDS and posts through the ``atproto``
SDK.  What the network shows is read back from the PDS itself: the records of
every repo (``listRecords``) for the current state, and the PDS's own firehose
for what happened to them (an edit is an ``update`` op, a delete a ``delete``
op: Bluesky shows no trace of a deleted post, its event log does).

Faults (:mod:`bridge.conformance.faults`): after login the ``atproto`` SDK talks to
the URL the account's DID document names, not to the configured ``service``.  So
the sandbox's own PDS names a *front door* (a port this sandbox listens on) in its
DID documents and listens elsewhere: the front door forwards to the PDS, or, once
:meth:`BlueskySandbox.account_config_via` put a fault proxy in front of the PDS, to
that proxy, so every request of the bridge's account crosses it.  Members and the
sandbox's own reading reach the PDS directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import secrets
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import libipld
from atproto_client import AsyncClient, models
from atproto_client.models.utils import get_or_create

from adapters.bluesky.compose import KEY_FIELD, facets
from adapters.bluesky.convert import POST, split_uri
from adapters.bluesky.testserver import PdsAccount, PdsServer
from bridge.contract.sandbox import (
    Endpoint,
    FailureAnswer,
    Fault,
    PoisonKind,
    SandboxFeatures,
    SandboxMedia,
    SandboxMessage,
)

SUBSCRIBE = "/xrpc/com.atproto.sync.subscribeRepos"
GLOBAL_LIMIT, GLOBAL_WINDOW = 3000, 300
"""The PDS's global rate limit per IP (requests per 300 s), named in its 429s."""


@dataclass(slots=True)
class _Member:
    account: PdsAccount
    client: AsyncClient


@dataclass(slots=True)
class _Log:
    """What the PDS's firehose said about each post, by URI."""

    order: dict[str, int] = field(default_factory=dict)
    updated: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    last: dict[str, dict[str, Any]] = field(default_factory=dict)
    seq: int = 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FrontDoor:
    """A TCP forwarder on the port the PDS names in its DID documents: to the PDS
    itself, or to a fault proxy standing in front of it (:attr:`to`).  A connection
    that cannot reach where it leads is reset, as a refused one would be."""

    def __init__(self, to: int) -> None:
        self.to = to
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()

    async def _accept(self, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            try:
                up_r, up_w = await asyncio.open_connection("127.0.0.1", self.to)
            except OSError:
                sock = writer.get_extra_info("socket")
                if sock is not None:  # RST, like the refused connect behind it
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                    b"\x01\x00\x00\x00\x00\x00\x00\x00")
                writer.close()
                return
            await asyncio.gather(self._pipe(reader, up_w), self._pipe(up_r, writer))
        finally:
            self._tasks.discard(task)

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                dst.close()


class BlueskySandbox:
    platform = "bluesky"
    kind = "real server (the reference Bluesky PDS, with a local PLC)"
    features = SandboxFeatures(
        member_edits=True, member_deletes=True, deletes_noticed_seconds=1.0,
        # the firehose replays from the adapter's cursor: deletes made while it was
        # down arrive as delete ops
        deletes_seen_after_downtime=True,
        member_media=True,       # images with alt text (app.bsky.embed.images)
        commands=True,           # a post mentioning the bot (a mention facet)
        member_quotes=True)      # app.bsky.embed.record

    def __init__(self, workdir: str, *, hashtag: str = "kmers", bot: str = "bridgebot",
                 rate_limits: bool = False, server: PdsServer | None = None) -> None:
        """*server*: a PDS already running (a test session's), shared; else this
        sandbox starts its own and stops it.  Account handles get a random suffix,
        so several sandboxes can share one PDS."""
        self._own_server = server is None
        self.server = server or PdsServer(Path(workdir) / "pds", rate_limits=rate_limits)
        self.hashtag = hashtag
        self._suffix = secrets.token_hex(2)
        self.bot_name = f"{bot}-{self._suffix}"
        self.bot: PdsAccount | None = None
        self.bot_app_password = ""
        self._members: dict[str, _Member] = {}
        self._log = _Log()
        self._reader: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None
        self.front: FrontDoor | None = None

    async def start(self) -> None:
        if self._own_server:
            listen = _free_port()
            self.front = FrontDoor(listen)
            await self.front.start()
            self.server.public_port, self.server.listen_port = self.front.port, listen
            self.server.spawn()    # on the loop's thread: the PDS dies with this process
            await asyncio.to_thread(self.server.wait_ready)
        self.bot = await asyncio.to_thread(self.server.create_account, self.bot_name)
        self.bot_app_password = await asyncio.to_thread(self.server.app_password, self.bot)
        self._http = aiohttp.ClientSession()
        self._reader = asyncio.create_task(self._read_log(), name="bsky-sandbox-log")

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        for m in self._members.values():
            await m.client.request.close()
        self._members.clear()
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._own_server:
            await asyncio.to_thread(self.server.stop)
        if self.front is not None:
            await self.front.stop()
            self.front = None

    def account_config(self) -> dict[str, Any]:
        """The account reaching the PDS directly (the front door leads to the PDS
        again, after a fault proxy's run)."""
        assert self.bot is not None, "start() first"
        if self.front is not None:
            self.front.to = self.server.listen_port
        # The PDS listens on 127.0.0.1: opt in to private media hosts (testing only).
        return {"service": _loopback(self.server.url), "handle": self.bot.handle,
                "app_password": self.bot_app_password,
                "firehose": _loopback(self.server.firehose_url),
                "plc_directory": _loopback(self.server.plc_url),
                "allow_private_media_hosts": True, "profile_cache_seconds": 0.0,
                # One PDS serves a whole test session (and every demo run): its
                # history is other runs' posts, so a first start reads from now.
                "catchup_window": 0}

    # ------------------------------------------------------------ faults
    def endpoints(self) -> list[Endpoint]:
        """The PDS's XRPC and its firehose (a websocket: TCP-level faults only).
        None for a PDS shared with others (its DID documents name it directly)."""
        if self.front is None:
            return []
        port = self.server.listen_port
        return [Endpoint(name="pds", port=port),
                Endpoint(name="firehose", port=port, protocol="tcp")]

    def account_config_via(self, ports: Mapping[str, int], timeout: float) -> dict[str, Any]:
        # request_timeout is also the firehose's ping interval: a hung stream is noticed
        # within 1.5 times it (the idle timeout stays: a quiet PDS is not an outage)
        cfg = self.account_config() | {"request_timeout": timeout}
        if "pds" in ports:
            cfg["service"] = f"http://127.0.0.1:{ports['pds']}"
            assert self.front is not None
            self.front.to = ports["pds"]     # where the DID document sends the SDK
        if "firehose" in ports:
            cfg["firehose"] = f"ws://127.0.0.1:{ports['firehose']}{SUBSCRIBE}"
        return cfg

    def failure(self, endpoint: str, fault: Fault, n: int, until: float
                ) -> FailureAnswer | None:
        """The PDS's XRPC errors (``{"error", "message"}``) and, every other time, the
        reverse proxy in front of it (Caddy in the PDS distribution: a 502 with no
        body); a 429 with the headers of the PDS's rate limiter.  The firehose is a
        websocket: a failing PDS refuses its upgrade, it has no rate limit."""
        if fault == "ratelimit":
            if endpoint == "firehose":
                return None
            left = max(0.0, until - time.time())
            body = {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"}
            return FailureAnswer(status=429, body=json.dumps(body).encode(), headers={
                "RateLimit-Limit": str(GLOBAL_LIMIT), "RateLimit-Remaining": "0",
                "RateLimit-Reset": str(math.floor(until)),
                "RateLimit-Policy": f"{GLOBAL_LIMIT};w={GLOBAL_WINDOW}",
                "Retry-After": str(math.ceil(left))})
        if n % 2 == 0:
            return FailureAnswer(status=502, body=b"", content_type="text/plain")
        body = {"error": "InternalServerError", "message": "Internal Server Error"}
        return FailureAnswer(status=500, body=json.dumps(body).encode())

    def unthrottle(self) -> None:
        """The sandbox's PDS runs without its rate limits unless asked for them; they
        cannot be lifted while it runs (its in-memory PLC would lose the accounts)."""
        if not self.server.rate_limits:
            return
        if self.server.proc is None:
            self.server.rate_limits = False
            return
        raise RuntimeError("this sandbox's PDS was started with rate_limits=True: make "
                           "the sandbox without them for a long run")

    def channel_config(self) -> dict[str, Any]:
        return {"hashtag": self.hashtag}

    # ------------------------------------------------------------ members
    async def member(self, author: str) -> _Member:
        name = re.sub(r"[^a-z0-9-]", "-", author.lower().lstrip("@"))[:18].strip("-") or "member"
        if name not in self._members:
            acct = await asyncio.to_thread(self.server.create_account, f"{name}-{self._suffix}")
            client = AsyncClient(base_url=self.server.listen_url)
            await client.login(acct.handle, acct.password, fetch_bsky_profile=False)
            # Members reach the PDS itself, never through a fault proxy put in
            # front of it for the bridge (login switched to the DID document's URL).
            client.update_base_url(self.server.listen_url)
            self._members[name] = _Member(acct, client)
            # Members have display names on Bluesky; attributions elsewhere show them.
            await self.set_profile(author)
        return self._members[name]

    async def set_profile(self, author: str, *, description: str = "",
                          display_name: str = "", labels: tuple[str, ...] = ()) -> None:
        """Write the member's ``app.bsky.actor.profile/self`` (consent signals live there)."""
        m = await self.member(author)
        name = author.lstrip("@").split(".")[0]
        record: dict[str, Any] = {"$type": "app.bsky.actor.profile", "description": description,
                                  "displayName": display_name or name.title()}
        if labels:
            record["labels"] = {"$type": "com.atproto.label.defs#selfLabels",
                                "values": [{"val": v} for v in labels]}
        await m.client.com.atproto.repo.put_record(models.ComAtprotoRepoPutRecord.Data(
            repo=m.account.did, collection="app.bsky.actor.profile", rkey="self",
            record=record))

    def _tagged(self, text: str) -> str:
        # The hashtag is how the conversation (and the bridge) finds a post:
        # members tag their posts, replies included.
        if f"#{self.hashtag}".lower() not in text.lower():
            text = f"{text} #{self.hashtag}"
        return text

    async def _strong_ref(self, uri: str) -> dict[str, str]:
        did, collection, rkey = split_uri(uri)
        m = next(iter(self._members.values()), None)
        client = m.client if m else AsyncClient(base_url=self.server.listen_url)
        got = await client.com.atproto.repo.get_record(models.ComAtprotoRepoGetRecord.Params(
            repo=did, collection=collection, rkey=rkey))
        return {"uri": got.uri, "cid": str(got.cid)}

    async def post_as_member(self, author: str, text: str,
                             reply_to: str | None = None, *,
                             images: tuple[tuple[bytes, str], ...] = (),
                             tag: bool = True, media_type: str = "",
                             quote: str | dict[str, str] | None = None) -> str:
        """Post as a community member; *images*: ``(PNG/JPEG bytes, alt text)`` of
        *media_type* (else the PDS guesses it from the bytes, as it can for PNG and
        JPEG); *quote*: the post it quotes (an ``at://`` URI on this PDS, or a
        strong ref ``{"uri", "cid"}`` to anywhere), with the images if any."""
        m = await self.member(author)
        text = self._tagged(text) if tag else text
        record: dict[str, Any] = {"$type": POST, "text": text,
                                  "createdAt": datetime.now(UTC).isoformat()}
        found = facets(text) + self._mention_facets(text)
        if found:
            record["facets"] = found
        if reply_to:
            parent = await self._strong_ref(reply_to)
            got = await m.client.com.atproto.repo.get_record(
                models.ComAtprotoRepoGetRecord.Params(repo=split_uri(reply_to)[0],
                                                      collection=POST,
                                                      rkey=split_uri(reply_to)[2]))
            reply = getattr(got.value, "reply", None)
            root = {"uri": reply.root.uri, "cid": reply.root.cid} if reply else parent
            record["reply"] = {"root": root, "parent": parent}
        if images:
            blobs = []
            for data, alt in images:
                up = await m.client.com.atproto.repo.upload_blob(
                    data, headers={"Content-Type": media_type} if media_type else {})
                blobs.append({"image": up.blob.model_dump(by_alias=True), "alt": alt})
            record["embed"] = {"$type": "app.bsky.embed.images", "images": blobs}
        if quote is not None:
            ref = quote if isinstance(quote, dict) else await self._strong_ref(quote)
            quoted = {"$type": "app.bsky.embed.record", "record": ref}
            record["embed"] = quoted if "embed" not in record else {
                "$type": "app.bsky.embed.recordWithMedia", "record": quoted,
                "media": record["embed"]}
        out = await m.client.app.bsky.feed.post.create(
            m.account.did, get_or_create(record, models.AppBskyFeedPost.Record, strict=False))
        return str(out.uri)

    async def post_with_media(self, author: str, text: str, data: bytes, media_type: str,
                              alt_text: str) -> str:
        return await self.post_as_member(author, text, images=((data, alt_text),),
                                         media_type=media_type)

    async def post_poll_as_member(self, author: str, text: str, options: list[str]) -> str:
        raise NotImplementedError("Bluesky has no polls")

    async def post_quote_as_member(self, author: str, text: str, quoted: str) -> str:
        return await self.post_as_member(author, text, quote=quoted)

    async def command_as_member(self, author: str, command: str) -> str:
        """A post mentioning the bot (a mention facet on its handle), untagged."""
        assert self.bot is not None, "start() first"
        return await self.post_as_member(author, f"@{self.bot.handle} {command}", tag=False)

    async def post_poison(self, author: str, tag: str) -> dict[str, PoisonKind]:
        """Records the PDS stores unvalidated (as any PDS may, and relays pass on):
        over a thousand facets and text over ten times the lexicon's 3,000 bytes
        (refused unread), and facets whose byte offsets are out of range, reversed or
        inside a character (ignored, or the post rejected)."""
        m = await self.member(author)
        text = f"{tag} #{self.hashtag}"
        tag_at = len(text.encode()) - len(self.hashtag.encode()) - 1
        tag_facet = {"index": {"byteStart": tag_at, "byteEnd": len(text.encode())},
                     "features": [{"$type": "app.bsky.richtext.facet#tag",
                                   "tag": self.hashtag}]}
        now = datetime.now(UTC).isoformat()
        many = {"$type": POST, "text": f"{text} many facets", "createdAt": now,
                "facets": [tag_facet] * 1001}
        long = {"$type": POST, "text": f"{text} " + "x" * 31_000, "createdAt": now,
                "facets": [tag_facet]}
        bad = f"{text} caf\u00e9 \u2603"
        bad_offsets = {"$type": POST, "text": bad, "createdAt": now, "facets": [
            tag_facet,
            {"index": {"byteStart": 5, "byteEnd": 10_000},
             "features": [{"$type": "app.bsky.richtext.facet#link", "uri": "https://x.test"}]},
            {"index": {"byteStart": 9, "byteEnd": 3},
             "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": "back"}]},
            {"index": {"byteStart": len(bad.encode()) - 2, "byteEnd": len(bad.encode())},
             "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": "mid"}]}]}
        out: dict[str, PoisonKind] = {}
        for record, kind in ((many, PoisonKind.ALWAYS), (long, PoisonKind.ALWAYS),
                             (bad_offsets, PoisonKind.EITHER)):
            got = await m.client.com.atproto.repo.create_record(
                models.ComAtprotoRepoCreateRecord.Data(
                    repo=m.account.did, collection=POST, record=record, validate=False))
            out[str(got.uri)] = kind
        return out

    def _mention_facets(self, text: str) -> list[dict[str, Any]]:
        """Members' apps turn ``@handle`` of a known account into a mention facet."""
        assert self.bot is not None
        dids = {self.bot.handle: self.bot.did,
                **{m.account.handle: m.account.did for m in self._members.values()}}
        out = []
        for m in re.finditer(r"@([a-z0-9.-]+\.test)\b", text):
            if m.group(1) in dids:
                start = len(text[:m.start()].encode())
                out.append({"index": {"byteStart": start,
                                      "byteEnd": start + len(m.group(0).encode())},
                            "features": [{"$type": "app.bsky.richtext.facet#mention",
                                          "did": dids[m.group(1)]}]})
        return out

    def _owner(self, uri: str) -> _Member:
        did = split_uri(uri)[0]
        for m in self._members.values():
            if m.account.did == did:
                return m
        raise KeyError(f"{uri} was not posted through this sandbox")

    async def edit_as_member(self, native_id: str, text: str) -> None:
        m = self._owner(native_id)
        did, collection, rkey = split_uri(native_id)
        got = await m.client.com.atproto.repo.get_record(models.ComAtprotoRepoGetRecord.Params(
            repo=did, collection=collection, rkey=rkey))
        text = self._tagged(text)
        old = got.value
        record: dict[str, Any] = {"$type": POST, "text": text,
                                  "createdAt": getattr(old, "created_at", "")}
        found = facets(text)
        if found:
            record["facets"] = found
        reply = getattr(old, "reply", None)
        if reply is not None:
            record["reply"] = reply.model_dump(by_alias=True, exclude_none=True)
        await m.client.com.atproto.repo.put_record(models.ComAtprotoRepoPutRecord.Data(
            repo=did, collection=collection, rkey=rkey,
            record=get_or_create(record, models.AppBskyFeedPost.Record, strict=False)))

    async def like_as_member(self, author: str, uri: str) -> str:
        """Like the post *uri* as *author*; the like's own URI."""
        m = await self.member(author)
        ref = await self._strong_ref(uri)
        record = models.AppBskyFeedLike.Record(
            subject=models.ComAtprotoRepoStrongRef.Main(uri=ref["uri"], cid=ref["cid"]),
            created_at=datetime.now(UTC).isoformat())
        return str((await m.client.app.bsky.feed.like.create(m.account.did, record)).uri)

    async def unlike_as_member(self, author: str, like_uri: str) -> None:
        m = await self.member(author)
        await m.client.app.bsky.feed.like.delete(m.account.did, split_uri(like_uri)[2])

    async def delete_as_member(self, native_id: str) -> None:
        await self._owner(native_id).client.delete_post(native_id)

    # ------------------------------------------------------------ what the network shows
    async def _read_log(self) -> None:
        """Follow the PDS's firehose from its first event, for the whole run."""
        assert self._http is not None
        while True:
            base = self.server.listen_url.replace("http", "ws", 1)
            url = f"{base}/xrpc/com.atproto.sync.subscribeRepos?cursor={self._log.seq}"
            try:
                async with self._http.ws_connect(url) as ws:
                    async for msg in ws:
                        if msg.type == aiohttp.WSMsgType.BINARY:
                            self._note(msg.data)
            except (aiohttp.ClientError, OSError):
                pass
            await asyncio.sleep(0.2)

    def _note(self, frame: bytes) -> None:
        header, body = libipld.decode_dag_cbor_multi(frame)[:2]
        if header.get("t") != "#commit":
            return
        self._log.seq = max(self._log.seq, int(body.get("seq", 0)))
        blocks = libipld.decode_car(body["blocks"])[1] if body.get("blocks") else {}
        for op in body.get("ops") or []:
            if not str(op.get("path", "")).startswith(POST + "/"):
                continue
            uri = f"at://{body['repo']}/{op['path']}"
            if op["action"] == "create":
                self._log.order.setdefault(uri, body["seq"])
            elif op["action"] == "update":
                self._log.updated.add(uri)
            elif op["action"] == "delete":
                self._log.deleted.add(uri)
            rec = blocks.get(op.get("cid")) if op.get("cid") else None
            if isinstance(rec, dict):
                self._log.last[uri] = rec

    async def _records(self, did: str) -> dict[str, dict[str, Any]]:
        assert self._http is not None
        out: dict[str, dict[str, Any]] = {}
        cursor = ""
        while True:
            params = {"repo": did, "collection": POST, "limit": "100"}
            if cursor:
                params["cursor"] = cursor
            async with self._http.get(
                    f"{self.server.listen_url}/xrpc/com.atproto.repo.listRecords",
                    params=params) as r:
                page = await r.json()
            for item in page.get("records") or []:
                out[item["uri"]] = item["value"]
            cursor = page.get("cursor") or ""
            if not cursor or not page.get("records"):
                return out

    async def messages(self) -> list[SandboxMessage]:
        assert self.bot is not None
        tag = self.hashtag.casefold()
        handles = {self.bot.did: self.bot.handle,
                   **{m.account.did: m.account.handle for m in self._members.values()}}
        shown: dict[str, tuple[dict[str, Any], bool]] = {}
        for did in handles:
            for uri, value in (await self._records(did)).items():
                shown[uri] = (value, False)
        # the bridge's deleted posts leave a trace in the PDS's event log
        for uri in self._log.deleted:
            if uri.startswith(f"at://{self.bot.did}/") and uri in self._log.last:
                shown.setdefault(uri, (self._log.last[uri], True))
        out = []
        for uri, (value, deleted) in shown.items():
            did = split_uri(uri)[0]
            by_bridge = did == self.bot.did
            text = str(value.get("text", ""))
            if not by_bridge and f"#{tag}" not in text.casefold() and tag not in [
                    str(t).casefold() for t in value.get("tags") or []]:
                continue
            parent = ((value.get("reply") or {}).get("parent") or {}).get("uri")
            pings = tuple(handles.get(d, d) for d in _mentioned(value))
            out.append((self._log.order.get(uri, 1 << 60), str(value.get("createdAt", "")),
                        SandboxMessage(native_id=uri, author=handles.get(did, did), text=text,
                                       by_bridge=by_bridge, reply_to=parent,
                                       edited=uri in self._log.updated, deleted=deleted,
                                       key=str(value.get(KEY_FIELD, "")),
                                       media=_media(value), pings=pings)))
        out.sort(key=lambda t: (t[0], t[1]))
        return [m for _, _, m in out]

    async def settled(self, timeout: float = 5.0) -> None:
        """Wait until the event log has read everything the PDS has sent so far."""
        assert self._http is not None
        deadline = asyncio.get_running_loop().time() + timeout
        last = -1
        while asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.2)
            if self._log.seq == last:
                return
            last = self._log.seq


def _loopback(url: str) -> str:
    """The PDS names itself ``localhost``; the account is configured with the address."""
    return url.replace("://localhost:", "://127.0.0.1:", 1)


def _mentioned(record: Mapping[str, Any]) -> list[str]:
    """DIDs a post's mention facets point at: Bluesky notifies each of them."""
    out: list[str] = []
    for facet in record.get("facets") or []:
        for feature in (facet.get("features") or []) if isinstance(facet, dict) else []:
            if isinstance(feature, dict) and feature.get("$type") == \
                    "app.bsky.richtext.facet#mention" and feature.get("did"):
                out.append(str(feature["did"]))
    return out


def _media(record: Mapping[str, Any]) -> tuple[SandboxMedia, ...]:
    """The images of a post (directly, or beside a quote) as the app shows them."""
    embed = record.get("embed")
    if not isinstance(embed, dict):
        return ()
    if isinstance(embed.get("media"), dict):  # app.bsky.embed.recordWithMedia
        embed = embed["media"]
    out = []
    for img in embed.get("images") or []:
        if not isinstance(img, dict):
            continue
        raw = img.get("image")
        blob: dict[str, Any] = raw if isinstance(raw, dict) else {}
        size = blob.get("size")
        out.append(SandboxMedia(media_type=str(blob.get("mimeType", "")),
                                alt_text=str(img.get("alt", "")),
                                size=size if isinstance(size, int) else None))
    return tuple(out)
