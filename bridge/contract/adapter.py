"""The contract between the relay core and a platform adapter.

An adapter serves one *account* (credentials on one platform) and any number of
channels on it.  It is found through the ``hashbridge.adapters`` entry-point
group: the entry point names an :class:`AdapterFactory`.

The contract is deliberately small (matterbridge's Bridger, bridgev2's
NetworkConnector):

* ``run(ctx)``: connect, listen, ``await ctx.emit(event)`` until cancelled.
  Raise :class:`AuthError` for bad credentials; any other exception is a crash
  that the supervisor restarts with backoff.
* ``send(op)``: exactly one attempt at one outbound operation.  Raise
  :class:`TransientError` (with the server's retry time when it gave one),
  :class:`PermanentError` or :class:`AuthError`.  Retries, backoff and rate
  limiting live in the delivery worker, never in adapters.
* ``capabilities(channel)``: frozen data the renderer and router read.

Reading one event must never cost another: convert each raw payload through
:func:`read_guarded` (or :func:`convert_guarded` where no event loop is
involved).  Whatever the conversion raises (never ``CancelledError``) becomes
a :class:`~bridge.contract.model.Rejected` for that event, emitted with the rest of its
page so that the relay records it and the cursor moves past it; check the
platform's size limit first with :func:`check_size`.  A payload a converter
understands but does not turn into an event (the bridge's own copy, a boost,
a shape it cannot map) comes back as :class:`Unsupported`, the one value every
adapter uses for it.

Constructors do no I/O.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict

from bridge.contract.mentions import neutralise_generic
from bridge.contract.model import (
    Attachment,
    Author,
    ChannelKey,
    DeliveryId,
    InboundEvent,
    NativeId,
    Post,
    Rejected,
    RejectKind,
)
from bridge.contract.richtext import RichText
from bridge.contract.services import Services

if TYPE_CHECKING:
    import aiohttp

    from bridge.contract.sandbox import PlatformSandbox


# ---------------------------------------------------------------- failures

class AdapterError(Exception):
    """Base of the three kinds of failure that drive the core's behaviour."""


class TransientError(AdapterError):
    """Try again later; ``retry_after`` seconds if the server said so."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(AdapterError):
    """This operation can never succeed (a 4xx other than 429); park it as dead."""


class AuthError(AdapterError):
    """The account's credentials are refused; the adapter is marked bad-credentials."""


# ---------------------------------------------------------------- reading one event

T = TypeVar("T")

INLINE_MAX_BYTES = 16 * 1024
"""A payload up to this size is converted on the event loop (a fraction of a
millisecond: a thread hop would cost more than it saves); a larger one in a
worker thread, so that no single post stalls the loop."""

_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


class TooLarge(Exception):
    """An inbound event over the size its platform allows.  Raise it from a
    conversion (or call :func:`check_size` first): it becomes a
    :class:`~bridge.contract.model.Rejected` of kind ``too large``."""

    def __init__(self, size: int, limit: int, rule: str, unit: str = "bytes") -> None:
        super().__init__(f"{size:,} {unit} ({rule} {limit:,})")
        self.size, self.limit = size, limit


def check_size(size: int, limit: int, rule: str, unit: str = "bytes") -> None:
    """Raise :class:`TooLarge` when *size* is over *limit*; *rule* finishes
    the sentence ``(… at most N)``: ``"Matrix events are at most"``."""
    if size > limit:
        raise TooLarge(size, limit, rule, unit)


def _short(text: str, limit: int = 200) -> str:
    text = _UNPRINTABLE.sub(" ", text).strip()
    return text if len(text) <= limit else text[:limit - 1] + "…"


def rejection(exc: Exception, *, channel: ChannelKey, native_id: str,
              logger: logging.Logger) -> Rejected:
    """*exc*, raised while reading one event, as the event's rejection: a
    WARNING line with the short reason, the traceback at DEBUG only (payload
    text may be in it; credentials never are, converters hold none)."""
    nid = NativeId(_short(str(native_id), 300) or "?")
    if isinstance(exc, TooLarge):
        kind, reason = RejectKind.TOO_LARGE, f"too large: {exc}"
    else:
        detail = _short(str(exc))
        kind = RejectKind.UNREADABLE
        reason = f"unreadable: {type(exc).__name__}" + (f": {detail}" if detail else "")
    logger.warning("not relayed: %s %s: %s", channel, nid, reason)
    logger.debug("reading %s %s failed", channel, nid, exc_info=exc)
    return Rejected(channel=channel, native_id=nid, reason=reason, kind=kind)


