"""Fixtures of the Matrix tests: one real Synapse per session (relaxed rate limits,
the appservice registration loaded), a second one with default limits when a test
asks for it, and a fresh room per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from mxhelp import Hs, Room, make_room, need_synapse, start_server


@pytest.fixture(scope="session")
def synapse(tmp_path_factory: pytest.TempPathFactory,
            request: pytest.FixtureRequest) -> Iterator[Hs]:
    need_synapse()
    hs = start_server(tmp_path_factory.mktemp("synapse"), relaxed=True)
    failed_before = request.session.testsfailed
    try:
        yield hs
    finally:
        if request.session.testsfailed > failed_before:
            print("\n--- Synapse log tail\n" + hs.server.log_tail(15))
        hs.server.stop()
        hs.forwarder.close()


@pytest.fixture(scope="module")
def synapse_default_limits(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hs]:
    """Synapse with its default rc_message limits (started only by the tests using it)."""
    need_synapse()
    hs = start_server(tmp_path_factory.mktemp("synapse-default"), relaxed=False)
    try:
        yield hs
    finally:
        hs.server.stop()
        hs.forwarder.close()


@pytest.fixture
async def room(synapse: Hs) -> AsyncIterator[Room]:
    """A fresh room: alice created it, bob joined, the bridge bot is invited."""
    r = await make_room(synapse)
    yield r
    await r.alice.close()
    await r.bob.close()
