"""``hashbridge check --online`` for the channels of one Matrix account: what each
room is to the bot, asked of the homeserver with GETs only (nothing is joined,
posted or changed, and no device is created).

Per channel: the alias resolved through the room directory; joined (with its member
count) or not (then whether it can join at start: the room summary API says the
bot's membership and the join rule, where the homeserver has it); and, once joined,
the power levels against what ``m.room.message`` and ``m.room.redaction`` need.
In appservice mode the requests are the bridge's sender user's (the as_token with
``?user_id=``, as the adapter makes them), and the copies are posted by ghosts,
whose power is the room's ``users_default``.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from adapters.matrix.client import RawApi, q
from adapters.matrix.config import MatrixAccount, MatrixChannel
from bridge.contract.adapter import (
    AuthError,
    ChannelCheck,
    ChannelSpec,
    PermanentError,
    TransientError,
)
from bridge.contract.model import ChannelKey

PASSWORD_UNCHECKED = (
    "not checked: a password login would create a device on the homeserver, so it "
    "waits for the first run, which logs in and joins the room (give access_token to "
    "have the room checked here)")

_CREATORS_PRIVILEGED = frozenset({"org.matrix.hydra.11"})
"""Room versions (besides 12 and later) where the creators' power is beyond any level."""


async def check_channels(account: MatrixAccount, channels: tuple[ChannelSpec, ...],
                         http: aiohttp.ClientSession) -> dict[ChannelKey, ChannelCheck]:
    token = account.as_token if account.mode == "appservice" else account.access_token
    if not token:
        # As check_online does ("password login: checked at first run"): usable as far
        # as anyone can tell without logging in, and each channel says so.
        return {spec.key: ChannelCheck(ok=True, warnings=(PASSWORD_UNCHECKED,))
                for spec in channels}
    checker = _Checker(account, RawApi(http, account.homeserver, token))
    await checker.load()
    out: dict[ChannelKey, ChannelCheck] = {}
    for spec in channels:
        try:
            out[spec.key] = await checker.channel(spec)
        except AuthError:
            raise                      # the token itself: every channel says so
        except (TransientError, PermanentError) as e:
            out[spec.key] = ChannelCheck(ok=True, warnings=(f"not checked: {e}",))
    return out


