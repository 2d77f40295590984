"""How members take part from a Bluesky channel, from the config alone (the web
view's about page): :meth:`~bridge.contract.adapter.AdapterFactory.join_facts`.
Links go to the public app (bsky.app), never to the PDS or relay the bridge uses."""

from __future__ import annotations

from urllib.parse import quote

from adapters.bluesky.config import BlueskyAccount, BlueskyChannel
from bridge.contract.adapter import JoinFacts, JoinLink


def join_facts(account: BlueskyAccount, channel: BlueskyChannel) -> JoinFacts:
    tag = channel.hashtag
    handle = account.handle if account.handle.startswith("did:") else "@" + account.handle
    return JoinFacts(
        where=(JoinLink(label=f"#{tag} on Bluesky", url=f"https://bsky.app/hashtag/{quote(tag)}"),
               JoinLink(label=f"search for #{tag}",
                        url="https://bsky.app/search?q=" + quote("#" + tag))),
        how_to_post=f"Post with #{tag} from any Bluesky account; replies to the bridge's "
                    "posts are read even without the tag.",
        how_to_follow=f"Open the #{tag} hashtag feed (or pin the search), or follow "
                      f"{handle}.",
        follow_links=(JoinLink(label=handle,
                               url=f"https://bsky.app/profile/{quote(account.handle)}"),),
        posts_as=f"{handle}, with each author's name and network at the start of the post",
        commands=f"{handle} {{command}}",
        commands_where="in a post that mentions the bridge's account, or in a reply to "
                       "one of its posts",
        link_command=f"{{command}} #{tag} in a post",
        edits_copies=channel.edit_in_place, deletes_copies=True,
        copies_note="" if channel.edit_in_place else
        "The Bluesky app never shows edits: a copy keeps its first text.")
