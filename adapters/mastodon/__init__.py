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
``recheck``     edits and deletes made while the stream was not read: the relayed
                posts of the last 48 h, asked again when the stream connects.
``check``       ``check --online`` per channel: the tag timeline read, posting
                allowed (account, scopes), visibility and length.
``sandbox``     the demo/test stand-in: ``emulator/`` (``app`` the routes, ``state``
                the data, ``instance`` the instance bodies, ``server`` runs it).
``join``        how members take part from a channel, from the config alone (the web
                view's about page and join panel).
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, ClassVar

from adapters.mastodon.config import BOT_FLAG_HOWTO, MastodonAccount, MastodonChannel
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

    def join_facts(self, account: StrictModel, channel: ChannelSpec) -> JoinFacts:
        """How members take part from *channel* (see ``join``): the config alone."""
        from adapters.mastodon.join import join_facts
        assert isinstance(account, MastodonAccount) and isinstance(channel.options, MastodonChannel)
        return join_facts(account, channel.options)

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
            warnings.append(f"@{me.get('acct')} is not flagged as a bot: {BOT_FLAG_HOWTO}")
        if limits.hashtag_feed_access == "disabled":
            warnings.append("this instance disables remote hashtag feeds: the tag timeline "
                            "will be empty")
        try:
            rules = await adapter._call(adapter.client.instance_rules)
        except AdapterError as exc:
            notes = [f"instance rules: not available ({type(exc).__name__}: {exc}); read "
                     f"them on {account.base_url}/about"]
        else:
            notes, about_bots = rule_notes(rules, account.base_url)
            if about_bots:
                warnings.append(
                    f"instance rule{'s' if len(about_bots) > 1 else ''} "
                    f"{', '.join(about_bots)} speak{'' if len(about_bots) > 1 else 's'} of "
                    "bots, automation, timelines or hashtags: check that relayed posts may be "
                    "public there (visibility = \"public\", the default), or set visibility = "
                    "\"unlisted\" on this account's channels")
        return OnlineCheck(ok=True, identity=f"@{me.get('acct')} on {account.base_url} "
                                              f"(Mastodon {limits.version})",
                           warnings=tuple(warnings), notes=tuple(notes))

    async def check_channels(self, account: StrictModel, channels: tuple[ChannelSpec, ...],
                             http: aiohttp.ClientSession, services: Services
                             ) -> dict[ChannelKey, ChannelCheck]:
        """Each channel's hashtag timeline (its newest post), and whether the account
        may post there (not suspended, the token's scopes), with which visibility
        and up to how many characters.  GETs only."""
        from adapters.mastodon.check import check_channels

        assert isinstance(account, MastodonAccount)
        return await check_channels(account, channels)


_ABOUT_BOTS = re.compile(r"\b(bots?|automat\w*|unlisted|public timelines?|"
                         r"federated timelines?|hashtags?)\b", re.I)


def rule_notes(rules: object, base_url: str) -> tuple[list[str], list[str]]:
    """``/api/v1/instance/rules`` as lines for the operator, and the numbers of the
    rules that speak of bots or visibility (to be read before posting public)."""
    if not isinstance(rules, list) or not rules:
        return [f"instance rules: none published (see {base_url}/about)"], []
    lines = [f"instance rules ({base_url}/about):"]
    about_bots = []
    for n, rule in enumerate(rules, 1):
        text = " ".join(str(rule.get("text") or "").split()) if isinstance(rule, dict) else ""
        hint = " ".join(str(rule.get("hint") or "").split()) if isinstance(rule, dict) else ""
        lines.append(f"  {n}. {text}" + (f" ({hint})" if hint else ""))
        if _ABOUT_BOTS.search(f"{text} {hint}"):
            about_bots.append(str(n))
    return lines, about_bots
