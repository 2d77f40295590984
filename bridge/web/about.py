"""What the about page and the live page's join panel say: how to take part in a
community from each of its networks, and what the bridge does with members' posts.

Built from the config alone: each channel's facts come from its adapter's
:meth:`~bridge.contract.adapter.AdapterFactory.join_facts` (no network call, no
secret, no server address or login), the rest from the community's and channels'
own keys (``consent``, ``direction``, ``on_edit``, ``on_delete``).  Pure.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from bridge.contract.adapter import ChannelSpec, JoinFacts, JoinLink
from bridge.contract.consent import OPT_OUT_TAGS
from bridge.runtime.config import ChannelConfig, CommunityConfig, Config
from bridge.web.present import badge_class

log = logging.getLogger("hashbridge.web.about")


@dataclass(frozen=True, slots=True)
class NetworkJoin:
    """One channel of a community, as a member there reads about it."""

    network: str
    """The network's name as posts show it (``Mastodon``, or the channel's own name)."""
    badge: str
    facts: JoinFacts
    reads: bool
    """Posts made there are relayed (direction ``both`` or ``in``)."""
    writes: bool
    """The other networks' posts are copied there."""
    reaches: tuple[str, ...]
    """The networks a member's post made there is copied to."""
    on_edit: str
    """What an edit of the original does to the copies here, in words."""
    on_delete: str
    """What deleting the original does to the copies here, in words."""

    @property
    def main(self) -> JoinLink:
        return self.facts.where[0]

    def command(self, command: str) -> str:
        """How *command* (``!join``) is said here; "" where it cannot be."""
        return self.facts.commands.replace("{command}", command) if self.facts.commands \
            else ""

    def link_command(self) -> str:
        return self.facts.link_command.replace("{command}", "!link PLATFORM:HANDLE")


@dataclass(frozen=True, slots=True)
class JoinPage:
    hashtag: str
    consent: str
    """``opt-out`` or ``opt-in``."""
    networks: tuple[NetworkJoin, ...]
    opt_out_tags: tuple[str, ...]
    no_commands: tuple[str, ...]
    """Networks whose members cannot say ``!join`` (their adapters read no commands)."""
    platforms: tuple[str, ...]
    """The platform names ``!link`` takes (``mastodon``, ``matrix``...)."""


def _fallback(hashtag: str, network: str) -> JoinFacts:
    """For an adapter that says nothing of itself (a third party's, before it does)."""
    return JoinFacts(where=(JoinLink(label=f"#{hashtag} on {network}"),),
                     how_to_post=f"Post with #{hashtag} on {network}.",
                     how_to_follow=f"Follow #{hashtag} on {network}.")


_SCHEMES = ("https://", "http://", "mailto:")


def _safe_links(links: tuple[JoinLink, ...]) -> tuple[JoinLink, ...]:
    """Links an adapter gave, kept as links only with a web or mail scheme (a
    third party's ``javascript:`` becomes its label alone)."""
    return tuple(lk if lk.url.lower().startswith(_SCHEMES) else JoinLink(label=lk.label)
                 for lk in links)


def _edit_words(ch: ChannelConfig, facts: JoinFacts) -> str:
    mode = ch.common.on_edit
    if mode == "correct":
        return "a correction is posted as a reply to the copy"
    if mode == "update" and facts.edits_copies:
        return "the copy is edited too"
    return "the copy keeps its first text"


def _delete_words(ch: ChannelConfig, facts: JoinFacts) -> str:
    mode = ch.common.on_delete
    if mode == "notice":
        return "a short notice says the post was deleted"
    if mode == "delete" and facts.deletes_copies:
        return "the copy is deleted too"
    return "the copy stays"


def channel_facts(config: Config, ch: ChannelConfig) -> tuple[str, JoinFacts]:
    """The channel's network name and its adapter's join facts."""
    acct = config.accounts[ch.account]
    custom = getattr(acct.options, "display_name", None)
    network = str(custom or acct.factory.display_name)
    spec = ChannelSpec(key=ch.key, community=ch.community, hashtag=ch.hashtag,
                       direction=ch.common.direction, options=ch.options)
    try:
        facts = acct.factory.join_facts(acct.options, spec)
    except Exception:  # a third party's bug must not take the live page down
        log.exception("join_facts of %s failed; showing the hashtag alone", ch.key)
        facts = None
    facts = facts or _fallback(ch.hashtag, network)
    if not facts.where:
        facts = replace(facts, where=_fallback(ch.hashtag, network).where)
    return network, replace(facts, where=_safe_links(facts.where),
                            follow_links=_safe_links(facts.follow_links))


def join_page(config: Config, comm: CommunityConfig) -> JoinPage:
    found = [(ch, *channel_facts(config, ch)) for ch in comm.channels]
    names = [net for _, net, _ in found]
    # A network with two channels (two rooms) is named with its place in the list.
    labels = [net if names.count(net) == 1 else f"{net} ({facts.where[0].label})"
              for _, net, facts in found]
    receiving = [(ch, label) for (ch, _, facts), label in zip(found, labels, strict=True)
                 if ch.writes and facts.receives_copies]
    networks = []
    for ch, net, facts in found:
        reaches = tuple(dict.fromkeys(n for other, n in receiving if other.key != ch.key))
        networks.append(NetworkJoin(
            network=net, badge=badge_class(net), facts=facts, reads=ch.reads,
            writes=ch.writes and facts.receives_copies, reaches=reaches if ch.reads else (),
            on_edit=_edit_words(ch, facts), on_delete=_delete_words(ch, facts)))
    return JoinPage(
        hashtag=comm.settings.hashtag, consent=comm.settings.consent,
        networks=tuple(networks), opt_out_tags=tuple(sorted(OPT_OUT_TAGS)),
        no_commands=tuple(dict.fromkeys(n.network for n in networks
                                        if n.reads and not n.facts.commands)),
        platforms=tuple(sorted({ch.platform for ch in comm.channels})))
