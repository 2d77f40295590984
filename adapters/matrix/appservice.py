"""Appservice (puppet) mode: each remote author posts as a ghost user.

Why plain aiohttp and not mautrix's ``AppService``: the bridge needs five
client-server calls with ``?user_id=`` masquerading (register, profile, invite,
join, send/redact), and no pushed transactions at all, because the bridge bot
reads the room with ``/sync`` exactly as in relay mode.  The registration sets
``url: null``, so Synapse never tries to push: no HTTP listener to keep up for
the whole process (the real-servers notes' pitfall), no second event path, one
code path for inbound in both modes.  mautrix would bring its own HTTP stack,
state store and intent cache for a fraction of that use.
"""

from __future__ import annotations

import json
import re

from adapters.matrix.client import RawApi, q
from adapters.matrix.config import MatrixAccount
from bridge.model import Author
from bridge.textconv import clean_text


def generate_registration(account: MatrixAccount) -> str:
    """The registration YAML the homeserver admin adds to ``app_service_config_files``.

    JSON is valid YAML, so the output is JSON under a comment header.
    """
    server = re.escape(account.server_name)
    reg = {
        "id": account.as_id,
        "url": None,
        "as_token": account.as_token,
        "hs_token": account.hs_token,
        "sender_localpart": account.user_id[1:].split(":", 1)[0],
        "rate_limited": False,
        "receive_ephemeral": False,
        "namespaces": {
            "users": [{"exclusive": True,
                       "regex": "@" + re.escape(account.ghost_prefix) + ".*:" + server}],
            "aliases": [],
            "rooms": [],
        },
    }
    return ("# hashbridge appservice registration; add this file to Synapse's\n"
            "# app_service_config_files and restart it.  url is null: the bridge reads\n"
            "# rooms with /sync, so the homeserver never needs to reach it.\n"
            + json.dumps(reg, indent=2) + "\n")


def ghost_localpart(prefix: str, author: Author) -> str:
    """A stable, valid localpart for a remote author (``hb_mastodon_alice=40host``)."""
    raw = f"{author.platform}_{author.handle.lstrip('@')}".lower()
    out = []
    for ch in raw:
        if re.fullmatch(r"[a-z0-9._\-/]", ch):
            out.append(ch)
        else:
            out.append("".join(f"={b:02x}" for b in ch.encode()))
    return (prefix + "".join(out))[:200]


def ghost_display_name(author: Author, network: str) -> str:
    return clean_text(f"{author.name} ({network})")[:255]


class Ghosts:
    """Creates ghosts on first use and keeps their profile and membership current."""

    def __init__(self, api: RawApi, account: MatrixAccount) -> None:
        self.api = api
        self.account = account
        self._ready: set[tuple[str, str]] = set()
        self._names: dict[str, str] = {}

    def user_id(self, author: Author) -> str:
        return f"@{ghost_localpart(self.account.ghost_prefix, author)}:{self.account.server_name}"

    def is_ghost(self, user_id: str) -> bool:
        return (user_id.startswith("@" + self.account.ghost_prefix)
                and user_id.endswith(":" + self.account.server_name))

    async def ensure(self, author: Author, network: str, room_id: str) -> str:
        """The ghost's user id, registered, named and joined to *room_id*."""
        uid = self.user_id(author)
        name = ghost_display_name(author, network)
        if uid not in self._names:
            await self.api.call("POST", "/_matrix/client/v3/register",
                                {"type": "m.login.application_service",
                                 "username": uid[1:].split(":", 1)[0]},
                                what="register ghost", ok_errcodes=frozenset({"M_USER_IN_USE"}))
        if self._names.get(uid) != name:
            # Only on change: profile updates are rate limited (rc_profile) and fan out
            # a member event into every room the ghost is in.
            await self.api.call("PUT", f"/_matrix/client/v3/profile/{q(uid)}/displayname",
                                {"displayname": name}, user_id=uid, what="ghost profile")
            self._names[uid] = name
        if (uid, room_id) not in self._ready:
            await self.api.call("POST", f"/_matrix/client/v3/rooms/{q(room_id)}/invite",
                                {"user_id": uid}, what="invite ghost",
                                ok_errcodes=frozenset({"M_FORBIDDEN"}))
            await self.api.call("POST", f"/_matrix/client/v3/join/{q(room_id)}", {},
                                user_id=uid, what="ghost join")
            self._ready.add((uid, room_id))
        return uid

    def forget(self, uid: str, room_id: str) -> None:
        """After a failure that may mean the ghost left or was kicked."""
        self._ready.discard((uid, room_id))
