"""The Mastodon adapter: a hashtag followed through the SSE stream plus REST
catch-up, and posts, replies, edits, deletes and media sent with Mastodon.py.

Mastodon.py is synchronous (requests): every call runs through
``asyncio.to_thread`` with ``ratelimit_method="throw"`` so it never sleeps; the
core's worker does the waiting.  The stream is read with aiohttp directly, not
with Mastodon.py's ``stream_hashtag``: its reader is a thread blocked on a
socket that cannot be cancelled (closing it from the loop blocks, see the
emulator tests) and it has no idle timeout, so a silently dropped stream would
never be noticed.  With aiohttp the stream is an ordinary cancellable task with
a read timeout.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp
from mastodon import Mastodon, MastodonError

from adapters.mastodon import recheck
from adapters.mastodon.client import Gone, map_error
from adapters.mastodon.compose import edit_params, reply_visibility, status_params
from adapters.mastodon.config import BOT_FLAG_HOWTO, MastodonAccount, MastodonChannel
from adapters.mastodon.convert import (
    InstanceLimits,
    id_key,
    parse_edit,
    parse_favourite,
    parse_instance,
    parse_status,
    parse_stream_event,
    status_length,
)
from bridge.contract.adapter import (
    AdapterContext,
    AuthError,
    Capabilities,
    ChannelSpec,
    Health,
    PermanentError,
    SendCreate,
    SendDelete,
    SendEdit,
    SendOp,
    SendResult,
    TextFormat,
    TooLarge,
    TransientError,
    Unsupported,
    UnsupportedKind,
    check_size,
    read_guarded,
    rejection,
)
from bridge.contract.media import (
    Fetched,
    MediaFetcher,
    MediaSource,
    host_entry,
    with_notes,
)
from bridge.contract.mentions import neutralise_mastodon
from bridge.contract.model import (
    Attachment,
    ChannelKey,
    Deleted,
    Edited,
    InboundEvent,
    NativeId,
    Posted,
    Rejected,
)
from bridge.contract.services import Services

PAGE = 40  # the largest page the tag timeline serves
_SEEN = 2000  # ids remembered per channel so stream and catch-up never emit twice
MAX_HTML_BYTES = 1024 * 1024
"""A generous cap on one post's HTML (content plus content warning): Mastodon
itself fetches a remote object of at most 1 MiB, and its own posts are a few
thousand characters.  A larger one is rejected unread."""
MAX_STREAM_LINE = MAX_HTML_BYTES + 256 * 1024
"""The longest stream line read: a post at the HTML cap with its account and
attachments; a longer one is rejected from its head (aiohttp's own line limit,
512 KiB, would raise out of the stream instead)."""
_STREAM_ID = re.compile(r'"id"\s*:\s*"?([0-9A-Za-z_-]{1,64})')


def window_start_id(at: float) -> str:
    """The smallest status id a post made at *at* (Unix seconds) can have: Mastodon
    ids are snowflakes, ``(milliseconds since the epoch) << 16`` plus a sequence,
    so ``min_id`` of this reads the timeline from that moment on, oldest first."""
    return str(max(0, int(at * 1000)) << 16)


def _status_id(status: Any) -> str:
    sid = status.get("id") if isinstance(status, Mapping) else None
    return str(sid) if isinstance(sid, str | int) and not isinstance(sid, bool) and sid != "" \
        else ""


def _check_html_size(status: Any) -> None:
    if not isinstance(status, Mapping):
        return
    size = sum(len(v.encode("utf-8", "surrogatepass")) for k in ("content", "spoiler_text")
               if isinstance(v := status.get(k), str))
    check_size(size, MAX_HTML_BYTES, "a Mastodon post's HTML is taken up to")


class MastodonAdapter:
    def __init__(self, account: MastodonAccount, channels: tuple[ChannelSpec, ...], *,
                 name: str = "mastodon", services: Services | None = None) -> None:
        self._acc = account
        self._channels = {c.key: c for c in channels}
        self._log = logging.getLogger(f"hashbridge.adapter.mastodon.{name}")
        self._client: Mastodon | None = None
        self._ctx: AdapterContext | None = None
        self._me: Mapping[str, Any] | None = None
        self._limits: InstanceLimits | None = None
        self._streaming_base = account.streaming_url.rstrip("/")
        # Mastodon.py keeps the last rate-limit headers on the client object:
        # one call at a time keeps them paired with the call that got them.
        self._call_lock = asyncio.Lock()
        self._chan_locks: dict[ChannelKey, asyncio.Lock] = {}
        self._seen: dict[ChannelKey, OrderedDict[str, None]] = {}
        self._visibility: OrderedDict[str, tuple[str, str]] = OrderedDict()
        """(visibility, author acct) of statuses we posted or read, for replies."""
        self._defaults_given = False
        self._api_problem = ""
        self._recheck: recheck.Recheck | None = None
        self._recheck_tasks: dict[ChannelKey, asyncio.Task[None]] = {}
        media = (services if services is not None else Services()).media_sources
        media.register((c.key for c in channels), self.media_source)
        self._media = MediaFetcher(media, self._log)

    def media_source(self) -> MediaSource:
        """Where this instance's attachments may come from: the instance itself, the
        host its files are served from (learned from ``/api/v2/instance``), and the
        account's ``media_hosts``."""
        learned = self._limits.media_hosts if self._limits else frozenset()
        return MediaSource(hosts=frozenset({host_entry(self._acc.base_url), *learned,
                                            *self._acc.media_hosts}),
                           allow_private=self._acc.allow_private_media_hosts)

    # ------------------------------------------------------------ plumbing
    @property
    def client(self) -> Mastodon:
        if self._client is None:
            self._client = Mastodon(access_token=self._acc.access_token,
                                    api_base_url=self._acc.base_url, ratelimit_method="throw",
                                    version_check_mode="none",
                                    request_timeout=self._acc.request_timeout,
                                    user_agent="hashbridge")
        return self._client

    async def _call(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """One Mastodon.py call in a thread; failures mapped, headers reported."""
        async with self._call_lock:
            try:
                result = await asyncio.to_thread(fn, *args, **kw)
            except MastodonError as exc:
                err = map_error(exc, self.client.ratelimit_reset)
                if isinstance(err, TransientError):
                    self._api_health(str(err))
                raise err from exc
            finally:
                c = self.client
                if self._ctx is not None and c.ratelimit_reset:
                    self._ctx.rate_limit(remaining=c.ratelimit_remaining,
                                         reset_at=float(c.ratelimit_reset),
                                         limit=c.ratelimit_limit)
            self._api_health("")
            return result

    def _api_health(self, problem: str) -> None:
        """The REST API failing (5xx, 429, no connection) is an outage even while
        the stream stays open: say so in the health, and say when it is over
        (which also sends the deliveries that waited, at once)."""
        if self._ctx is None or problem == self._api_problem:
            return
        self._api_problem = problem
        if problem:
            self._ctx.set_health(Health.DISCONNECTED, f"API: {problem}")
        else:
            self._ctx.set_health(Health.CONNECTED)

    async def _ensure_instance(self) -> InstanceLimits:
        if self._limits is None:
            data = await self._call(self.client.instance_v2)
            self._limits = parse_instance(data)
            if not self._streaming_base:
                ws = str(((data.get("configuration") or {}).get("urls") or {})
                         .get("streaming") or "")
                self._streaming_base = (ws.replace("wss://", "https://", 1)
                                        .replace("ws://", "http://", 1).rstrip("/")
                                        or self._acc.base_url)
            self._log.info("instance %s: %d characters, URLs weigh %d",
                           self._limits.version, self._limits.max_characters,
                           self._limits.url_weight)
        return self._limits

    def capabilities(self, channel: ChannelKey) -> Capabilities:
        # Before the instance answered, Mastodon's documented defaults stand in;
        # the worker re-reads capabilities on every pass.
        lim = self._limits
        if lim is None:
            self._defaults_given = True
            lim = parse_instance({})
        return Capabilities(
            max_length=lim.max_characters,
            count=functools.partial(status_length, url_weight=lim.url_weight),
            neutralise=neutralise_mastodon,
            text_format=TextFormat.PLAIN, edit=True, delete=True, reply=True, threads=True,
            media_types=lim.media_types, max_media_bytes=lim.image_size_limit,
            max_attachments=lim.max_media_attachments, needs_hashtag=True, streaming=True)

    # ------------------------------------------------------------ inbound
    async def run(self, ctx: AdapterContext) -> None:
        self._ctx = ctx
        self._log = ctx.logger
        self._me = await self._call(self.client.account_verify_credentials)
        await self._ensure_instance()
        if not self._me.get("bot"):
            self._log.warning("@%s is not flagged as a bot: %s", self._me.get("acct"),
                              BOT_FLAG_HOWTO)
        ctx.set_health(Health.CONNECTED)
        reading = [c for c in self._channels.values() if c.direction in ("both", "in")]
        try:
            async with asyncio.TaskGroup() as tg:
                for ch in reading:
                    for spec in (ch, *self._also(ch)):
                        tag = self._opts(spec).hashtag
                        tg.create_task(self._follow(spec),
                                       name=f"mastodon-stream-{ch.key}-{tag}")
                        tg.create_task(self._sweep(spec), name=f"mastodon-sweep-{ch.key}-{tag}")
                if reading:
                    # !join/!leave usually come as a mention without the tag: read
                    # the bridge's mentions too (commands only; the account-wide
                    # consent lands on the first channel that reads).
                    tg.create_task(self._mentions(reading[0]), name="mastodon-mentions")
                if self._channels:
                    tg.create_task(self._favourites(), name="mastodon-favourites")
                else:
                    await asyncio.Event().wait()
        finally:
            for task in self._recheck_tasks.values():
                task.cancel()
            self._recheck_tasks.clear()

    def _also(self, ch: ChannelSpec) -> list[ChannelSpec]:
        """The channel once more per ``also_read`` hashtag: one more stream (and
        catch-up) each, read into the same channel."""
        own = self._opts(ch).hashtag.casefold()
        tags = dict.fromkeys(t for t in ch.also_read if t.casefold() != own)
        return [dataclasses.replace(ch, options=self._opts(ch).model_copy(
            update={"hashtag": t})) for t in tags]

    def _cursor_name(self, ch: ChannelSpec) -> str:
        tag = self._opts(ch).hashtag
        main = self._channels.get(ch.key)
        if main is None or self._opts(main).hashtag == tag:
            return f"min_id:{ch.key}"
        return f"min_id:{ch.key}#{tag.casefold()}"  # an also_read hashtag's own cursor

    async def _follow(self, ch: ChannelSpec) -> None:
        """Catch up, then stream until it drops; again, forever."""
        assert self._ctx is not None
        backoff = 1.0
        while True:
            try:
                await self.catch_up(ch)
                await self._stream(ch)
                backoff = 1.0
                self._log.info("stream for #%s ended; catching up and reconnecting",
                               self._opts(ch).hashtag)
            except AuthError:
                raise
            except (TransientError, aiohttp.ClientError, TimeoutError) as exc:
                wait = getattr(exc, "retry_after", None) or backoff
                self._ctx.set_health(Health.DISCONNECTED, f"stream: {exc}")
                self._log.warning("stream for #%s failed (%s); retry in %.0fs",
                                  self._opts(ch).hashtag, exc, wait)
                await asyncio.sleep(wait)
                backoff = min(backoff * 2, 60.0)

    async def _sweep(self, ch: ChannelSpec) -> None:
        """Periodic catch-up: streams can stay open and deliver nothing."""
        delay = self._acc.catchup_interval
        while True:
            await asyncio.sleep(delay)
            delay = self._acc.catchup_interval
            try:
                await self.catch_up(ch)
            except TransientError as exc:
                self._log.info("catch-up for #%s deferred: %s", self._opts(ch).hashtag, exc)
                delay = _hold(delay, exc)

    async def _mentions(self, ch: ChannelSpec) -> None:
        while True:
            delay = self._acc.catchup_interval
            try:
                await self.read_mentions(ch)
            except TransientError as exc:
                self._log.info("reading mentions deferred: %s", exc)
                delay = _hold(delay, exc)
            await asyncio.sleep(delay)

    async def _favourites(self) -> None:
        while True:
            delay = self._acc.catchup_interval
            try:
                await self.read_favourites()
            except TransientError as exc:
                self._log.info("reading favourites deferred: %s", exc)
                delay = _hold(delay, exc)
            await asyncio.sleep(delay)

    async def read_favourites(self) -> int:
        """Emit the favourites of the bridge's copies since the last read (one
        ``GET /api/v1/notifications?types[]=favourite`` a ``catchup_interval``)
        as reactions, on the channel the copy was posted through.  Mastodon
        notifies nothing when a favourite is taken back: counts never go down.
        The first read starts from now."""
        assert self._ctx is not None and self._me is not None
        ctx, name = self._ctx, "favourites:min_id"
        cursor = await ctx.get_cursor(name)
        if cursor is None:
            newest = await self._call(self.client.notifications, types=["favourite"], limit=1)
            await ctx.set_cursor(name, str(newest[0]["id"]) if newest else "0")
            return 0
        page = await self._call(self.client.notifications, types=["favourite"],
                                min_id=cursor, limit=PAGE)
        page = sorted((n for n in page or () if isinstance(n, Mapping) and n.get("id")),
                      key=lambda n: id_key(str(n["id"])))
        if not page:
            return 0
        events: list[InboundEvent] = []
        channels = list(self._channels.values())
        for n in page:
            found = parse_favourite(n, channels[0].key)
            if found is None or str((n.get("account") or {}).get("id")) == str(self._me["id"]):
                continue
            for ch in channels:
                if await ctx.is_own(ch.key, found.native_id):
                    events.append(dataclasses.replace(found, channel=ch.key))
                    break
        newest_id = str(page[-1]["id"])
        if events:
            await ctx.emit_many(events, cursor=(name, newest_id))
        else:
            await ctx.set_cursor(name, newest_id)
        return len(events)

    async def read_mentions(self, ch: ChannelSpec) -> int:
        """Emit the ``!join``/``!leave`` commands among new mentions of the bridge,
        and public replies to the bridge's own copies (threads continue there)."""
        assert self._ctx is not None and self._me is not None
        ctx, name = self._ctx, "mentions:min_id"
        async with self._chan_locks.setdefault(ch.key, asyncio.Lock()):
            cursor = await ctx.get_cursor(name)
            if cursor is None:
                newest = await self._call(self.client.notifications, types=["mention"],
                                          limit=1)
                await ctx.set_cursor(name, str(newest[0]["id"]) if newest else "0")
                return 0
            page = await self._call(self.client.notifications, types=["mention"],
                                    min_id=cursor, limit=PAGE)
            if not page:
                return 0
            page = sorted((n for n in page if _status_id(n)),
                          key=lambda n: id_key(_status_id(n)))
            if not page:
                return 0
            events: list[Posted | Rejected] = []
            for n in page:
                status = n.get("status") if isinstance(n, Mapping) else None
                ev = await self._inbound(ch, status or {})
                if isinstance(ev, Rejected):
                    events.append(ev)
                    continue
                if ev is None:
                    continue
                # A reply to one of the bridge's copies mentions the bot and
                # seldom repeats the tag: it belongs to the conversation.
                reply_to_copy = self._opts(ch).relay_replies_to_bridge and ev.public \
                    and ev.reply_to_native is not None \
                    and await ctx.is_own(ch.key, ev.reply_to_native)
                if ev.command or reply_to_copy:
                    events.append(ev)
            newest_id = _status_id(page[-1])
            if events:
                await ctx.emit_many(list(events), cursor=(name, newest_id))
                self._mark_seen(ch, *(e.native_id for e in events))
            else:
                await ctx.set_cursor(name, newest_id)
            return len(events)

    def _opts(self, ch: ChannelSpec) -> MastodonChannel:
        assert isinstance(ch.options, MastodonChannel)
        return ch.options

    async def catch_up(self, ch: ChannelSpec) -> int:
        """Read the tag timeline forward from the persisted ``min_id``; return how
        many events were emitted.  On the very first start (no cursor) the
        channel's ``catchup_window`` says where to begin: the id of that moment
        (ids are snowflakes, see :func:`window_start_id`), or with a window of 0
        the newest post (relay from now on)."""
        assert self._ctx is not None
        ctx, opts, name = self._ctx, self._opts(ch), self._cursor_name(ch)
        emitted = 0
        async with self._chan_locks.setdefault(ch.key, asyncio.Lock()):
            cursor = await ctx.get_cursor(name)
            if cursor is None and ch.catchup_window > 0:
                cursor = window_start_id(time.time() - ch.catchup_window)
                self._log.info("first start of #%s: relaying the last %ds", opts.hashtag,
                               ch.catchup_window)
                # Saved now: a later start resumes from here, never from its own now.
                await ctx.set_cursor(name, cursor)
            elif cursor is None:
                newest = await self._call(self.client.timeline_hashtag, opts.hashtag,
                                          local=opts.local_only, limit=1)
                await ctx.set_cursor(name, str(newest[0]["id"]) if newest else "0")
                return 0
            while True:
                page = await self._call(self.client.timeline_hashtag, opts.hashtag,
                                        local=opts.local_only, min_id=cursor, limit=PAGE)
                if not page:
                    return emitted
                full = len(page) >= PAGE
                # An element without an id cannot be placed (or read): it is
                # passed over, never allowed to stop the page.
                page = sorted((st for st in page if _status_id(st)),
                              key=lambda st: id_key(_status_id(st)))
                if not page:
                    return emitted
                events: list[InboundEvent] = [
                    ev for st in page if (ev := await self._inbound(ch, st)) is not None]
                cursor = _status_id(page[-1])
                if events:
                    await ctx.emit_many(events, cursor=(name, cursor))
                    await self._remember(ch, events, page)
                    # Seen only once persisted: a page that fails to persist
                    # is read again whole, none of it skipped as already seen.
                    self._mark_seen(ch, *(ev.native_id for ev in events))
                    emitted += len(events)
                else:
                    await ctx.set_cursor(name, cursor)
                if not full:
                    return emitted

    def _is_seen(self, ch: ChannelSpec, sid: str) -> bool:
        return sid in self._seen.get(ch.key, ())

    def _mark_seen(self, ch: ChannelSpec, *sids: str) -> None:
        """Remember *sids* as handled (call once they are persisted)."""
        seen = self._seen.setdefault(ch.key, OrderedDict())
        for sid in sids:
            seen[sid] = None
            seen.move_to_end(sid)
        while len(seen) > _SEEN:
            seen.popitem(last=False)

    def _read_status(self, ch: ChannelSpec, status: Any) -> Posted | Unsupported:
        """The pure part of reading a status (run guarded: whatever it raises
        costs this status only)."""
        assert self._me is not None
        _check_html_size(status)
        ev = parse_status(status, channel=ch.key, bridge_acct=str(self._me.get("acct", "")))
        if isinstance(ev, Posted) and str((status.get("account") or {}).get("id")) \
                == str(self._me.get("id")):
            return Unsupported(reason="the bridge's own post", kind=UnsupportedKind.IGNORED,
                               native_id=ev.native_id)
        return ev

    async def _inbound(self, ch: ChannelSpec, status: Any, parsed: Posted | None = None
                       ) -> Posted | Rejected | None:
        """A status from the tag, its rejection when it cannot be read, or None
        when it must not (or need not) be emitted.  *parsed*: the status already
        read (the stream's events are read once)."""
        assert self._ctx is not None and self._me is not None
        sid = _status_id(status)
        if sid and self._is_seen(ch, sid):
            return None
        ev: Posted | Unsupported | Rejected
        if parsed is not None:
            ev = parsed
        else:
            ev = await read_guarded(
                functools.partial(self._read_status, ch, status), channel=ch.key,
                native_id=sid or "?", logger=self._log, size=_payload_size(status))
        if isinstance(ev, Unsupported):
            self._log.debug("skipped %s: %s", ev.native_id, ev.reason)
            return None
        if isinstance(ev, Rejected):
            return ev
        if await self._ctx.is_own(ch.key, ev.native_id):
            return None
        # A followers-only or direct post never leaves Mastodon; only a command
        # in it is acted on (the relay keeps commands hidden).
        if not ev.public and not ev.command:
            return None
        self._note_visibility(status)
        if self._is_seen(ch, ev.native_id):
            return None
        return ev

    async def _stream(self, ch: ChannelSpec) -> None:
        """Read the hashtag SSE stream until it ends or stays idle too long."""
        assert self._ctx is not None
        opts = self._opts(ch)
        path = "/api/v1/streaming/hashtag" + ("/local" if opts.local_only else "")
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._acc.request_timeout,
                                        sock_read=self._acc.stream_idle_timeout)
        headers = {"Authorization": f"Bearer {self._acc.access_token}",
                   "Accept": "text/event-stream", "User-Agent": "hashbridge"}
        async with self._ctx.http.get(self._streaming_base + path, params={"tag": opts.hashtag},
                                      headers=headers, timeout=timeout) as resp:
            if resp.status == 401:
                raise AuthError("streaming refused the access token (401)")
            if resp.status != 200:
                raise TransientError(f"streaming answered HTTP {resp.status}")
            self._ctx.set_health(Health.CONNECTED)
            # Events that arrived while we were away are in the timeline now; edits
            # and deletes made meanwhile are not: the relayed posts are asked again.
            await self.catch_up(ch)
            await self.recheck(ch)
            event, data, over = "", [], 0
            try:
                async for raw, size in _sse_lines(resp.content, MAX_STREAM_LINE):
                    line = raw.decode("utf-8", "replace").rstrip("\r\n")
                    if line.startswith(":"):
                        continue
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].removeprefix(" "))
                        over += size
                    elif not line and event:
                        if over:  # only its head was kept: reject it, by its id
                            await self._on_oversize(ch, event, "\n".join(data), over)
                        else:
                            await self._on_event(ch, event, "\n".join(data))
                        event, data, over = "", [], 0
            except TimeoutError:
                self._log.info("stream for #%s idle for %.0fs: treating it as dropped",
                               opts.hashtag, self._acc.stream_idle_timeout)
                self._ctx.set_health(Health.DISCONNECTED, f"stream silent for "
                                     f"{self._acc.stream_idle_timeout:g}s; reconnecting")

    def _read_stream_event(self, ch: ChannelSpec, event: str, data: str
                           ) -> tuple[Posted | Edited | Deleted | Unsupported, Any]:
        """The pure part of reading one stream event: the event and its payload
        (run guarded, as :meth:`_read_status`)."""
        assert self._me is not None
        if event not in ("update", "status.update"):
            return parse_stream_event(event, data, channel=ch.key), None
        try:
            payload = json.loads(data)
        except ValueError:
            return Unsupported(reason="malformed JSON in stream event",
                               kind=UnsupportedKind.MALFORMED), None
        _check_html_size(payload)
        ev = parse_stream_event(event, data, channel=ch.key,
                                bridge_acct=str(self._me.get("acct", "")))
        if isinstance(ev, Posted | Edited) and \
                str((payload.get("account") or {}).get("id")) == str(self._me.get("id")):
            # our own copies come back on the tag when posted public
            return Unsupported(reason="the bridge's own post", kind=UnsupportedKind.IGNORED,
                               native_id=ev.native_id), None
        return ev, payload

    async def _on_oversize(self, ch: ChannelSpec, event: str, head: str, size: int) -> None:
        """A stream event too large to read (only its head was kept)."""
        assert self._ctx is not None
        m = _STREAM_ID.search(head)
        bad = rejection(TooLarge(size, MAX_STREAM_LINE, "a Mastodon stream event is taken up to"),
                        channel=ch.key, native_id=m[1] if m else f"stream:{event}",
                        logger=self._log)
        async with self._chan_locks.setdefault(ch.key, asyncio.Lock()):
            if not self._is_seen(ch, bad.native_id):
                await self._ctx.emit(bad)
                self._mark_seen(ch, bad.native_id)

    async def _on_event(self, ch: ChannelSpec, event: str, data: str) -> None:
        assert self._ctx is not None and self._me is not None
        ctx, name = self._ctx, self._cursor_name(ch)
        m = _STREAM_ID.search(data, 0, 4096) if event != "delete" else None
        got = await read_guarded(functools.partial(self._read_stream_event, ch, event, data),
                                 channel=ch.key, native_id=m[1] if m else f"stream:{event}",
                                 logger=self._log, size=len(data))
        if isinstance(got, Rejected):
            async with self._chan_locks.setdefault(ch.key, asyncio.Lock()):
                if not self._is_seen(ch, got.native_id):
                    await ctx.emit(got)
                    self._mark_seen(ch, got.native_id)
            return
        ev, payload = got
        if isinstance(ev, Unsupported):
            self._log.debug("stream event skipped: %s", ev.reason)
            return
        async with self._chan_locks.setdefault(ch.key, asyncio.Lock()):
            if isinstance(ev, Posted):
                new = await self._inbound(ch, payload, ev)
                if new is None:
                    return
                cursor = await ctx.get_cursor(name)
                # Only move the cursor forward: a late-federated post can carry an
                # older id than the newest one already read.
                if cursor is None or id_key(new.native_id) > id_key(cursor):
                    await ctx.emit(new, cursor=(name, new.native_id))
                else:
                    await ctx.emit(new)
                self._mark_seen(ch, new.native_id)
                await self._remember(ch, [new], [payload])
                return
            if isinstance(ev, Deleted) and self._rechecker().found_gone(ch.key, ev.native_id):
                return  # a re-check already followed this delete
            if not await ctx.is_own(ch.key, ev.native_id):
                await ctx.emit(ev)
                if isinstance(ev, Edited) and isinstance(payload, Mapping):
                    await self._rechecker().remember(ch.key, [(ev.native_id, recheck.stamp(
                        payload.get("edited_at")))])
                elif isinstance(ev, Deleted):
                    await self._rechecker().forget(ch.key, [ev.native_id])

    async def _remember(self, ch: ChannelSpec, events: list[InboundEvent],
                        statuses: list[Any]) -> None:
        """Follow the edits and deletes of the posts just relayed (:mod:`.recheck`)."""
        edited = {_status_id(st): recheck.stamp(_get_edited(st)) for st in statuses}
        await self._rechecker().remember(ch.key, [(ev.native_id, edited.get(ev.native_id, ""))
                                             for ev in events if isinstance(ev, Posted)])

    def _rechecker(self) -> recheck.Recheck:
        assert self._ctx is not None
        if self._recheck is None:
            self._recheck = recheck.Recheck(self._ctx.state)
        return self._recheck

    def _recheck_later(self, ch: ChannelSpec, delay: float) -> None:
        """A re-check that could not run now (too soon after the last one, or the
        server away) runs once it may: one waiting at most per channel."""
        task = self._recheck_tasks.get(ch.key)
        if task is not None and not task.done():
            return

        async def later() -> None:
            await asyncio.sleep(max(0.0, delay))
            self._recheck_tasks.pop(ch.key, None)
            try:
                await self.recheck(ch)
            except (AuthError, PermanentError) as exc:
                self._log.warning("re-check of relayed posts on #%s failed: %s",
                                  self._opts(ch).hashtag, exc)

        self._recheck_tasks[ch.key] = asyncio.create_task(
            later(), name=f"mastodon-recheck-{ch.key}")

    async def recheck(self, ch: ChannelSpec) -> int:
        """Ask again for the posts relayed from *ch* in the last 48 h; emit a
        ``Deleted`` for each one gone and an ``Edited`` for each one edited since it was
        read.  Returns how many events were emitted."""
        assert self._ctx is not None
        rc = self._rechecker()
        if not rc.due(ch.key):
            self._recheck_later(ch, rc.wait(ch.key))
            return 0
        t0 = time.monotonic()
        try:
            known = await rc.known(ch.key)
            if not known:
                return 0
            limits = await self._ensure_instance()
            ids = list(known)
            found: dict[str, Any] = {}
            if recheck.version(limits.version) >= (4, 3):
                for i in range(0, len(ids), recheck.BATCH):
                    for st in await self._call(self.client.statuses, ids[i:i + recheck.BATCH]):
                        found[_status_id(st)] = st
            else:
                ids = ids[-recheck.OLD_SERVER_MAX:]
                for sid in ids:
                    try:
                        found[sid] = await self._call(self.client.status, sid)
                    except Gone:
                        pass
        except TransientError as exc:
            rc.ran(ch.key, time.monotonic() - t0)
            self._log.info("re-check of relayed posts on #%s deferred: %s",
                           self._opts(ch).hashtag, exc)
            self._recheck_later(ch, max(rc.wait(ch.key), exc.retry_after or 0.0))
            return 0
        rc.ran(ch.key, time.monotonic() - t0)
        events: list[Edited | Deleted] = []
        for sid in ids:
            st = found.get(sid)
            if st is None:
                events.append(Deleted(channel=ch.key, native_id=NativeId(sid)))
            elif (stamped := recheck.stamp(_get_edited(st))) and stamped != known[sid]:
                ev = parse_edit(st, channel=ch.key)
                if isinstance(ev, Edited | Deleted):
                    events.append(ev)
        if not events:
            return 0
        async with self._chan_locks.setdefault(ch.key, asyncio.Lock()):
            # The stream may have followed some of them meanwhile (a re-check waiting
            # for its turn runs beside the stream): only those still remembered go.
            still = await rc.known(ch.key)
            events = [e for e in events if e.native_id in still]
            for ev in events:
                await self._ctx.emit(ev)
        if not events:
            return 0
        await rc.forget(ch.key, [e.native_id for e in events if isinstance(e, Deleted)],
                        found_gone=True)
        await rc.remember(ch.key, [
            (e.native_id, recheck.stamp(_get_edited(found[e.native_id])))
            for e in events if isinstance(e, Edited)])
        self._log.info("re-check of #%s: %d edited, %d deleted while the stream was not read",
                       self._opts(ch).hashtag, sum(isinstance(e, Edited) for e in events),
                       sum(isinstance(e, Deleted) for e in events))
        return len(events)

    # ------------------------------------------------------------ outbound
    async def send(self, op: SendOp) -> SendResult:
        lim = await self._ensure_instance()
        if self._defaults_given:
            self._defaults_given = False
            default = parse_instance({})
            if (lim.max_characters, lim.url_weight) != (default.max_characters,
                                                        default.url_weight):
                # This op was fitted to the stand-in limits before the instance
                # answered: have the worker plan it again with the real ones.
                raise TransientError("instance limits just learned; plan again",
                                     retry_after=0)
        match op:
            case SendCreate():
                ch = self._channels.get(op.channel)
                visibility: str = self._opts(ch).visibility if ch else "unlisted"
                address = ""
                if op.reply_to:
                    parent, author = await self._visibility_of(str(op.reply_to))
                    visibility = reply_visibility(visibility, parent)
                    if visibility in ("private", "direct") \
                            and author != str(self._me_acct()):
                        address = author  # else its author would not see the answer
                op, fetched = await self._with_media(op, lim)
                media_ids = [await self._upload(f) for f in fetched]
                params = status_params(op, visibility=visibility,
                                       max_characters=lim.max_characters,
                                       url_weight=lim.url_weight, address=address)
                try:
                    st = await self._call(self.client.status_post, media_ids=media_ids or None,
                                          **params)
                except Gone as exc:
                    raise PermanentError(f"reply target {op.reply_to} is gone: {exc}") from exc
                self._note_visibility(st)
                return SendResult(native_id=NativeId(str(st["id"])),
                                  permalink=str(st.get("url") or ""))
            case SendEdit():
                try:
                    await self._call(self.client.status_update, **edit_params(
                        op, max_characters=lim.max_characters, url_weight=lim.url_weight))
                except Gone as exc:
                    raise PermanentError(f"edited status {op.native_id} is gone") from exc
                return SendResult()
            case SendDelete():
                try:
                    await self._call(self.client.status_delete, str(op.native_id))
                except Gone:
                    self._log.info("delete %s: already gone", op.native_id)
                return SendResult()

    def _me_acct(self) -> str:
        return str((self._me or {}).get("acct", ""))

    def _note_visibility(self, status: Any) -> None:
        """Remember a status's visibility and author (for replies to it)."""
        if not isinstance(status, Mapping) or not status.get("id"):
            return
        account = status.get("account")
        acct = str(account.get("acct") or "") if isinstance(account, Mapping) else ""
        known, sid = self._visibility, str(status["id"])
        known[sid] = (str(status.get("visibility") or ""), acct)
        known.move_to_end(sid)
        while len(known) > _SEEN:
            known.popitem(last=False)

    async def _visibility_of(self, status_id: str) -> tuple[str, str]:
        """The visibility and author ``acct`` of a reply target: known from our
        own sends and the posts read, otherwise asked of the instance (one GET)."""
        known = self._visibility.get(status_id)
        if known is not None:
            return known
        try:
            st = await self._call(self.client.status, status_id)
        except Gone as exc:
            raise PermanentError(f"reply target {status_id} is gone: {exc}") from exc
        self._note_visibility(st)
        return self._visibility.get(status_id, ("", ""))

    async def _with_media(self, op: SendCreate, lim: InstanceLimits
                          ) -> tuple[SendCreate, tuple[Fetched, ...]]:
        """Fetch the attachments (from their origin's hosts only, within this
        instance's limits); those left out become a note in the text."""
        atts = op.rendered.attachments[:lim.max_media_attachments]
        if not atts:
            return op, ()

        def limit(a: Attachment) -> int:
            video = a.media_type.startswith(("video/", "audio/"))
            return lim.video_size_limit if video else lim.image_size_limit

        batch = await self._media.fetch_all(op.idempotency_key, op.post.origin_channel,
                                            atts, max_bytes=limit)
        if not batch.notes:
            return op, batch.fetched
        warning = op.rendered.content_warning

        def fits(text: str) -> bool:
            return status_length(text, lim.url_weight, warning) <= lim.max_characters

        return dataclasses.replace(op, rendered=with_notes(op.rendered, batch.notes,
                                                           fits=fits)), batch.fetched

    async def _upload(self, got: Fetched) -> str:
        """Upload one fetched attachment with its alt text; return the media id."""
        att = got.attachment
        data, mime = got.data, att.media_type or got.content_type
        media = await self._call(self.client.media_post, data, mime_type=mime,
                                 description=att.alt_text or None,
                                 file_name=att.filename or "attachment")
        for _ in range(20):
            if media.get("url"):
                return str(media["id"])
            # Audio and video are processed after the upload answered (202).
            await asyncio.sleep(0.5)
            media = await self._call(self.client.media, media["id"])
        raise TransientError("media still processing on the server")


