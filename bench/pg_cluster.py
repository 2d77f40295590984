"""Several hashbridge processes on one PostgreSQL database (issue 15), on a private
server (``bridge/store/postgresql/testserver.py``: Debian's PostgreSQL, loopback).

Prints one line per figure:

* ``throughput_N``: N = 1, 2, 3 real ``hashbridge run`` processes sharing 6 sandbox
  accounts; a burst of posts spread over the 6 networks, each fanned out to the 5
  others: posts/s from the first post to the last copy, and CPU ms per post summed
  over the bridge processes (the database server's CPU is reported apart);
* ``failover``: 3 processes, kill -9 of the one holding a given account, then one
  post that must reach that account's network: seconds from the kill to that copy
  arriving (the new holder's first send);
* ``scale``: 10,000 communities x 4 channels (4 accounts on the in-memory memnet
  platform, idle) in 3 processes: each process's RSS 20 s after its start, its start
  time (launch to its first heartbeat: config parsed, adapters and 40,000 workers
  built, database opened) and the leases it holds then.

The machine has 2 cores shared by the processes and the server: more processes do
not add cores, they add failover.

    python bench/pg_cluster.py [--posts 600] [--parts throughput,failover,scale]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests", "faults"))

import psycopg  # noqa: E402

from adapters.sandbox import SandboxPlatform  # noqa: E402
from bridge.store.postgresql.testserver import PgServer  # noqa: E402

NETS = [f"n{i}" for i in range(6)]
FAILOVER = 15.0
TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    """CPU seconds of *pid* (and its reaped children) from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in fields[11:15]) / TICK