def convert_guarded(convert: Callable[[], T], *, channel: ChannelKey, native_id: str,
                    logger: logging.Logger) -> T | Rejected:
    """``convert()``, or the event's :class:`~bridge.contract.model.Rejected` when it
    raises anything (``CancelledError`` and other ``BaseException`` pass): one
    payload can cost itself, never its page or the adapter."""
    try:
        return convert()
    except Exception as exc:
        return rejection(exc, channel=channel, native_id=native_id, logger=logger)


async def read_guarded(convert: Callable[[], T], *, channel: ChannelKey, native_id: str,
                       logger: logging.Logger, size: int = 0) -> T | Rejected:
    """:func:`convert_guarded` for the event loop: a payload of more than
    :data:`INLINE_MAX_BYTES` (*size*, as the adapter measured it) is converted
    in a worker thread."""
    try:
        if size > INLINE_MAX_BYTES:
            return await asyncio.to_thread(convert)
        return convert()
    except Exception as exc:
        return rejection(exc, channel=channel, native_id=native_id, logger=logger)


class UnsupportedKind(enum.StrEnum):
    """Why a converter returned :class:`Unsupported`."""

    IGNORED = "ignored"
    """Well formed, and deliberately not relayed: the bridge's own copy, a boost,
    a notice, an author's ``#nobridge``, an event type the bridge has no use for."""
    MALFORMED = "malformed"
    """Not a shape the converter can map (a field missing, of the wrong type...)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Unsupported:
    """A payload a converter does not turn into an event, and why: returned,
    never raised (matrix-nio's ``BadEvent``).  Every adapter's ``convert.py``
    uses this one type; the adapter logs it and moves on (the cursor passes it)."""

    reason: str
    kind: UnsupportedKind
    native_id: str = ""
    """The payload's id on its platform, when it has a readable one."""
    error: Exception | None = None
    """What reading the payload raised, when it could not be read at all: the
    adapter records it as a :class:`~bridge.contract.model.Rejected` through
    :func:`rejection` instead of skipping it quietly."""


class Health(enum.StrEnum):
    STARTING = "starting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"   # transient: retrying
    BAD_CREDENTIALS = "bad_credentials"
    FAILED = "failed"               # restart budget exhausted
    STOPPED = "stopped"


# ---------------------------------------------------------------- capabilities

def count_chars(text: str) -> int:
    """Length in Unicode code points (what most platforms count)."""
    return len(text)


class TextFormat(enum.StrEnum):
    PLAIN = "plain"
    HTML = "html"
    MARKDOWN = "markdown"


@dataclass(frozen=True, slots=True, kw_only=True)
class Capabilities:
    max_length: int | None = None
    """Maximum message length by ``count``; None for no practical limit."""
    count: Callable[[str], int] = count_chars
    """The platform's own length rule, applied to the plain-text rendering."""
    neutralise: Callable[[str], str] = neutralise_generic
    """The platform's own mention rule: the text with every mention it would make
    defused (see :mod:`bridge.contract.mentions`).  The renderer applies it to the final
    text of every message before fitting the length.  A mention needs an
    at-sign (``@``, ``＠``): a text without one comes back unchanged."""
    posts_per_day: int | None = None
    """The account's daily post budget (shared by its channels), if it has one:
    one author's post may take only a share of it (``author_share``)."""
    part_cost: Callable[[str], float] | None = None
    """What one message (one part of a thread) with this plain text costs,
    where posting is billed (X: its price with or without a URL), in the unit
    of ``cost_per_day``."""
    cost_per_day: float | None = None
    """The account's daily budget in money (X: ``max_usd_per_day``), if it has
    one: one author's posts may take only ``author_share`` of it too."""
    text_format: TextFormat = TextFormat.PLAIN
    edit: bool = False
    delete: bool = False
    reply: bool = True
    threads: bool = False
    formatted: bool = False
    media_types: frozenset[str] = frozenset()
    max_media_bytes: int = 0
    max_attachments: int = 4
    needs_hashtag: bool = False
    """Append the community hashtag to relayed posts (hashtag-discovered networks)."""
    links_cost: bool = False
    """Links are expensive here (X): drop URLs unless the channel opts in."""
    streaming: bool = False


# ---------------------------------------------------------------- outbound ops

@dataclass(frozen=True, slots=True, kw_only=True)
class Rendered:
    """One message as it will appear on the target; ``text`` already fitted."""

    text: RichText
    plain: str
    """``text`` as plain text, measured by the target's count rule."""
    html: str = ""
    """Filled when the target's ``text_format`` is HTML (else empty; build it
    from ``text`` with ``bridge.contract.textconv.to_html`` if needed)."""
    markdown: str = ""
    """Filled when the target's ``text_format`` is MARKDOWN."""
    content_warning: str = ""
    attachments: tuple[Attachment, ...] = ()
    is_notice: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SendCreate:
    delivery_id: DeliveryId
    idempotency_key: str
    """Stable across retries and restarts: the delivery id plus the part number."""
    channel: ChannelKey
    post: Post
    rendered: Rendered
    reply_to: NativeId | None = None
    """Native id on this channel of the message this one answers (None: top level)."""
    thread_root: NativeId | None = None
    part: int = 0
    parts: int = 1
    parent_subject: str = ""
    """Subject line of the parent's copy, for targets that thread by subject (email)."""
    origin_network: str = ""
    """Display name of the network the post came from (``Mastodon``, ``X``, or the origin
    channel's custom name), as attributions show it: for naming the origin elsewhere (ghost
    users, a mail's From name) without knowing the other adapters."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SendEdit:
    delivery_id: DeliveryId
    idempotency_key: str
    channel: ChannelKey
    post: Post
    native_id: NativeId
    rendered: Rendered
    origin_network: str = ""
    """Display name of the network the post came from (``Mastodon``, ``X``, or the origin
    channel's custom name), as attributions show it: for naming the origin elsewhere (ghost
    users, a mail's From name) without knowing the other adapters."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SendDelete:
    delivery_id: DeliveryId
    idempotency_key: str
    channel: ChannelKey
    post: Post
    native_id: NativeId
    extra_native_ids: tuple[NativeId, ...] = ()
    """Other ids the create reported for this part (``SendResult.extra_native_ids``:
    media sent as separate events); remove them too."""
    origin_network: str = ""
    """Display name of the network the post came from (``Mastodon``, ``X``, or the origin
    channel's custom name), as attributions show it: for naming the origin elsewhere (ghost
    users, a mail's From name) without knowing the other adapters."""


SendOp = SendCreate | SendEdit | SendDelete


@dataclass(frozen=True, slots=True, kw_only=True)
class SendReaction:
    """A reaction the relay counted, to show natively on another channel of the
    same account (:class:`NativeReactions`): a Matrix reaction relayed to the
    other rooms the account serves.  One attempt, never retried."""

    channel: ChannelKey
    """Where to show it: another channel of the account the reaction was read on."""
    native_id: NativeId
    """The post there (our copy, or the original the bridge relayed)."""
    source: ChannelKey
    """The channel the reaction was made on."""
    key: str
    added: bool
    """False: the reactor took it back."""
    reactor: str
    """Who reacted (:attr:`~bridge.contract.model.Author.identity`)."""
    author: Author | None = None
    """The reactor as the platform described them (None on a removal)."""


@runtime_checkable
class NativeReactions(Protocol):
    """An adapter whose platform has reactions of its own: the core hands it the
    reactions read on one of its channels for its other channels."""

    async def react(self, op: SendReaction) -> None:
        """Show (or take back) *op* on its channel; raises an :class:`AdapterError`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SendResult:
    native_id: NativeId | None = None
    """The id of the created message (None for edits and deletes)."""
    permalink: str = ""
    subject: str = ""
    extra_native_ids: tuple[NativeId, ...] = ()
    """Other ids that also identify the copy (echo suppression)."""


# ---------------------------------------------------------------- context

@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelSpec:
    """One channel of a community served by this adapter's account."""

    key: ChannelKey
    community: str
    hashtag: str
    direction: str
    options: BaseModel
    """The adapter's own validated channel model (see ``AdapterFactory.channel_model``)."""
    also_read: tuple[str, ...] = ()
    """The community's ``also_read`` hashtags (without '#'): an adapter that reads
    by hashtag reads these too, into this channel (read-only: the relay never
    copies such a post back onto this channel's network)."""
    catchup_window: float = 0.0
    """Seconds: at the channel's first start (no saved read cursor) the adapter
    relays what was posted up to this long before, oldest first, then goes on
    live; later starts resume from the cursor.  0: start from now.  The config
    fills it (``catchup_window``, default 3600); built by hand it starts from now."""


class CursorStore(Protocol):
    async def get(self, name: str) -> str | None: ...


class AccountState(Protocol):
    """The account's own durable state, kept in the bridge's store (the same database
    as the posts and cursors: backed up, migrated and shared like them) instead of a
    file of the adapter's.  Rows are strings, grouped by *namespace* (the adapter's
    name for a kind of row, e.g. ``threads``), keyed, in insertion order.

    Each call is one transaction, durable when it returns.  While the store cannot
    write (a full disk) a call waits; at shutdown it may raise
    ``bridge.store.errors.StoreError``.  Values are the adapter's to encode (JSON)."""

    async def get(self, namespace: str, key: str) -> str | None: ...

    async def put(self, namespace: str, key: str, value: str) -> None:
        """Set *key* (a key already there keeps its place in the order)."""

    async def add(self, namespace: str, key: str, value: str) -> bool:
        """Set *key* only if it is absent; True if it was added."""

    async def put_many(self, namespace: str, items: list[tuple[str, str]], *,
                       only_new: bool = False) -> int:
        """Set many keys in one transaction (only the absent ones with *only_new*);
        how many were written."""

    async def items(self, namespace: str) -> list[tuple[str, str]]:
        """Every (key, value) of *namespace*, in insertion order."""

    async def delete(self, namespace: str, keys: list[str]) -> int:
        """Remove *keys*; how many there were."""


class AdapterContext(Protocol):
    """Everything an adapter needs, injected (no globals)."""

    name: str
    """The account name from the config (``accounts.NAME``)."""
    logger: logging.Logger
    channels: tuple[ChannelSpec, ...]
    data_dir: str
    """A directory of the account's own, for files (attachments).  State belongs in
    :attr:`state`, not in files here."""
    http: aiohttp.ClientSession
    state: AccountState

    async def emit(self, event: InboundEvent, *, cursor: tuple[str, str] | None = None) -> None:
        """Hand an event to the relay; persisted (with the cursor, in one
        transaction) when this returns.  ``cursor`` is ``(name, value)``."""

    async def emit_many(self, events: list[InboundEvent], *,
                        cursor: tuple[str, str] | None = None) -> None:
        """Like ``emit`` for a page of events and the one cursor that covers them."""

    async def get_cursor(self, name: str) -> str | None: ...

    async def set_cursor(self, name: str, value: str) -> None:
        """Persist a cursor with no events (a page that held nothing new)."""

    def set_health(self, health: Health, detail: str = "") -> None: ...

    def rate_limit(self, *, remaining: int | None, reset_at: float | None,
                   limit: int | None = None) -> None:
        """Feed the account's token bucket from the platform's headers."""

    async def is_own(self, channel: ChannelKey, native_id: NativeId) -> bool:
        """True if *native_id* is one of the bridge's own copies (echo)."""

    async def consent(self, platform: str, handle: str) -> str | None:
        """The stored consent decision for an author: ``"in"``, ``"out"`` or None."""


@runtime_checkable
class Adapter(Protocol):
    async def run(self, ctx: AdapterContext) -> None: ...

    async def send(self, op: SendOp) -> SendResult: ...

    def capabilities(self, channel: ChannelKey) -> Capabilities: ...


class StrictModel(BaseModel):
    """Base for config models: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class OnlineCheck:
    ok: bool
    identity: str = ""
    """Who the credentials log in as."""
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    """What the operator should read though nothing is wrong (an instance's rules)."""
    error: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelCheck:
    """What ``hashbridge check --online`` found one channel will do, as the platform
    itself answered (never what the config merely says)."""

    ok: bool
    """False when the channel cannot be used as configured (``error`` says why)."""
    reads: str = ""
    """What it will read, as found: ``"room #kmers:hs.example (!abc:hs.example), joined"``;
    empty for a channel that only writes."""
    writes: str = ""
    """What it will write and whether posting is allowed: ``"posts as @bot (power 0,
    messages need 0)"``; empty for a channel that only reads."""
    warnings: tuple[str, ...] = ()
    """Usable, but the host should know (not joined yet, a quota nearly spent...)."""
    error: str = ""
    """Why it cannot be used, and what to fix."""


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinLink:
    """A public place a member opens: a tag page, a live search, a room, a list."""

    label: str
    url: str = ""
    """``https:``, ``mailto:`` or a ``matrix.to`` link; empty: the label alone (a
    place with no public address, such as a sandbox network)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinFacts:
    """How a member takes part in a community from one channel, said from the
    config alone (:meth:`AdapterFactory.join_facts`).  Every string is plain text
    (the web view escapes it) and public: never a secret, a server the bridge
    connects to (an API or IMAP host, a PDS) or a login."""

    where: tuple[JoinLink, ...]
    """Where to post and read, the main place first (the tag page on the instance,
    X's live search, the room, the list's ``mailto:``)."""
    how_to_post: str
    """One sentence: ``Post with #kmers from any Mastodon account.``"""
    how_to_follow: str
    """One sentence: how to see the whole conversation there."""
    follow_links: tuple[JoinLink, ...] = ()
    """Where following starts (a list's subscribe page), if not in ``where``."""
    posts_as: str = ""
    """Who the bridge's copies come from there (``@kmbridge.bsky.social``, ghost
    users ``@hb_…:example.org``, the list's sender name)."""
    commands: str = ""
    """How a member says ``!join``/``!leave`` there, with ``{command}`` where the
    command goes (``@kmbridge.bsky.social {command}``); empty: the adapter reads no
    commands there (X, email)."""
    commands_where: str = ""
    """Where such a command is read (``in a post that mentions the bridge's account``)."""
    link_command: str = ""
    """How ``!link`` is said there, with ``{command}`` for ``!link PLATFORM:HANDLE``."""
    receives_copies: bool = True
    """The bridge posts the other networks' posts here (False: read only, e.g. X
    with ``mode = "off"``)."""
    edits_copies: bool = False
    """The bridge can change its copies here when the original is edited."""
    deletes_copies: bool = False
    """The bridge can remove its copies here when the original is deleted."""
    copies_note: str = ""
    """What else members should know about the copies (``Mail cannot be unsent.``)."""


class AdapterFactory:
    """What an entry point names.  Subclass and set the class attributes."""

    platform: ClassVar[str]
    """The adapter name used as ``platform = "..."`` in config."""
    display_name: ClassVar[str]
    """Shown in attributions: ``Mastodon``, ``Matrix``, ``X``, ``Email``."""
    account_model: ClassVar[type[StrictModel]]
    channel_model: ClassVar[type[StrictModel]]
    channel_locator: ClassVar[str]
    """The channel key that says where on the platform (``hashtag``, ``room``...)."""
    secret_fields: ClassVar[frozenset[str]] = frozenset()
    """Account keys that hold secrets (never logged, must come from ${VAR})."""

    def create(self, account: StrictModel, channels: tuple[ChannelSpec, ...],
               services: Services) -> Adapter:
        """Build the adapter; no I/O.  ``services`` carries the process-wide helpers
        (the media-source registry the adapter adds its channels to)."""
        raise NotImplementedError

    def cli_commands(self) -> list[tuple[str, str, Callable[..., int]]]:
        """Extra ``hashbridge`` sub-commands: ``(name, help, fn(args) -> exit code)``;
        each gets ``-c/--config``."""
        return []

    def sandbox(self, workdir: str) -> PlatformSandbox | None:
        """A local stand-in of the platform for ``demo`` and tests, or None when
        it cannot run here (say why in the log)."""
        return None

    async def check_online(self, account: StrictModel, http: aiohttp.ClientSession,
                           services: Services) -> OnlineCheck:
        """Verify credentials against the platform (``hashbridge check --online``)."""
        return OnlineCheck(ok=True, warnings=("online check not implemented",))

    async def check_channels(self, account: StrictModel, channels: tuple[ChannelSpec, ...],
                             http: aiohttp.ClientSession, services: Services
                             ) -> dict[ChannelKey, ChannelCheck]:
        """After :meth:`check_online` logged in: what each of the account's
        *channels* will read and write, asked of the platform (the room joined?
        posting allowed? the search quota left?), read-only: nothing is posted,
        joined or changed.  A channel left out is printed as not checked."""
        return {}

    def join_facts(self, account: StrictModel, channel: ChannelSpec) -> JoinFacts | None:
        """How members take part from *channel* (the web view's about page and the
        live page's join panel), from *account*'s and *channel*'s config alone: no
        I/O, no secret, no server address the bridge connects to, no login.  None:
        the adapter says nothing (the page shows the hashtag alone)."""
        return None


EmitFn = Callable[[InboundEvent], Awaitable[None]]

__all__ = [
    "INLINE_MAX_BYTES",
    "AccountState",
    "Adapter",
    "AdapterContext",
    "AdapterError",
    "AdapterFactory",
    "AuthError",
    "Capabilities",
    "ChannelCheck",
    "ChannelSpec",
    "EmitFn",
    "Health",
    "JoinFacts",
    "JoinLink",
    "NativeReactions",
    "OnlineCheck",
    "PermanentError",
    "Rendered",
    "SendCreate",
    "SendDelete",
    "SendEdit",
    "SendOp",
    "SendReaction",
    "SendResult",
    "StrictModel",
    "TextFormat",
    "TooLarge",
    "TransientError",
    "Unsupported",
    "UnsupportedKind",
    "check_size",
    "convert_guarded",
    "read_guarded",
    "rejection",
]
