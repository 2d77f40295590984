"""How members take part from a Matrix room, from the config alone (the web view's
about page): :meth:`~bridge.contract.adapter.AdapterFactory.join_facts`.  The room's
public address is a ``matrix.to`` link; the homeserver the bridge connects to is
never shown."""

from __future__ import annotations

from urllib.parse import quote

from adapters.matrix.config import MatrixAccount, MatrixChannel
from bridge.contract.adapter import JoinFacts, JoinLink


def join_facts(account: MatrixAccount, channel: MatrixChannel) -> JoinFacts:
    room = channel.room
    if account.mode == "appservice":
        posts_as = (f"one Matrix user per author (ghost users such as "
                    f"@{account.ghost_prefix}mastodon_alice:{account.server_name}), "
                    f"and {account.user_id} for the bridge's own notices")
    else:
        posts_as = f"{account.user_id}, with each author's name and network in the message"
    return JoinFacts(
        where=(JoinLink(label=f"the room {room}",
                        url="https://matrix.to/#/" + quote(room, safe="#!:@")),),
        how_to_post="Join the room from any Matrix client and write there; every "
                    "message in the room is read (no hashtag needed).",
        how_to_follow="Stay in the room: the other networks' posts arrive there as "
                      "messages, replies in their threads.",
        posts_as=posts_as,
        commands="{command}",
        commands_where="as a message of its own in the room",
        link_command="{command} as a message in the room",
        edits_copies=True, deletes_copies=True)
