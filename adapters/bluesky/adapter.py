"""The Bluesky adapter: hashtag posts read from a firehose (``subscribeRepos``),
posts, replies, edits, deletes and images written to the account's PDS.

Reading: one firehose connection per account serves every channel (hashtag) it
reads.  A full relay carries all of Bluesky, so a commit is looked at in three
steps, each cheaper than the next: its ops (only ``app.bsky.feed.post`` and
profile records matter), a byte search of its blocks for the channels' tags (and
the bridge's DID: mentions and replies), and only then the CAR decoded.  Updates
and deletes are read only for *known authors* (those whose posts the bridge
relayed): a delete carries no record, and the relay finds the post through its
id map.  The firehose ``seq`` is the cursor, committed with the events it covers;
past the relay's replay window (``#info OutdatedCursor``) the known authors'
repos are read again with ``listRecords``.

Consent: an author's ``app.bsky.actor.profile/self`` is read from their own PDS
(the one their DID document names; no AppView needed) and cached;
``#nobridge`` in its description is final, ``#nobot`` and the
``!no-unauthenticated`` self-label are objections an explicit ``!join`` lifts.
Profile updates on the firehose refresh the cache.

Frames are decoded with ``libipld`` (the SDK's own DAG-CBOR/CAR decoder) rather
than through the SDK's firehose models: building a pydantic model per frame read
about 17,000 commits per CPU-second here, this path about 100,000
(``bench/bluesky_firehose.py``), and the SDK's client runs its socket in a thread
where this one is an ordinary cancellable task with an idle timeout.
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
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import libipld
from yarl import URL

from adapters.bluesky.client import Gone, WriteBudget, XrpcClient, map_error
from adapters.bluesky.compose import (
    KEY_FIELD,
    MAX_GRAPHEMES,
    images_embed,
    neutralise,
    post_length,
    post_record,
    rkey_for,
)
from adapters.bluesky.config import BlueskyAccount, BlueskyChannel
from adapters.bluesky.convert import (
    LIKE_RECORD,
    PLATFORM,
    POST,
    PROFILE,
    Profile,
    author_of,
    like_subject,
    mentions,
    parse_post,
    parse_profile,
    parse_update,
    permalink,
    quoted_post,
    quoted_uri,
    record_tags,
    reply_refs,
    split_uri,
    when,
)
from adapters.bluesky.seek import seek, ws_probe
from bridge.contract.adapter import (
    AdapterContext,
    AdapterError,
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
    TransientError,
    Unsupported,
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
from bridge.contract.model import (
    LIKE,
    Author,
    ChannelKey,
    Deleted,
    InboundEvent,
    NativeId,
    Posted,
    QuotedPost,
    Reacted,
    Rejected,
)
from bridge.contract.netguard import MediaRefused, fetch_media
from bridge.contract.services import Services

CURSOR = "firehose:seq"
SESSION = "session"
"""Account-state namespace (and, before it, the cursor name) of the session tokens."""
SESSION_KEY = "tokens"
AUTHORS = "authors"
"""Account-state namespace of the known authors, one row per DID, oldest first
(before: one cursor holding them all as a JSON list)."""
LIKES = "likes"
"""Account-state namespace of the likes the bridge counted, by URI, oldest
first: their deletes are read (a like's delete names only the like)."""
FUTURE_CURSOR_TRIES = 5
"""``FutureCursor`` answers to one cursor (a second apart) before the relay is taken
for reset and read live."""
MAX_LIKES = 50000
"""Counted likes remembered (an older one's delete is not read)."""
MAX_AUTHORS = 5000
"""Known authors remembered (their updates and deletes are read)."""
MAX_FRAME = 16 * 1024 * 1024
"""A firehose frame is at most a few MB (a commit's blocks are capped at 2 MB)."""
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/webp", "image/gif"})
MAX_IMAGE_BYTES = 1_000_000  # app.bsky.embed.images: blob maxSize
CURSOR_EVERY = 2.0
"""Seconds between cursor writes while no event matched (one write a frame
would cost the store more than the firehose)."""
MAX_JSON_BYTES = 4 * 1024 * 1024
"""The largest DID document or XRPC answer read from a stranger's host."""
FRAME_TRIES = 5
"""Times a commit whose author cannot be resolved (PLC down, PDS gone) is read
again (the firehose reconnects from the cursor) before it is rejected: one
unresolvable author must not stall the reader for everyone."""
REREAD_PAGES = 3
"""Pages of 100 posts per known author read again after a gap past replay."""


@dataclass(slots=True)
class Identity:
    did: str
    handle: str
    pds: str
    profile: Profile
    expires: float


class BlueskyAdapter:
    def __init__(self, account: BlueskyAccount, channels: tuple[ChannelSpec, ...], *,
                 name: str = "bluesky", services: Services | None = None) -> None:
        self._acc = account
        self._channels = {c.key: c for c in channels}
        self._log = logging.getLogger(f"hashbridge.adapter.bluesky.{name}")
        self.client = XrpcClient(account, log=self._log)
        self._ctx: AdapterContext | None = None
        self._login_lock = asyncio.Lock()
        self._reading = [c for c in channels if c.direction in ("both", "in")]
        self._by_tag: dict[str, list[ChannelSpec]] = {}
        for c in self._reading:
            # The community's also_read tags are read by the same firehose filter,
            # into the same channel.
            own = self._opts(c).hashtag.casefold()
            for tag in dict.fromkeys([own, *(t.casefold() for t in c.also_read)]):
                self._by_tag.setdefault(tag, []).append(c)
        self._authors: OrderedDict[str, None] = OrderedDict()
        self._likes: OrderedDict[str, None] = OrderedDict()
        """The likes counted (URIs): their deletes are read."""
        self._idents: dict[str, Identity] = {}
        self._hosts: set[str] = {host_entry(account.service)}
        self._budget = WriteBudget()
        self._pending_seq: int | None = None
        self._cursor_at = 0.0
        self._started_at = time.time()
        """The start's moment: ``catchup_window`` reaches back from it."""
        self._cutoffs: dict[ChannelKey, float] = {}
        """At a first start, per channel whose window is narrower than the widest:
        frames sequenced before this (Unix seconds) are not its history."""
        self.gap_note = ""
        self._tries: dict[Any, int] = {}
        self.frames = 0
        self._future_cursor = 0
        """``FutureCursor`` answers in a row to the same cursor (see :meth:`_error_frame`)."""
        self.decoded = 0
        media = (services if services is not None else Services()).media_sources
        media.register((c.key for c in channels), self.media_source)
        self._media = MediaFetcher(media, self._log)

    def media_source(self) -> MediaSource:
        """Images of Bluesky posts are blobs on their authors' PDSes: the ones the
        bridge resolved (and the account's own and ``media_hosts``)."""
        return MediaSource(hosts=frozenset({*self._hosts, *self._acc.media_hosts}),
                           allow_private=self._acc.allow_private_media_hosts)

    def _opts(self, ch: ChannelSpec) -> BlueskyChannel:
        assert isinstance(ch.options, BlueskyChannel)
        return ch.options

    def capabilities(self, channel: ChannelKey) -> Capabilities:
        ch = self._channels.get(channel)
        in_place = self._opts(ch).edit_in_place if ch is not None else False
        return Capabilities(
            max_length=MAX_GRAPHEMES, count=post_length, neutralise=neutralise,
            text_format=TextFormat.PLAIN, edit=in_place, delete=True, reply=True, threads=True,
            media_types=IMAGE_TYPES, max_media_bytes=MAX_IMAGE_BYTES, max_attachments=4,
            posts_per_day=35000 // 3, needs_hashtag=True, streaming=True)

    # ------------------------------------------------------------ session
    async def login(self) -> None:
        async with self._login_lock:
            if self.client.did:
                return
            stored = await self._stored_session() if self._ctx else None
            self.client.on_session = self._save_session
            if self._ctx is not None:
                ctx = self._ctx
                self.client.on_rate = lambda rem, reset, lim: ctx.rate_limit(
                    remaining=rem, reset_at=reset, limit=lim)
            await self.client.login(stored)
            if self.client.app_password_scope is False:
                self._log.warning("%s is logged in with its main password: make an app "
                                  "password for the bridge instead", self.client.handle)
            self._hosts.add(host_entry(str(self.client.sdk._base_url).removesuffix("/xrpc")))

    async def _save_session(self, session: str) -> None:
        """Sessions (access and refresh tokens) are kept in the store, so a restart
        resumes them instead of logging in again (createSession is limited to 30
        per 5 minutes)."""
        if self._ctx is not None:
            await self._ctx.state.put(SESSION, SESSION_KEY, session)

    async def _stored_session(self) -> str | None:
        """The session kept in the account's state; one kept as a cursor by an earlier
        version is moved there (read once, so an upgrade does not log in again)."""
        assert self._ctx is not None
        stored = await self._ctx.state.get(SESSION, SESSION_KEY)
        if stored is None:
            old = await self._ctx.get_cursor(SESSION)
            if old:
                await self._ctx.state.put(SESSION, SESSION_KEY, old)
                await self._ctx.set_cursor(SESSION, "")
                stored = old
        return stored or None

    async def _load_authors(self) -> None:
        """Known authors from the account's state (an earlier version's cursor list
        moved there first)."""
        assert self._ctx is not None
        ctx = self._ctx
        raw = await ctx.get_cursor(AUTHORS)
        if raw:
            try:
                old = [str(d) for d in json.loads(raw)][-MAX_AUTHORS:]
            except (ValueError, TypeError):
                self._log.warning("stored list of known authors unreadable; starting afresh")
            else:
                await ctx.state.put_many(AUTHORS, [(d, "") for d in old], only_new=True)
            await ctx.set_cursor(AUTHORS, "")
        self._authors = OrderedDict((d, None) for d, _ in await ctx.state.items(AUTHORS))
        await self._forget_oldest()
        self._likes = OrderedDict((u, None) for u, _ in await ctx.state.items(LIKES))

    async def _forget_oldest(self) -> None:
        gone = []
        while len(self._authors) > MAX_AUTHORS:
            gone.append(self._authors.popitem(last=False)[0])
        if gone and self._ctx is not None:
            await self._ctx.state.delete(AUTHORS, gone)

    # ------------------------------------------------------------ inbound
    async def run(self, ctx: AdapterContext) -> None:
        self._started_at = time.time()
        self._ctx = ctx
        self._log = ctx.logger
        self.client.log = ctx.logger
        await self.login()
        await self._load_authors()
        if not self._reading:
            ctx.set_health(Health.CONNECTED)
            await asyncio.Event().wait()
        await self._follow()  # connected once the firehose is

    async def _follow(self) -> None:
        assert self._ctx is not None
        backoff = 1.0
        while True:
            try:
                await self._read_firehose()
                backoff = 1.0
            except (AuthError, asyncio.CancelledError):
                raise
            except (AdapterError, aiohttp.ClientError, TimeoutError, OSError) as exc:
                wait = getattr(exc, "retry_after", None) or backoff
                self._ctx.set_health(Health.DISCONNECTED, f"firehose: {exc or type(exc).__name__}")
                self._log.warning("firehose failed (%s); retry in %.0fs",
                                  exc or type(exc).__name__, wait)
                await asyncio.sleep(wait)
                backoff = min(backoff * 2, 60.0)

    async def _read_firehose(self) -> None:
        """One connection: from the stored cursor until it ends.  Without one (the
        very first start, or the relay was reset) the cursor of the start's moment
        is found and saved first: the channels' ``catchup_window`` back, or now;
        a reconnect then resumes from it, never live (what was posted between
        would be lost)."""
        assert self._ctx is not None
        ctx = self._ctx
        cursor = await ctx.get_cursor(CURSOR)
        if not cursor:
            cursor = str(await self._start_cursor(first=cursor is None))
            await ctx.set_cursor(CURSOR, cursor)
        url = self._acc.firehose + (f"?cursor={int(cursor)}" if cursor and cursor.isdigit()
                                    else "")
        # A handshake the server never answers must not hang the reader.  A quiet
        # PDS sends nothing for minutes: a websocket ping every request_timeout tells
        # a quiet stream from a dead one (a hung server, a silent NAT drop), whose
        # missing pong closes it as an error within half that again.
        async with asyncio.timeout(self._acc.request_timeout):
            ws = await ctx.http.ws_connect(url, max_msg_size=MAX_FRAME, autoping=True,
                                           heartbeat=self._acc.request_timeout,
                                           timeout=aiohttp.ClientWSTimeout(
                                               ws_receive=None, ws_close=5.0))
        async with ws:
            ctx.set_health(Health.CONNECTED, self.gap_note)
            while True:
                try:
                    msg = await ws.receive(timeout=self._acc.firehose_idle_timeout)
                except TimeoutError:
                    self._log.info("firehose silent for %.0fs: reconnecting",
                                   self._acc.firehose_idle_timeout)
                    await self._flush_cursor(force=True)
                    return
                if msg.type == aiohttp.WSMsgType.BINARY:
                    await self.on_frame(msg.data)
                    if self.frames:  # a frame read: the cursor was not in the future
                        self._future_cursor = 0
                elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                  aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR):
                    await self._flush_cursor(force=True)
                    raise TransientError(f"firehose closed ({ws.close_code})")

    async def _start_cursor(self, *, first: bool) -> int:
        """The sequence number to read after: at the first start, that of the
        widest ``catchup_window`` of the reading channels back (narrower ones
        filter their own, :meth:`_outside_window`); after a relay reset, now."""
        windows = {c.key: c.catchup_window for c in self._reading} if first else {}
        widest = max(windows.values(), default=0.0)
        at = (self._started_at if first else time.time()) - widest
        assert self._ctx is not None
        found = await seek(ws_probe(self._ctx.http, self._acc.firehose,
                                    wait=min(self._acc.request_timeout, 3.0),
                                    connect_timeout=self._acc.request_timeout,
                                    max_frame=MAX_FRAME), at)
        self._cutoffs = {k: self._started_at - w for k, w in windows.items() if w < widest}
        if first and widest > 0 and found.dropped and found.oldest_time is not None \
                and found.oldest_time > at:
            self._log.warning(
                "catchup_window reaches back %ds but the firehose keeps events from %s only",
                widest, datetime.fromtimestamp(found.oldest_time, UTC).strftime(
                    "%Y-%m-%d %H:%M:%S UTC"))
        self._log.info("%s: reading the firehose after seq %d (%s, %d probes)",
                       "first start" if first else "relay reset", found.cursor,
                       f"the last {widest:.0f}s" if widest else "from now", found.probes)
        return found.cursor

    def _outside_window(self, events: list[InboundEvent], when: Any) -> list[InboundEvent]:
        """At a first start: *events* (of a frame sequenced at *when*) without those
        of a channel whose own window does not reach back that far."""
        if not self._cutoffs or not isinstance(when, str):
            return events
        try:
            at = datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return events
        if at >= max(self._cutoffs.values()):
            self._cutoffs = {}
            return events
        return [e for e in events if self._cutoffs.get(e.channel, at) <= at]

    async def on_frame(self, data: bytes) -> None:
        """One firehose frame (a header and a body, both DAG-CBOR)."""
        self.frames += 1
        try:
            header, body = libipld.decode_dag_cbor_multi(data)[:2]
        except (ValueError, TypeError) as exc:
            self._log.warning("firehose frame unreadable (%s); skipped", exc)
            return
        if not isinstance(header, dict) or not isinstance(body, dict):
            return
        if header.get("op") == -1:
            await self._error_frame(body)
            return
        kind = header.get("t")
        seq = body.get("seq")
        events: list[InboundEvent] = []
        if kind == "#commit":
            events = await self._commit_tried(body, seq)
        elif kind == "#info":
            await self._info(body)
        elif kind == "#identity":
            self._idents.pop(str(body.get("did")), None)  # handle or PDS changed
        if type(seq) is not int:
            return
        events = self._outside_window(events, body.get("time"))
        if events:
            await self._ctx_emit(events, seq)
        else:
            self._pending_seq = seq
            await self._flush_cursor()

    async def _commit_tried(self, body: dict[str, Any], seq: Any) -> list[InboundEvent]:
        """:meth:`_commit`; a commit that keeps failing transiently (its author's
        identity cannot be read) is rejected after :data:`FRAME_TRIES` readings."""
        where = f"at://{body.get('repo')}" if isinstance(body.get("repo"), str) \
            else f"seq:{seq}"
        try:
            events = await self._commit(body)
        except TransientError as exc:
            tries = self._tries.get(seq, 0) + 1
            self._tries = {seq: tries}
            if tries < FRAME_TRIES or not self._reading:
                raise
            return [rejection(exc, channel=self._reading[0].key, native_id=where[:300],
                              logger=self._log)]
        except AuthError:
            raise
        except Exception as exc:
            # Whatever else one commit raises (a malformed frame, a bug) costs this
            # commit only: a crash would replay it after every restart.
            if not self._reading:
                return []
            return [rejection(exc, channel=self._reading[0].key, native_id=where[:300],
                              logger=self._log)]
        self._tries.pop(seq, None)
        return events

    async def _ctx_emit(self, events: list[InboundEvent], seq: int) -> None:
        assert self._ctx is not None
        await self._ctx.emit_many(events, cursor=(CURSOR, str(seq)))
        self._pending_seq, self._cursor_at = None, time.monotonic()

    async def _flush_cursor(self, force: bool = False) -> None:
        if self._pending_seq is None or self._ctx is None:
            return
        if force or time.monotonic() - self._cursor_at >= CURSOR_EVERY:
            await self._ctx.set_cursor(CURSOR, str(self._pending_seq))
            self._pending_seq, self._cursor_at = None, time.monotonic()

    async def _error_frame(self, body: dict[str, Any]) -> None:
        assert self._ctx is not None
        name, message = str(body.get("error", "")), str(body.get("message", ""))[:300]
        if name == "FutureCursor":
            # A PDS's own sequencer can lag the events it has just served (a cursor our
            # seek read off its firehose a moment ago is "in its future"): the same
            # cursor is tried again.  Only when the answer stays (the relay was
            # replaced or reset) is it read live from now on.
            self._future_cursor += 1
            if self._future_cursor < FUTURE_CURSOR_TRIES:
                raise TransientError(f"firehose error {name}: {message} (trying the same "
                                     f"cursor again, {self._future_cursor} of "
                                     f"{FUTURE_CURSOR_TRIES})", retry_after=1.0)
            self._future_cursor = 0
            self._log.warning("firehose says our cursor is in its future (%s); reading live "
                              "from now on", message)
            await self._ctx.set_cursor(CURSOR, "")
        raise TransientError(f"firehose error {name}: {message}")

    async def _info(self, body: dict[str, Any]) -> None:
        if body.get("name") != "OutdatedCursor":
            return
        assert self._ctx is not None
        self.gap_note = (f"cursor was past the firehose's replay window "
                         f"({datetime.now(UTC):%Y-%m-%d %H:%M} UTC): some posts may be missing; "
                         "known authors' repos re-read")
        self._log.warning("firehose: %s (%s)", self.gap_note, body.get("message", ""))
        self._ctx.set_health(Health.CONNECTED, self.gap_note)
        await self.reread_known_authors()

    # ------------------------------------------------------------ commits
    def _prefilter(self, repo: str, blocks: bytes) -> bool:
        """Could a create in this commit be for us?  A byte search of the blocks:
        a tag (facets and ``tags`` hold it as text), or the bridge's DID (a mention
        of it, a reply to one of its posts)."""
        low = blocks.lower()
        if any(t.isascii() and t.encode() in low for t in self._by_tag):
            return True
        if any(not t.isascii() for t in self._by_tag):
            return True  # case-insensitive bytes search works for ASCII tags only
        return bool(self.client.did) and self.client.did.encode() in blocks

    async def _commit(self, body: dict[str, Any]) -> list[InboundEvent]:
        repo = body.get("repo")
        ops = body.get("ops")
        if not isinstance(repo, str) or not isinstance(ops, list):
            return []
        if repo == self.client.did:
            return []  # the bridge's own writes
        known = repo in self._authors
        wanted = []
        likes = []
        for op in ops:
            path = op.get("path") if isinstance(op, dict) else None
            if not isinstance(path, str):
                continue
            action = op.get("action")
            if path.startswith(POST + "/"):
                if action == "create" or (known and action in ("update", "delete")):
                    wanted.append(op)
            elif path == PROFILE + "/self" and repo in self._idents and action != "delete":
                wanted.append(op)
            elif path.startswith(LIKE_RECORD + "/") and (
                    action == "create" or (action == "delete"
                                           and f"at://{repo}/{path}" in self._likes)):
                likes.append(op)
        blocks_raw = body.get("blocks")
        blocks_raw = blocks_raw if isinstance(blocks_raw, bytes) else b""
        if likes and any(op.get("action") == "create" for op in likes) \
                and not self._likes_ours(blocks_raw):
            likes = [op for op in likes if op.get("action") != "create"]
        if likes:
            wanted += likes
        if not wanted:
            return []
        needs_blocks = any(op.get("action") != "delete" for op in wanted)
        if needs_blocks and not known and repo not in self._idents and not likes \
                and not self._prefilter(repo, blocks_raw):
            return []
        blocks: dict[Any, Any] = {}
        if needs_blocks and blocks_raw:
            self.decoded += 1
            try:
                blocks = libipld.decode_car(blocks_raw)[1]
            except (ValueError, TypeError) as exc:
                uri = f"at://{repo}/{wanted[0].get('path')}"
                return [Rejected(channel=ch.key, native_id=NativeId(uri),
                                 reason=f"unreadable: CAR blocks: {exc}"[:200])
                        for ch in self._reading[:1]]
        edited_at = when(body.get("time"))
        out: list[InboundEvent] = []
        for op in wanted:
            path, action = str(op["path"]), op.get("action")
            uri = f"at://{repo}/{path}"
            cid = op.get("cid")
            record = blocks.get(cid) if action != "delete" and isinstance(cid, bytes) else None
            if path.startswith(PROFILE):
                ident = self._idents.get(repo)
                if ident is not None and record is not None:
                    ident.profile = parse_profile(record)
                continue
            if path.startswith(LIKE_RECORD + "/"):
                out += await self._liked(repo, uri, action, record)
                continue
            if action == "delete":
                out += [Deleted(channel=ch.key, native_id=NativeId(uri)) for ch in self._reading]
            elif action == "update":
                out += await self._updated(repo, uri, record, edited_at)
            elif record is not None:
                out += await self._created(repo, uri, record)
        return out

    # ------------------------------------------------------------ likes
    def _likes_ours(self, blocks: bytes) -> bool:
        """Could a like in these blocks be on one of ours?  Before any decoding:
        the DID of each ``at://`` URI in the blocks (a like's subject) is the
        bridge's (a like of a copy) or a known author's (of an original the
        bridge relayed)."""
        me = self.client.did
        at = blocks.find(b"at://did:")
        while at >= 0:
            end = blocks.find(b"/", at + 5, at + 5 + 2048)
            if end > 0:
                did = blocks[at + 5:end].decode("ascii", "replace")
                if did == me or did in self._authors:
                    return True
            at = blocks.find(b"at://did:", at + 5)
        return False

    async def _liked(self, repo: str, uri: str, action: Any, record: Any
                     ) -> list[InboundEvent]:
        """A like created on a copy or a relayed original, or taken back (its
        delete carries no record: it is found by its own URI)."""
        if action == "delete":
            chans = list(self._channels.values())[:1]
            self._likes.pop(uri, None)
            if self._ctx is not None:
                await self._ctx.state.delete(LIKES, [uri])
            return [Reacted(channel=ch.key, native_id=NativeId(""), added=False,
                            reactor=Author(platform=PLATFORM, handle=repo, account_id=repo),
                            reaction_id=uri) for ch in chans]
        subject = like_subject(record) if action == "create" else ""
        if not subject:
            return []
        try:
            subject_did = split_uri(subject)[0]
        except ValueError:
            return []
        if subject_did == self.client.did:
            chans = [ch for ch in self._channels.values()
                     if self._ctx is not None and await self._ctx.is_own(ch.key,
                                                                         NativeId(subject))][:1]
        elif subject_did in self._authors:
            chans = list(self._reading)  # the relay drops it where the post is unknown
        else:
            return []
        if not chans:
            return []
        try:
            ident = await self.identity(repo)
        except PermanentError as exc:
            return [rejection(exc, channel=chans[0].key, native_id=uri, logger=self._log)]
        reactor = author_of(repo, ident.handle, ident.profile)
        if uri not in self._likes and self._ctx is not None:
            self._likes[uri] = None
            await self._ctx.state.put(LIKES, uri, "")
            await self._forget_oldest_likes()
        return [Reacted(channel=ch.key, native_id=NativeId(subject), reactor=reactor,
                        key=LIKE, reaction_id=uri) for ch in chans]

    async def _forget_oldest_likes(self) -> None:
        gone = []
        while len(self._likes) > MAX_LIKES:
            gone.append(self._likes.popitem(last=False)[0])
        if gone and self._ctx is not None:
            await self._ctx.state.delete(LIKES, gone)

    async def _created(self, repo: str, uri: str, record: Any) -> list[InboundEvent]:
        targets = self._targets(record)
        if not targets:
            return []
        try:
            ident = await self.identity(repo)
        except PermanentError as exc:
            return [rejection(exc, channel=targets[0].key, native_id=uri, logger=self._log)]
        author = author_of(repo, ident.handle, ident.profile)
        addressed = self._addressed(record)
        out: list[InboundEvent] = []
        for ch in targets:
            ev = await read_guarded(functools.partial(
                parse_post, record, uri=uri, channel=ch.key, author=author, pds=ident.pds,
                addressed=addressed), channel=ch.key, native_id=uri, logger=self._log,
                size=_record_size(record))
            if isinstance(ev, Unsupported):
                self._log.debug("skipped %s: %s", uri, ev.reason)
                continue
            if isinstance(ev, Posted) and self._ctx and \
                    await self._ctx.is_own(ch.key, ev.native_id):
                continue
            if isinstance(ev, Posted) and ev.quote is not None:
                ev = dataclasses.replace(ev, quote=await self._quoted(quoted_uri(record)))
            out.append(ev)
        if out:
            await self._remember(repo)
        return out

    async def _quoted(self, uri: str) -> QuotedPost:
        """The quoted post at *uri*, read from its author's PDS within
        ``request_timeout`` (identity and record together); only its link when it
        cannot be read in that time (gone, unreachable, slow)."""
        try:
            async with asyncio.timeout(self._acc.request_timeout):
                did, _, rkey = split_uri(uri)
                ident = await self.identity(did)
                got = await self._get_json(f"{ident.pds}/xrpc/com.atproto.repo.getRecord",
                                           {"repo": did, "collection": POST, "rkey": rkey})
        except (TimeoutError, TransientError, PermanentError, ValueError) as exc:
            self._log.info("quoted post %s not read (%s): relayed as its link", uri,
                           type(exc).__name__)
            return quoted_post(uri)
        return quoted_post(uri, got.get("value"), author_of(did, ident.handle, ident.profile))

    async def _updated(self, repo: str, uri: str, record: Any, edited_at: Any
                       ) -> list[InboundEvent]:
        try:
            ident = await self.identity(repo)
        except PermanentError as exc:
            return [rejection(exc, channel=ch.key, native_id=uri, logger=self._log)
                    for ch in self._reading[:1]]
        out: list[InboundEvent] = []
        for ch in self._reading:
            ev = await read_guarded(functools.partial(
                parse_update, record, uri=uri, channel=ch.key, pds=ident.pds,
                edited_at=edited_at), channel=ch.key, native_id=uri, logger=self._log,
                size=_record_size(record))
            if not isinstance(ev, Unsupported):
                out.append(ev)
        return out

    def _addressed(self, record: Any) -> bool:
        """The post mentions the bridge or answers one of its posts."""
        me = self.client.did
        if not me:
            return False
        _, parent = reply_refs(record)
        return me in mentions(record) or parent.startswith(f"at://{me}/")

    def _targets(self, record: Any) -> list[ChannelSpec]:
        """The reading channels a new post belongs to: by tag, or (for replies to
        the bridge's posts and commands to it) the channels that take those."""
        tags = record_tags(record)
        found = list({ch.key: ch for tag, chans in self._by_tag.items() if tag in tags
                      for ch in chans}.values())  # a post with two of a channel's tags: once
        if found or not self._addressed(record):
            return found
        addressed = self.addressed_channel()
        return [addressed] if addressed is not None else []

    def addressed_channel(self) -> ChannelSpec | None:
        """The reading channel that takes untagged posts addressed to the bridge
        (replies to its posts, mentions of it): the first that relays replies to the
        bridge, else the first that reads."""
        return next((ch for ch in self._reading if self._opts(ch).relay_replies_to_bridge),
                    self._reading[0] if self._reading else None)

    async def _remember(self, did: str) -> None:
        if did in self._authors:
            self._authors.move_to_end(did)
            return
        self._authors[did] = None
        if self._ctx is not None:
            await self._ctx.state.put(AUTHORS, did, "")
        await self._forget_oldest()

    # ------------------------------------------------------------ identities
    async def identity(self, did: str) -> Identity:
        """Handle, PDS and profile of *did* (cached ``profile_cache_seconds``).
        Raises TransientError when it cannot be read now: the commit is read again
        after the reconnect, never relayed without its author's consent known."""
        now = time.monotonic()
        got = self._idents.get(did)
        if got is not None and got.expires > now:
            return got
        doc = await self._did_doc(did)
        handle = next((a.removeprefix("at://") for a in doc.get("alsoKnownAs") or []
                       if isinstance(a, str) and a.startswith("at://")), "")
        pds = next((str(s.get("serviceEndpoint", "")).rstrip("/")
                    for s in doc.get("service") or []
                    if isinstance(s, dict) and str(s.get("id", "")).endswith("#atproto_pds")),
                   "")
        if not pds.startswith(("https://", "http://")):
            raise PermanentError(f"{did} names no PDS in its DID document")
        profile = Profile()
        try:
            rec = await self._get_json(f"{pds}/xrpc/com.atproto.repo.getRecord", {
                "repo": did, "collection": PROFILE, "rkey": "self"})
            profile = parse_profile(rec.get("value"))
        except Gone:
            pass  # no profile record: no objection written anywhere
        self._hosts.add(host_entry(pds))
        ident = Identity(did=did, handle=handle, pds=pds, profile=profile,
                         expires=now + self._acc.profile_cache_seconds)
        self._idents[did] = ident
        if len(self._idents) > 20000:
            self._idents.pop(next(iter(self._idents)))
        return ident

    async def _did_doc(self, did: str) -> dict[str, Any]:
        if did.startswith("did:plc:"):
            url = f"{self._acc.plc_directory}/{quote(did, safe=':')}"
        elif did.startswith("did:web:"):
            host = did.removeprefix("did:web:").replace("%3A", ":")
            url = f"https://{host}/.well-known/did.json"
        else:
            raise PermanentError(f"unsupported DID method: {did[:60]}")
        return await self._get_json(url, {})

    async def _get_json(self, url: str, params: dict[str, str]) -> dict[str, Any]:
        """GET a JSON document from a host a stranger's identity names (a did:web
        host, an author's PDS): through the SSRF guard of media fetches (public
        addresses only unless ``allow_private_media_hosts``, pinned DNS, a size cap)."""
        full = str(URL(url).update_query(params)) if params else url
        where = url.split("?")[0]
        try:
            got = await fetch_media(self._ctx.http if self._ctx else None, full,
                                    allowed_hosts={host_entry(url)}, max_bytes=MAX_JSON_BYTES,
                                    timeout=self._acc.request_timeout,
                                    allow_private=self._acc.allow_private_media_hosts)
        except (MediaRefused, ValueError) as exc:
            reason = exc.reason if isinstance(exc, MediaRefused) else str(exc)
            if isinstance(exc, MediaRefused) and exc.transient:
                raise TransientError(f"{where}: {reason}") from exc
            if re.search(r"HTTP (400|404|410)\b", reason):
                raise Gone(f"{where}: {reason}") from exc
            raise PermanentError(f"{where}: {reason}") from exc
        try:
            body = json.loads(got.data)
        except ValueError as exc:
            raise PermanentError(f"{where}: not JSON") from exc
        if not isinstance(body, dict):
            raise PermanentError(f"{where}: not a JSON object")
        return body

    # ------------------------------------------------------------ catch-up
    async def reread_known_authors(self) -> int:
        """After a gap past the firehose's replay window: read the recent posts
        of every known author again (``listRecords`` on their PDS); the relay
        drops the ones it already has."""
        assert self._ctx is not None
        emitted = 0
        for did in list(self._authors):
            try:
                ident = await self.identity(did)
                cursor = ""
                for _ in range(REREAD_PAGES):
                    params = {"repo": did, "collection": POST, "limit": "100"}
                    if cursor:
                        params["cursor"] = cursor
                    page = await self._get_json(
                        f"{ident.pds}/xrpc/com.atproto.repo.listRecords", params)
                    events: list[InboundEvent] = []
                    for item in reversed(page.get("records") or []):
                        if isinstance(item, dict) and isinstance(item.get("uri"), str):
                            events += await self._created(did, item["uri"], item.get("value"))
                    if events:
                        await self._ctx.emit_many(events)
                        emitted += len(events)
                    cursor = str(page.get("cursor") or "")
                    if not cursor:
                        break
            except AdapterError as exc:
                self._log.warning("re-reading %s failed: %s", did, exc)
        return emitted

    # ------------------------------------------------------------ outbound
    async def send(self, op: SendOp) -> SendResult:
        await self.login()
        match op:
            case SendCreate():
                return await self._create(op)
            case SendEdit():
                await self._edit(op)
                return SendResult()
            case SendDelete():
                for nid in (op.native_id, *op.extra_native_ids):
                    await self._delete(nid)
                return SendResult()

    def _spend(self, action: str) -> None:
        wait = self._budget.wait_for(action)
        if wait > 0:
            if self._ctx is not None:
                self._ctx.rate_limit(remaining=0, reset_at=time.time() + wait)
            raise TransientError("Bluesky's write budget for this account is spent "
                                 "(5,000 points an hour, 35,000 a day)", retry_after=wait)
        self._budget.spend(action)

    async def _create(self, op: SendCreate) -> SendResult:
        did = self.client.did
        rkey = rkey_for(op.idempotency_key, op.post.created_at)
        uri = f"at://{did}/{POST}/{rkey}"
        reply = await self._reply_refs(op.reply_to) if op.reply_to else None
        op, fetched = await self._with_media(op)
        embed = None
        if fetched:
            blobs = [(await self.client.upload_blob(f.data, f.attachment.media_type
                                                    or f.content_type),
                      f.attachment.alt_text) for f in fetched]
            embed = images_embed(blobs)
        record = post_record(op.rendered.plain, created_at=_now(), key=op.idempotency_key,
                             warning=op.rendered.content_warning, reply=reply, embed=embed,
                             language=op.post.language)
        self._spend("create")
        try:
            await self.client.procedure("com.atproto.repo.createRecord", {
                "repo": did, "collection": POST, "rkey": rkey, "record": record})
        except AdapterError:
            # A create that reached the PDS before its answer was lost (or one
            # retried after a crash) conflicts on its record key (the reference
            # PDS answers 500): its record is there, with our key: done.
            done = await self._existing(rkey, op.idempotency_key)
            if done is not None:
                return done
            raise
        return SendResult(native_id=NativeId(uri), permalink=permalink(uri, self.client.handle))

    async def _existing(self, rkey: str, key: str) -> SendResult | None:
        """The bridge's record under *rkey* if it is there and carries *key*."""
        did = self.client.did
        try:
            got = await self.client.query("com.atproto.repo.getRecord", repo=did,
                                          collection=POST, rkey=rkey)
        except AdapterError:
            return None
        value = got.get("value")
        if not isinstance(value, dict) or value.get(KEY_FIELD) != key:
            if isinstance(value, dict):
                raise PermanentError(f"record key {rkey} is taken by another post")
            return None
        uri = f"at://{did}/{POST}/{rkey}"
        self._log.info("create %s was already done (%s)", key, uri)
        return SendResult(native_id=NativeId(uri), permalink=permalink(uri, self.client.handle))

    async def _record(self, uri: str) -> dict[str, Any]:
        """A record by URI, from the PDS that holds it (ours, or its author's)."""
        did, collection, rkey = split_uri(uri)
        if did == self.client.did:
            return await self.client.query("com.atproto.repo.getRecord", repo=did,
                                           collection=collection, rkey=rkey)
        ident = await self.identity(did)
        return await self._get_json(f"{ident.pds}/xrpc/com.atproto.repo.getRecord",
                                    {"repo": did, "collection": collection, "rkey": rkey})

    async def _reply_refs(self, parent_uri: str) -> dict[str, Any]:
        """``reply.root``/``reply.parent`` strong refs for an answer to *parent_uri*."""
        try:
            parent = await self._record(parent_uri)
        except (Gone, ValueError) as exc:
            raise PermanentError(f"reply target {parent_uri} is gone: {exc}") from exc
        pref = {"uri": parent_uri, "cid": str(parent.get("cid", ""))}
        root = (parent.get("value") or {}).get("reply", {}).get("root") \
            if isinstance(parent.get("value"), dict) else None
        if not (isinstance(root, dict) and root.get("uri") and root.get("cid")):
            root = pref
        return {"root": {"uri": str(root["uri"]), "cid": str(root["cid"])}, "parent": pref}

    async def _edit(self, op: SendEdit) -> None:
        """``putRecord`` with the new text, keeping the reply, embed and time."""
        did, _, rkey = split_uri(op.native_id)
        try:
            got = await self.client.query("com.atproto.repo.getRecord", repo=did,
                                          collection=POST, rkey=rkey)
        except Gone as exc:
            raise PermanentError(f"edited post {op.native_id} is gone") from exc
        old = got.get("value") if isinstance(got.get("value"), dict) else {}
        assert isinstance(old, dict)
        record = post_record(op.rendered.plain, created_at=when(old.get("createdAt")),
                             key=str(old.get(KEY_FIELD) or op.idempotency_key),
                             warning=op.rendered.content_warning, reply=old.get("reply"),
                             embed=old.get("embed"), language=op.post.language)
        self._spend("update")
        await self.client.procedure("com.atproto.repo.putRecord", {
            "repo": did, "collection": POST, "rkey": rkey, "record": record,
            "swapRecord": got.get("cid")})

    async def _delete(self, native_id: str) -> None:
        try:
            did, collection, rkey = split_uri(native_id)
        except ValueError as exc:
            raise PermanentError(str(exc)) from exc
        self._spend("delete")
        try:
            await self.client.procedure("com.atproto.repo.deleteRecord", {
                "repo": did, "collection": collection, "rkey": rkey})
        except Gone:
            self._log.info("delete %s: already gone", native_id)

    async def _with_media(self, op: SendCreate) -> tuple[SendCreate, tuple[Fetched, ...]]:
        atts = [a for a in op.rendered.attachments if a.media_type in IMAGE_TYPES][:4]
        skipped = len(op.rendered.attachments) - len(atts)
        if not op.rendered.attachments:
            return op, ()
        batch = await self._media.fetch_all(op.idempotency_key, op.post.origin_channel,
                                            atts, max_bytes=MAX_IMAGE_BYTES)
        notes = list(batch.notes) + (["[media not relayed: Bluesky takes images only]"]
                                     if skipped else [])
        if not notes:
            return op, batch.fetched
        rendered = with_notes(op.rendered, notes,
                              fits=lambda t: post_length(t) <= MAX_GRAPHEMES)
        return dataclasses.replace(op, rendered=rendered), batch.fetched

    async def close(self) -> None:
        await self.client.close()


def _now() -> datetime:
    return datetime.now(UTC)


def _record_size(record: Any) -> int:
    text = record.get("text") if isinstance(record, dict) else None
    return len(text) if isinstance(text, str) else 0


__all__ = ["BlueskyAdapter", "map_error"]
