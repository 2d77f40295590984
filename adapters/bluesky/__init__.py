"""Bluesky adapter (the ``atproto`` SDK): a hashtag read from a firehose, posts
written to the account's PDS.

``config``      account and channel keys (service, handle, app password, firehose, PLC).
``convert``     inbound, pure: firehose records into the canonical model (facets at UTF-8
                byte offsets, replies, quotes, images, profiles).
``compose``     outbound, pure: a send operation into an ``app.bsky.feed.post`` record
                (tag and link facets, never mentions; 300 graphemes; record keys).
``client``      the XRPC shell: sessions, errors mapped to the core's failure kinds,
                the write-points budget.
``adapter``     :class:`~adapters.bluesky.adapter.BlueskyAdapter`: the firehose reader
                with its cursor, and the writer.
``sandbox``     the demo/test stand-in: a real local PDS (``testserver`` runs it from
                ``pds/``) whose members post through the SDK.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, ClassVar

from adapters.bluesky.config import BlueskyAccount, BlueskyChannel
from bridge.contract.adapter import (
    Adapter,
    AdapterError,
    AdapterFactory,
    AuthError,
    ChannelSpec,
    OnlineCheck,
    StrictModel,
)
from bridge.contract.services import Services

if TYPE_CHECKING:
    from collections.abc import Callable

    import aiohttp

    from bridge.contract.sandbox import PlatformSandbox

log = logging.getLogger("hashbridge.adapter.bluesky")


class BlueskyFactory(AdapterFactory):
    platform: ClassVar[str] = "bluesky"
    display_name: ClassVar[str] = "Bluesky"
    account_model: ClassVar[type[StrictModel]] = BlueskyAccount
    channel_model: ClassVar[type[StrictModel]] = BlueskyChannel
    channel_locator: ClassVar[str] = "hashtag"
    secret_fields: ClassVar[frozenset[str]] = frozenset({"app_password"})

    def create(self, account: StrictModel, channels: tuple[ChannelSpec, ...],
               services: Services) -> Adapter:
        from adapters.bluesky.adapter import BlueskyAdapter

        assert isinstance(account, BlueskyAccount)
        return BlueskyAdapter(account, channels, services=services)

    def sandbox(self, workdir: str) -> PlatformSandbox | None:
        from adapters.bluesky.sandbox import BlueskySandbox
        from adapters.bluesky.testserver import missing_reason, node_binary

        if node_binary() is None:
            log.info("no local Bluesky: %s", missing_reason())
            return None
        return BlueskySandbox(workdir)

    def sandbox_missing(self) -> str:
        """Why :meth:`sandbox` gave None, and what to do (``hashbridge demo``)."""
        from adapters.bluesky.testserver import missing_reason

        return missing_reason()

    def provision_sandbox(self, progress: Callable[[str], None]) -> None:
        """Install what :meth:`sandbox` needs (Node 22 and the reference PDS from npm,
        into ``.bluesky``): the demo's first-use step.  Raises RuntimeError saying why
        it failed."""
        from adapters.bluesky.testserver import provision_pds

        provision_pds(progress)

    async def check_online(self, account: StrictModel, http: aiohttp.ClientSession,
                           services: Services) -> OnlineCheck:
        """Log in with the app password and resolve the handle."""
        from adapters.bluesky.client import XrpcClient

        assert isinstance(account, BlueskyAccount)
        client = XrpcClient(account)
        try:
            await client.login()
            resolved = await client.query("com.atproto.identity.resolveHandle",
                                          handle=client.handle)
        except AdapterError as exc:
            kind = "bad_credentials" if isinstance(exc, AuthError) else type(exc).__name__
            return OnlineCheck(ok=False, error=f"{kind}: {exc}")
        finally:
            await client.close()
        warnings = []
        if resolved.get("did") != client.did:
            warnings.append(f"{client.handle} resolves to {resolved.get('did')}, not to the "
                            f"logged-in account {client.did}")
        if client.app_password_scope is False:
            warnings.append("logged in with the account's main password: make an app "
                            "password for the bridge (Settings → Privacy and security → "
                            "App passwords)")
        return OnlineCheck(ok=True, identity=f"@{client.handle} ({client.did}) on "
                                              f"{account.service}", warnings=tuple(warnings))


__all__ = ["BlueskyAccount", "BlueskyChannel", "BlueskyFactory"]
