"""Config models of the Mastodon adapter (``[accounts.X]`` and channel keys)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from bridge.contract.adapter import StrictModel
from bridge.contract.media import MediaAccountKeys


class MastodonAccount(MediaAccountKeys):
    base_url: str
    """The instance, ``https://mastodon.example``."""
    access_token: str
    """A *user* token with read:statuses and write:statuses, write:media (the
    hashtag stream refuses app tokens since Mastodon 4.2)."""
    streaming_url: str = ""
    """Override the streaming host; default: the instance's ``configuration.urls.streaming``."""
    catchup_interval: float = Field(60.0, gt=0)
    """Seconds between REST sweeps of the tag timeline: streams drop silently."""
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
    visibility: Literal["public", "unlisted"] = "unlisted"
    """Relayed posts: ``unlisted`` (default) keeps the bot's copies out of the
    hashtag and public timelines (instance bot rules, no echo in the tag feed), so
    Mastodon members see them only by following the bot or the thread;
    ``public`` puts them on the hashtag timeline, which is what the conversation
    wants but what several instances' bot policies forbid.  Ask your admins."""
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
