"""Shared driver for the atheris fuzz scripts (``bench/fuzz_email.py``, ``bench/fuzz_html.py``).

Each script gives a *target* that raises :class:`Finding` (or any exception) on a bug.
The driver does not stop at the first finding: it records each distinct one (keyed by
exception type and the innermost frame in our code) under ``--out`` with the input that
triggered it, keeps fuzzing until the time budget is spent, then prints executions and
findings.  A finding is turned into a regression test under ``tests/security/regressions``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

SLOW_SECONDS = 1.0
"""An input that takes longer than this is a finding too (a denial of service)."""


class Finding(Exception):
    """The target's output broke a property (not a crash, but as bad)."""


def _signature(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/bridge/" in f.filename or "/adapters/" in f.filename]
    where = ours[-1] if ours else (frames[-1] if frames else None)
    loc = f"{where.filename.rsplit('/work/main/', 1)[-1]}:{where.lineno}" if where else "?"
    # A property violation is keyed by its kind (the text before the first colon), so one
    # bug found through a thousand inputs is one finding.
    msg = str(exc).split(":", 1)[0] if isinstance(exc, Finding) else ""
    return f"{type(exc).__name__} at {loc} {msg}".strip()


def run(name: str, target: Callable[[bytes], None], seeds: list[bytes]) -> None:
    import atheris

    ap = argparse.ArgumentParser(description=f"fuzz {name} for a fixed time")
    ap.add_argument("seconds", nargs="?", type=float, default=60.0)
    ap.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "hashbridge-fuzz",
                                                  name),
                    help="findings and the working corpus (kept out of the repository)")
    args, rest = ap.parse_known_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    corpus = out / "corpus"
    corpus.mkdir(exist_ok=True)
    for s in seeds:
        (corpus / hashlib.sha1(s).hexdigest()).write_bytes(s)

    start = time.monotonic()
    state = {"execs": 0, "slow": 0}
    found: dict[str, bytes] = {}

    def report_and_exit() -> None:
        took = time.monotonic() - start
        print(f"\n[{name}] {state['execs']} executions in {took:.0f} s "
              f"({state['execs'] / max(took, 1e-9):.0f}/s), {len(found)} distinct findings",
              flush=True)
        for sig, data in sorted(found.items()):
            print(f"  FINDING {sig}  input={hashlib.sha1(data).hexdigest()[:12]} "
                  f"({len(data)} bytes)", flush=True)
        os._exit(1 if found else 0)

    def one(data: bytes) -> None:
        if time.monotonic() - start > args.seconds:
            report_and_exit()
        state["execs"] += 1
        t0 = time.monotonic()
        try:
            target(data)
        except Exception as exc:  # every failure is recorded, fuzzing continues
            sig = _signature(exc)
            if sig not in found:
                found[sig] = data
                digest = hashlib.sha1(data).hexdigest()[:12]
                (out / f"finding-{digest}.bin").write_bytes(data)
                (out / f"finding-{digest}.txt").write_text(
                    sig + "\n\n" + "".join(traceback.format_exception(exc)))
                print(f"[{name}] new finding: {sig}", flush=True)
        took = time.monotonic() - t0
        if took > SLOW_SECONDS:
            sig = f"slow input ({took:.1f} s)"
            state["slow"] += 1
            key = f"Slow {len(data) // 1000} kB"
            if key not in found:
                found[key] = data
                digest = hashlib.sha1(data).hexdigest()[:12]
                (out / f"slow-{digest}.bin").write_bytes(data)
                print(f"[{name}] {sig}, {len(data)} bytes", flush=True)

    atheris.Setup([sys.argv[0], *rest, str(corpus), "-rss_limit_mb=2048",
                   "-max_len=65536", "-print_final_stats=0"], one)
    atheris.Fuzz()
    report_and_exit()
