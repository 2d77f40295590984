"""A local stand-in for a platform, used by ``hashbridge demo``, the end-to-end
and fault suites and the benchmarks.

Each adapter factory may offer one through ``AdapterFactory.sandbox(workdir)``:
an emulator (Mastodon, X), a real local server (Synapse, Dovecot + aiosmtpd) or
an in-process fake.  The harness configures an account and a channel from it,
drives members' posts through it, and counts what arrived *on the platform
itself*, never in our store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


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


class PlatformSandbox(Protocol):
    platform: str

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

    async def messages(self) -> list[SandboxMessage]:
        """Everything on the channel now, oldest first, including deleted ones
        where the platform still shows a trace (else omitted)."""