class _Checker:
    def __init__(self, account: MatrixAccount, api: RawApi) -> None:
        self.account = account
        self.api = api
        self.me = account.user_id
        self.as_user = account.user_id if account.mode == "appservice" else None
        self.joined: frozenset[str] = frozenset()

    async def get(self, path: str, what: str, *, ok: frozenset[str] = frozenset(),
                  query: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
        return await self.api.call("GET", path, user_id=self.as_user, what=what,
                                   ok_errcodes=ok, query=query)

    async def load(self) -> None:
        if self.as_user is None:
            # Levels are the token's user's (check_online warns when that is not
            # user_id); the sender user is whoever ?user_id= names.
            who = await self.get("/_matrix/client/v3/account/whoami", "whoami")
            if isinstance(who.get("user_id"), str):
                self.me = who["user_id"]
        got = await self.get("/_matrix/client/v3/joined_rooms", "joined rooms")
        rooms = got.get("joined_rooms")
        self.joined = frozenset(r for r in rooms if isinstance(r, str)) \
            if isinstance(rooms, list) else frozenset()

    async def state(self, room_id: str, etype: str) -> dict[str, Any] | None:
        """The content of a state event (empty state key); None when the room has none."""
        got = await self.get(f"/_matrix/client/v3/rooms/{q(room_id)}/state/{etype}/",
                             etype, ok=frozenset({"M_NOT_FOUND"}))
        return None if got.get("errcode") == "M_NOT_FOUND" else got

    async def create_event(self, room_id: str) -> dict[str, Any]:
        """``m.room.create`` as a whole event: its sender is the creator (room v11+ say
        so nowhere else).  A server that ignores ``format`` gives the content only."""
        got = await self.get(f"/_matrix/client/v3/rooms/{q(room_id)}/state/m.room.create/",
                             "m.room.create", ok=frozenset({"M_NOT_FOUND"}),
                             query=(("format", "event"),))
        if got.get("errcode") == "M_NOT_FOUND":
            return {}
        return got if isinstance(got.get("content"), dict) else {"content": got}

    async def channel(self, spec: ChannelSpec) -> ChannelCheck:
        assert isinstance(spec.options, MatrixChannel)   # the config validated it so
        room = spec.options.room
        if room.startswith("#"):
            found = await self.get(f"/_matrix/client/v3/directory/room/{q(room)}",
                                   f"alias {room}", ok=frozenset({"M_NOT_FOUND"}))
            room_id = found.get("room_id")
            if found.get("errcode") == "M_NOT_FOUND" or not isinstance(room_id, str):
                return ChannelCheck(ok=False, error=f"no room {room} — create it or fix "
                                    "`room`")
            servers = found.get("servers")
            via = [s for s in servers if isinstance(s, str)][:5] \
                if isinstance(servers, list) else []
            where = f"room {room} ({room_id})"
        else:
            room_id, where = room, f"room {room}"
            via = [room.split(":", 1)[1]] if ":" in room else []
        if room_id in self.joined:
            return await self._joined(spec, room_id, where)
        return await self._not_joined(spec, room_id, where, via)

    # ------------------------------------------------------------ joined
    async def _joined(self, spec: ChannelSpec, room_id: str, where: str) -> ChannelCheck:
        base = f"/_matrix/client/v3/rooms/{q(room_id)}"
        members = (await self.get(f"{base}/joined_members", "joined members")).get("joined")
        n = len(members) if isinstance(members, dict) else 0
        reads = f"{where}, joined, {n} member{'s' if n != 1 else ''}"
        if await self.state(room_id, "m.room.encryption") is not None and \
                not self.account.e2e:
            return ChannelCheck(ok=False, reads=reads, error=(
                "the room is end-to-end encrypted and e2e is not configured: its messages "
                "cannot be read and sends are refused; use an unencrypted room"))
        levels = _Levels(await self.state(room_id, "m.room.power_levels"),
                         await self.create_event(room_id))
        if spec.direction == "in":
            return ChannelCheck(ok=True, reads=reads)
        if self.account.mode == "appservice":
            rule = await self.state(room_id, "m.room.join_rules") or {}
            return self._ghost_writes(reads, levels, rule.get("join_rule"))
        power, msg, red = levels.of(self.me), levels.needs("m.room.message"), \
            levels.needs("m.room.redaction")
        writes = f"posts as {self.me} (power {_show(power)}, messages need {msg})"
        if power < msg:
            return ChannelCheck(ok=False, reads=reads, writes=writes, error=(
                f"{self.me} may not post here (power {_show(power)}, messages need "
                f"{msg}): raise its power level, or lower what messages need"))
        warnings = () if power >= red else (
            f"{self.me} has power {_show(power)} and redactions need {red}: a post deleted "
            "on its origin stays here (deletes will not follow)",)
        return ChannelCheck(ok=True, reads=reads, writes=writes, warnings=warnings)

    def _ghost_writes(self, reads: str, levels: _Levels, join_rule: Any) -> ChannelCheck:
        """Appservice mode: the copies are the ghosts' (power ``users_default``, never
        named in ``users``), joined by the bot's invite unless the room is public;
        notices are the bot's own."""
        ghost = levels.users_default
        msg, red = levels.needs("m.room.message"), levels.needs("m.room.redaction")
        bot = levels.of(self.me)
        ghosts = f"@{self.account.ghost_prefix}*:{self.account.server_name}"
        writes = (f"posts as ghosts {ghosts} (power {ghost}, messages need {msg}); notices "
                  f"as {self.me} (power {_show(bot)})")
        if ghost < msg:
            return ChannelCheck(ok=False, reads=reads, writes=writes, error=(
                f"ghosts may not post here (users_default {ghost}, messages need {msg}): "
                "raise users_default, or lower what messages need"))
        if join_rule != "public" and bot < levels.invite:
            return ChannelCheck(ok=False, reads=reads, writes=writes, error=(
                f"ghosts cannot join: the room's join rule is {join_rule or 'not given'} "
                f"and {self.me} may not invite them (power {_show(bot)}, invites need "
                f"{levels.invite}): raise its power level, or make the room public"))
        warnings: list[str] = []
        if ghost < red:
            warnings.append(f"ghosts have power {ghost} (users_default) and redactions need "
                            f"{red}: a post deleted on its origin stays here (deletes will "
                            "not follow)")
        if bot < msg:
            warnings.append(f"{self.me} may not post (power {_show(bot)}, messages need "
                            f"{msg}): the bridge's notices will not be posted")
        return ChannelCheck(ok=True, reads=reads, writes=writes, warnings=tuple(warnings))

    # ------------------------------------------------------------ not joined
    async def _not_joined(self, spec: ChannelSpec, room_id: str, where: str,
                          via: list[str]) -> ChannelCheck:
        who = "ghosts (and notices as " + self.me + ")" if self.account.mode == "appservice" \
            else self.me
        writes = f"posts as {who} once joined (power levels are readable once joined)"
        try:
            summary = await self.get(
                f"/_matrix/client/v1/room_summary/{q(room_id)}", "room summary",
                ok=frozenset({"M_NOT_FOUND", "M_FORBIDDEN", "M_UNRECOGNIZED"}),
                query=tuple(("via", s) for s in via))
        except PermanentError as e:
            summary = {"errcode": "?", "error": str(e)}
        code = summary.get("errcode")
        if code in ("M_NOT_FOUND", "M_FORBIDDEN"):
            hidden = (f"{room_id} is not visible to {self.me}: no such room, or "
                      f"{self.me} may not join it (invite-only and it is not invited, "
                      "restricted to rooms it is not in, or it is banned)")
            if not via or self.account.server_name in via:
                # The homeserver is in the room (asked with no server to ask, it answered
                # for itself): it would show the room to anyone who may join.
                return ChannelCheck(ok=False, reads=f"{where}, not joined", writes=writes,
                                    error=f"{hidden}: invite {self.me}, or fix `room`")
            return ChannelCheck(ok=True, reads=f"{where}, not joined", writes=writes,
                                warnings=(f"not joined: it joins at start if the room lets "
                                          f"it ({hidden}, as far as "
                                          f"{self.account.server_name} can tell)",))
        if code is not None:
            why = "the homeserver has no room summary API" if code == "M_UNRECOGNIZED" \
                else str(summary.get("error") or code)
            return ChannelCheck(ok=True, reads=f"{where}, not joined", writes=writes,
                                warnings=("not joined: it joins at start if the room lets it "
                                          f"(public, or {self.me} invited); the join rule is "
                                          f"not readable here ({why})",))
        return self._from_summary(summary, where, writes)

    def _from_summary(self, s: dict[str, Any], where: str, writes: str) -> ChannelCheck:
        membership = s.get("membership") if isinstance(s.get("membership"), str) else "leave"
        rule = s.get("join_rule") if isinstance(s.get("join_rule"), str) else None
        n = s.get("num_joined_members")
        facts = [f"join rule {rule}" if rule else "join rule not given"]
        if isinstance(n, int):
            facts.append(f"{n} member{'s' if n != 1 else ''}")
        if s.get("encryption") and not self.account.e2e:
            facts.append("encrypted")
        reads = f"{where}, not joined ({', '.join(facts)})"
        if s.get("encryption") and not self.account.e2e:
            return ChannelCheck(ok=False, reads=reads, writes=writes, error=(
                "the room is end-to-end encrypted and e2e is not configured: its messages "
                "cannot be read and sends are refused; use an unencrypted room"))

        def fail(error: str) -> ChannelCheck:
            return ChannelCheck(ok=False, reads=reads, writes=writes, error=error)

        def joins(why: str) -> ChannelCheck:
            return ChannelCheck(ok=True, reads=reads, writes=writes,
                                warnings=(f"not joined: it joins at start ({why})",))

        if membership == "ban":
            return fail(f"{self.me} is banned from the room: unban it, or fix `room`")
        if membership == "invite":
            return joins(f"{self.me} is invited")
        if membership == "join":          # joined since joined_rooms was read
            return joins(f"{self.me} has just joined")
        if rule == "public":
            return joins("the room is public")
        if rule in ("restricted", "knock_restricted"):
            allowed = s.get("allowed_room_ids")
            if isinstance(allowed, list) and allowed:
                inside = sorted(r for r in allowed if r in self.joined)
                if inside:
                    return joins(f"the room is restricted and {self.me} is in {inside[0]}, "
                                 "which it allows")
                return fail(f"the room admits members of {', '.join(map(str, allowed))} "
                            f"and {self.me} is in none of them: invite it, or fix `room`")
            return ChannelCheck(ok=True, reads=reads, writes=writes, warnings=(
                f"not joined: the room is {rule} (members of some other rooms may join); "
                f"it joins at start only if {self.me} is in one of them: invite it to be "
                "sure",))
        if rule is None:
            return ChannelCheck(ok=True, reads=reads, writes=writes, warnings=(
                "not joined: it joins at start if the room lets it (public, or "
                f"{self.me} invited); the homeserver did not say the join rule",))
        knock = " (the bot does not knock)" if rule == "knock" else ""
        return fail(f"the room's join rule is {rule}{knock} and {self.me} is not invited: "
                    "invite it, or fix `room`")


class _Levels:
    """``m.room.power_levels`` as the auth rules read it (the defaults when the room
    has none; room v12 creators above every level)."""

    def __init__(self, pl: dict[str, Any] | None, create: dict[str, Any]) -> None:
        self.absent = pl is None
        self.pl = pl or {}
        got = create.get("content")
        content: dict[str, Any] = got if isinstance(got, dict) else {}
        version = str(content.get("room_version", "1"))
        self.creators_privileged = version in _CREATORS_PRIVILEGED or (
            version.isdigit() and int(version) >= 12)
        # Room v1-v10 name the creator in the content, later ones by the sender only;
        # v12 adds additional_creators.
        creator = content.get("creator", create.get("sender"))
        self.creators = {creator} if isinstance(creator, str) else set()
        if self.creators_privileged:
            extra = content.get("additional_creators")
            self.creators |= {c for c in extra if isinstance(c, str)} \
                if isinstance(extra, list) else set()
        self.users_default = _int(self.pl.get("users_default"), 0)
        self.invite = _int(self.pl.get("invite"), 0)

    def of(self, user: str) -> float:
        if self.creators_privileged and user in self.creators:
            return float("inf")
        users = self.pl.get("users")
        if isinstance(users, dict) and user in users:
            return _int(users[user], self.users_default)
        if self.absent and user in self.creators:
            return 100                # no power levels: the creator has 100
        return self.users_default

    def needs(self, etype: str) -> int:
        events = self.pl.get("events")
        default = _int(self.pl.get("events_default"), 0)
        if isinstance(events, dict) and etype in events:
            return _int(events[etype], default)
        return default


def _int(v: Any, default: int) -> int:
    if isinstance(v, bool):
        return default
    if isinstance(v, int):
        return v
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        return int(v)             # old rooms carry levels as strings
    return default


def _show(power: float) -> str:
    return "creator" if power == float("inf") else str(int(power))
