"""Mastodon adapter: a hashtag as a channel, on Mastodon.py.

``config``      account and channel keys (instance URL, token, hashtag, visibility).
``convert``     inbound, pure: statuses, stream events and ``/api/v2/instance`` into the
                canonical model; Mastodon's length rule (``status_length``).
``compose``     outbound, pure: a send operation into ``status_post``/``status_update``
                arguments (the content warning counted in the length).
``graphemes``   grapheme clusters counted fast, as Mastodon counts them.
``client``      Mastodon.py's exceptions mapped onto the core's three kinds of failure.
``adapter``     :class:`~adapters.mastodon.adapter.MastodonAdapter`: the hashtag
                stream with timeline catch-up, sends, media uploads.
``sandbox``     the demo/test stand-in: ``emulator/`` (``app`` the routes, ``state``
                the data, ``instance`` the instance bodies, ``server`` runs it).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, ClassVar

from adapters.mastodon.config import MastodonAccount, MastodonChannel
from bridge.contract.adapter import (
    Adapter,
    AdapterError,
    AdapterFactory,
    ChannelSpec,
    OnlineCheck,
    StrictModel,
)
from bridge.contract.services import Services

if TYPE_CHECKING:
    import aiohttp

    from bridge.contract.sandbox import PlatformSandbox

log = logging.getLogger("hashbridge.adapter.mastodon")


class MastodonFactory(AdapterFactory):
    platform: ClassVar[str] = "mastodon"
    display_name: ClassVar[str] = "Mastodon"
    account_model: ClassVar[type[StrictModel]] = MastodonAccount
    channel_model: ClassVar[type[StrictModel]] = MastodonChannel
    channel_locator: ClassVar[str] = "hashtag"
    secret_fields: ClassVar[frozenset[str]] = frozenset({"access_token"})

    def create(self, account: StrictModel, channels: tuple[ChannelSpec, ...],
               services: Services) -> Adapter:
        from adapters.mastodon.adapter import MastodonAdapter

        assert isinstance(account, MastodonAccount)
        return MastodonAdapter(account, channels, services=services)

    def sandbox(self, workdir: str) -> PlatformSandbox | None:
        from adapters.mastodon.sandbox import MastodonSandbox

        return MastodonSandbox(workdir)

    async def check_online(self, account: StrictModel, http: aiohttp.ClientSession,
                           services: Services) -> OnlineCheck:
        """Log in, read the instance, and warn about etiquette problems (no bot flag,
        hashtag feeds closed to the bridge)."""
        from adapters.mastodon.adapter import MastodonAdapter

        assert isinstance(account, MastodonAccount)
        adapter = MastodonAdapter(account, ())
        try:
            me = await adapter._call(adapter.client.account_verify_credentials)
            limits = await adapter._ensure_instance()
        except AdapterError as exc:
            return OnlineCheck(ok=False, error=f"{type(exc).__name__}: {exc}")
        warnings = []
        if not me.get("bot"):
            warnings.append(f"@{me.get('acct')} is not flagged as a bot: tick 'This is an "
                            "automated account' in its profile (instances expect it)")
        if limits.hashtag_feed_access == "disabled":
            warnings.append("this instance disables remote hashtag feeds: the tag timeline "
                            "will be empty")
        return OnlineCheck(ok=True, identity=f"@{me.get('acct')} on {account.base_url} "
                                              f"(Mastodon {limits.version})",
                           warnings=tuple(warnings))