def proc_rss(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def server_cpu(pg: PgServer) -> float:
    """CPU seconds of this server's processes (its postmaster and its children)."""
    master = int((pg.data / "postmaster.pid").read_text().split()[0])
    total = proc_cpu(master)
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                status = (d / "status").read_text()
            except OSError:
                continue
            ppid = next((int(x.split()[1]) for x in status.splitlines()
                         if x.startswith("PPid:")), 0)
            if ppid == master:
                total += proc_cpu(int(d.name))
    return total


def leases(pg: PgServer, db: str) -> dict[str, int]:
    with psycopg.connect(pg.admin_url(db)) as c:
        if c.execute("SELECT to_regclass('hashbridge_leases')").fetchone() == (None,):
            return {}
        rows = c.execute("SELECT name, pid FROM hashbridge_leases WHERE expires_at >"
                         " extract(epoch from clock_timestamp())").fetchall()
    return {r[0]: int(r[1]) for r in rows}


def start(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "bridge.cli", "run", "-c", str(cfg)],
                            stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": ROOT})


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()


async def until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (got := check()):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out: {what}")
        await asyncio.sleep(0.1)
    return got


def sandbox_setup(tmp: Path, pg: PgServer, name: str) -> tuple[Path, dict[str, Any], str]:
    from scaffold import write_config

    url = pg.create_database(name)
    boxes: dict[str, Any] = {n: SandboxPlatform(str(tmp / "networks"), n) for n in NETS}
    cfg = tmp / f"{name}.toml"
    write_config(cfg, boxes, tmp / "data", {}, {},
                 bridge_options={"database": url, "failover_seconds": FAILOVER})
    return cfg, boxes, url.rsplit("/", 1)[1]


async def copies(boxes: dict[str, Any]) -> int:
    n = 0
    for b in boxes.values():
        n += sum(1 for m in await b.messages() if m.by_bridge)
    return n


async def throughput(pg: PgServer, n_procs: int, posts: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        cfg, boxes, db = sandbox_setup(tmp, pg, f"bench_tp{n_procs}")
        for b in boxes.values():
            await b.start()
        procs = [start(cfg, tmp / "log") for _ in range(n_procs)]
        try:
            await until(lambda: len(set(leases(pg, db).values())) == n_procs and
                        len(leases(pg, db)) == len(NETS), 90, "leases shared")
            await asyncio.sleep(2)
            cpu0 = sum(proc_cpu(p.pid) for p in procs)
            srv0 = server_cpu(pg)
            t0 = time.monotonic()
            for i in range(posts):
                net = NETS[i % len(NETS)]
                await boxes[net].post_as_member(f"m{i % 7}", f"bench {i} from {net} #kmers")
            want = posts * (len(NETS) - 1)
            deadline = time.monotonic() + 600
            while (got := await copies(boxes)) < want:
                if time.monotonic() > deadline:
                    raise SystemExit(f"throughput_{n_procs}: {got}/{want} copies")
                await asyncio.sleep(0.2)
            took = time.monotonic() - t0
            cpu = sum(proc_cpu(p.pid) for p in procs) - cpu0
            srv = server_cpu(pg) - srv0
            print(f"throughput_{n_procs}: {posts / took:.0f} posts/s ({want} copies in "
                  f"{took:.1f} s), bridge CPU {1000 * cpu / posts:.1f} ms/post over "
                  f"{n_procs} process(es), PostgreSQL CPU {1000 * srv / posts:.1f} ms/post",
                  flush=True)
        finally:
            stop(procs)
            for b in boxes.values():
                await b.stop()


async def failover(pg: PgServer) -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        cfg, boxes, db = sandbox_setup(tmp, pg, "bench_failover")
        for b in boxes.values():
            await b.start()
        procs = [start(cfg, tmp / "log") for _ in range(3)]
        try:
            held = await until(lambda: (got := leases(pg, db)) and len(got) == len(NETS)
                               and len(set(got.values())) == 3 and got, 90, "leases shared")
            victim_pid = held["account:n0"]
            victim = next(p for p in procs if p.pid == victim_pid)
            source = next(n for n in NETS if held[f"account:{n}"] != victim_pid)
            await asyncio.sleep(2)
            victim.send_signal(signal.SIGKILL)
            t0 = time.monotonic()
            await boxes[source].post_as_member("m1", "after the kill #kmers")

            async def arrived() -> bool:
                return any(m.by_bridge and "after the kill" in m.text
                           for m in await boxes["n0"].messages())
            deadline = time.monotonic() + 120
            while not await arrived():
                if time.monotonic() > deadline:
                    raise SystemExit("failover: no copy after 120 s")
                await asyncio.sleep(0.05)
            took = time.monotonic() - t0
            print(f"failover: {took:.1f} s from kill -9 to the new holder's first send "
                  f"(failover_seconds = {FAILOVER:g}, target <= 15 s)", flush=True)
        finally:
            stop(procs)
            for b in boxes.values():
                await b.stop()


# -- scale: a member process running the relay with memnet accounts -----------------

async def member(url: str, communities: int, out: str) -> None:
    from bench._common import registry_with_memnet
    from bridge.daemon.harness import running
    from bridge.runtime.config import parse

    t0 = time.monotonic()
    nets = ["m0", "m1", "m2", "m3"]
    raw = {"bridge": {"data_dir": os.path.join(os.path.dirname(out), "data"),
                      "database": url, "failover_seconds": FAILOVER},
           "accounts": {n: {"platform": "memnet", "display_name": n} for n in nets},
           "communities": [{"name": f"c{i}", "hashtag": f"tag{i}",
                            "channels": [{"account": n, "spot": f"{n}-c{i}"} for n in nets]}
                           for i in range(communities)]}
    cfg = parse(raw, registry_with_memnet(), {})
    async with running(cfg, services={"memnet": {}}, timeout=300) as bridge:
        assert bridge.cluster is not None
        # Started: ready, registered, and a heartbeat that took (or not) its share.
        while bridge.cluster.last_ok is None or bridge.cluster.members < 1:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        started = time.monotonic() - t0
        await asyncio.sleep(20)  # everyone holds its share; idle
        Path(out).write_text(json.dumps({  # noqa: ASYNC240 - one small file
            "start_s": started, "rss_mb": proc_rss(os.getpid()),
            "held": sorted(bridge.cluster.running), "tasks": len(asyncio.all_tasks())}))
        await asyncio.sleep(3600)


async def scale(pg: PgServer, communities: int) -> None:
    url = pg.create_database("bench_scale")
    with tempfile.TemporaryDirectory() as d:
        outs = [os.path.join(d, f"m{i}.json") for i in range(3)]
        procs = [subprocess.Popen([sys.executable, __file__, "--member", url,  # noqa: ASYNC220
                                   "--communities", str(communities), "--out", o],
                                  env={**os.environ, "PYTHONPATH": ROOT})
                 for o in outs]
        try:
            await until(lambda: all(os.path.exists(o) for o in outs), 600, "members up")
            for i, o in enumerate(outs):
                r = json.loads(Path(o).read_text())  # noqa: ASYNC240
                print(f"scale_{i}: {communities} communities x 4 channels, process {i + 1} "
                      f"of 3: rss {r['rss_mb']:.0f} MB, started in {r['start_s']:.1f} s, "
                      f"holds {r['held']}, {r['tasks']} asyncio tasks", flush=True)
        finally:
            stop(procs)  # type: ignore[arg-type]


async def main(args: argparse.Namespace) -> None:
    parts = args.parts.split(",")
    pg = PgServer()
    pg.start()
    os.environ.update(pg.client_env())
    try:
        if "throughput" in parts:
            for n in (1, 2, 3):
                await throughput(pg, n, args.posts)
        if "failover" in parts:
            await failover(pg)
        if "scale" in parts:
            await scale(pg, args.communities)
    finally:
        pg.cleanup()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--posts", type=int, default=600)
    ap.add_argument("--communities", type=int, default=10_000)
    ap.add_argument("--parts", default="throughput,failover,scale")
    ap.add_argument("--member")
    ap.add_argument("--out")
    a = ap.parse_args()
    if a.member:
        asyncio.run(member(a.member, a.communities, a.out))
    else:
        asyncio.run(main(a))
