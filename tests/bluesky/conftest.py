"""Fixtures of the Bluesky tests: one real PDS (with its in-memory PLC) per session,
a fresh sandbox (bridge account, members) on it per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from adapters.bluesky.sandbox import BlueskySandbox
from adapters.bluesky.testserver import PdsServer, missing_reason, node_binary


@pytest.fixture(scope="session")
def pds(tmp_path_factory: pytest.TempPathFactory,
        request: pytest.FixtureRequest) -> Iterator[PdsServer]:
    if node_binary() is None:
        pytest.skip(missing_reason())
    server = PdsServer(tmp_path_factory.mktemp("pds"))
    server.start()
    failed_before = request.session.testsfailed
    try:
        yield server
    finally:
        if request.session.testsfailed > failed_before:
            print("\n--- PDS log tail\n" + "\n".join(
                server.log_path.read_text(errors="replace").splitlines()[-15:]))
        server.stop()


@pytest.fixture
async def bsky(pds: PdsServer, tmp_path: Path) -> AsyncIterator[BlueskySandbox]:
    box = BlueskySandbox(str(tmp_path), server=pds)
    await box.start()
    yield box
    await box.stop()
