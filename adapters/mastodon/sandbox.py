"""Mastodon sandbox for ``hashbridge demo``, the end-to-end tests and benchmarks:
the emulator in this process on a free 127.0.0.1 port; members act through its
state directly (as if they used their own apps)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.mastodon.emulator.server import MastodonEmulator
from adapters.mastodon.emulator.state import EmuMedia, snowflake
from bridge.contract.sandbox import (
    Endpoint,
    FailureAnswer,
    Fault,
    PoisonKind,
    SandboxFeatures,
    SandboxMedia,
    SandboxMessage,
)

NESTED = "<p>" + "<b>" * 1000 + "deep nesting" + "</b>" * 1000 + "</p>"
BAD_MEDIA = {"media_attachments": [{"id": "9", "type": "image", "url": "http://[::1/x.png"}]}

log = logging.getLogger("hashbridge.adapter.mastodon.sandbox")


class MastodonSandbox:
    platform = "mastodon"
    kind = "emulator (the Mastodon API, in process)"
    # A status deleted while the bridge is down is found by the re-check of relayed
    # posts when the stream connects (adapters/mastodon/recheck.py).
    features = SandboxFeatures(member_media=True, commands=True, in_process=True,
                               member_polls=True, member_quotes=True)

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

    async def post_with_media(self, author: str, text: str, data: bytes, media_type: str,
                              alt_text: str) -> str:
        if f"#{self.hashtag}".lower() not in text.lower():
            text = f"{text} #{self.hashtag}"
        member = self.emulator.member(author, display_name=author.title())
        media = EmuMedia(id=snowflake(), account_id=member.id, mime=media_type, data=data,
                         description=alt_text)
        self.emulator.state.media[media.id] = media
        return self.emulator.post(author, text, media_ids=[media.id]).id

    async def post_poll_as_member(self, author: str, text: str, options: list[str]) -> str:
        if f"#{self.hashtag}".lower() not in text.lower():
            text = f"{text} #{self.hashtag}"
        self.emulator.member(author, display_name=author.title())
        ends = datetime.now(UTC) + timedelta(days=1)
        poll = {"id": snowflake(), "expires_at": ends.isoformat().replace("+00:00", "Z"),
                "expired": False, "multiple": False, "votes_count": 0, "voters_count": 0,
                "voted": False, "own_votes": [], "emojis": [],
                "options": [{"title": o, "votes_count": 0} for o in options]}
        return self.emulator.post(author, text, wire_overrides={"poll": poll}).id

    async def post_quote_as_member(self, author: str, text: str, quoted: str) -> str:
        """A Mastodon 4.5 quote: ``quote.state = accepted`` with the quoted status,
        and the ``quote-inline`` fallback paragraph in the content."""
        if f"#{self.hashtag}".lower() not in text.lower():
            text = f"{text} #{self.hashtag}"
        self.emulator.member(author, display_name=author.title())
        st = self.emulator.state
        target = st.status_json(st.statuses[quoted])
        fallback = (f'<p class="quote-inline">RE: <a href="{target["url"]}">'
                    f'{target["url"]}</a></p>')
        own = st.render_html(text)[0]
        return self.emulator.post(author, text, content_html=fallback + own, wire_overrides={
            "quote": {"state": "accepted", "quoted_status": target}}).id

    async def command_as_member(self, author: str, command: str) -> str:
        # As members do: a mention of the bridge's account, no hashtag.
        self.emulator.member(author, display_name=author.title())
        return self.emulator.post(author, f"@{self.emulator.bridge.username} {command}").id

    async def post_poison(self, author: str, tag: str) -> dict[str, PoisonKind]:
        """HTML nested a thousand deep (a remote server's), a malformed media list."""
        emu = self.emulator
        emu.member(author, display_name=author.title())
        nested = emu.post(author, f"{tag} nested #{self.hashtag}", content_html=NESTED)
        bad = emu.post(author, f"{tag} bad media #{self.hashtag}", wire_overrides=BAD_MEDIA)
        return {nested.id: PoisonKind.EITHER, bad.id: PoisonKind.ALWAYS}

    # ------------------------------------------------------------ faults
    def endpoints(self) -> list[Endpoint]:
        return [Endpoint(name="api", port=self.emulator.port)]

    def account_config_via(self, ports: Mapping[str, int], timeout: float) -> dict[str, Any]:
        cfg = self.account_config()
        if "api" in ports:
            url = f"http://127.0.0.1:{ports['api']}"
            cfg |= {"base_url": url, "streaming_url": url}
        # The stream's heartbeat must come well within the idle timeout.
        self.emulator.state.heartbeat = min(self.emulator.state.heartbeat, timeout / 2)
        return cfg | {"request_timeout": timeout, "stream_idle_timeout": timeout + 1}

    def failure(self, endpoint: str, fault: Fault, n: int, until: float
                ) -> FailureAnswer | None:
        if fault == "ratelimit":
            reset = datetime.fromtimestamp(until, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            return FailureAnswer(status=429, body=b'{"error":"Too many requests"}', headers={
                "X-RateLimit-Limit": "300", "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": reset})
        if n % 2 == 0:  # the load balancer in front of Puma
            return _nginx(503, "Service Temporarily Unavailable")
        return FailureAnswer(status=500, body=json.dumps(
            {"error": "We're sorry, but something went wrong on our end."}).encode())

    def unthrottle(self) -> None:
        # Mastodon's real window (300 calls per 5 minutes) would turn a long run into
        # a rate-limit test; those have their own tests.
        self.emulator.state.limits.overall = (100_000, 300.0)

    async def messages(self) -> list[SandboxMessage]:
        st = self.emulator.state
        tag = self.hashtag.casefold()
        out = []
        pinged: dict[str, list[str]] = {}
        for _, account_id, status_id in st.notifications:
            pinged.setdefault(status_id, []).append(st.accounts[account_id].username)
        for s in sorted(st.statuses.values(), key=lambda s: (len(s.id), s.id)):
            by_bridge = s.account is self.emulator.bridge
            if not by_bridge and tag not in st.tags_of(s):
                continue
            if s.deleted and not by_bridge:
                continue
            out.append(SandboxMessage(native_id=s.id, author=s.account.username, text=s.text,
                                      by_bridge=by_bridge, reply_to=s.in_reply_to_id,
                                      edited=s.edited_at is not None, deleted=s.deleted,
                                      key=s.idempotency_key,
                                      media=tuple(SandboxMedia(
                                          media_type=st.media[m].mime,
                                          alt_text=st.media[m].description or "",
                                          size=len(st.media[m].data))
                                          for m in s.media_ids if m in st.media),
                                      pings=tuple(pinged.get(s.id, ()))))
        return out


def _nginx(status: int, text: str) -> FailureAnswer:
    body = f"<html><head><title>{status} {text}</title></head><body><center><h1>{status} " \
           f"{text}</h1></center><hr><center>nginx</center></body></html>\n"
    return FailureAnswer(status=status, body=body.encode(), content_type="text/html")
