"""The conformance kit (:mod:`bridge.conformance`) for every registered network that has
a sandbox here: the registry's entry points decide the list, never a name in this file.
A network whose sandbox cannot run here (Synapse or Dovecot missing) is skipped with
its factory's reason; a scenario a network cannot support is skipped with the kit's.

One kit (the network's sandbox, the lobby, the relay) per network, shared by its
scenarios; a scenario that runs its own bridge hands the kit back with the default
bridge restarted.  ``bench/conformance.py`` prints the time per network.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from bridge.conformance import fleet
from bridge.conformance.kit import Kit, Unsupported
from bridge.conformance.scenarios import SCENARIOS, Scenario

NETWORKS = fleet.networks()
XFAIL: dict[str, str] = {}
"""Scenarios a known bug fails (name -> the bug), marked xfail until it is fixed."""

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=NETWORKS)
async def kit(request: pytest.FixtureRequest) -> AsyncIterator[Kit]:
    # Not under pytest's basetemp: Dovecot runs as nobody and needs +x on every
    # ancestor, which another pytest session on the machine may take away.
    tmp = Path(tempfile.mkdtemp(prefix=f"hashbridge-kit-{request.param}-"))
    os.chmod(tmp, 0o755)
    try:
        k = Kit(request.param, tmp)
    except Unsupported as e:
        shutil.rmtree(tmp, ignore_errors=True)
        pytest.skip(str(e))
    await k.start()
    try:
        yield k
    finally:
        await k.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.parametrize("case", [
    pytest.param(s, id=s.name, marks=[pytest.mark.xfail(reason=XFAIL[s.name], strict=False)]
                 if s.name in XFAIL else []) for s in SCENARIOS])
async def test_scenario(kit: Kit, case: Scenario) -> None:
    if case.own_bridge:
        await kit.stop_bridge()
    elif kit.bridge is None:   # own-bridge scenarios stop theirs: this is the default one
        await kit.start_bridge()
    try:
        await case.run(kit)
    except Unsupported as e:
        pytest.skip(str(e))
    finally:
        if case.own_bridge:
            await kit.stop_bridge()
