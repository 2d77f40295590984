"""Shared helpers of the X tests (imported by conftest and the test modules)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import tweepy.asynchronous

from adapters.twitter.emulator import XEmulator

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

