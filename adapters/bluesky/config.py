"""Config models of the Bluesky adapter: ``[accounts.NAME]`` and the channel keys."""

from __future__ import annotations

from pydantic import Field, field_validator

from bridge.contract.adapter import StrictModel
from bridge.contract.media import MediaAccountKeys


def _base_url(v: str, schemes: tuple[str, ...], hint: str) -> str:
    if not v.startswith(schemes):
        raise ValueError(f"must start with {hint}")
    return v.rstrip("/")


class BlueskyAccount(MediaAccountKeys):
    service: str = "https://bsky.social"
    """The account's PDS (XRPC base URL): ``https://bsky.social`` for accounts made
    on bsky.app, or your own PDS."""
    handle: str
    """The bridge account's handle (``kmbridge.bsky.social``) or its DID."""
    app_password: str
    """An app password (Settings → Privacy and security → App passwords), never
    the account's main password."""
    firehose: str = "wss://bsky.network/xrpc/com.atproto.sync.subscribeRepos"
    """Where hashtag posts are read: a relay's (or a PDS's) ``subscribeRepos``."""
    plc_directory: str = "https://plc.directory"
    """Where ``did:plc`` identities resolve to their PDS (authors' profiles,
    reply targets and images are read from there)."""
    request_timeout: float = Field(30.0, gt=0)
    """Seconds an XRPC call may take; also how often the firehose is pinged (a stream
    whose pong does not come within half that again is reconnected)."""
    firehose_idle_timeout: float = Field(60.0, gt=0)
    """Reconnect when the firehose sent nothing for this long (a full relay sends
    hundreds of events a second; a quiet PDS sends nothing: raise it there)."""
    profile_cache_seconds: float = Field(3600.0, ge=0)
    """How long an author's profile (consent signals, display name) is trusted
    before it is read again; profile updates on the firehose refresh it at once."""

    @field_validator("service", "plc_directory")
    @classmethod
    def _http(cls, v: str) -> str:
        return _base_url(v, ("http://", "https://"),
                         "https:// (or http:// for a local test server)")

    @field_validator("firehose")
    @classmethod
    def _ws(cls, v: str) -> str:
        v = _base_url(v, ("ws://", "wss://"), "wss:// (or ws:// for a local test server)")
        if not v.endswith("/xrpc/com.atproto.sync.subscribeRepos"):
            raise ValueError("must be a subscribeRepos endpoint: "
                             "wss://HOST/xrpc/com.atproto.sync.subscribeRepos")
        return v

    @field_validator("handle")
    @classmethod
    def _handle(cls, v: str) -> str:
        v = v.strip().removeprefix("@")
        if not v or (not v.startswith("did:") and "." not in v):
            raise ValueError("a handle looks like name.bsky.social (or give the account's DID)")
        return v


class BlueskyChannel(StrictModel):
    hashtag: str
    """The tag to follow, without ``#`` (matched case-insensitively, in tag facets
    and in a post's ``tags``)."""
    relay_replies_to_bridge: bool = True
    """Relay replies to the bridge's own posts even without the hashtag (people
    answer a copy where they see it, and seldom repeat the tag)."""
    edit_in_place: bool = False
    """Bluesky's app never shows edits (it keeps the first version of a post), so
    by default edits are not relayed here (``on_edit = "update"`` means skip) and
    ``on_edit = "correct"`` posts a correction as a reply.  True rewrites the copy
    with ``putRecord`` instead: other clients, feeds and bridges see the new text."""

    @field_validator("hashtag")
    @classmethod
    def _tag(cls, v: str) -> str:
        v = v.removeprefix("#")
        if not v or not all(c.isalnum() or c == "_" for c in v) or len(v) > 64:
            raise ValueError("a hashtag is letters, digits and _ only (at most 64), "
                             "without '#'")
        return v
