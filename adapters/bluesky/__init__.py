"""Bluesky adapter (the ``atproto`` SDK): a hashtag read from a firehose, posts
written to the account's PDS.  ``convert.py`` and ``compose.py`` are the pure
conversions, ``client.py`` the XRPC shell, ``adapter.py`` the reader and writer,
``sandbox.py`` a real local PDS for the demo and tests (``testserver.py``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

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

if TYPE_CHECKING:
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
               services: Mapping[str, Any]) -> Adapter:
        from adapters.bluesky.adapter import BlueskyAdapter

        assert isinstance(account, BlueskyAccount)
        return BlueskyAdapter(account, channels, services=services)

    def sandbox(self, workdir: str) -> PlatformSandbox | None:
        from adapters.bluesky.sandbox import BlueskySandbox
        from adapters.bluesky.testserver import missing_reason, node_binary

        if node_binary() is None:
            log.warning("no local Bluesky: %s", missing_reason())
            return None
        return BlueskySandbox(workdir)

    async def check_online(self, account: StrictModel, http: aiohttp.ClientSession,
                           services: Mapping[str, Any]) -> OnlineCheck:
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
