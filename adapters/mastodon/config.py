"""Config models of the Mastodon adapter (``[accounts.X]`` and channel keys)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from bridge.contract.adapter import StrictModel
from bridge.contract.media import MediaAccountKeys

BOT_FLAG_HOWTO = ("tick 'This is an automated account' under Preferences > Public profile "
                  "(or PATCH /api/v1/accounts/update_credentials with bot=true); instances "
                  "expect it of accounts that post for others, the more so in public")


class MastodonAccount(MediaAccountKeys):
    base_url: str
    """The instance, ``https://mastodon.example``."""
    access_token: str
    """A *user* token with read:statuses and write:statuses, write:media (the
    hashtag stream refuses app tokens since Mastodon 4.2)."""
    streaming_url: str = ""
    """Override the streaming host; default: the instance's ``configuration.urls.streaming``."""
    catchup_interval: float = Field(60.0, gt=0)
    """Seconds between REST sweeps of the tag timeline (streams drop silently), and
    between reads of the favourites of the bridge's copies (its notifications)."""
    stream_idle_timeout: float = Field(60.0, gt=0)
    """Reconnect when the stream sent nothing, not even a heartbeat, for this long."""
    request_timeout: float = Field(30.0, gt=0)

    @field_validator("base_url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with https:// (or http:// for a local test server)")
        return v.rstrip("/")


class MastodonChannel(StrictModel):
    hashtag: str
    """The tag to follow, without ``#``."""
    visibility: Literal["public", "unlisted"] = "public"
    """Relayed posts: ``public`` (default) puts the bridge's copies on the hashtag
    timeline, so Mastodon members who follow the tag see the whole conversation;
    the account must be flagged as a bot (``check --online`` warns when it is not
    and shows the instance's rules).  ``unlisted`` is the quiet option: copies stay
    off the tag and public timelines (some instances' rules ask it of bots), seen
    only by the bot's followers and in threads.  A reply is never wider than the
    post it answers (a reply to an unlisted or followers-only post keeps that)."""
    relay_replies_to_bridge: bool = True
    """Relay public replies to the bridge's copies even without the hashtag (they
    mention the bot; found through its mentions every ``catchup_interval``)."""
    local_only: bool = False
    """Follow only this instance's posts with the tag (``hashtag:local``)."""

    @field_validator("hashtag")
    @classmethod
    def _tag(cls, v: str) -> str:
        v = v.removeprefix("#")
        if not v or not all(c.isalnum() or c == "_" for c in v):
            raise ValueError("a hashtag is letters, digits and _ only, without '#'")
        return v
