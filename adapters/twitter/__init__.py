"""X/Twitter adapter: recent-search polling in, each/digest/off out, on tweepy's
AsyncClient, inside a per-account budget and X's automation rules.

``config``      account and channel keys (credentials, prices and caps, the query).
``convert``     inbound, pure: search and lookup pages into the canonical model.
``compose``     outbound, pure: X's weighted length, fitting, URL defusing, the digest
                text; ``textrules`` is the fast twitter-text rule it counts with.
``digest``      digest mode's durable queue (pure data, kept as a cursor).
``budget``      the spending ledger: pay-per-use prices, daily and monthly caps.
``client``      the I/O shell around tweepy: rate-limit headers, errors mapped.
``media``       attachments fetched through the core's guard and uploaded (v1.1).
``check``       ``check --online`` per channel: the project's read quota (the usage
                endpoint, never a billed search) and the daily post budget.
``adapter``     :class:`~adapters.twitter.adapter.TwitterAdapter`: sends, digests and
                capabilities; its reading half (search polling, the deletion re-check)
                is the ``inbound`` mixin.
``sandbox``     the demo/test stand-in: ``emulator/`` (``app`` the routes, ``state`` the
                world, ``wire`` X's problem bodies).
``join``        how members take part from a channel, from the config alone (the web
                view's about page and join panel).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, ClassVar

from adapters.twitter.config import TwitterAccount, TwitterChannel
from bridge.contract.adapter import (
    Adapter,
    AdapterError,
    AdapterFactory,
    ChannelCheck,
    ChannelSpec,
    JoinFacts,
    OnlineCheck,
    StrictModel,
)
from bridge.contract.model import ChannelKey
from bridge.contract.services import Services

if TYPE_CHECKING:
    import aiohttp

    from bridge.contract.sandbox import PlatformSandbox

log = logging.getLogger("hashbridge.adapter.twitter")


class TwitterFactory(AdapterFactory):
    platform: ClassVar[str] = "twitter"
    display_name: ClassVar[str] = "X"
    account_model: ClassVar[type[StrictModel]] = TwitterAccount
    channel_model: ClassVar[type[StrictModel]] = TwitterChannel
    channel_locator: ClassVar[str] = "query"
    secret_fields: ClassVar[frozenset[str]] = frozenset(
        {"consumer_key", "consumer_secret", "access_token", "access_token_secret",
         "bearer_token"})

    def create(self, account: StrictModel, channels: tuple[ChannelSpec, ...],
               services: Services) -> Adapter:
        from adapters.twitter.adapter import TwitterAdapter

        assert isinstance(account, TwitterAccount)
        return TwitterAdapter(account, channels, services=services)

    def join_facts(self, account: StrictModel, channel: ChannelSpec) -> JoinFacts:
        """How members take part from *channel* (see ``join``): the config alone."""
        from adapters.twitter.join import join_facts
        assert isinstance(account, TwitterAccount) and isinstance(channel.options, TwitterChannel)
        return join_facts(account, channel.options)

    def sandbox(self, workdir: str) -> PlatformSandbox | None:
        from adapters.twitter.sandbox import TwitterSandbox

        return TwitterSandbox(workdir)

    async def check_online(self, account: StrictModel, http: aiohttp.ClientSession,
                           services: Services) -> OnlineCheck:
        from adapters.twitter.client import XClient

        assert isinstance(account, TwitterAccount)
        client = XClient(consumer_key=account.consumer_key,
                         consumer_secret=account.consumer_secret,
                         access_token=account.access_token,
                         access_token_secret=account.access_token_secret,
                         bearer_token=account.bearer_token, api_base=account.api_base,
                         logger=log, timeout=account.request_timeout)
        try:
            r = await client.call("users/me", lambda c: c.get_me(user_auth=True))
        except AdapterError as e:
            return OnlineCheck(ok=False, error=str(e))
        finally:
            await client.close()
        name = str(r.data.username)
        warnings: tuple[str, ...] = ()
        if account.bot_username and account.bot_username.lower() != name.lower():
            warnings = (f"bot_username is {account.bot_username} but the credentials log in "
                        f"as {name}",)
        return OnlineCheck(ok=True, identity="@" + name, warnings=warnings)

    async def check_channels(self, account: StrictModel, channels: tuple[ChannelSpec, ...],
                             http: aiohttp.ClientSession, services: Services
                             ) -> dict[ChannelKey, ChannelCheck]:
        """Each channel's search and the project's monthly read quota (GET
        /2/usage/tweets, not the billed search), and the daily post budget it is held
        to, as whom.  Nothing is read that X bills per post, nothing is posted."""
        from adapters.twitter.check import check_channels

        assert isinstance(account, TwitterAccount)
        return await check_channels(account, channels)


__all__ = ["TwitterAccount", "TwitterChannel", "TwitterFactory"]
