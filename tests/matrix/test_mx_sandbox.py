"""The Matrix PlatformSandbox (its own Synapse) driving the real relay, as the demo does."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from mxhelp import eventually, need_synapse

from adapters.matrix import MatrixFactory
from adapters.sandbox import SandboxPlatform
from bridge.daemon.harness import ChannelDef, build_config, quiescent, running, sandbox_channels


def test_no_synapse_means_no_sandbox(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                     caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("SYNAPSE_PYTHON", str(tmp_path / "nope" / "python"))
    with caplog.at_level(logging.INFO, logger="hashbridge.adapter.matrix"):
        assert MatrixFactory().sandbox(str(tmp_path)) is None
    assert "Synapse is not installed" in caplog.text


async def test_sandbox_relays_both_ways(tmp_path: Path) -> None:
    need_synapse()
    mx = MatrixFactory().sandbox(str(tmp_path / "mx"))
    assert mx is not None
    await mx.start()
    net = SandboxPlatform(str(tmp_path / "networks"), "lobby")
    await net.start()
    try:
        cfg = build_config(tmp_path, [
            *sandbox_channels(tmp_path, ["lobby"]),
            ChannelDef("mx", "matrix", {**mx.account_config(), "sync_timeout_ms": 2000},
                       mx.channel_config())])
        async with running(cfg) as bridge:
            root = await mx.post_as_member("grace", "hi from matrix")
            await net.post_as_member("dora", "hi from the lobby")
            await eventually(lambda: _bridged(net))
            await mx.edit_as_member(root, "hi from matrix (edited)")
            await quiescent(bridge)
            await asyncio.sleep(0.5)
            await quiescent(bridge)
        msgs = await mx.messages()
        mine = [m for m in msgs if not m.by_bridge]
        bridged = [m for m in msgs if m.by_bridge]
        assert [m.text for m in mine] == ["hi from matrix (edited)"] and mine[0].edited
        assert len(bridged) == 1 and "hi from the lobby" in bridged[0].text
        lobby = [m for m in await net.messages() if m.by_bridge]
        assert len(lobby) == 1 and "hi from matrix (edited)" in lobby[0].text
    finally:
        await net.stop()
        await mx.stop()


async def _bridged(net: SandboxPlatform) -> bool:
    return any(m.by_bridge for m in await net.messages())


def test_synapse_dies_with_a_killed_parent(tmp_path: Path) -> None:
    """kill -9 of the process that started Synapse leaves no homeserver behind."""
    import os
    import signal
    import subprocess
    import sys
    import time

    need_synapse()
    code = ("import sys, time\n"
            "from adapters.matrix.testserver import SynapseServer\n"
            f"s = SynapseServer({str(tmp_path / 'hs')!r}); s.spawn()\n"
            "print(s.proc.pid, flush=True); time.sleep(120)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(5)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                return
            try:
                with open(f"/proc/{child}/stat") as f:    # a zombie awaiting reaping is gone
                    if f.read().split(") ", 1)[1].startswith("Z"):
                        return
            except FileNotFoundError:
                return
            time.sleep(0.1)
        os.kill(child, signal.SIGKILL)
        raise AssertionError("Synapse outlived its parent")
    finally:
        if parent.poll() is None:
            parent.kill()
