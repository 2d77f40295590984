"""X sandbox for ``hashbridge demo``, the end-to-end tests and benchmarks: the
emulator on a free 127.0.0.1 port, members posting through its state directly."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from adapters.twitter.emulator.app import XEmulator
from adapters.twitter.emulator.state import Media
from bridge.contract.sandbox import (
    Endpoint,
    FailureAnswer,
    Fault,
    PoisonKind,
    SandboxFeatures,
    SandboxMedia,
    SandboxMessage,
)

log = logging.getLogger("hashbridge.adapter.twitter.sandbox")


class TwitterSandbox:
    platform = "twitter"
    kind = "emulator (the X API v2, in process)"
    # The bot may answer only posts that mention it (or its own): a copy of a reply to
    # a member's post is posted standalone.  Commands: the adapter reads none.
    features = SandboxFeatures(member_media=True, in_process=True, replies_need_mention=True,
                               member_polls=True, member_quotes=True,
                               deletes_noticed_seconds=10.0)

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
        self.port = 0
        self._files: dict[str, bytes] = {}
        self._cdn: web.AppRunner | None = None
        self.cdn_url = ""
        self._unthrottled = False

    async def start(self) -> None:
        # Members' media as X serves it: from its CDN (pbs.twimg.com), without the API's
        # authentication; here a second listener on 127.0.0.1.
        cdn = web.Application()
        cdn.router.add_get("/media/{name}", self._media_file)
        self._cdn = web.AppRunner(cdn)
        await self._cdn.setup()
        cdn_site = web.TCPSite(self._cdn, "127.0.0.1", 0)
        await cdn_site.start()
        cdn_port = cdn_site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.cdn_url = f"http://127.0.0.1:{cdn_port}"
        self._runner = web.AppRunner(self.emulator.app())
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        log.info("X emulator listening on %s", self.base_url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._cdn is not None:
            await self._cdn.cleanup()
            self._cdn = None

    async def _media_file(self, request: web.Request) -> web.Response:
        data = self._files.get(request.match_info["name"])
        if data is None:
            raise web.HTTPNotFound()
        return web.Response(body=data, content_type="image/png")

    def account_config(self) -> dict[str, Any]:
        budgets = {"max_posts_per_day": 100_000, "max_usd_per_day": 100_000.0,
                   "max_usd_per_month": 100_000.0} if self._unthrottled else {}
        # Members' media comes from the sandbox's CDN (see start): X's media host here.
        cdn = [self.cdn_url.removeprefix("http://")] if self.cdn_url else []
        return {**self.creds, "api_base": self.base_url, "bot_username": self.bot.username,
                "search_share": 1.0, "allow_private_media_hosts": True, "media_hosts": cdn,
                **budgets}

    def channel_config(self) -> dict[str, Any]:
        # Deletions on X are found by looking relayed posts up again (searches carry no
        # delete events): after about 7 s here, instead of the default 20 hours.
        return {"query": f"#{self.hashtag} -is:retweet", "poll_seconds": 0.5,
                "recheck_after_hours": 0.002}

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

    async def post_with_media(self, author: str, text: str, data: bytes, media_type: str,
                              alt_text: str) -> str:
        if f"#{self.hashtag}".lower() not in text.lower():
            text = f"{text} #{self.hashtag}"
        st = self.emulator.state
        mid = st._next_id()
        self._files[f"{mid}.png"] = data
        st.media[mid] = Media(media_key="3_" + mid, media_id=mid, media_type=media_type,
                              size=len(data), alt_text=alt_text,
                              url=f"{self.cdn_url}/media/{mid}.png")
        return st.create(st.user(author.lstrip("@")), text, media_ids=(mid,)).id

    async def post_poll_as_member(self, author: str, text: str, options: list[str]) -> str:
        if f"#{self.hashtag}".lower() not in text.lower():
            text = f"{text} #{self.hashtag}"
        st = self.emulator.state
        ends = datetime.fromtimestamp(st.clock() + 86400, UTC)
        poll: dict[str, object] = {
            "options": [{"position": i, "label": o, "votes": 0}
                        for i, o in enumerate(options, 1)],
            "voting_status": "open", "duration_minutes": 1440,
            "end_datetime": ends.strftime("%Y-%m-%dT%H:%M:%S.000Z")}
        return st.create(st.user(author.lstrip("@")), text, poll=poll).id

    async def post_quote_as_member(self, author: str, text: str, quoted: str) -> str:
        if f"#{self.hashtag}".lower() not in text.lower():
            text = f"{text} #{self.hashtag}"
        st = self.emulator.state
        return st.create(st.user(author.lstrip("@")), text, quote_of=quoted).id

    async def command_as_member(self, author: str, command: str) -> str:
        raise NotImplementedError("the X adapter reads no bot commands")

    async def post_poison(self, author: str, tag: str) -> dict[str, PoisonKind]:
        """A post with a malformed field, a post far over X's size."""
        st = self.emulator.state
        odd = st.create(st.user(author), f"{tag} odd #{self.hashtag}")
        odd.wire_overrides["referenced_tweets"] = 7
        huge = st.create(st.user(author), f"{tag} #{self.hashtag} " + "a" * 25_001)
        return {odd.id: PoisonKind.ALWAYS, huge.id: PoisonKind.ALWAYS}

    # ------------------------------------------------------------ faults
    def endpoints(self) -> list[Endpoint]:
        return [Endpoint(name="api", port=self.port)]

    def account_config_via(self, ports: Mapping[str, int], timeout: float) -> dict[str, Any]:
        cfg = self.account_config() | {"request_timeout": timeout}
        if "api" in ports:
            cfg["api_base"] = f"http://127.0.0.1:{ports['api']}"
        return cfg

    def failure(self, endpoint: str, fault: Fault, n: int, until: float
                ) -> FailureAnswer | None:
        if fault == "ratelimit":
            body = {"title": "Too Many Requests", "detail": "Too Many Requests",
                    "type": "about:blank", "status": 429}
            return FailureAnswer(status=429, body=json.dumps(body).encode(), headers={
                "x-rate-limit-limit": "300", "x-rate-limit-remaining": "0",
                "x-rate-limit-reset": str(math.ceil(until))})
        if n % 2 == 0:  # the edge in front of the API
            page = ("<html><head><title>503 Service Temporarily Unavailable</title></head>"
                    "<body><center><h1>503 Service Temporarily Unavailable</h1></center>"
                    "<hr><center>nginx</center></body></html>\n")
            return FailureAnswer(status=503, body=page.encode(), content_type="text/html")
        body = {"title": "Internal Server Error", "detail": "Internal Server Error",
                "type": "about:blank", "status": 500}
        return FailureAnswer(status=500, body=json.dumps(body).encode())

    def unthrottle(self) -> None:
        # X's windows (100 posts per 15 minutes) and the account's daily budgets would
        # turn a long run into a budget test; those have their own tests.
        for bucket in ("create", "delete", "lookup", "timeline"):
            self.emulator.state.limits[bucket] = (100_000, 100_000)
        self._unthrottled = True

    async def messages(self) -> list[SandboxMessage]:
        st = self.emulator.state
        by_key = {m.media_key: m for m in st.media.values()}

        def media(t: Any) -> list[Media]:
            return [by_key[k] for k in t.media_keys if k in by_key]

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
                                      edited=bool(t.history), deleted=t.deleted,
                                      media=tuple(SandboxMedia(media_type=m.media_type,
                                                               alt_text=m.alt_text, size=m.size)
                                                  for m in media(t)),
                                      pings=tuple(st.mentions(t)) if by_bridge else ()))
        return out
