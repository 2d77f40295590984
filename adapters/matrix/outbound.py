"""Outbound half of the Matrix adapter: one attempt per ``send``, deterministic
transaction ids, ghosts in appservice mode, media through the content repository."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from nio import RoomRedactResponse, RoomSendResponse, UploadResponse

from adapters.matrix import compose, convert
from adapters.matrix.appservice import Ghosts
from adapters.matrix.client import Session, error_from, network_error, q
from adapters.matrix.config import MatrixAccount, MatrixChannel
from bridge.contract.adapter import (
    AdapterContext,
    AuthError,
    ChannelSpec,
    PermanentError,
    SendCreate,
    SendDelete,
    SendEdit,
    SendOp,
    SendResult,
    TransientError,
)
from bridge.contract.media import Fetched, MediaFetcher, with_notes
from bridge.contract.model import ChannelKey, NativeId


class Outbound:
    """Mixed into :class:`~adapters.matrix.adapter.MatrixAdapter`, which owns the state."""

    account: MatrixAccount
    channels: dict[ChannelKey, ChannelSpec]
    session: Session | None
    ghosts: Ghosts | None
    ctx: AdapterContext | None
    room_of: dict[ChannelKey, str]
    encrypted: set[str]
    _ready: asyncio.Event
    _homeserver_back: asyncio.Event
    auth_failure: AuthError | None
    media: MediaFetcher

    def _members(self, room_id: str) -> frozenset[str]:
        raise NotImplementedError

    async def send(self, op: SendOp) -> SendResult:
        if self.auth_failure is not None:
            raise AuthError(f"matrix: {self.auth_failure}")
        if not self._ready.is_set() or self.session is None:
            raise TransientError("matrix: not connected yet", retry_after=1.0)
        room_id = self.room_of.get(op.channel)
        if room_id is None:
            raise PermanentError(f"matrix: unknown channel {op.channel}")
        if room_id in self.encrypted and not (self.account.e2e and self.session.client.olm):
            raise PermanentError(
                f"matrix: room {room_id} is end-to-end encrypted and e2e is not configured; "
                "refusing to send plaintext")
        origin = {"post": str(op.post.id), "platform": op.post.author.platform,
                  "url": op.post.permalink}
        sender = await self._sender_for(op, room_id)
        match op:
            case SendCreate():
                return await self._create(op, room_id, origin, sender)
            case SendEdit():
                content = compose.edit_content(op.rendered, op.native_id, origin=origin)
                await self._put(room_id, content, compose.txn_id(op.idempotency_key), sender)
                return SendResult()
            case SendDelete():
                # the media events of the copy first, each with its own txn id
                for i, extra in enumerate(op.extra_native_ids):
                    await self._redact(room_id, extra, f"{op.idempotency_key}.m{i}", sender)
                await self._redact(room_id, op.native_id, op.idempotency_key, sender)
                return SendResult()

    async def _sender_for(self, op: SendOp, room_id: str) -> str | None:
        """The ghost to post as (appservice mode), None for the bot itself."""
        notice = op.post.is_notice or (not isinstance(op, SendDelete) and op.rendered.is_notice)
        if self.ghosts is None or notice:
            return None
        network = op.origin_network or op.post.author.platform.capitalize()
        return await self.ghosts.ensure(op.post.author, network, room_id)

    async def _create(self, op: SendCreate, room_id: str, origin: dict[str, str],
                      sender: str | None) -> SendResult:
        spec = self.channels[op.channel].options
        thread = op.thread_root if isinstance(spec, MatrixChannel) and spec.threads else None
        rendered = op.rendered
        fetched: tuple[Fetched, ...] = ()
        if rendered.attachments:
            # From the origin's hosts only, within this account's upload limit;
            # what is left out is named in the text.
            batch = await self.media.fetch_all(op.idempotency_key, op.post.origin_channel,
                                               rendered.attachments,
                                               max_bytes=self.account.max_media_bytes)
            rendered, fetched = with_notes(rendered, batch.notes), batch.fetched
        # m.mentions stays empty: a relayed message pings nobody in the room
        # (the renderer left no pill in the formatted body either).
        content: dict[str, Any] | None = compose.message_content(
            rendered, reply_to=op.reply_to, thread_root=thread, origin=origin)
        extra: list[NativeId] = []
        if not rendered.plain.strip() and fetched:
            content = None  # media only: the first upload is the message
        for i, att in enumerate(op.rendered.attachments):
            # The attachment's place in the post keeps its transaction id stable.
            got = next((f for f in fetched if f.attachment is att), None)
            if got is not None:
                extra.append(await self._send_media(op, i, got, room_id, origin, sender))
        if content is None:
            return SendResult(native_id=extra[0], extra_native_ids=tuple(extra[1:]),
                              permalink=convert.permalink(room_id, extra[0]))
        eid = await self._put(room_id, content, compose.txn_id(op.idempotency_key), sender)
        return SendResult(native_id=eid, permalink=convert.permalink(room_id, eid),
                          extra_native_ids=tuple(extra))

    async def _put(self, room_id: str, content: dict[str, Any], txn: str,
                   sender: str | None) -> NativeId:
        assert self.session is not None
        if sender is not None:
            assert self.ghosts is not None
            try:
                r = await self.ghosts.api.call(
                    "PUT", f"/_matrix/client/v3/rooms/{q(room_id)}/send/m.room.message/{txn}",
                    content, user_id=sender, what="ghost send")
            except PermanentError:
                self.ghosts.forget(sender, room_id)
                raise
            return NativeId(r["event_id"])
        try:
            resp = await self.session.client.room_send(room_id, "m.room.message", content,
                                                       tx_id=txn)
        except (aiohttp.ClientError, TimeoutError) as e:
            raise network_error("send", e, self.account.request_timeout) from e
        if isinstance(resp, RoomSendResponse):
            self._homeserver_back.set()
            return NativeId(resp.event_id)
        raise error_from(resp, "send")

    async def _redact(self, room_id: str, event_id: str, key: str, sender: str | None) -> None:
        assert self.session is not None
        txn = compose.txn_id(key, "redact")
        if sender is not None:
            assert self.ghosts is not None
            await self.ghosts.api.call(
                "PUT", f"/_matrix/client/v3/rooms/{q(room_id)}/redact/{q(event_id)}/{txn}",
                {"reason": "deleted on origin"}, user_id=sender, what="ghost redact")
            return
        try:
            resp = await self.session.client.room_redact(room_id, event_id,
                                                         reason="deleted on origin", tx_id=txn)
        except (aiohttp.ClientError, TimeoutError) as e:
            raise network_error("redact", e, self.account.request_timeout) from e
        if not isinstance(resp, RoomRedactResponse):
            raise error_from(resp, "redact")

    async def _send_media(self, op: SendCreate, i: int, got: Fetched, room_id: str,
                          origin: dict[str, str], sender: str | None) -> NativeId:
        assert self.session is not None
        att, data = got.attachment, got.data
        up, _ = await self.session.client.upload(
            lambda *_: data, content_type=att.media_type,
            filename=att.filename or "attachment", filesize=len(data))
        if not isinstance(up, UploadResponse):
            raise error_from(up, "upload")
        content = compose.media_content(att, up.content_uri, len(data), origin=origin)
        return await self._put(room_id, content, compose.txn_id(op.idempotency_key, f"m{i}"),
                               sender)
