"""Fixtures every platform's end-to-end tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.sandbox import SandboxPlatform


@pytest.fixture
async def lobby(tmp_path: Path) -> AsyncIterator[SandboxPlatform]:
    """A sandbox network, "lobby", the other side of a platform under test."""
    net = SandboxPlatform(str(tmp_path / "networks"), "lobby")
    await net.start()
    yield net
    await net.stop()
