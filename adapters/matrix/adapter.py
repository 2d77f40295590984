"""The Matrix adapter: a sync loop for inbound, one-attempt sends for outbound."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import secrets
import time
from collections import OrderedDict
from typing import Any

import aiohttp
from nio import (
    ErrorResponse,
    JoinedMembersResponse,
    JoinResponse,
    MessageDirection,
    RoomGetEventResponse,
    RoomMessagesResponse,
    RoomSendResponse,
    SyncResponse,
)

from adapters.matrix import convert
from adapters.matrix.appservice import Ghosts, Listener
from adapters.matrix.client import RawApi, Session, error_from, network_error, q
from adapters.matrix.config import MatrixAccount, MatrixChannel
from adapters.matrix.outbound import Outbound
from bridge.contract.adapter import (
    AdapterContext,
    AuthError,
    Capabilities,
    ChannelSpec,
    Health,
    SendReaction,
    TextFormat,
    TransientError,
    Unsupported,
    UnsupportedKind,
    check_size,
    read_guarded,
)
from bridge.contract.media import MediaFetcher, MediaSource, host_entry
from bridge.contract.model import (
    Author,
    ChannelKey,
    Deleted,
    InboundEvent,
    NativeId,
    Reacted,
    Rejected,
)
from bridge.contract.services import Services

MEDIA_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "video/mp4",
                         "video/webm", "audio/ogg", "audio/mpeg", "application/pdf"})
CURSOR = "next_batch"
AS_CURSOR = "as_txn"
REACTIONS = "reactions"
"""Account-state namespace of the reactions shown natively: ``room post key``
(plus the reactor in appservice mode) -> the annotation's event, its sender and
the reactors it stands for."""


def _started(key: ChannelKey) -> str:
    """The cursor saying the channel's first start is done (its history read)."""
    return f"started:{key}"
MAX_EVENT_BYTES = 65536
"""The spec's cap on a whole event (canonical JSON, signatures included)."""


