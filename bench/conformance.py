"""The conformance kit's wall time per network: ``python bench/conformance.py [names...]``.

Runs ``tests/conformance`` once per registered network (one pytest process each, one at a
time) and prints seconds and the pytest summary line per network.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bridge.conformance.fleet import networks  # noqa: E402


def main(argv: list[str]) -> int:
    names = argv or networks()
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for name in names:
        t = time.monotonic()
        out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                              "tests/conformance", "-k", name], cwd=ROOT, env=env,
                              capture_output=True, text=True)
        lines = out.stdout.strip().splitlines()
        print(f"{name:10s} {time.monotonic() - t:7.1f} s  {lines[-1] if lines else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
