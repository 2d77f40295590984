"""End to end: the daemon killed with SIGKILL mid-burst loses and repeats nothing.

The relay runs as a real ``hashbridge run`` process on sandbox networks (SQLite
files other processes can read), so what arrived is counted on the networks
themselves, not in the bridge's store.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from adapters.sandbox.network import Network

BURST = 1000
CONFIG = """
[bridge]
data_dir = "data"
log_level = "warning"

[accounts.lobby]
platform = "sandbox"
dir = "{nets}"
display_name = "Lobby"

[accounts.garden]
platform = "sandbox"
dir = "{nets}"
display_name = "Garden"

[accounts.porch]
platform = "sandbox"
dir = "{nets}"
display_name = "Porch"

[[communities]]
name = "kmers"
hashtag = "kmers"
author_rate_per_minute = 100000

[[communities.channels]]
account = "lobby"
network = "lobby"

[[communities.channels]]
account = "garden"
network = "garden"

[[communities.channels]]
account = "porch"
network = "porch"
"""


def start(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "bridge.cli", "run", "-c", str(cfg)],
                            stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})


def copies(net: Network) -> list[str]:
    return [m.text for m in net.messages() if m.by_bridge]


def wait_for(pred, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_sigkill_mid_burst_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    nets = tmp_path / "nets"
    nets.mkdir()
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(CONFIG.format(nets=nets))
    log = tmp_path / "bridge.log"
    lobby = Network(str(nets / "lobby.sqlite"))
    garden = Network(str(nets / "garden.sqlite"))
    porch = Network(str(nets / "porch.sqlite"))
    rng = random.Random(1234)
    kills = 0
    proc = start(cfg, log)
    try:
        posted = 0
        for stop_at in (300, 650, BURST):
            while posted < stop_at:
                lobby.post(f"m{posted % 7}", f"burst message {posted:04d}")
                posted += 1
                if posted % 50 == 0:
                    time.sleep(0.01)
            # kill at a random moment while deliveries are in flight
            target = rng.randint(max(0, stop_at - 250), stop_at - 20)
            wait_for(lambda t=target: len(copies(garden)) >= t, 60, f"{target} copies")
            if stop_at < BURST:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                kills += 1
                proc = start(cfg, log)
        wait_for(lambda: len(copies(garden)) >= BURST and len(copies(porch)) >= BURST, 120,
                 "every copy after the kills")
        time.sleep(1.0)  # anything extra (a duplicate) would show up now
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert kills == 2
    expected = [f"M{i % 7} (Lobby): burst message {i:04d}" for i in range(BURST)]
    for net in (garden, porch):
        got = copies(net)
        dupes = [t for t, n in Counter(got).items() if n > 1]
        assert not dupes, f"duplicated: {dupes[:5]}"
        assert sorted(got) == sorted(expected), "lost or foreign copies"
        assert got == expected, "order per channel not kept"
    assert proc.returncode == 0, log.read_text()[-2000:]
