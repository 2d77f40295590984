"""Fixtures of the Mastodon tests: the emulator, the spec, Mastodon.py clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from mastohelp import SPEC, load_openapi

from adapters.mastodon.emulator_server import MastodonEmulator


@pytest.fixture
async def emulator() -> AsyncIterator[MastodonEmulator]:
    async with MastodonEmulator(heartbeat=0.2) as emu:
        yield emu


@pytest.fixture(scope="session")
def openapi() -> Any:
    if not SPEC.exists():
        pytest.skip(f"Mastodon OpenAPI spec (GFDL, not copied into the repo) absent: {SPEC}")
    return load_openapi()
