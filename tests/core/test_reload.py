"""Routing changes without a restart (bridge/daemon/reload.py).

The end-to-end test reloads a real ``hashbridge run`` process on sandbox networks
(SQLite files this test reads too) during a 600-post burst: a channel added, one
removed, an option changed, then an invalid file refused; every post arrives once,
in order, where the routes at its arrival said.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from adapters.sandbox.network import Network
from bridge.daemon.harness import eventually, running
from bridge.daemon.reload import Reloader, diff, kept
from bridge.runtime.config import load
from bridge.runtime.registry import load_factories

BURST = 600
ROOT = Path(__file__).parents[2]

ACCOUNT = """
[accounts.{name}]
platform = "sandbox"
dir = "{nets}"
display_name = "{title}"
"""
CHANNEL = """
[[communities.channels]]
account = "{name}"
network = "{name}"
{extra}"""


def config(nets: Path, channels: list[str], *, extra: dict[str, str] | None = None,
           bridge: str = "", community: str = "", retry: float = 1) -> str:
    """A config with one sandbox account and channel per name in *channels*
    (*extra*: more lines for a channel's table)."""
    extra = extra or {}
    text = (f'[bridge]\ndata_dir = "data"\nlog_level = "warning"\n'
            f'retry_max_seconds = {retry}\n{bridge}\n')
    for n in channels:
        text += ACCOUNT.format(name=n, nets=nets, title=n.title())
    text += ('\n[[communities]]\nname = "kmers"\nhashtag = "kmers"\n'
             f'author_rate_per_minute = 100000\n{community}\n')
    for n in channels:
        text += CHANNEL.format(name=n, extra=extra.get(n, ""))
    return text


def cli(*args: str, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge.cli", *args], capture_output=True,
                          text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def copies(net: Network) -> list[str]:
    return [m.text for m in net.messages() if m.by_bridge]


def wait_for(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def status(cfg: Path, env: dict[str, str]) -> dict[str, Any]:
    got = cli("status", "-c", str(cfg), "--json", env=env)
    assert got.returncode == 0, got.stderr
    out: dict[str, Any] = json.loads(got.stdout)
    return out


def test_reload_mid_burst_adds_removes_and_changes_and_refuses(tmp_path: Path) -> None:
    nets = tmp_path / "nets"
    nets.mkdir()
    secret = "reload-secret-4711-value"
    env = {"SANDBOX_TOKEN": secret}
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(config(nets, ["lobby", "garden", "porch"]))
    log = tmp_path / "bridge.log"
    lobby, garden, porch, deck = (Network(str(nets / f"{n}.sqlite"))
                                  for n in ("lobby", "garden", "porch", "deck"))
    proc = subprocess.Popen([sys.executable, "-m", "bridge.cli", "run", "-c", str(cfg)],
                            stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(ROOT), **env})
    run_dir = tmp_path / "data" / "run"
    posted = 0

    def post(until: int) -> None:
        nonlocal posted
        while posted < until:
            lobby.post(f"m{posted % 7}", f"burst message {posted:04d}")
            posted += 1
            if posted % 50 == 0:
                time.sleep(0.01)

    down = nets / "porch.down"  # the sandbox refuses porch's sends: a queue builds up
    try:
        wait_for(lambda: (run_dir / f"{proc.pid}.pid").exists(), 60, "the process file")
        post(100)
        wait_for(lambda: len(copies(porch)) >= 50, 60, "50 copies on porch")
        down.touch()
        post(200)
        wait_for(lambda: len(copies(garden)) >= 150, 60, "150 copies on garden")
        # Add deck, remove porch, change garden's attribution: while copies are in flight.
        cfg.write_text(config(nets, ["lobby", "garden", "deck"], extra={
            "garden": 'attribution = "{name} via {network}: "'}))
        view = tmp_path / "view.toml"  # a valid copy for `status` (same data_dir)
        view.write_text(cfg.read_text())
        got = cli("reload", "-c", str(cfg), env=env)
        assert got.returncode == 0, got.stdout + got.stderr
        assert "channel added: kmers/deck" in got.stdout
        assert "channel removed: kmers/porch" in got.stdout
        assert "channel kmers/garden: attribution changed" in got.stdout
        assert "account restarted" not in got.stdout  # no account's own keys changed
        post(400)
        wait_for(lambda: len(copies(garden)) >= 250, 60, "250 copies on garden")
        assert len(copies(porch)) < 200  # its queue waits for the network
        down.unlink()  # porch is back: the removed channel's queue goes, then it stops
        wait_for(lambda: "queue is sent" in log.read_text(), 60, "porch's queue sent")
        # An invalid file mid-burst: refused, the running config stays.
        cfg.write_text(config(nets, ["lobby", "garden"], extra={
            "garden": 'direction = "${SANDBOX_TOKEN}"\nsplitt = "thread"'}))
        proc.send_signal(signal.SIGHUP)
        post(BURST)
        wait_for(lambda: any(not r["ok"] for r in status(view, env)["reloads"]), 60,
                 "the refusal in status")
        wait_for(lambda: len(copies(garden)) >= BURST and len(copies(deck)) > 0
                 and copies(deck)[-1].endswith(f"{BURST - 1:04d}"), 120, "every copy")
        time.sleep(1.0)  # anything extra (a duplicate) would show up now
        state = status(view, env)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]

    texts = [f"burst message {i:04d}" for i in range(BURST)]
    got_garden = copies(garden)
    assert [t.split(": ", 1)[1] for t in got_garden] == texts, "garden: lost, repeated, reordered"
    # the new attribution from some post on, never the old one after it
    new = [t.startswith(f"M{i % 7} via Lobby: ") for i, t in enumerate(got_garden)]
    assert new[-1] and not new[0] and new == sorted(new), "attribution not switched once"
    # porch: everything routed to it before the reload (drained), nothing after;
    # deck: everything after, nothing before.
    got_porch, got_deck = copies(porch), copies(deck)
    for got in (got_porch, got_deck):
        assert not [t for t, n in Counter(got).items() if n > 1], "duplicated"
    split = len(got_porch)
    # (what was relayed before the routes changed: at least the 150 garden had; none of
    # the posts written after `hashbridge reload` returned)
    assert 150 <= split <= 200
    assert got_porch == [f"M{i % 7} (Lobby): {texts[i]}" for i in range(split)]
    assert got_deck == [f"M{i % 7} (Lobby): {texts[i]}" for i in range(split, BURST)]
    assert "queue is sent" in text

    # the refusal: each of check's messages on its own ERROR line, the secret never shown
    refused = [ln for ln in text.splitlines() if "reload refused:" in ln]
    assert any("communities[0].channels[1].direction: must be one of" in ln for ln in refused)
    assert any("communities[0].channels[1].splitt: unknown key (did you mean 'split'?)" in ln
               for ln in refused)
    assert all("ERROR" in ln for ln in refused)
    assert secret not in text
    last = state["reloads"][0]
    assert not last["ok"] and last["pid"] == proc.pid
    assert any("***" in e for e in last["errors"]) and secret not in json.dumps(state)
    assert state["removed_channels_queued"] == {}


# ------------------------------------------------------------------ unit level

def _load(tmp_path: Path, text: str, name: str = "c.toml") -> Any:
    p = tmp_path / name
    p.write_text(text)
    return load(str(p), load_factories(), env={"SANDBOX_TOKEN": "reload-secret-4711-value"})


def test_diff_names_what_changes_and_what_needs_a_restart(tmp_path: Path) -> None:
    nets = tmp_path / "nets"
    old = _load(tmp_path, config(nets, ["lobby", "garden", "porch"]))
    assert diff(old, old).unchanged
    new = _load(tmp_path, config(nets, ["lobby", "garden", "deck"], extra={
        "garden": 'attribution = "{name} via {network}: "', "lobby": "reply_wait = 5"},
        bridge='failover_seconds = 30\n[bridge.web]\nlisten = "127.0.0.1:0"', retry=60,
        community="consent = \"opt-in\""), "n.toml")
    d = diff(old, new)
    assert d.added_channels == ("kmers/deck",)
    assert d.removed_channels == ("kmers/porch",)
    assert d.changed_channels == (("kmers/garden", ("attribution",)),
                                  ("kmers/lobby", ("reply_wait",)))
    assert d.changed_communities == (("kmers", ("consent",)),)
    assert d.added_accounts == ("deck",) and d.removed_accounts == ("porch",)
    assert d.restarted_accounts == ()  # delivery options restart nothing
    assert d.bridge_changed == ("retry_max_seconds",)
    assert d.needs_restart == ("failover_seconds", "web")
    merged = kept(old, new)
    assert merged.bridge.failover_seconds == old.bridge.failover_seconds
    assert merged.bridge.web is None and merged.bridge.retry_max_seconds == 60


def test_an_account_restarts_only_for_its_keys_or_its_channels(tmp_path: Path) -> None:
    nets = tmp_path / "nets"
    base = config(nets, ["lobby", "garden"])
    old = _load(tmp_path, base)
    keys = _load(tmp_path, base.replace('display_name = "Garden"',
                                        'display_name = "Garden"\npoll_interval = 0.5'), "k.toml")
    assert diff(old, keys).restarted_accounts == (("garden", "its keys changed"),)
    # a second channel on lobby's account: lobby restarts, garden does not
    more = _load(tmp_path, base + '\n[[communities]]\nname = "pkm"\nhashtag = "pkm"\n'
                 '[[communities.channels]]\naccount = "lobby"\nnetwork = "pkmlobby"\n'
                 '[[communities.channels]]\naccount = "deck"\nnetwork = "deck"\n'
                 + ACCOUNT.format(name="deck", nets=nets, title="Deck"), "m.toml")
    d = diff(old, more)
    assert d.restarted_accounts == (("lobby", "its channels changed"),)
    assert d.added_communities == ("pkm",) and d.added_accounts == ("deck",)


async def test_refusal_is_logged_redacted_and_the_config_stays(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    nets = tmp_path / "nets"
    path = tmp_path / "c.toml"
    path.write_text(config(nets, ["lobby", "garden"]))
    cfg = load(str(path), load_factories(), env={})
    async with running(cfg) as bridge:
        reloader = Reloader(bridge)
        path.write_text(config(nets, ["lobby", "garden"], extra={
            "garden": 'direction = "${SANDBOX_TOKEN}"'}))
        monkeypatch.setenv("SANDBOX_TOKEN", "reload-secret-4711-value")
        with caplog.at_level("ERROR", logger="hashbridge.reload"):
            out = await reloader.reload()
        assert not out.ok and bridge.config is cfg
        lines = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert any(ln.startswith("reload refused: communities[0].channels[1].direction: "
                                 "must be one of") for ln in lines)
        assert all("reload-secret-4711-value" not in ln for ln in lines + out.errors)
        assert any("***" in e for e in out.errors)
        recorded = await bridge.store.run(
            lambda tx: tx.state_items("hashbridge", "reload"))
        assert len(recorded) == 1 and '"ok": false' in recorded[0][1]
        # a valid file again: applied, recorded as ok
        path.write_text(config(nets, ["lobby", "garden"], extra={"garden": "reply_wait = 3"}))
        out = await reloader.reload()
        assert out.ok and out.changes == ["channel kmers/garden: reply_wait changed "
                                          "(new deliveries)"]
        assert bridge.workers["kmers/garden"].rules.reply_wait == 3


def test_a_removed_channels_queue_outlives_a_stop_mid_drain(tmp_path: Path) -> None:
    """Stopped while a removed channel's queue waits (its network down): the queue
    stays in the database; ``status`` and the next start say so."""
    nets = tmp_path / "nets"
    nets.mkdir()
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(config(nets, ["lobby", "garden", "porch"]))
    log = tmp_path / "bridge.log"
    lobby, garden = (Network(str(nets / f"{n}.sqlite")) for n in ("lobby", "garden"))
    (nets / "porch.down").touch()

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "bridge.cli", "run", "-c", str(cfg)],
                                stdout=log.open("ab"), stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})

    proc = start()
    try:
        wait_for(lambda: (tmp_path / "data" / "run" / f"{proc.pid}.pid").exists(), 60,
                 "the process file")
        for i in range(20):
            lobby.post("m", f"queued {i}")
        wait_for(lambda: len(copies(garden)) >= 20, 60, "20 copies on garden")
        cfg.write_text(config(nets, ["lobby", "garden"]))
        got = cli("reload", "-c", str(cfg))
        assert got.returncode == 0 and "channel removed: kmers/porch" in got.stdout, got
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0
    assert "queue is sent" not in log.read_text()
    before = status(cfg, {})
    assert before["removed_channels_queued"] == {"kmers/porch": 20}
    assert [r["pid"] for r in before["reloads"]] == [proc.pid]
    shown = cli("status", "-c", str(cfg)).stdout
    assert "queued for channels no longer in the configuration" in shown
    assert "kmers/porch" in shown
    proc = start()
    try:
        wait_for(lambda: "20 deliveries queued for kmers/porch, which is no longer in the "
                 "configuration" in log.read_text(), 60, "the warning at start")
        assert status(cfg, {})["reloads"] == []  # the stopped process's outcome is gone
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


