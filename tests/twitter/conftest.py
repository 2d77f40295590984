"""Fixtures: a running X emulator on 127.0.0.1 and tweepy clients pointed at it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from twitter_support import SPEC, Running

from adapters.twitter.emulator.app import XEmulator, rewrite_middleware
from adapters.twitter.sandbox import TwitterSandbox


@pytest.fixture
async def xemu() -> AsyncIterator[Running]:
    emu = XEmulator(record=True)
    runner = web.AppRunner(emu.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession(middlewares=(rewrite_middleware(base),)) as session:
        yield Running(emu, base, session)
    await runner.cleanup()



def _dedupe_enums(node: Any) -> None:
    # The X spec lists a few values twice in *.fields enums, which
    # openapi-spec-validator refuses; dropping the repeats changes nothing else.
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "enum" and isinstance(v, list):
                node[k] = list(dict.fromkeys(json.dumps(x) for x in v))
                node[k] = [json.loads(x) for x in node[k]]
            else:
                _dedupe_enums(v)
    elif isinstance(node, list):
        for x in node:
            _dedupe_enums(x)


@pytest.fixture(scope="session")
def x_openapi() -> Any:
    """The official X API v2 spec (read from ../shared, never copied here)."""
    if not SPEC.exists():
        pytest.skip(f"X OpenAPI spec not found at {SPEC} (shared fixtures absent)")
    from openapi_core import Config, OpenAPI

    spec = json.loads(SPEC.read_text())
    _dedupe_enums(spec)
    spec["servers"] = [{"url": "https://api.twitter.com"}]
    cfg = Config(extra_media_type_deserializers={"application/problem+json": json.loads})
    return OpenAPI.from_dict(spec, config=cfg)


@pytest.fixture
async def xbox(tmp_path: Path) -> AsyncIterator[TwitterSandbox]:
    """The emulator as a sandbox the bridge reads and writes (pair it with ``lobby``)."""
    box = TwitterSandbox(str(tmp_path))
    await box.start()
    yield box
    await box.stop()
