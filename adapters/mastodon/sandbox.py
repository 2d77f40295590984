"""Mastodon sandbox for ``hashbridge demo``, the end-to-end tests and benchmarks:
the emulator in this process on a free 127.0.0.1 port; members act through its
state directly (as if they used their own apps)."""

from __future__ import annotations

import logging
from typing import Any

from adapters.mastodon.emulator.server import MastodonEmulator
from bridge.contract.sandbox import SandboxMessage

log = logging.getLogger("hashbridge.adapter.mastodon.sandbox")


class MastodonSandbox:
    platform = "mastodon"
    kind = "emulator (the Mastodon API, in process)"

    def __init__(self, workdir: str = ".", *, hashtag: str = "kmers",
                 max_characters: int = 500, visibility: str = "public",
                 heartbeat: float = 15.0) -> None:
        self.workdir = workdir
        self.hashtag = hashtag
        self.visibility = visibility
        self.emulator = MastodonEmulator(max_characters=max_characters, heartbeat=heartbeat)

    async def start(self) -> None:
        await self.emulator.start()
        log.info("Mastodon emulator listening on %s", self.emulator.url)

    async def stop(self) -> None:
        await self.emulator.stop()

    def account_config(self) -> dict[str, Any]:
        # A short sweep interval: demo conversations should settle in seconds.
        # The emulator serves its media from 127.0.0.1: opt in to private media hosts.
        return {"base_url": self.emulator.url, "access_token": self.emulator.bridge.token,
                "catchup_interval": 2.0, "stream_idle_timeout": 30.0,
                "allow_private_media_hosts": True}

    def channel_config(self) -> dict[str, Any]:
        return {"hashtag": self.hashtag, "visibility": self.visibility}

    async def post_as_member(self, author: str, text: str,
                             reply_to: str | None = None) -> str:
        # The hashtag is how the conversation (and the bridge) finds a post on
        # Mastodon: members tag their posts, replies included.
        if f"#{self.hashtag}".lower() not in text.lower():
            text = f"{text} #{self.hashtag}"
        name = author.lstrip("@")
        # Members have display names on Mastodon; attributions elsewhere show them.
        self.emulator.member(name, display_name=name.title())
        return self.emulator.post(name, text, in_reply_to_id=reply_to).id

    async def edit_as_member(self, native_id: str, text: str) -> None:
        if f"#{self.hashtag}".lower() not in text.lower():
            text = f"{text} #{self.hashtag}"
        self.emulator.edit(native_id, text)

    async def delete_as_member(self, native_id: str) -> None:
        self.emulator.delete(native_id)

    async def messages(self) -> list[SandboxMessage]:
        st = self.emulator.state
        tag = self.hashtag.casefold()
        out = []
        for s in sorted(st.statuses.values(), key=lambda s: (len(s.id), s.id)):
            by_bridge = s.account is self.emulator.bridge
            if not by_bridge and tag not in st.tags_of(s):
                continue
            if s.deleted and not by_bridge:
                continue
            out.append(SandboxMessage(native_id=s.id, author=s.account.username, text=s.text,
                                      by_bridge=by_bridge, reply_to=s.in_reply_to_id,
                                      edited=s.edited_at is not None, deleted=s.deleted,
                                      key=s.idempotency_key))
        return out
