"""Fixtures of the Mastodon tests: the emulator, the spec, Mastodon.py clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mastohelp import SPEC, load_openapi

from adapters.mastodon.emulator.server import MastodonEmulator
from adapters.mastodon.sandbox import MastodonSandbox


@pytest.fixture
async def emulator() -> AsyncIterator[MastodonEmulator]:
    async with MastodonEmulator(heartbeat=0.2) as emu:
        yield emu


@pytest.fixture(scope="session")
def openapi() -> Any:
    if not SPEC.exists():
        pytest.skip(f"Mastodon OpenAPI spec (GFDL, not copied into the repo) absent: {SPEC}")
    return load_openapi()


@pytest.fixture
async def masto(tmp_path: Path) -> AsyncIterator[MastodonSandbox]:
    """The emulator as a sandbox the bridge reads and writes (pair it with ``lobby``)."""
    box = MastodonSandbox(str(tmp_path), heartbeat=0.5)
    await box.start()
    yield box
    await box.stop()