async def _sse_lines(stream: aiohttp.StreamReader, limit: int
                     ) -> AsyncIterator[tuple[bytes, int]]:
    """The stream's lines as ``(line, 0)``; a line over *limit* bytes as
    ``(its first 4 KiB, its size)``, never held whole in memory."""
    buf = bytearray()
    over = 0
    async for chunk in stream.iter_any():
        start = 0
        while True:
            nl = chunk.find(b"\n", start)
            part = chunk[start:] if nl < 0 else chunk[start:nl + 1]
            if over or len(buf) + len(part) > limit:
                if not over:
                    buf = buf[:4096]
                over += len(part) + (0 if over else len(buf))
                buf += part[:max(0, 4096 - len(buf))]
            else:
                buf += part
            if nl < 0:
                break
            yield bytes(buf), over
            buf, over, start = bytearray(), 0, nl + 1
    if buf:
        yield bytes(buf), over


def _get_edited(status: Any) -> Any:
    return status.get("edited_at") if isinstance(status, Mapping) else None


def _payload_size(status: Any) -> int:
    """Roughly how much reading *status* costs: its HTML's length."""
    if not isinstance(status, Mapping):
        return 0
    return sum(len(v) for k in ("content", "spoiler_text")
               if isinstance(v := status.get(k), str))


def _hold(interval: float, exc: TransientError) -> float:
    """The next sweep's delay: a 429 says when the window resets, and every
    call before then is refused (and spends the instance's patience)."""
    return max(interval, exc.retry_after or 0.0)