class MatrixAdapter(Outbound):
    def __init__(self, account: MatrixAccount, channels: tuple[ChannelSpec, ...],
                 services: Services | None = None) -> None:
        self.account = account
        self.channels = {c.key: c for c in channels}
        self.session: Session | None = None
        self.ghosts: Ghosts | None = None
        self.room_of: dict[ChannelKey, str] = {}
        self.channel_of: dict[str, ChannelKey] = {}
        self.encrypted: set[str] = set()
        self._ready = asyncio.Event()
        self._homeserver_back = asyncio.Event()
        self._senders: OrderedDict[str, str] = OrderedDict()
        self._reactions: OrderedDict[str, None] = OrderedDict()
        """Reactions read in this run (their redaction takes them back)."""
        self._names: dict[tuple[str, str], str] = {}
        self._txn_lock = asyncio.Lock()
        self._last_txn: str | None = None
        self._cutoff: dict[ChannelKey, float] = {}
        """Per channel: events older than this (ms) are history not relayed; set
        only until the channel's first start has read its history."""
        self.auth_failure: AuthError | None = None
        self.log = logging.getLogger("hashbridge.adapter.matrix")
        self.ctx: AdapterContext | None = None
        media = (services if services is not None else Services()).media_sources
        media.register(self.channels, self.media_source)
        self.media = MediaFetcher(media, self.log)

    def media_source(self) -> MediaSource:
        """Posts from Matrix carry the homeserver's authenticated media: fetched from
        the homeserver only, with this account's token (sent to no other host)."""
        a = self.account
        token = self.session.client.access_token if self.session is not None else ""
        token = token or (a.as_token if a.mode == "appservice" else a.access_token)
        return MediaSource(hosts=frozenset({host_entry(a.homeserver), *a.media_hosts}),
                           allow_private=a.allow_private_media_hosts,
                           auth_origin=a.homeserver,
                           auth_headers={"Authorization": f"Bearer {token}"} if token else {})

    # ------------------------------------------------------------ inbound
    async def run(self, ctx: AdapterContext) -> None:
        self.ctx = ctx
        self.log = logging.getLogger(f"hashbridge.adapter.matrix.{ctx.name}")
        self.media.log = self.log
        ctx.set_health(Health.STARTING)
        self.auth_failure = None
        # Fixed at start: the window bounds a channel's first catch-up (its
        # history), never live events nor a later start's catch-up.
        now = time.time()
        self._cutoff = {}
        for key, spec in self.channels.items():
            if await ctx.get_cursor(_started(key)) is None:
                self._cutoff[key] = (now - spec.catchup_window) * 1000
        self.session = Session(self.account, ctx.data_dir, ctx.name, self.log)
        try:
            try:
                await self.session.open()
            except AuthError as e:
                ctx.set_health(Health.BAD_CREDENTIALS, str(e))
                raise
            await self._join_rooms()
            await self._load_members()
            if self.account.mode == "appservice":
                await self._serve_appservice(ctx)
            else:
                self._ready.set()
                await self._sync_forever(ctx)
        except AuthError as e:
            self.auth_failure = e     # sends say so too, until a restart logs in again
            raise
        finally:
            self._ready.clear()
            await self.session.close()

    async def _serve_appservice(self, ctx: AdapterContext) -> None:
        self.ghosts = Ghosts(RawApi(ctx.http, self.account.homeserver, self.account.as_token),
                             self.account)
        self._last_txn = await ctx.get_cursor(AS_CURSOR)
        listener = Listener(self.account, self._on_transaction, self.log)
        await listener.start()
        try:
            self._ready.set()
            ctx.set_health(Health.CONNECTED)
            await asyncio.Event().wait()      # transactions arrive through the listener
        finally:
            await listener.stop()

    async def _on_transaction(self, txn: str, events: list[dict[str, Any]]) -> None:
        assert self.ctx is not None
        async with self._txn_lock:
            if txn == self._last_txn:
                return                        # a resend of what we already persisted
            out: list[InboundEvent] = []
            for raw in events:
                room_id = raw.get("room_id")
                key = self.channel_of.get(room_id) if isinstance(room_id, str) else None
                if key is None or room_id is None:
                    continue
                self._track_state(room_id, raw)
                ev = await self._inbound(raw, key, room_id, self._cutoff.get(key, 0.0))
                if ev is not None:
                    out.append(ev)
            if out:
                await self.ctx.emit_many(out, cursor=(AS_CURSOR, txn))
            else:
                await self.ctx.set_cursor(AS_CURSOR, txn)
            self._last_txn = txn
            await self._first_start_done()

    async def _first_start_done(self) -> None:
        """The channels whose first start just read their history: from now on a
        start resumes from the cursor, however long the bridge was down."""
        assert self.ctx is not None
        for key in list(self._cutoff):
            await self.ctx.set_cursor(_started(key), "1")
            del self._cutoff[key]

    def _track_state(self, room_id: str, raw: dict[str, Any]) -> None:
        etype, content = raw.get("type"), raw.get("content")
        if etype == "m.room.encryption":
            self.encrypted.add(room_id)
        elif etype == "m.room.member" and isinstance(content, dict):
            uid = raw.get("state_key")
            if not isinstance(uid, str):
                return
            if content.get("membership") == "join":
                name = content.get("displayname")
                self._names[(room_id, uid)] = name if isinstance(name, str) else ""
            else:
                self._names.pop((room_id, uid), None)

    async def _load_members(self) -> None:
        assert self.session is not None
        for room_id in self.channel_of:
            r = await self.session.client.joined_members(room_id)
            if isinstance(r, JoinedMembersResponse):
                for m in r.members:
                    self._names[(room_id, m.user_id)] = m.display_name or ""

    async def _join_rooms(self) -> None:
        assert self.session is not None
        client = self.session.client
        for key, spec in self.channels.items():
            assert isinstance(spec.options, MatrixChannel)  # the config validated it so
            room = spec.options.room
            resp = await client.join(room)
            if not isinstance(resp, JoinResponse):
                raise RuntimeError(f"cannot join {room} (invite the bot?): {resp}")
            self.room_of[key] = resp.room_id
            self.channel_of[resp.room_id] = key
            enc = await client._send(  # nio has no public "get one state event"
                ErrorResponse, "GET",
                f"/_matrix/client/v3/rooms/{q(resp.room_id)}/state/m.room.encryption/")
            if getattr(getattr(enc, "transport_response", None), "status", 404) == 200:
                self.encrypted.add(resp.room_id)

    def _filter(self) -> dict[str, Any]:
        return {"room": {"rooms": list(self.channel_of),
                         "timeline": {"limit": self.account.timeline_limit},
                         "state": {"lazy_load_members": False}},
                "presence": {"types": []}, "account_data": {"types": []}}

    async def _sync_forever(self, ctx: AdapterContext) -> None:
        assert self.session is not None
        client = self.session.client
        since = await ctx.get_cursor(CURSOR)
        fails = 0
        first = True
        while True:
            # nio gives a full-state sync no timeout at all and a long-poll its
            # timeout + 15 s: bound both, so a stalled or silently dropped
            # connection is noticed (then reconnected) instead of waited on forever.
            limit = self.account.request_timeout if first else \
                self.account.sync_timeout_ms / 1000 + min(15.0, self.account.request_timeout)
            try:
                async with asyncio.timeout(limit):
                    resp = await client.sync(
                        timeout=0 if first else self.account.sync_timeout_ms, since=since,
                        sync_filter=self._filter(), full_state=first)
            except (aiohttp.ClientError, TimeoutError) as e:
                resp = None
                err: Exception = network_error("sync", e, limit)
            if isinstance(resp, SyncResponse):
                events = await self._events_of(resp, since)
                if events:
                    await ctx.emit_many(events, cursor=(CURSOR, resp.next_batch))
                elif resp.next_batch != since:
                    await ctx.set_cursor(CURSOR, resp.next_batch)
                if self._cutoff:
                    await self._first_start_done()
                since, first, fails = resp.next_batch, False, 0
                ctx.set_health(Health.CONNECTED)
                continue
            if resp is not None:
                err = error_from(resp, "sync")
            if isinstance(err, AuthError):
                ctx.set_health(Health.BAD_CREDENTIALS, str(err))
                raise err
            fails += 1
            ctx.set_health(Health.DISCONNECTED, str(err))
            wait = getattr(err, "retry_after", None) or min(60.0, 0.5 * 2 ** min(fails, 7))
            self.log.warning("sync failed (%s); again in %.1fs", err, wait)
            # A send that got through says the homeserver is back: sync then,
            # not at the end of a backoff of up to a minute.
            self._homeserver_back.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._homeserver_back.wait()

    async def _events_of(self, resp: SyncResponse, since: str | None) -> list[InboundEvent]:
        assert self.session is not None and self.ctx is not None
        out: list[InboundEvent] = []
        for room_id, info in resp.rooms.join.items():
            key = self.channel_of.get(room_id)
            if key is None:
                continue
            cutoff = self._cutoff.get(key, 0.0)
            for ev in info.state:
                self._track_state(room_id, ev.source)
            raws = [e.source for e in info.timeline.events]
            if info.timeline.limited and since:
                raws = await self._backfill(room_id, info.timeline.prev_batch, since,
                                            cutoff) + raws
            for raw in raws:
                self._track_state(room_id, raw)
                ev = await self._inbound(raw, key, room_id, cutoff)
                if ev is not None:
                    out.append(ev)
        return out

    async def _backfill(self, room_id: str, start: str, since: str,
                        cutoff: float) -> list[dict[str, Any]]:
        """Events between the last cursor and a truncated (``limited``) timeline."""
        assert self.session is not None
        older: list[dict[str, Any]] = []
        token: str | None = start
        while token:
            r = await self.session.client.room_messages(
                room_id, start=token, end=since, direction=MessageDirection.back, limit=100)
            if not isinstance(r, RoomMessagesResponse):
                raise error_from(r, "backfill")
            chunk = [e.source for e in r.chunk]
            older.extend(chunk)
            if not chunk or r.end is None or r.end == token or any(
                    isinstance(ts := e.get("origin_server_ts"), int) and ts < cutoff
                    for e in chunk):
                break
            token = r.end
        older.reverse()
        self.log.info("backfilled %d events after a gap in %s", len(older), room_id)
        return older

    async def _inbound(self, raw: dict[str, Any], key: ChannelKey, room_id: str,
                       cutoff: float) -> InboundEvent | None:
        assert self.session is not None and self.ctx is not None
        sender = raw.get("sender")
        eid = raw.get("event_id")
        if isinstance(sender, str) and isinstance(eid, str):
            self._remember(eid, sender)
        if sender == self.account.user_id or (self.ghosts and self.ghosts.is_ghost(str(sender))):
            return None
        ts = raw.get("origin_server_ts")
        if isinstance(ts, int) and ts < cutoff:
            return None
        size = _event_size(raw)
        # Read on the loop (nio's room state is the loop's), converted maybe in a thread.
        name = self._display_name(room_id, str(sender))
        res = await read_guarded(functools.partial(self._read_event, raw, key, room_id, size,
                                                   name),
                                 channel=key, native_id=eid if isinstance(eid, str) else "?",
                                 logger=self.log, size=size)
        match res:
            case Rejected():
                return res
            case Unsupported(kind=kind, reason=reason):
                if kind is UnsupportedKind.MALFORMED:
                    self.log.info("not relayed: %s", reason)
                return None
            case convert.EditOf(event, edit_sender):
                if await self._sender_of(room_id, event.native_id) != edit_sender:
                    return None  # only the author may edit (spec: same sender)
                return event
            case Reacted():
                self._reactions[res.reaction_id] = None
                while len(self._reactions) > 5000:
                    self._reactions.popitem(last=False)
                return res
            case Deleted() if await self._is_reaction(room_id, res.native_id):
                # a reaction taken back: found by its own id
                return Reacted(channel=key, native_id=NativeId(""), added=False,
                               reactor=Author(platform="matrix", handle=str(sender)),
                               reaction_id=res.native_id)
            case _:
                target = res.native_id
                if await self.ctx.is_own(key, target):
                    return None  # a moderator redacting our copy must not delete the origin
                return res

    def _read_event(self, raw: dict[str, Any], key: ChannelKey, room_id: str,
                    size: int, display_name: str) -> convert.Inbound:
        """The pure part of reading one event (run guarded: whatever it raises
        costs this event only)."""
        check_size(size, MAX_EVENT_BYTES, "Matrix events are at most")
        return convert.parse_event(raw, channel=key, room_id=room_id,
                                   homeserver=self.account.homeserver,
                                   display_name=display_name,
                                   max_media_bytes=self.account.max_media_bytes)

    async def _is_reaction(self, room_id: str, event_id: str) -> bool:
        """Whether *event_id* is a reaction (its redaction takes the reaction
        back): known from this run, else asked of the homeserver (a redacted
        event keeps its type)."""
        if event_id in self._reactions:
            return True
        if event_id in self._senders:
            return False  # seen in this run, and not a reaction
        assert self.session is not None
        r = await self.session.client.room_get_event(room_id, event_id)
        return isinstance(r, RoomGetEventResponse) and \
            r.event.source.get("type") == "m.reaction"

    # ------------------------------------------------------------ native reactions
    async def react(self, op: SendReaction) -> None:
        """Show a reaction read in another room this account serves: as the bot
        (one annotation per post and key, redacted when the last reactor it stands
        for takes theirs back), or as the reactor's ghost in appservice mode.  One
        attempt; the core logs a failure and does not retry."""
        assert self.ctx is not None
        room_id = self.room_of.get(op.channel)
        if room_id is None or self.session is None or not self._ready.is_set():
            raise TransientError("matrix: not connected")
        ghost = self.ghosts is not None
        state_key = f"{room_id} {op.native_id} {op.key}" + (f" {op.reactor}" if ghost else "")
        raw = await self.ctx.state.get(REACTIONS, state_key)
        held: dict[str, Any] = json.loads(raw) if raw else {}
        by: list[str] = held.get("by", [])
        if op.added:
            if op.reactor in by:
                return
            if not held:
                sender = None
                if self.ghosts is not None and op.author is not None:
                    sender = await self.ghosts.ensure(op.author, "Matrix", room_id)
                elif self.ghosts is not None:
                    return
                eid = await self._annotate(room_id, op.native_id, op.key, sender)
                held = {"event": eid, "sender": sender or ""}
            held["by"] = [*by, op.reactor]
            await self.ctx.state.put(REACTIONS, state_key, json.dumps(held))
            return
        if op.reactor not in by:
            return
        by.remove(op.reactor)
        if by:
            await self.ctx.state.put(REACTIONS, state_key, json.dumps({**held, "by": by}))
            return
        await self._redact(room_id, held["event"], f"reaction {held['event']}",
                           held.get("sender") or None)
        await self.ctx.state.delete(REACTIONS, [state_key])

    async def _annotate(self, room_id: str, target: str, key: str, sender: str | None
                        ) -> str:
        content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": key}}
        txn = "hb" + secrets.token_hex(20)  # never retried: a fresh one each time
        if sender is not None:
            assert self.ghosts is not None
            r = await self.ghosts.api.call(
                "PUT", f"/_matrix/client/v3/rooms/{q(room_id)}/send/m.reaction/{txn}",
                content, user_id=sender, what="ghost reaction")
            return str(r["event_id"])
        assert self.session is not None
        resp = await self.session.client.room_send(room_id, "m.reaction", content, tx_id=txn)
        if isinstance(resp, RoomSendResponse):
            return str(resp.event_id)
        raise error_from(resp, "reaction")

    def _remember(self, event_id: str, sender: str) -> None:
        self._senders[event_id] = sender
        if len(self._senders) > 5000:
            self._senders.popitem(last=False)

    async def _sender_of(self, room_id: str, event_id: str) -> str | None:
        if event_id in self._senders:
            return self._senders[event_id]
        assert self.session is not None
        r = await self.session.client.room_get_event(room_id, event_id)
        if isinstance(r, RoomGetEventResponse):
            sender = str(r.event.sender)
            self._remember(event_id, sender)
            return sender
        return None

    def _display_name(self, room_id: str, sender: str) -> str:
        # nio keeps members from the synced room state: no profile requests, which
        # Synapse rate-limits (rc_profile).
        assert self.session is not None
        room = self.session.client.rooms.get(room_id)
        user = room.users.get(sender) if room else None
        if user is not None:
            return user.display_name or ""
        return self._names.get((room_id, sender), "")

    # ------------------------------------------------------------ outbound
    def capabilities(self, channel: ChannelKey) -> Capabilities:
        # "No practical limit": a 64 KiB event cap, declared in UTF-8 bytes so the core
        # splits long posts into parts that fit with their HTML (compose.fit is the net).
        return Capabilities(max_length=24000, count=_utf8_len, text_format=TextFormat.HTML,
                            edit=True, delete=True, reply=True, threads=True, formatted=True,
                            media_types=MEDIA_TYPES,
                            max_media_bytes=self.account.max_media_bytes, max_attachments=4)

    def _members(self, room_id: str) -> frozenset[str]:
        assert self.session is not None
        room = self.session.client.rooms.get(room_id)
        synced = set(room.users) if room else set()
        return frozenset(synced | {u for (r, u) in self._names if r == room_id})


def _event_size(raw: Any) -> int:
    """The event's size as the spec measures it (compact JSON in UTF-8, without
    the ``unsigned`` block the server adds for clients)."""
    try:
        body = {k: v for k, v in raw.items() if k != "unsigned"} if isinstance(raw, dict) \
            else raw
        return len(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode())
    except (TypeError, ValueError, RecursionError):
        return 0


def _utf8_len(text: str) -> int:
    return len(text.encode())
