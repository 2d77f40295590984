"""The email list adapter: IMAP (IDLE + UID catch-up) in, SMTP submission out.

Inbound: one IMAP session per account watches one folder where the lists deliver.  After
every (re)connect it catches up by UID from the cursor ``UIDVALIDITY:last_uid``, then IDLEs
(re-issued every ``idle_seconds``, below RFC 2177's 29 minutes) and catches up again on
each push.  Events and the cursor are persisted together through ``ctx.emit_many``.  A
changed UIDVALIDITY means the server renumbered the folder: we skip to the newest UID and
log it rather than re-relaying the whole folder.

Outbound: edits and deletes cannot be unsent; per channel ``corrections = "mail"`` sends a
short correction in the thread, ``"ignore"`` does nothing (capabilities say edit/delete
False so the core does not plan them by default).  Digest channels queue posts durably
(see :mod:`adapters.email.store`) and send one mail per period.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
import re
import time
from datetime import UTC, datetime

import aioimaplib

from adapters.email.client import (
    ImapGone,
    imap_connect,
    imap_date,
    imap_fetch,
    imap_has_message_id,
    imap_idle,
    imap_internaldates,
    imap_search,
    imap_select,
    imap_uids_after,
    smtp_send,
)
from adapters.email.compose import (
    Outgoing,
    build_mail,
    correction_text,
    message_id,
    references_for,
)
from adapters.email.config import EmailAccount, EmailChannel, MailServer
from adapters.email.convert import (
    Identity,
    ListMail,
    ListSpec,
    list_id_of,
    parse_list_mail,
    strip_subject,
)
from adapters.email.digest import digest_mail
from adapters.email.legacy import side_file_path
from adapters.email.store import EmailStore
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
    TransientError,
    Unsupported,
    check_size,
    read_guarded,
    rejection,
)
from bridge.contract.media import MediaSource
from bridge.contract.model import Attachment, ChannelKey, InboundEvent, NativeId, Posted, Rejected
from bridge.contract.richtext import Text
from bridge.contract.services import Services

FETCH_BATCH = 20
MAX_MESSAGE_BYTES = 50 * 1024 * 1024
"""The largest list mail read (what the big mail providers accept); larger
mail is rejected, with its reason, before any parsing."""
_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*<([^<>\s]{1,300})>", re.I | re.M)


class EmailAdapter:
    def __init__(self, account: EmailAccount, channels: tuple[ChannelSpec, ...],
                 name: str = "email", services: Services | None = None) -> None:
        self.account = account
        self.channels = {c.key: c for c in channels}
        self.log = logging.getLogger(f"hashbridge.adapter.email.{name}")
        self._ctx: AdapterContext | None = None
        self._store: EmailStore | None = None
        self._ready = asyncio.Event()
        self._specs = {self._opts(c).effective_list_id.lower(): self._spec(c) for c in channels}
        self.cursor_name = f"imap:{account.folder}"
        self._history: dict[int, float] = {}
        """At a first start: the INTERNALDATE of each mail read as history (UID to
        Unix seconds), to keep only those inside their channel's window."""
        self._started_at = 0.0
        self._smtp_problem = ""
        # The attachments of list mail are files this adapter saved: targets read
        # them from that directory only (no network fetch at all).
        (services if services is not None else Services()).media_sources.register(
            self.channels, lambda: MediaSource(file_root=self._attachment_dir()))

    def _attachment_dir(self) -> str:
        return os.path.join(self._ctx.data_dir, "email-attachments") if self._ctx else ""

    @staticmethod
    def _opts(spec: ChannelSpec) -> EmailChannel:
        assert isinstance(spec.options, EmailChannel)
        return spec.options

    def _spec(self, c: ChannelSpec) -> ListSpec:
        o = self._opts(c)
        return ListSpec(channel=c.key, list_id=o.effective_list_id, address=o.list,
                        subject_tag=o.subject_tag, verify_sender=o.verify_sender)

    # ------------------------------------------------------------ capabilities
    def capabilities(self, channel: ChannelKey) -> Capabilities:
        o = self._opts(self.channels[channel])
        # Mail cannot be unsent; with corrections = "mail" an edit or a delete is sent
        # as a short correction mail in the post's thread, so the planner must pass them.
        corrects = o.corrections == "mail"
        return Capabilities(max_length=o.max_length, text_format=TextFormat.HTML,
                            formatted=True, edit=corrects, delete=corrects, reply=True,
                            threads=True, media_types=frozenset(), max_attachments=0)

    # ------------------------------------------------------------ lifecycle
    async def run(self, ctx: AdapterContext) -> None:
        self._ctx = ctx
        self.log = logging.getLogger(f"hashbridge.adapter.email.{ctx.name}")
        self._store = await EmailStore.open(ctx.state, side_file_path(ctx.data_dir, ctx.name),
                                            self.log)
        salt = await self._store.salt()
        self._me = Identity(address=self.account.address, domain=self.account.message_domain,
                            salt=salt)
        self._ready.set()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._inbound(ctx))
                for c in self.channels.values():
                    if self._opts(c).digest_hours > 0 and c.direction != "in":
                        tg.create_task(self._digest_loop(c))
        finally:
            self._ready.clear()
            self._store = None
            ctx.set_health(Health.STOPPED)

    async def _inbound(self, ctx: AdapterContext) -> None:
        if all(c.direction == "out" for c in self.channels.values()):
            ctx.set_health(Health.CONNECTED, "outbound only")
            return
        backoff = 1.0
        last: str | None = None  # the failure already logged: repeats go at debug level
        while True:
            _raise_if_cancelling()
            started = time.monotonic()
            try:
                await self._session(ctx)
            except AuthError as exc:
                ctx.set_health(Health.BAD_CREDENTIALS, str(exc))
                raise
            except (ImapGone, aioimaplib.AioImapException, OSError, TimeoutError) as exc:
                if time.monotonic() - started > 30:
                    backoff = 1.0  # it was up for a while: a fresh failure
                    last = None
                why = _why(exc, self.account.imap)
                ctx.set_health(Health.DISCONNECTED, f"IMAP: {why}"[:200])
                level = logging.WARNING if why != last else logging.DEBUG
                self.log.log(level, "IMAP session ended (%s); reconnecting in %.0fs",
                             why, backoff)
                last = why
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 60.0)

    async def _session(self, ctx: AdapterContext) -> None:
        client = await imap_connect(self.account.imap)
        try:
            validity = await imap_select(client, self.account.folder)
            last = await self._start_uid(ctx, client, validity)
            # Connected means "mail from now on will be relayed": after the cursor exists.
            ctx.set_health(Health.CONNECTED)
            while True:
                _raise_if_cancelling()
                last = await self._catch_up(ctx, client, validity, last)
                await imap_idle(client, self.account.idle_seconds, self.account.imap.timeout)
        finally:
            with contextlib.suppress(Exception):
                if client.has_pending_idle():
                    # imap_idle already sent DONE (a second one is a protocol error);
                    # don't wait for the server, just hang up.
                    client.protocol.transport.close()
                else:
                    async with asyncio.timeout(2):
                        await client.logout()

    async def _start_uid(self, ctx: AdapterContext, client: aioimaplib.IMAP4,
                         validity: int) -> int:
        saved = await ctx.get_cursor(self.cursor_name)
        if saved:
            v, _, uid = saved.partition(":")
            if v == str(validity) and uid.isdigit():
                return int(uid)
            self.log.warning("UIDVALIDITY of %s changed (%s -> %s): resyncing from the newest "
                             "message, older ones are not relayed", self.account.folder,
                             v, validity)
        newest = max((await imap_uids_after(client, 0))[0], default=0)
        start = newest if saved else await self._window_start(client, newest)
        await ctx.set_cursor(self.cursor_name, f"{validity}:{start}")
        if not saved:
            self.log.info("first start: relaying mail after UID %d", start)
        return start

    async def _window_start(self, client: aioimaplib.IMAP4, newest: int) -> int:
        """The UID to read after at a first start: before the oldest mail that
        reached the box inside the widest ``catchup_window`` of the channels that
        read (``SEARCH SINCE`` its day, then each mail's INTERNALDATE); *newest*
        when no window reaches back (0: from now)."""
        window = max((c.catchup_window for c in self.channels.values()
                      if c.direction != "out"), default=0.0)
        if window <= 0 or newest == 0:
            return newest
        self._started_at = time.time()
        since = self._started_at - window
        # SINCE compares dates in the server's zone: a day earlier covers any zone.
        uids = await imap_search(client, f"SINCE {imap_date(since - 86400)}")
        dates = await imap_internaldates(client, uids) if uids else {}
        inside = [u for u in uids if dates.get(u, 0.0) >= since]
        if not inside:
            return newest
        start = min(inside) - 1
        self._history = {u: at for u, at in dates.items() if u > start}
        return start

    def _before_window(self, uid: int, channel: ChannelKey) -> bool:
        """A mail of the first start's history older than its channel's window."""
        at = self._history.get(uid)
        return at is not None and at < self._started_at - self.channels[channel].catchup_window

    async def _catch_up(self, ctx: AdapterContext, client: aioimaplib.IMAP4, validity: int,
                        last: int) -> int:
        # Search again until nothing is new: mail announced inside a SEARCH or FETCH
        # response would otherwise wait for the next IDLE timeout.
        while True:
            _raise_if_cancelling()
            uids, news = await imap_uids_after(client, last)
            if not uids and not news:
                return last
            last = await self._fetch_and_emit(ctx, client, validity, last, uids)

    async def _fetch_and_emit(self, ctx: AdapterContext, client: aioimaplib.IMAP4,
                              validity: int, last: int, uids: list[int]) -> int:
        for i in range(0, len(uids), FETCH_BATCH):
            chunk = uids[i:i + FETCH_BATCH]
            raws = await imap_fetch(client, chunk)
            events: list[InboundEvent] = []
            for uid in chunk:
                raw = raws.get(uid)
                if raw is None:
                    self.log.warning("UID %d vanished before it was fetched", uid)
                    continue
                event = await self._inbound_event(ctx, uid, raw)
                if event is not None:
                    events.append(event)
            last = chunk[-1]
            cursor = (self.cursor_name, f"{validity}:{last}")
            if events:
                await ctx.emit_many(events, cursor=cursor)
                self.log.info("relayed %d list mails up to UID %d", len(events), last)
            else:
                await ctx.set_cursor(*cursor)
        return last

    def _read_mail(self, raw: bytes) -> tuple[ListSpec, ListMail | Unsupported] | None:
        """The pure part of reading one mail: its list, and the mail parsed
        (None: not for one of our reading channels)."""
        spec = self._specs.get(list_id_of(raw).lower())
        if spec is None or self.channels[spec.channel].direction == "out":
            return None
        check_size(len(raw), MAX_MESSAGE_BYTES, "list mail is taken up to")
        opts = self._opts(self.channels[spec.channel])
        return spec, parse_list_mail(raw, spec, self._me,
                                     max_attachment_bytes=opts.max_attachment_bytes,
                                     max_attachments=opts.max_attachments)

    async def _inbound_event(self, ctx: AdapterContext, uid: int, raw: bytes
                             ) -> Posted | Rejected | None:
        reading = [c.key for c in self.channels.values() if c.direction != "out"]
        m = _MESSAGE_ID.search(raw, 0, 65536)
        native = m[1].decode("ascii", "replace") if m else f"uid:{uid}"
        got = await read_guarded(functools.partial(self._read_mail, raw),
                                 channel=reading[0], native_id=native, logger=self.log,
                                 size=len(raw))
        if got is None:
            self.log.debug("UID %d: not one of our lists' mail", uid)
            return None
        if isinstance(got, Rejected):
            return got
        spec, res = got
        if self._before_window(uid, spec.channel):
            self.log.debug("UID %d: older than catchup_window, not relayed", uid)
            return None
        if isinstance(res, Unsupported):
            if res.error is not None:  # the mail could not be read at all
                return rejection(res.error, channel=spec.channel, native_id=res.native_id,
                                 logger=self.log)
            self.log.info("UID %d <%s> not relayed: %s", uid, res.native_id, res.reason)
            return None
        assert self._store is not None
        # Our own mail is known by its exact Message-ID: the send journal (written
        # before submitting, so an echo faster than send's return is known too) or
        # the core's id map.  Never by the id's domain (members may share it).
        if await self._store.sent_by_us(res.event.native_id, self.account.message_domain) \
                or await ctx.is_own(spec.channel, res.event.native_id):
            self.log.info("UID %d <%s> is our own copy", uid, res.event.native_id)
            return None
        await self._store.remember(res.event.native_id, res.subject, res.references)
        return await self._with_attachments(ctx, res)

    async def _with_attachments(self, ctx: AdapterContext, res: ListMail) -> Posted:
        ev = res.event
        if not res.parts and not res.dropped_parts:
            return ev
        # The core has no media store yet: keep attachments as files under data_dir.
        adir = self._attachment_dir()
        atts: list[Attachment] = []
        for part in res.parts:
            digest = hashlib.sha256(part.content).hexdigest()
            path = os.path.join(adir, digest)
            await asyncio.to_thread(_write_once, path, part.content)
            atts.append(Attachment(url=f"file://{path}", media_type=part.media_type,
                                   size=len(part.content), filename=part.filename))
        text = ev.text
        if res.dropped_parts:
            text = text.with_suffix([Text(" [not relayed: " + ", ".join(res.dropped_parts)
                                          + "]")])
        return Posted(channel=ev.channel, native_id=ev.native_id, author=ev.author, text=text,
                      permalink=ev.permalink, attachments=tuple(atts),
                      reply_to_native=ev.reply_to_native, created_at=ev.created_at)

    # ------------------------------------------------------------ outbound
    async def _wait_ready(self) -> EmailStore:
        try:
            async with asyncio.timeout(10):
                await self._ready.wait()
        except TimeoutError as exc:
            raise TransientError("email adapter not running yet", retry_after=5) from exc
        assert self._store is not None
        return self._store

    async def send(self, op: SendOp) -> SendResult:
        store = await self._wait_ready()
        spec = self.channels.get(op.channel)
        if spec is None:
            raise PermanentError(f"unknown channel {op.channel}")
        opts = self._opts(spec)
        author = op.post.author.name
        network = op.origin_network or op.post.author.platform.capitalize()
        match op:
            case SendCreate():
                if opts.digest_hours > 0:
                    return await self._enqueue_digest(store, op, opts, author, network)
                parent = await store.thread(op.reply_to) if op.reply_to else None
                out = Outgoing(
                    key=op.idempotency_key, from_address=self.account.address,
                    domain=self.account.message_domain, list_address=opts.list,
                    author=author, network=network, plain=op.rendered.plain,
                    html=op.rendered.html, parent_id=op.reply_to,
                    parent_references=parent[1] if parent else (),
                    parent_subject=op.parent_subject or (parent[0] if parent else ""),
                    origin=f"{op.post.origin_channel}:{op.post.origin_native_id}",
                    permalink=op.post.permalink, date=datetime.now(UTC))
            case SendEdit() | SendDelete():
                if opts.corrections == "ignore":
                    return SendResult()
                parent = await store.thread(op.native_id)
                deleted = isinstance(op, SendDelete)
                new_text = "" if isinstance(op, SendDelete) else op.rendered.plain
                out = Outgoing(
                    key=op.idempotency_key, from_address=self.account.address,
                    domain=self.account.message_domain, list_address=opts.list,
                    author=author, network=network,
                    plain=correction_text(author=author, network=network, deleted=deleted,
                                          new_text=new_text),
                    parent_id=op.native_id, parent_references=parent[1] if parent else (),
                    parent_subject=parent[0] if parent else "", date=datetime.now(UTC))
                await self._submit(store, out)
                return SendResult()  # a correction is not a copy of the post
        return await self._submit(store, out)

    async def _submit(self, store: EmailStore, out: Outgoing) -> SendResult:
        msg = build_mail(out)
        mid = message_id(out.key, out.domain)
        subject = strip_subject(str(msg["Subject"]))
        await store.remember(mid, subject, references_for(out.parent_id, out.parent_references))
        await store.sending(mid)
        result = SendResult(native_id=NativeId(mid), subject=subject)
        if await store.attempt(out.key, time.time()) and await self._echo_seen(mid):
            # SMTP has no idempotency: an earlier attempt whose 250 we never saw got
            # through (the list echoed it to us), so sending again would duplicate it.
            self.log.info("<%s> already reached %s; not sending again", mid, out.list_address)
            return result
        try:
            await smtp_send(self.account.smtp, self.account, msg, [out.list_address])
        except TransientError as exc:
            self._smtp_health(str(exc))
            raise
        self._smtp_health("")
        self.log.info("sent <%s> to %s", mid, out.list_address)
        return result

    def _smtp_health(self, problem: str) -> None:
        """Submission failing (4xx, no connection) is an outage even while IMAP
        is fine: shown in the health until a mail goes through again."""
        if self._ctx is None or problem == self._smtp_problem:
            return
        self._smtp_problem = problem
        if problem:
            self._ctx.set_health(Health.DISCONNECTED, f"SMTP: {problem}"[:200])
        else:
            self._ctx.set_health(Health.CONNECTED)

    async def _echo_seen(self, mid: str) -> bool:
        try:
            return await imap_has_message_id(self.account.imap, self.account.folder, mid)
        except AuthError:
            raise
        except (ImapGone, aioimaplib.AioImapException, OSError, TimeoutError) as exc:
            raise TransientError("cannot check the list for an earlier copy: "
                                 + _why(exc, self.account.imap), retry_after=10) from exc

    # ------------------------------------------------------------ digests
    def _period(self, opts: EmailChannel) -> float:
        return opts.digest_hours * 3600

    def _digest_key(self, channel: str, batch: int) -> str:
        tag = hashlib.sha256(channel.encode()).hexdigest()[:8]
        return f"digest-{tag}-{batch}"

    async def _enqueue_digest(self, store: EmailStore, op: SendCreate, opts: EmailChannel,
                              author: str, network: str) -> SendResult:
        batch = int(time.time() // self._period(opts)) + 1
        parent = await store.thread(op.reply_to) if op.reply_to else None
        topic = op.parent_subject or (parent[0] if parent else "") or \
            next((ln for ln in op.rendered.plain.split("\n") if ln.strip()), "")[:70]
        await store.enqueue(key=op.idempotency_key, channel=op.channel, batch=batch,
                            thread=topic, author=author, network=network,
                            plain=op.rendered.plain, reply_to=op.reply_to)
        # Every post of a batch maps to the digest mail that will carry it.
        mid = message_id(self._digest_key(op.channel, batch), self.account.message_domain)
        return SendResult(native_id=NativeId(mid))

    async def _digest_loop(self, spec: ChannelSpec) -> None:
        opts = self._opts(spec)
        period = self._period(opts)
        while True:
            _raise_if_cancelling()
            store = self._store
            assert store is not None
            items = await store.due(spec.key, int(time.time() // period))
            if items:
                key = self._digest_key(spec.key, items[0].batch)
                msg = digest_mail(items, key=key, account=self.account, list_address=opts.list,
                                  hashtag=spec.hashtag, period_hours=opts.digest_hours)
                await store.sending(message_id(key, self.account.message_domain))
                try:
                    await smtp_send(self.account.smtp, self.account, msg, [opts.list])
                except (TransientError, PermanentError) as exc:
                    # Same batch, same Message-ID next time: a retry, never a second digest.
                    self.log.warning("digest for %s not sent: %s", spec.key, exc)
                    await asyncio.sleep(min(60.0, period))
                    continue
                await store.done(spec.key, [i.key for i in items])
                self.log.info("digest <%s> with %d posts sent", key, len(items))
                continue
            await asyncio.sleep(min(30.0, max(0.2, period / 10)))


def _why(exc: BaseException, server: MailServer) -> str:
    """An IMAP failure as operators should read it (a timeout has no text)."""
    if isinstance(exc, TimeoutError):
        return f"no answer from {server.host}:{server.port} in {server.timeout:g}s"
    return f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__


def _raise_if_cancelling() -> None:
    # Python 3.11's wait_for (used inside aioimaplib) can swallow a cancellation that
    # races with the awaited result; the request stays counted on the task, so honour
    # it here instead of looping on forever.
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _write_once(path: str, data: bytes) -> None:
    if os.path.exists(path):
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
