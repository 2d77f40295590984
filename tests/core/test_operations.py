"""Supervision, pacing and the operator's commands (status, retry, preview, demo, logs)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bridge.contract.adapter import AuthError, Health, PermanentError, TransientError
from bridge.contract.testing import FakeAdapter
from bridge.daemon.harness import build_config, quiescent, running
from bridge.outbound.ratelimit import TokenBucket, backoff
from bridge.runtime import logs
from bridge.runtime.registry import RegistryError, load_factories

ROOT = Path(__file__).parents[2]


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge.cli", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


class Crashy(FakeAdapter):
    """Crashes on start a given number of times, then behaves."""

    def __init__(self, crashes: int, exc: Exception) -> None:
        super().__init__()
        self.crashes = crashes
        self.exc = exc
        self.starts = 0

    async def run(self, ctx: Any) -> None:
        self.starts += 1
        if self.starts <= self.crashes:
            raise self.exc
        await super().run(ctx)


async def _with_fakes(tmp_path: Path, fakes: dict[str, FakeAdapter], **bridge: Any) -> Any:
    from bridge.contract.testing import FakeFactory
    from bridge.daemon.harness import ChannelDef
    by_name = {k.upper(): v for k, v in fakes.items()}
    base = load_factories()
    reg = type(base)({**base.factories, "fake": FakeFactory(by_name)})
    chans = [ChannelDef(n, "fake", {"display_name": n.upper()}, {"spot": n})
             for n in ("a", "b", "c")]
    cfg = build_config(tmp_path, chans, registry=reg, bridge_options=bridge)
    return cfg, by_name


async def test_a_crashing_adapter_restarts_and_never_stops_its_siblings(tmp_path: Path) -> None:
    crashy = Crashy(2, RuntimeError("socket exploded"))
    cfg, fakes = await _with_fakes(tmp_path, {"a": crashy})
    async with running(cfg) as bridge:
        from bridge.contract.model import Author, ChannelKey, NativeId, Posted
        from bridge.contract.textconv import from_plain
        b = fakes["B"]
        b.inject(Posted(channel=ChannelKey("kmers/b"), native_id=NativeId("1"),
                        author=Author(platform="fake", handle="bob"), text=from_plain("hi")))
        await quiescent(bridge, timeout=20)
        assert len(fakes["C"].sent) == 1  # the siblings worked all along
        deadline = time.monotonic() + 15
        while bridge.accounts["a"].health != Health.CONNECTED:
            assert time.monotonic() < deadline, bridge.accounts["a"].detail
            await asyncio.sleep(0.1)
        assert crashy.starts == 3
        assert len(fakes["A"].sent) == 1  # a's worker delivered despite crashes


async def test_restart_budget_marks_failed(tmp_path: Path) -> None:
    crashy = Crashy(100, RuntimeError("always"))
    cfg, _fakes = await _with_fakes(tmp_path, {"a": crashy}, restart_budget=1)
    async with running(cfg) as bridge:
        deadline = time.monotonic() + 20
        while bridge.accounts["a"].health != Health.FAILED:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        assert "always" in bridge.accounts["a"].detail
        health = await bridge.store.run(lambda tx: tx.health())
        assert ("a", "fake", "failed") in [h[:3] for h in health]


async def test_a_platform_saying_not_now_at_start_is_waited_out_not_a_crash(
        tmp_path: Path) -> None:
    # e.g. Mastodon's verify_credentials answering 429 during a rate-limit window
    crashy = Crashy(6, TransientError("rate limited (429)", retry_after=0.1))
    cfg, _fakes = await _with_fakes(tmp_path, {"a": crashy}, restart_budget=1)
    async with running(cfg) as bridge:
        deadline = time.monotonic() + 20
        while bridge.accounts["a"].health != Health.CONNECTED:
            assert bridge.accounts["a"].health != Health.FAILED, bridge.accounts["a"].detail
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert crashy.starts == 7


async def test_bad_credentials_are_reported_not_retried_hot(tmp_path: Path) -> None:
    crashy = Crashy(100, AuthError("401 The access token is invalid"))
    cfg, _fakes = await _with_fakes(tmp_path, {"a": crashy})
    async with running(cfg) as bridge:
        await asyncio.sleep(1.0)
        assert bridge.accounts["a"].health == Health.BAD_CREDENTIALS
        assert crashy.starts == 1


def test_token_bucket_paces_and_obeys_platform_reset() -> None:
    async def go() -> tuple[float, float]:
        bucket = TokenBucket(rate=20.0, burst=2)
        t0 = time.monotonic()
        for _ in range(6):  # 2 at once, then 4 at 20/s = 0.2 s
            await bucket.acquire()
        paced = time.monotonic() - t0
        bucket.feed(remaining=0, reset_at=time.time() + 0.5)
        t1 = time.monotonic()
        await bucket.acquire()
        return paced, time.monotonic() - t1

    paced, held = asyncio.run(go())
    assert 0.18 <= paced < 0.6
    assert 0.45 <= held < 1.0


def test_backoff_is_capped_jittered_and_honours_retry_after() -> None:
    import random
    rng = random.Random(1)
    delays = [backoff(n, cap=60, rng=rng) for n in range(12)]
    assert all(0.5 <= d <= 60 for d in delays) and max(delays) > 30
    assert 120 <= backoff(3, retry_after=120, rng=rng) <= 121


def test_duplicate_adapter_names_are_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import EntryPoint

    import bridge.runtime.registry as registry
    eps = [EntryPoint("mastodon", "pkg_one:F", registry.GROUP),
           EntryPoint("mastodon", "pkg_two:F", registry.GROUP)]
    monkeypatch.setattr(registry, "entry_points", lambda group: eps)
    with pytest.raises(RegistryError, match="mastodon: pkg_one:F, pkg_two:F"):
        load_factories()


def test_secrets_never_reach_logs_or_tracebacks() -> None:
    out = io.StringIO()
    logs.setup("debug", "json", ["s3cr3t-canary-token"], stream=out)
    log = logging.getLogger("hashbridge.test")
    log.info("connecting with %s", "s3cr3t-canary-token")
    try:
        raise ValueError("bad token s3cr3t-canary-token")
    except ValueError:
        log.exception("failed")
    text = out.getvalue()
    assert "s3cr3t-canary-token" not in text and text.count("***") >= 2
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0]["logger"] == "hashbridge.test" and "exc" in lines[1]
    logs.setup("warning")


GOOD = """
[bridge]
data_dir = "data"
[accounts.lobby]
platform = "sandbox"
dir = "nets"
display_name = "Lobby"
[accounts.garden]
platform = "sandbox"
dir = "nets"
display_name = "Garden"
max_length = 60
[[communities]]
name = "kmers"
hashtag = "kmers"
[[communities.channels]]
account = "lobby"
network = "lobby"
[[communities.channels]]
account = "garden"
network = "garden"
split = "thread"
"""


def test_preview_shows_each_target_with_lengths(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text(GOOD.replace('"nets"', f'"{tmp_path / "nets"}"'))
    res = cli("preview", "-c", "c.toml", "a fairly long message that will need two parts "
              "on the garden network @bob", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "→ kmers/garden (sandbox), 2 parts, limit 60" in res.stdout
    assert "(1/2)" in res.stdout and "@\u2060bob" in res.stdout


def test_status_and_retry_show_and_requeue_dead_deliveries(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text(GOOD.replace('"nets"', f'"{tmp_path / "nets"}"'))

    async def make_dead() -> None:
        from bridge.runtime.config import load
        config = load(str(tmp_path / "c.toml"), load_factories(), {})
        async with running(config) as bridge:
            from adapters.sandbox import SandboxPlatform
            lobby = SandboxPlatform(str(tmp_path / "nets"), "lobby")
            await lobby.post_as_member("alice", "first")
            await quiescent(bridge)
            d = await bridge.store.run(lambda tx: tx.dead())
            assert not d
            # the garden platform now refuses, as with a 4xx
            worker = bridge.workers["kmers/garden"]
            worker.deps.adapter.send = _refuse  # type: ignore[method-assign]
            await lobby.post_as_member("alice", "second")
            await quiescent(bridge)

    asyncio.run(make_dead())
    res = cli("status", "-c", "c.toml", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "kmers/garden" in res.stdout and "422 refused by the platform" in res.stdout
    js = json.loads(cli("status", "-c", "c.toml", "--json", cwd=tmp_path).stdout)
    assert js["dead"][0]["reason"] == "422 refused by the platform"
    assert {a["account"] for a in js["adapters"]} == {"lobby", "garden"}
    res = cli("retry", "-c", "c.toml", cwd=tmp_path)
    assert "re-queued 1 dead delivery" in res.stdout
    js = json.loads(cli("status", "-c", "c.toml", "--json", cwd=tmp_path).stdout)
    assert js["dead"] == [] and js["queues"]["kmers/garden"]["pending"] == 1


async def _refuse(op: Any) -> Any:
    raise PermanentError("422 refused by the platform")


def test_demo_runs_and_exits_with_a_summary(tmp_path: Path) -> None:
    res = cli("demo", "--for", "3", "--port", "0", "--workdir", str(tmp_path), cwd=tmp_path,
              timeout=240)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "0 lost, 0 duplicated" in res.stdout
    assert "── X (emulator" in res.stdout and "── Mastodon (emulator" in res.stdout


async def test_reconnect_sends_deferred_deliveries_at_once(tmp_path: Path) -> None:
    from bridge.contract.adapter import TransientError
    from bridge.contract.model import Author, ChannelKey, NativeId, Posted
    from bridge.contract.textconv import from_plain
    b = FakeAdapter()
    b.failures = [TransientError("503", retry_after=300)]  # would wait five minutes
    cfg, fakes = await _with_fakes(tmp_path, {"b": b})
    async with running(cfg) as bridge:
        fakes["A"].inject(Posted(
            channel=ChannelKey("kmers/a"), native_id=NativeId("1"),
            author=Author(platform="fake", handle="al"), text=from_plain("hi")))
        await quiescent(bridge, allow_deferred=True)
        assert b.sent == []
        rt = bridge.accounts["b"]
        rt.set_health(Health.DISCONNECTED, "platform down")
        rt.set_health(Health.CONNECTED)  # it is back
        bridge.accounts["b"].bucket.paused_until = 0  # the 503's pause, already over
        await quiescent(bridge, timeout=10)
        assert len(b.sent) == 1


def test_token_bucket_long_drain_keeps_its_rate() -> None:
    async def go() -> float:
        bucket = TokenBucket(rate=200.0, burst=1)
        t0 = time.monotonic()
        for _ in range(200):
            await bucket.acquire()
        return time.monotonic() - t0

    assert asyncio.run(go()) < 1.3  # 200 at 200/s: ~1 s, sleeps' overshoot credited
