"""The canonical model every platform converts through.

Events are frozen, slotted, keyword-only dataclasses forming a closed union
(:data:`InboundEvent`); handle them with ``match`` and ``assert_never``.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NewType

from bridge.contract.richtext import RichText

PostId = NewType("PostId", str)
"""Stable id of a canonical Post: a ULID string, sortable by creation time."""

DeliveryId = NewType("DeliveryId", str)
"""Id of one outbox row (a Post's operation on one target channel); doubles as the
idempotency key handed to adapters."""

ChannelKey = NewType("ChannelKey", str)
"""``<community>/<index>`` or the channel's configured ``name``; unique in a config."""

NativeId = NewType("NativeId", str)
"""A platform's own id for a message (status id, tweet id, event id, Message-ID)."""


_UNSTORABLE = re.compile("[\ud800-\udfff\ufffe\uffff]")
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_post_id() -> PostId:
    """A ULID (48-bit milliseconds + 80 random bits, Crockford base32): sortable
    by creation time.  Built directly; the ulid package's generator is ten times
    slower and this is on the hot path."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        value, r = divmod(value, 32)
        chars.append(_CROCKFORD[r])
    return PostId("".join(reversed(chars)))


def new_delivery_id() -> DeliveryId:
    """Time-ordered and unique: milliseconds in base 36 plus 64 random bits
    (cheaper than a ULID on the hot path; only uniqueness is needed)."""
    return DeliveryId(f"{_base36(time.time_ns() // 1_000_000)}{os.urandom(8).hex()}")


def derived_delivery_id(source: str, channel: str, op: str, at: float) -> DeliveryId:
    """The id (and idempotency key) of an operation that comes from a message on a
    platform: the same message, target and operation always get the same id.  A
    post read again after a restored backup or a lost cursor is then sent under
    the key it had the first time, and platforms that keep keys refuse the
    repeat.  *source* names the origin message (and, for an edit, its version);
    *at* is its time on the platform, which leads the id so that new rows land
    at the end of the outbox's index (random ids cost twice as much to insert)."""
    return delivery_ids(source, [channel], op, at)[0]


def delivery_ids(source: str, channels: list[str], op: str, at: float) -> list[DeliveryId]:
    """:func:`derived_delivery_id` for several target channels at once."""
    head = _base36(int(at * 1000))
    blake = hashlib.blake2b
    return [DeliveryId(head + blake(f"{source}\x1f{ch}\x1f{op}".encode(),
                                    digest_size=12).hexdigest()) for ch in channels]


def _base36(n: int) -> str:
    digits = ""
    while n:
        n, r = divmod(n, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[r] + digits
    return digits or "0"


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class Author:
    platform: str
    """Adapter name of the network the author posted on (``mastodon``, ``matrix``...)."""
    handle: str
    """Platform-unique handle (``@alice@example.social``, ``@alice:matrix.org``)."""
    display_name: str = ""
    """What the person calls themselves: shown, never trusted (anyone can pick any name)."""
    profile_url: str = ""
    account_id: str = ""
    """The platform's stable id for the account where the handle can change hands
    (X's numeric user id); empty where the handle is that id (Mastodon's
    ``@user@host``, a Matrix user id, the email adapter's keyed address hash)."""
    is_bot: bool = False
    opted_out: bool = False
    """The author's profile says ``#nobridge``: never relayed."""
    reluctant: str = ""
    """A softer objection on the profile (``#nobot``, not discoverable or
    indexable): not relayed unless the author opted in with ``!join``
    (Bridgy Fed's rule).  The text says which."""

    def __post_init__(self) -> None:
        # A name from a JSON payload may hold a lone surrogate (an emoji cut in
        # half): no UTF-8 store or XML feed can hold it, so it goes here, once.
        for f in ("handle", "display_name", "profile_url"):
            value = getattr(self, f)
            if _UNSTORABLE.search(value):
                object.__setattr__(self, f, _UNSTORABLE.sub("", value))

    @property
    def name(self) -> str:
        return self.display_name.strip() or self.handle

    @property
    def identity(self) -> str:
        """Who posted, for every decision the bridge takes on a person's behalf
        (duplicate linking, linked accounts, chat-event hosts): the platform and
        its stable account id, ``twitter:783214`` or ``mastodon:@alice@example.social``.
        Never the display name."""
        return identity_of(self.platform, self.handle, self.account_id)


def identity_of(platform: str, handle: str, account_id: str = "") -> str:
    """:attr:`Author.identity` from its parts (rows of the store)."""
    return f"{platform}:{account_id or handle.casefold()}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Attachment:
    url: str
    media_type: str = "application/octet-stream"
    alt_text: str = ""
    size: int | None = None
    filename: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class PollOption:
    title: str
    votes: int | None = None
    """Votes counted so far, where the platform tells (shown once the poll ended)."""


MAX_POLL_OPTIONS = 20
"""Options relayed of one poll (Mastodon allows 4 by default, X 4, Matrix 20)."""
MAX_POLL_TITLE = 300
"""Characters relayed of one option."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Poll:
    """A poll the author attached.  Relayed as text (its options, its end and
    the original's address to vote on), never as a poll of the target: votes
    cast on copies would split and could not be merged back."""

    options: tuple[PollOption, ...]
    ends_at: datetime | None = None
    closed: bool = False
    """Voting has ended (the platform says so, or the end time has passed)."""
    multiple: bool = False
    voters: int | None = None

    def __post_init__(self) -> None:
        # A remote server's poll can be of any size: what is relayed is bounded.
        if len(self.options) > MAX_POLL_OPTIONS or any(
                len(o.title) > MAX_POLL_TITLE for o in self.options):
            object.__setattr__(self, "options", tuple(
                o if len(o.title) <= MAX_POLL_TITLE else
                PollOption(title=o.title[:MAX_POLL_TITLE - 1] + "…", votes=o.votes)
                for o in self.options[:MAX_POLL_OPTIONS]))

    def ended(self, now: datetime | None = None) -> bool:
        if self.closed:
            return True
        return self.ends_at is not None and self.ends_at <= (now or utcnow())


@dataclass(frozen=True, slots=True, kw_only=True)
class QuotedPost:
    """The post a quote post quotes: its address always; its author and words
    where they could be read and that author would be relayed by the bridge
    (else only the link is copied, see :meth:`link_only`)."""

    url: str
    network: str
    """Display name of the quoted post's network (``Mastodon``, ``X``, ``Bluesky``)."""
    author: Author | None = None
    text: RichText = field(default_factory=RichText)

    def link_only(self) -> QuotedPost:
        return QuotedPost(url=self.url, network=self.network)


def extras_to_json(poll: Poll | None, quote: QuotedPost | None) -> str:
    """The stored form of a post's poll and quote (``posts.extras_json``)."""
    out: dict[str, Any] = {}
    if poll is not None:
        out["poll"] = {
            "options": [{"title": o.title, "votes": o.votes} for o in poll.options],
            "ends_at": poll.ends_at.timestamp() if poll.ends_at else None,
            "closed": poll.closed, "multiple": poll.multiple, "voters": poll.voters}
    if quote is not None:
        q: dict[str, Any] = {"url": quote.url, "network": quote.network,
                             "text": json.loads(quote.text.to_json())}
        if quote.author is not None:
            a = quote.author
            q["author"] = {"platform": a.platform, "handle": a.handle,
                           "display_name": a.display_name, "profile_url": a.profile_url,
                           "account_id": a.account_id}
        out["quote"] = q
    return json.dumps(out, ensure_ascii=False, separators=(",", ":")) if out else "{}"


def extras_from_json(data: str | None) -> tuple[Poll | None, QuotedPost | None]:
    """The inverse of :func:`extras_to_json`."""
    if not data or data == "{}":
        return None, None
    obj = json.loads(data)
    poll = quote = None
    if p := obj.get("poll"):
        ends = p.get("ends_at")
        poll = Poll(options=tuple(PollOption(title=o["title"], votes=o.get("votes"))
                                  for o in p["options"]),
                    ends_at=datetime.fromtimestamp(ends, UTC) if ends is not None else None,
                    closed=bool(p.get("closed")), multiple=bool(p.get("multiple")),
                    voters=p.get("voters"))
    if q := obj.get("quote"):
        a = q.get("author")
        quote = QuotedPost(url=q["url"], network=q["network"],
                           author=Author(**a) if a else None,
                           text=RichText.from_json(json.dumps(q.get("text") or [])))
    return poll, quote


@dataclass(frozen=True, slots=True, kw_only=True)
class Post:
    """A canonical message, as stored and as rendered for every target."""

    id: PostId
    community: str
    origin_channel: ChannelKey
    origin_native_id: NativeId
    permalink: str
    author: Author
    text: RichText
    attachments: tuple[Attachment, ...] = ()
    reply_to: PostId | None = None
    content_warning: str = ""
    language: str = ""
    created_at: datetime = field(default_factory=utcnow)
    is_notice: bool = False
    """The bridge's own announcement (chat events, consent answers), not a person's post."""
    poll: Poll | None = None
    quote: QuotedPost | None = None


class Op(enum.StrEnum):
    CREATE = "create"
    EDIT = "edit"
    DELETE = "delete"


class Role(enum.StrEnum):
    """What a native id is to its post (the values are the ones stored)."""

    ORIGIN = "origin"
    """The message the author posted."""
    COPY = "copy"
    """A part of the bridge's copy on another channel."""
    ALIAS = "alias"
    """Another id of a copy's part (media sent as separate events), or the id
    of a part an edit removed (still known, so its echoes are recognised)."""


class DeliveryState(enum.StrEnum):
    """Where one outbox row stands (the values are the ones stored)."""

    PENDING = "pending"
    SENT = "sent"
    DEAD = "dead"
    SKIPPED = "skipped"


# ---------------------------------------------------------------- inbound events
# What an adapter emits. They carry native ids; the relay maps them to Posts.


@dataclass(frozen=True, slots=True, kw_only=True)
class Posted:
    channel: ChannelKey
    native_id: NativeId
    author: Author
    text: RichText
    permalink: str = ""
    attachments: tuple[Attachment, ...] = ()
    reply_to_native: NativeId | None = None
    content_warning: str = ""
    language: str = ""
    created_at: datetime = field(default_factory=utcnow)
    public: bool = True
    """False for posts the platform marks as not public (followers-only, DMs)."""
    command: str = ""
    """A bot command addressed to the bridge (``!join``, ``!leave``), already parsed."""
    poll: Poll | None = None
    quote: QuotedPost | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Edited:
    channel: ChannelKey
    native_id: NativeId
    text: RichText
    content_warning: str = ""
    attachments: tuple[Attachment, ...] | None = None
    edited_at: datetime = field(default_factory=utcnow)
    extras: tuple[Poll | None, QuotedPost | None] | None = None
    """The post's poll and quote now, where the platform says (a Mastodon
    ``status.update`` carries the whole status: a quote revoked, a poll edited);
    None: unchanged."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Deleted:
    channel: ChannelKey
    native_id: NativeId


LIKE = "\u2665"
"""The key of a like or favourite (networks with one kind of reaction)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Reacted:
    """Someone reacted to a post (a like, a favourite, a Matrix reaction), or took
    the reaction back.  Counted on the post's card and transcript; never relayed
    as a message."""

    channel: ChannelKey
    native_id: NativeId
    """The post reacted to, as the platform names it: one of our copies or an
    original the bridge relayed.  Empty on a removal known only by
    :attr:`reaction_id` (a Matrix redaction, a Bluesky like's delete)."""
    reactor: Author
    """Who reacted (the consent and the blocklist apply to them as to authors).
    Empty handle on an aggregate (:attr:`total`)."""
    key: str = LIKE
    """What they reacted with: an emoji (Matrix) or :data:`LIKE`."""
    added: bool = True
    """False: the reaction was taken back."""
    reaction_id: str = ""
    """The reaction's own id on its platform (Matrix event id, Bluesky like
    URI), by which its removal is found."""
    total: int | None = None
    """An aggregate count read from the platform (X's ``like_count``): the
    post's whole count on this network, with no reactor named."""


class RejectKind(enum.StrEnum):
    """Why an inbound event was not read: the ``reason`` label of the metrics."""

    UNREADABLE = "unreadable"
    """Converting it raised (malformed payload, a converter's bug, hostile input)."""
    TOO_LARGE = "too large"
    """Over the size its platform allows (checked before any parsing)."""
    RELAY_ERROR = "relay error"
    """Converted, but the relay's own steps (policy, persist) failed on it."""
    POLICY = "policy"
    """Refused by the community's policy (consent, blocklist, rate...)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejected:
    """An event that arrived but cannot be read: it costs itself only.  The
    relay records it with its reason (``status``, the admin page, ``/metrics``)
    and the adapter's cursor moves past it with the rest of its page."""

    channel: ChannelKey
    native_id: NativeId
    """The platform's id if it could be found, else a stand-in that names the
    place (``uid:42``)."""
    reason: str
    """Short, for an operator: ``unreadable: RecursionError: ...``."""
    kind: RejectKind = RejectKind.UNREADABLE


InboundEvent = Posted | Edited | Deleted | Reacted | Rejected
"""The closed union of what adapters report happened on their platform."""
