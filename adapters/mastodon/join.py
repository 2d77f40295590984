"""How members take part from a Mastodon channel, from the config alone (the web
view's about page): :meth:`~bridge.contract.adapter.AdapterFactory.join_facts`."""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from adapters.mastodon.config import MastodonAccount, MastodonChannel
from bridge.contract.adapter import JoinFacts, JoinLink


def join_facts(account: MastodonAccount, channel: MastodonChannel) -> JoinFacts:
    """The tag page on the bridge's instance (the instance is where members of
    other instances find it too: any Mastodon account can post with the tag)."""
    tag = channel.hashtag
    instance = urlsplit(account.base_url).netloc
    local = " from an account on this instance" if channel.local_only else \
        " from any Mastodon (or fediverse) account"
    seen = ("Copies are public, on the tag's timeline" if channel.visibility == "public"
            else "Copies are unlisted: off the tag's timeline, seen by the bridge "
                 "account's followers and in threads")
    return JoinFacts(
        where=(JoinLink(label=f"#{tag} on {instance}",
                        url=f"{account.base_url}/tags/{quote(tag)}"),),
        how_to_post=f"Post publicly with #{tag}{local}; replies to the bridge's posts "
                    "are read even without the tag.",
        how_to_follow=f"Follow the hashtag #{tag} (search for it, then Follow); "
                      f"{seen[0].lower() + seen[1:]}.",
        posts_as=f"the bridge's bot account on {instance}, with each author's name "
                 "and network at the start of the post",
        commands="{command}",
        commands_where="in a reply to one of the bridge's posts, or in a post that "
                       "mentions its account (a reply mentions it by itself)",
        link_command=f"{{command}} #{tag} in a public post"
        + (" (or in a reply to one of the bridge's posts)"
           if channel.relay_replies_to_bridge else ""),
        edits_copies=True, deletes_copies=True,
        copies_note="" if channel.visibility == "public" else seen + ".")
