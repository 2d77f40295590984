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
``seek``        the firehose's cursor of a moment, found by probing ``?cursor=`` (the
                first start's ``catchup_window``); ``simrelay`` simulates a relay of
                days of events for its tests and ``bench/bluesky_seek.py``.
``sandbox``     the demo/test stand-in: a real local PDS (``testserver`` runs it from
                ``pds/``, and installs it on first use) whose members post through the SDK.
``check``       ``check --online`` per channel: the firehose answering, authors resolvable,
                the account's status and handle (read-only, on the session already made).
``join``        how members take part from a channel, from the config alone (the web
                view's about page and join panel).
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
    ChannelCheck,
    ChannelSpec,
    JoinFacts,
    OnlineCheck,
    StrictModel,
)
from bridge.contract.model import ChannelKey
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

    def __init__(self) -> None:
        self._checked: dict[int, tuple[BlueskyAccount, str]] = {}
        """The session :meth:`check_online` made, by account, for :meth:`check_channels`
        to resume (``createSession`` is limited to 30 per 5 minutes); in memory only,
        taken by the first check of the account's channels."""

    def create(self, account: StrictModel, channels: tuple[ChannelSpec, ...],
               services: Services) -> Adapter:
        from adapters.bluesky.adapter import BlueskyAdapter

        assert isinstance(account, BlueskyAccount)
        return BlueskyAdapter(account, channels, services=services)

    def join_facts(self, account: StrictModel, channel: ChannelSpec) -> JoinFacts:
        """How members take part from *channel* (see ``join``): the config alone."""
        from adapters.bluesky.join import join_facts
        assert isinstance(account, BlueskyAccount) and isinstance(channel.options, BlueskyChannel)
        return join_facts(account, channel.options)

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
        """Log in with the app password and resolve the handle (a deactivated account
        logs in, but its handle resolves no more: its writing channels then say so)."""
        from adapters.bluesky.check import inactive, refusal_reason, session_status
        from adapters.bluesky.client import XrpcClient

        assert isinstance(account, BlueskyAccount)
        client = XrpcClient(account)
        warnings = []
        try:
            try:
                await client.login()
            except AuthError as exc:
                status, why = await refusal_reason(client)
                if status:
                    return OnlineCheck(ok=False, error=f"account {status}: {why}")
                return OnlineCheck(ok=False, error=f"bad_credentials: {exc}"
                                   + (f" ({why})" if why else ""))
            status = await session_status(client)
            if status:
                warnings.append(inactive(f"@{client.handle} ({client.did})", status))
            else:
                resolved = await client.query("com.atproto.identity.resolveHandle",
                                              handle=client.handle)
                if resolved.get("did") != client.did:
                    warnings.append(f"{client.handle} resolves to {resolved.get('did')}, "
                                    f"not to the logged-in account {client.did}")
            self._checked[id(account)] = (account, client.sdk.export_session_string())
        except AdapterError as exc:
            kind = "bad_credentials" if isinstance(exc, AuthError) else type(exc).__name__
            return OnlineCheck(ok=False, error=f"{kind}: {exc}")
        finally:
            await client.close()
        if client.app_password_scope is False:
            warnings.append("logged in with the account's main password: make an app "
                            "password for the bridge (Settings → Privacy and security → "
                            "App passwords)")
        return OnlineCheck(ok=True, identity=f"@{client.handle} ({client.did}) on "
                                              f"{account.service}", warnings=tuple(warnings))

    async def check_channels(self, account: StrictModel, channels: tuple[ChannelSpec, ...],
                             http: aiohttp.ClientSession, services: Services
                             ) -> dict[ChannelKey, ChannelCheck]:
        """Reading: the firehose answers, authors resolve, the hashtag; writing: the
        account is active (posts are taken), the handle, 300 graphemes.  Read-only;
        the session :meth:`check_online` made is resumed (else one login)."""
        from adapters.bluesky.check import check_channels

        assert isinstance(account, BlueskyAccount)
        held = self._checked.pop(id(account), None)
        session = held[1] if held is not None and held[0] is account else None
        return await check_channels(account, channels, http, services, session=session)


__all__ = ["BlueskyAccount", "BlueskyChannel", "BlueskyFactory"]
