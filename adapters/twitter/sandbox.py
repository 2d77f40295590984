"""X sandbox for ``hashbridge demo``, the end-to-end tests and benchmarks: the
emulator on a free 127.0.0.1 port, members posting through its state directly."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from adapters.twitter.emulator.app import XEmulator
from bridge.contract.sandbox import SandboxMessage

log = logging.getLogger("hashbridge.adapter.twitter.sandbox")


class TwitterSandbox:
    platform = "twitter"
    kind = "emulator (the X API v2, in process)"

    def __init__(self, workdir: str = ".", *, hashtag: str = "kmers",
                 bot_username: str = "kmbridge") -> None:
        self.workdir = workdir
        self.hashtag = hashtag
        self.emulator = XEmulator()
        # A demo convenience, not X's number: a search window generous enough
        # to poll every half second, so scripted conversations settle quickly.
        self.emulator.state.limits["search"] = (1800, 1800)
        self.creds = self.emulator.add_account(bot_username, "Bridge bot")
        self.bot = self.emulator.state.user(bot_username)
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def start(self) -> None:
        self._runner = web.AppRunner(self.emulator.app())
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"
        log.info("X emulator listening on %s", self.base_url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def account_config(self) -> dict[str, Any]:
        return {**self.creds, "api_base": self.base_url, "bot_username": self.bot.username,
                "search_share": 1.0, "allow_private_media_hosts": True}

    def channel_config(self) -> dict[str, Any]:
        return {"query": f"#{self.hashtag} -is:retweet", "poll_seconds": 0.5}

    async def post_as_member(self, author: str, text: str,
                             reply_to: str | None = None) -> str:
        # Members of a hashtag chat on X tag their posts: that is how the
        # conversation (and the bridge's search) finds them.
        if f"#{self.hashtag}".lower() not in text.lower():
            text = f"{text} #{self.hashtag}"
        st = self.emulator.state
        return st.create(st.user(author.lstrip("@")), text, reply_to=reply_to).id

    async def edit_as_member(self, native_id: str, text: str) -> None:
        # On X an edit (Premium, within the hour) is a new post id; the chain
        # is in edit_history_tweet_ids, which is how the adapter recognises it.
        st = self.emulator.state
        latest = st.tweets[native_id].history[-1] if st.tweets[native_id].history else native_id
        if f"#{self.hashtag}".lower() not in text.lower():
            text = f"{text} #{self.hashtag}"
        st.edit(latest, text)

    async def delete_as_member(self, native_id: str) -> None:
        t = self.emulator.state.tweets[native_id]
        for i in t.history or (native_id,):
            self.emulator.state.tweets[i].deleted = True

    async def messages(self) -> list[SandboxMessage]:
        st = self.emulator.state
        out = []
        for t in sorted(st.tweets.values(), key=lambda t: int(t.id)):
            if t.superseded:
                continue  # shown as its latest version, under the chain's first id
            by_bridge = t.author_id == self.bot.id
            if not by_bridge and not st.matches(t, f"#{self.hashtag}"):
                continue
            first = t.history[0] if t.history else t.id
            out.append(SandboxMessage(native_id=first, author=st.users[t.author_id].username,
                                      text=t.text, by_bridge=by_bridge, reply_to=t.reply_to,
                                      edited=bool(t.history), deleted=t.deleted))
        return out
