"""Run every benchmark script that exists, collect the figures they print and
regenerate the results table in ``bench/README.md``.

Each script prints one line per figure (``name value ... (notes)``).  The raw
lines, with the exact command, the time, the commit and the machine's load,
go to ``bench/results.json``; the table between the ``results`` markers in
``bench/README.md`` is rebuilt from it, so running a subset (``--only``) keeps
the other scripts' last figures.  The text around the markers is left alone.

    python bench/run_all.py                 # every script, short default runs
    python bench/run_all.py --only scale,catchup
    python bench/run_all.py --table-only    # rebuild the table from results.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results.json"
README = HERE / "README.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"

# (name, script, arguments of the default run).  Short runs: every one under
# about two minutes on 2 cores; each script's --help shows the bigger knobs.
SCRIPTS: list[tuple[str, str, list[str]]] = [
    ("relay", "relay.py", ["--posts", "10000"]),
    ("scale", "scale.py", []),
    ("catchup", "catchup.py", []),
    # A held outage with a short retry cap: the detection delay scales with it.
    ("catchup_outage", "catchup.py", ["--posts", "2000", "--rate-per-minute", "12000",
                                      "--outage", "40", "--retry-max-seconds", "20"]),
    ("startup", "startup.py", []),
    ("directory", "directory.py", []),
    ("edit_flood", "edit_flood.py", []),
    ("e2e", "e2e.py", []),
    ("matrix_latency", "matrix_latency.py", []),
    ("twitter_cost", "twitter_cost.py", []),
    ("render_hostile", "render_hostile.py", []),
    ("polls_quotes", "polls_quotes.py", []),
    # The security engineer's atheris fuzz runs: a short time budget here, the
    # findings (if any) kept out of the tree.
    ("fuzz_email", "fuzz_email.py", ["30", "--out", "/tmp/hashbridge-fuzz/email"]),
    ("fuzz_html", "fuzz_html.py", ["30", "--out", "/tmp/hashbridge-fuzz/html"]),
]
FIGURE = re.compile(r"^[a-z][a-z0-9_]*\s")
RAW_OUTPUT = {"twitter_cost", "fuzz_email", "fuzz_html"}
"""Scripts that print a table or a log rather than one figure per line."""


def git_commit() -> str:
    r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                       text=True, check=False)
    return r.stdout.strip() or "?"


def run_one(name: str, script: str, args: list[str], timeout: float) -> dict[str, object]:
    cmd = [".venv/bin/python", f"bench/{script}", *args]
    shown = " ".join(["python", f"bench/{script}", *args])
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    try:
        r = subprocess.run([sys.executable, str(HERE / script), *args], cwd=ROOT,
                           capture_output=True, text=True, timeout=timeout, check=False)
        out, code = r.stdout, r.returncode
        err = r.stderr.strip().splitlines()[-3:] if r.returncode else []
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        code, err = -1, [f"timed out after {timeout:g} s"]
    lines = [ln.rstrip() for ln in out.splitlines() if ln.strip()]
    print(f"== {shown}: exit {code} in {time.perf_counter() - t0:.0f} s", flush=True)
    for ln in lines:
        print(f"   {ln}", flush=True)
    for ln in err:
        print(f"   (stderr) {ln}", flush=True)
    return {"command": shown, "argv": cmd, "exit": code, "lines": lines, "stderr": err,
            "seconds": round(time.perf_counter() - t0, 1), "load_1min": round(load_before, 2),
            "commit": git_commit(), "at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def table(results: dict[str, dict[str, object]]) -> str:
    rows = ["| figure | result | command (commit, date, 1-min load before the run) |",
            "|---|---|---|"]
    other: list[str] = []
    for name, _, _ in SCRIPTS:
        res = results.get(name)
        if res is None:
            continue
        where = (f"`{res['command']}` ({res['commit']}, {res['at']}, load "
                 f"{res['load_1min']})")
        lines = [str(x) for x in res["lines"]]  # type: ignore[attr-defined]
        figures = [] if name in RAW_OUTPUT else [ln for ln in lines if FIGURE.match(ln)]
        for ln in figures:
            head, _, rest = ln.partition(" ")
            rows.append(f"| `{head}` | {cell(rest.strip())} | {cell(where)} |")
        if res["exit"] != 0:
            rows.append(f"| `{name}` | FAILED (exit {res['exit']}): "
                        f"{cell(' / '.join(res['stderr']))} | {cell(where)} |")  # type: ignore[arg-type]
        rest_lines = [ln for ln in lines if ln not in figures]
        if rest_lines:
            other += [f"`{res['command']}` ({res['commit']}, {res['at']}):", "", "```",
                      *rest_lines, "```", ""]
    out = "\n".join(rows) + "\n"
    if other:
        out += "\nOutput that is not one figure per line:\n\n" + "\n".join(other)
    return out


def write_readme(results: dict[str, dict[str, object]]) -> None:
    text = README.read_text() if README.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text += f"\n## Results\n\n{BEGIN}\n{END}\n"
    head, _, tail = text.partition(BEGIN)
    _, _, tail = tail.partition(END)
    README.write_text(f"{head}{BEGIN}\n{table(results)}{END}{tail}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", help="comma-separated names: "
                    + ", ".join(n for n, _, _ in SCRIPTS))
    ap.add_argument("--timeout", type=float, default=600.0, help="per script")
    ap.add_argument("--table-only", action="store_true")
    a = ap.parse_args()
    results: dict[str, dict[str, object]] = (json.loads(RESULTS.read_text())
                                             if RESULTS.exists() else {})
    if not a.table_only:
        wanted = set(a.only.split(",")) if a.only else None
        for name, script, args in SCRIPTS:
            if wanted is not None and name not in wanted:
                continue
            if not (HERE / script).exists():
                print(f"== {script}: not there; skipped")
                continue
            results[name] = run_one(name, script, args, a.timeout)
            RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    write_readme(results)
    print(f"table rewritten in {README.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