async def test_postgresql_a_removed_accounts_lease_is_released_at_once(
        pg: Any, tmp_path: Path) -> None:
    """With a shared database, the lease of an account a reload removed is given up
    at once (not left to expire), and an added account's is taken."""
    import psycopg

    url = pg.create_database("reload_leases")
    nets = tmp_path / "nets"
    path = tmp_path / "c.toml"
    db = f'database = "{url}"\nfailover_seconds = 10'
    path.write_text(config(nets, ["lobby", "garden", "porch"], bridge=db))
    cfg = load(str(path), load_factories(), env={})

    def leases() -> set[str]:
        with psycopg.connect(pg.admin_url("reload_leases")) as c:
            return {r[0] for r in c.execute(
                "SELECT name FROM hashbridge_leases WHERE expires_at >"
                " extract(epoch from clock_timestamp())")}

    async def holding(names: set[str]) -> bool:
        assert bridge.cluster is not None
        return set(bridge.cluster.running) == names and leases() == names

    async with running(cfg) as bridge:
        await eventually(lambda: holding({"account:lobby", "account:garden",
                                          "account:porch"}), 60, "the three leases")
        path.write_text(config(nets, ["lobby", "garden", "deck"], bridge=db))
        out = await Reloader(bridge).reload()
        assert out.ok and "account removed: porch" in out.changes
        assert "account:porch" not in leases()  # at once: its lease had seconds left
        await eventually(lambda: holding({"account:lobby", "account:garden",
                                          "account:deck"}), 60, "the added account's lease")
