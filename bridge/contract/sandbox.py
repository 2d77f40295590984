"""A local stand-in for a platform, used by ``hashbridge demo``, the conformance kit
(:mod:`bridge.conformance`), the fault suites and the benchmarks.

Each adapter factory may offer one through ``AdapterFactory.sandbox(workdir)``:
an emulator (Mastodon, X), a real local server (Synapse, Dovecot + aiosmtpd) or
an in-process fake.  The harness configures an account and a channel from it,
drives members' posts through it, and counts what arrived *on the platform
itself*, never in our store.

A sandbox also says how its platform fails (:meth:`PlatformSandbox.endpoints`,
:meth:`PlatformSandbox.failure`): the conformance kit puts a fault proxy in front of
each endpoint and answers with the platform's own error bodies and rate-limit
headers, so a new network gets the outage, 5xx and 429 scenarios by describing
them here, in its own package.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol


@dataclass(frozen=True, slots=True, kw_only=True)
class SandboxMedia:
    """One attachment as the platform shows it."""

    media_type: str
    alt_text: str = ""
    size: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SandboxMessage:
    """One message as the platform shows it."""

    native_id: str
    author: str
    text: str
    """Plain text as shown (HTML stripped)."""
    by_bridge: bool
    reply_to: str | None = None
    edited: bool = False
    deleted: bool = False
    key: str = ""
    """The idempotency key the bridge sent with it, where the platform keeps one."""
    media: tuple[SandboxMedia, ...] = ()
    pings: tuple[str, ...] = ()
    """Who the platform notifies because of this message (mentions it turned into
    notifications); the bridge's copies must have none."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SandboxFeatures:
    """What members can do on the platform, as far as the sandbox drives it.  What the
    bridge's copies can do (edit, delete, split) is the adapter's ``Capabilities``."""

    member_edits: bool = True
    """Members can edit their posts (and the adapter reads edits)."""
    member_deletes: bool = True
    """Members can delete their posts (and the adapter learns of it)."""
    deletes_noticed_seconds: float = 1.0
    """How soon the adapter notices a member's delete (X: only by looking relayed posts
    up again, about 7 s in its sandbox)."""
    deletes_seen_after_downtime: bool = True
    """A member's delete made while the bridge was down reaches the copies after it is
    back (Mastodon's catch-up reads forward from a cursor: such a delete is never seen)."""
    member_media: bool = False
    """:meth:`PlatformSandbox.post_with_media` works (and copies show media)."""
    in_process: bool = False
    """Runs inside the test process in milliseconds (an emulator, a file): the kit may
    start one as a partner of another network (the media scenario does)."""
    commands: bool = False
    """:meth:`PlatformSandbox.command_as_member` works (the adapter reads ``!join``)."""
    member_polls: bool = False
    """:meth:`PlatformSandbox.post_poll_as_member` works (members post polls the
    adapter reads)."""
    member_quotes: bool = False
    """:meth:`PlatformSandbox.post_quote_as_member` works (members quote posts and
    the adapter reads the quoted post)."""
    replies_need_mention: bool = False
    """The bot may answer a member's post only when that post mentions it (X): a copy
    of a reply to a member's post there is posted standalone."""


Fault = Literal["error", "ratelimit"]
"""``error``: the platform's own 5xx answers; ``ratelimit``: its 429 with its real headers."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """One address the bridge's account reaches the platform at (on 127.0.0.1)."""

    name: str
    """Named in :meth:`PlatformSandbox.account_config_via` and :meth:`~PlatformSandbox.failure`."""
    port: int
    protocol: Literal["http", "smtp", "imap", "tcp"] = "http"


@dataclass(frozen=True, slots=True, kw_only=True)
class FailureAnswer:
    """What the platform answers in a fault, per protocol: an HTTP status, body and
    headers; an SMTP reply line to ``MAIL FROM``; an IMAP ``* BYE`` line."""

    status: int = 0
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    smtp_reply: str = ""
    imap_bye: str = ""


class PoisonKind(enum.StrEnum):
    ALWAYS = "always"
    """Must be rejected (recorded with its reason), never relayed."""
    EITHER = "either"
    """Rejected, or relayed once the converters handle it; never lost silently."""


class PlatformSandbox(Protocol):
    platform: str
    features: SandboxFeatures

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def account_config(self) -> dict[str, Any]:
        """The ``[accounts.NAME]`` table (without ``platform``) for the bridge's account."""

    def channel_config(self) -> dict[str, Any]:
        """The platform keys of a ``[[communities.channels]]`` entry (the locator)."""

    async def post_as_member(self, author: str, text: str,
                             reply_to: str | None = None) -> str:
        """Post as a community member (not the bridge); return the native id."""

    async def edit_as_member(self, native_id: str, text: str) -> None: ...

    async def delete_as_member(self, native_id: str) -> None: ...

    async def post_with_media(self, author: str, text: str, data: bytes, media_type: str,
                              alt_text: str) -> str:
        """Post one image with its alt text as a member (``features.member_media``)."""

    async def command_as_member(self, author: str, command: str) -> str:
        """Address a bot command (``!join``, ``!leave``) to the bridge the way the
        platform's members do (``features.commands``); return the native id."""

    async def post_poll_as_member(self, author: str, text: str, options: list[str]) -> str:
        """Post *text* with a poll of *options* as a member (``features.member_polls``)."""

    async def post_quote_as_member(self, author: str, text: str, quoted: str) -> str:
        """Post *text* quoting the member's post *quoted* (a native id on this
        network) as a member (``features.member_quotes``)."""

    async def messages(self) -> list[SandboxMessage]:
        """Everything on the channel now, oldest first, including deleted ones
        where the platform still shows a trace (else omitted)."""

    async def post_poison(self, author: str, tag: str) -> dict[str, PoisonKind]:
        """Post what the adapter must not choke on (deep HTML, malformed fields, a post
        over the platform's size), each text holding *tag*; native id -> kind."""

    def endpoints(self) -> list[Endpoint]:
        """Where the bridge's account connects (empty: no network faults to inject)."""

    def account_config_via(self, ports: Mapping[str, int], timeout: float) -> dict[str, Any]:
        """:meth:`account_config` with each endpoint named in *ports* reached at
        127.0.0.1:port instead (a fault proxy), and every client timeout at most
        *timeout* seconds, so a stalled platform is noticed in seconds."""

    def failure(self, endpoint: str, fault: Fault, n: int, until: float
                ) -> FailureAnswer | None:
        """The platform's own answer to the *n*-th request (from 1) on *endpoint* during
        a *fault* lasting until *until* (epoch seconds; a 429 resets then); None where
        that endpoint has no such answer (IMAP has no rate limit)."""

    def unthrottle(self) -> None:
        """Lift the platform's own rate limits for a long run (the suites that test them
        inject 429s themselves)."""
