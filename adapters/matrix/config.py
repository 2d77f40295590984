"""Config models of the Matrix adapter: ``[accounts.NAME]`` and the channel keys."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from bridge.contract.adapter import StrictModel
from bridge.contract.media import MediaAccountKeys

_USER_ID = re.compile(r"^@[a-z0-9._=\-/+]+:[A-Za-z0-9.\-:\[\]]+$")


class MatrixAccount(MediaAccountKeys):
    """A bot account (relay mode) or an appservice registration (puppet mode)."""

    homeserver: str
    """Base URL of the client-server API, e.g. ``https://matrix.example``."""
    user_id: str
    """The bot's MXID; in appservice mode ``@<sender_localpart>:<server>``."""
    access_token: str = ""
    password: str = ""
    """Used once when no access token is given; the token it yields is kept in the
    data dir, so restarts reuse one device (transaction ids are scoped per device)."""
    device_name: str = "hashbridge"
    mode: Literal["relay", "appservice"] = "relay"
    as_token: str = ""
    hs_token: str = ""
    as_id: str = "hashbridge"
    as_listen: str = "127.0.0.1:29331"
    """host:port where the bridge receives the homeserver's transactions (appservice
    users may not /sync, so in this mode events are pushed)."""
    as_url: str = ""
    """URL the homeserver uses to reach ``as_listen``; default ``http://<as_listen>``."""
    ghost_prefix: str = "hb_"
    """Localpart prefix of ghost users: ``@hb_mastodon_alice:server``."""
    e2e: bool = False
    """End-to-end encryption is configured (matrix-nio[e2e] with a crypto store).
    Without it, sending into an encrypted room is refused."""
    sync_timeout_ms: int = Field(default=30000, ge=0)
    request_timeout: float = Field(default=60.0, gt=0)
    """Seconds one request may take; a long-poll /sync gets ``sync_timeout_ms``
    plus at most 15 s of this on top, so a silently dropped sync is noticed."""
    timeline_limit: int = Field(default=100, ge=1, le=1000)
    max_media_bytes: int = Field(default=10 * 1024 * 1024, ge=0)

    @property
    def server_name(self) -> str:
        return self.user_id.split(":", 1)[1]

    @property
    def appservice_url(self) -> str:
        return self.as_url or f"http://{self.as_listen}"

    @model_validator(mode="after")
    def _check(self) -> MatrixAccount:
        if not _USER_ID.match(self.user_id):
            raise ValueError(f"user_id {self.user_id!r} is not a Matrix user id (@name:server)")
        if not self.homeserver.startswith(("http://", "https://")):
            raise ValueError("homeserver must be an http(s) URL")
        if self.mode == "relay" and not (self.access_token or self.password):
            raise ValueError("relay mode needs access_token or password")
        if self.mode == "appservice" and not (self.as_token and self.hs_token):
            raise ValueError("appservice mode needs as_token and hs_token")
        if not re.fullmatch(r"[^\s:]+:\d+", self.as_listen):
            raise ValueError("as_listen must be host:port")
        if not re.fullmatch(r"[a-z0-9._=\-/]+", self.ghost_prefix):
            raise ValueError("ghost_prefix must be a valid localpart prefix")
        return self


class MatrixChannel(StrictModel):
    room: str
    """Room id (``!abc:server``) or alias (``#kmers:server``)."""
    threads: bool = False
    """Relay a remote reply chain into a Matrix thread rooted at its first copy."""

    @field_validator("room")
    @classmethod
    def _room(cls, room: str) -> str:
        # Room v12 ids carry no server name (``!hash``); aliases always do.
        if not re.match(r"^(![^\s:]+(:\S+)?|#[^\s:]+:\S+)$", room):
            raise ValueError(f"{room!r} is neither a room id nor an alias: write the alias "
                             "with its '#' and server, e.g. \"#kmers:matrix.org\", or the "
                             "room id \"!abc123:matrix.org\"")
        return room
