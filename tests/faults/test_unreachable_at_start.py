"""Conformance: a platform that is unreachable when the bridge starts is waited out,
on every network the registry offers (issue 16 §3).

Every loopback endpoint in the sandbox's account table is put behind a
:class:`~faultproxy.FaultProxy` that refuses connections (the server is down) while
the bridge starts.  Wanted, per network: the adapter waits as "not now" (health
``disconnected``, never ``failed``), no traceback and no "adapter crashed" line, no
charge on the restart budget, one warning for the state change however many
attempts it makes; and once the proxy passes again, the adapter connects.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from pathlib import Path
from typing import Any

import pytest

from bridge.conformance.faultproxy import FaultProxy, Mode
from bridge.contract.adapter import Health
from bridge.daemon.harness import ChannelDef, build_config, running, sandbox_channels
from bridge.runtime.registry import load_factories

NETWORKS = sorted(p for p in load_factories().factories if p != "sandbox")
URL = re.compile(r"^(https?)://127\.0\.0\.1:(\d+)(.*)$")


def _behind_proxies(table: Any, proxies: dict[int, FaultProxy]) -> Any:
    """*table* with every 127.0.0.1 endpoint (a URL, or a host/port pair) replaced
    by a proxy in front of it (one proxy per upstream port)."""

    def proxy_for(port: int) -> FaultProxy:
        if port not in proxies:
            proxies[port] = FaultProxy(f"up:{port}", "127.0.0.1", port)
        return proxies[port]

    if isinstance(table, dict):
        out = {k: _behind_proxies(v, proxies) for k, v in table.items()}
        if out.get("host") == "127.0.0.1" and isinstance(out.get("port"), int):
            out["port"] = ("proxy", proxy_for(table["port"]))  # its port once it listens
        return out
    if isinstance(table, str) and (m := URL.match(table)):
        return ("url", proxy_for(int(m.group(2))), m.group(1), m.group(3))
    return table


def _resolve(table: Any) -> Any:
    """Fill in the proxies' ports once they listen."""
    if isinstance(table, dict):
        return {k: _resolve(v) for k, v in table.items()}
    if isinstance(table, tuple) and table[0] == "proxy":
        return table[1].port
    if isinstance(table, tuple) and table[0] == "url":
        return f"{table[2]}://127.0.0.1:{table[1].port}{table[3]}"
    return table


@pytest.mark.timeout(240)
@pytest.mark.parametrize("platform", NETWORKS)
async def test_unreachable_platform_at_start_is_waited_out(
        platform: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    factory = load_factories().factories[platform]
    box: Any = factory.sandbox(str(tmp_path / platform))
    assert box is not None, f"{platform}: {getattr(factory, 'sandbox_missing', str)()}"
    await box.start()
    proxies: dict[int, FaultProxy] = {}
    try:
        table = _behind_proxies(dict(box.account_config()), proxies)
        assert proxies, f"{platform}'s sandbox account has no 127.0.0.1 endpoint"
        for p in proxies.values():
            await p.start()
            await p.set_mode(Mode.REFUSE)
        channels = [*sandbox_channels(tmp_path, ("lobby",)),
                    ChannelDef("net", platform, _resolve(table), box.channel_config())]
        cfg = build_config(tmp_path, channels)
        caplog.set_level(logging.DEBUG, logger="hashbridge")
        async with running(cfg) as bridge:
            rt = bridge.accounts["net"]
            # Long enough for several attempts (backoff 1 s, 2 s, 4 s...).
            started = time.monotonic()
            while time.monotonic() - started < 8:
                assert rt.health != Health.FAILED, rt.detail
                await asyncio.sleep(0.2)
            assert rt.health == Health.DISCONNECTED, (rt.health, rt.detail)
            assert rt.restarts == [], "an unreachable platform is not a crash"
            mine = [r for r in caplog.records
                    if r.name.endswith(".net") or r.name.endswith("kmers/net")]
            assert not [r for r in mine if r.exc_info], [r.getMessage() for r in mine
                                                        if r.exc_info]
            assert not [r for r in caplog.records if "crashed" in r.getMessage()]
            warnings = [r.getMessage() for r in mine if r.levelno >= logging.WARNING]
            assert len(warnings) == 1, warnings
            assert rt.detail, "status says why it waits"
            for p in proxies.values():
                await p.set_mode(Mode.PASS)
            deadline = time.monotonic() + 90
            while rt.health != Health.CONNECTED:
                assert time.monotonic() < deadline, (rt.health, rt.detail)
                await asyncio.sleep(0.2)
    finally:
        for p in proxies.values():
            await p.stop()
        await box.stop()
