"""Shared helpers of the X tests (imported by conftest and the test modules)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import tweepy.asynchronous

from adapters.twitter.emulator.app import XEmulator

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "fixtures" / "twitter"
SPEC = SHARED / "openapi" / "x-api-v2-openapi.json"
LOCAL = REPO / "tests" / "fixtures" / "twitter"


class Running:
    def __init__(self, emu: XEmulator, base: str, session: aiohttp.ClientSession) -> None:
        self.emu, self.base, self.session = emu, base, session
        self.bot = emu.add_account("kmbridge", "KM Bridge")

    def client(self, creds: dict[str, str] | None = None,
               bearer: bool = False) -> tweepy.asynchronous.AsyncClient:
        c = creds or self.bot
        if bearer:
            cl = tweepy.asynchronous.AsyncClient(bearer_token=c["bearer_token"])
        else:
            cl = tweepy.asynchronous.AsyncClient(
                consumer_key=c["consumer_key"], consumer_secret=c["consumer_secret"],
                access_token=c["access_token"], access_token_secret=c["access_token_secret"])
        cl.session = self.session
        return cl




def load_jsonl(path: Path) -> list[dict[str, Any]]:
    """twarc pages, without twarc's own ``__twarc`` key (not part of the API)."""
    out = []
    for line in path.read_text().splitlines():
        try:
            page = json.loads(line)
        except ValueError:
            continue  # the stream recording ends with a cut-off line on purpose
        page.pop("__twarc", None)
        out.append(page)
    return out



def make_spec(key: str = "kmers/x", *, query: str = "#kmers -is:retweet",
              direction: str = "both", **opts: Any) -> Any:
    from adapters.twitter.config import TwitterChannel
    from bridge.contract.adapter import ChannelSpec
    from bridge.contract.model import ChannelKey

    return ChannelSpec(key=ChannelKey(key), community="kmers", hashtag="kmers",
                       direction=direction, options=TwitterChannel(query=query, **opts))


def make_create(text: str, key: str, *, channel: str = "kmers/x", author: str = "alice",
                platform: str = "mastodon", reply_to: str | None = None) -> Any:
    from bridge.contract.adapter import Rendered, SendCreate
    from bridge.contract.model import Author, ChannelKey, DeliveryId, NativeId, Post, PostId
    from bridge.contract.richtext import RichText
    from bridge.contract.textconv import from_plain, to_html, to_markdown

    rt: RichText = from_plain(text)
    post = Post(id=PostId("01J" + key.upper().rjust(23, "0")[:23]), community="kmers",
                origin_channel=ChannelKey("kmers/masto"), origin_native_id=NativeId(key),
                permalink="", author=Author(platform=platform, handle=f"@{author}@ex.social",
                                            display_name=author.title()), text=rt)
    rendered = Rendered(text=rt, plain=text, html=to_html(rt), markdown=to_markdown(rt))
    return SendCreate(delivery_id=DeliveryId(key), idempotency_key=key,
                      channel=ChannelKey(channel), post=post, rendered=rendered,
                      reply_to=NativeId(reply_to) if reply_to else None)
