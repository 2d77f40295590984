"""How members take part from an X channel, from the config alone (the web view's
about page): :meth:`~bridge.contract.adapter.AdapterFactory.join_facts`.  The X
adapter reads search results only, never mentions or DMs, so it reads no member
commands (``!join``/``!leave``)."""

from __future__ import annotations

from urllib.parse import urlencode

from adapters.twitter.config import TwitterAccount, TwitterChannel
from bridge.contract.adapter import JoinFacts, JoinLink


def join_facts(account: TwitterAccount, channel: TwitterChannel) -> JoinFacts:
    search = "https://x.com/search?" + urlencode({"q": channel.query, "f": "live"})
    who = f"@{account.bot_username.lstrip('@')}" if account.bot_username else \
        "the bridge's X account"
    if channel.mode == "digest":
        posts_as = (f"{who}, one digest post every {channel.digest_minutes:g} minutes "
                    "naming each author")
    else:
        posts_as = f"{who}, with each author's name and network at the start of the post"
    return JoinFacts(
        where=(JoinLink(label=f"X live search for {channel.query}", url=search),),
        how_to_post=f"Post from any X account so that the search {channel.query} finds "
                    "it (put the hashtag in the post).",
        how_to_follow="Open the live search (Latest)" + (
            f", or follow {who}" if account.bot_username else "") + ".",
        posts_as=posts_as,
        link_command="a post starting with {command}, with the hashtag after it so "
                     "that the search finds it",
        receives_copies=channel.mode != "off",
        edits_copies=False, deletes_copies=True,
        copies_note="X posts cannot be edited.")
