"""Start-up time: from launching ``hashbridge run -c FILE`` (a subprocess, as an
operator runs it) to the first post relayed on a sandbox network.

Each run has a fresh data dir and two ``sandbox`` networks (SQLite files): a
member's post waits in ``lobby`` before the process starts, and the clock stops
when its copy is on ``garden``, read from the network file itself.  Also
printed: the interpreter's bare import time of the CLI, the floor under
everything else.

    python bench/startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._common import load_note

HASHBRIDGE = os.path.join(os.path.dirname(sys.executable), "hashbridge")

CONFIG = """\
[bridge]
data_dir = "{data}"
log_level = "warning"

[accounts.sb_lobby]
platform = "sandbox"
dir = "{nets}"
display_name = "Lobby"

[accounts.sb_garden]
platform = "sandbox"
dir = "{nets}"
display_name = "Garden"

[[communities]]
name = "kmers"
hashtag = "kmers"

[[communities.channels]]
account = "sb_lobby"
network = "lobby"

[[communities.channels]]
account = "sb_garden"
network = "garden"
"""


def relayed(path: str) -> bool:
    if not os.path.exists(path):
        return False
    db = sqlite3.connect(path, timeout=5)
    try:
        return bool(db.execute("SELECT 1 FROM messages WHERE by_bridge=1 LIMIT 1").fetchone())
    except sqlite3.OperationalError:  # the bridge is creating the schema right now
        return False
    finally:
        db.close()


def one_run(timeout: float) -> float:
    from adapters.sandbox.network import Network

    with tempfile.TemporaryDirectory() as tmp:
        nets = os.path.join(tmp, "networks")
        os.makedirs(nets)
        lobby = Network(os.path.join(nets, "lobby.sqlite"))
        lobby.post("alice", "first question of the day #kmers")
        lobby.close()
        cfg = os.path.join(tmp, "config.toml")
        with open(cfg, "w") as f:
            f.write(CONFIG.format(data=os.path.join(tmp, "data"), nets=nets))
        garden = os.path.join(nets, "garden.sqlite")
        t0 = time.perf_counter()
        proc = subprocess.Popen([HASHBRIDGE, "run", "-c", cfg], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        try:
            while not relayed(garden):
                if proc.poll() is not None:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    raise RuntimeError(f"hashbridge exited {proc.returncode}: {err[-500:]}")
                if time.perf_counter() - t0 > timeout:
                    raise TimeoutError("no relayed post")
                time.sleep(0.005)
            return time.perf_counter() - t0
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


FLOOR = """
import time
t0 = time.perf_counter()
import bridge.cli.main, bridge.daemon.supervisor
t1 = time.perf_counter()
from bridge.runtime.registry import load_factories
registry = load_factories()
registry.factories["sandbox"]
t2 = time.perf_counter()
list(registry.factories.values())
print(t1 - t0, t2 - t1, time.perf_counter() - t2)
"""


def import_floor() -> tuple[float, float, float]:
    """Seconds to import the core; then to list the adapters and import the one a
    sandbox config uses (what ``run`` pays); then to import every other installed
    adapter (what ``run`` paid before adapters were imported on use, and what the
    demo pays)."""
    out = subprocess.run([sys.executable, "-c", FLOOR], check=True, capture_output=True,
                         text=True).stdout.split()
    return float(out[0]), float(out[1]), float(out[2])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=60.0)
    a = ap.parse_args()
    times = [one_run(a.timeout) for _ in range(a.runs)]
    floors = [import_floor() for _ in range(3)]
    core = statistics.median(f[0] for f in floors)
    used = statistics.median(f[1] for f in floors)
    unused = statistics.median(f[2] for f in floors)
    print(f"startup_to_first_relay_s median {statistics.median(times):.2f} "
          f"min {min(times):.2f} max {max(times):.2f}  ({a.runs} runs of `hashbridge run -c "
          f"FILE` on 2 sandbox networks, fresh data dir; of which importing the core takes "
          f"{core:.2f} s, listing the adapters and importing the one the config uses "
          f"(sandbox) {used:.2f} s; importing the other installed adapters, which `run` "
          f"no longer does, would add {unused:.2f} s; {load_note()})")

if __name__ == "__main__":
    main()
