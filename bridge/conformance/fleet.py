"""The networks of the registry as sandboxes, and a real ``hashbridge run`` process
over them: what the kill -9, outage and poison suites (and the kit's kill -9 scenario)
are built from.

Everything is counted on the platforms themselves (:meth:`PlatformSandbox.messages`),
never in the bridge's store.  Messages are recognised by a mark in their text
(``[f0042]`` by default; a suite may pass its own pattern whose first group is the
message's index).  Which copies can be edited or deleted on a network is what its
adapter says (``Capabilities.edit``/``delete``), never a list of names.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bridge.contract.adapter import Capabilities
from bridge.contract.sandbox import PlatformSandbox, SandboxMessage
from bridge.contract.services import Services
from bridge.runtime.config import Config, load
from bridge.runtime.registry import Registry, load_factories
from bridge.store.backends import peek_sqlite
from bridge.store.errors import StoreError

LOBBY = "lobby"
"""The account name of the ``sandbox`` platform's network every fleet has (it needs
nothing installed)."""
MARK = re.compile(r"\[f(\d{4})\]")
log = logging.getLogger("hashbridge.conformance")


# ---------------------------------------------------------------- the registry's networks
def networks(registry: Registry | None = None) -> list[str]:
    """Every registered platform, sorted (``sandbox`` included); whether its sandbox can
    run here is its factory's answer (``AdapterFactory.sandbox`` returns None)."""
    return sorted((registry or load_factories()).factories)


async def start_boxes(tmp: Path, platforms: Iterable[str] | None = None, *,
                      registry: Registry | None = None) -> dict[str, PlatformSandbox]:
    """The lobby (a ``sandbox`` network) and the sandbox of every registered platform
    (or of *platforms*) that can run here, started; keyed by account name (the
    platform's name, ``lobby`` for the lobby)."""
    reg = registry or load_factories()
    lobby = reg.factories["sandbox"].sandbox(str(tmp / "networks"))
    assert lobby is not None
    lobby.network = LOBBY  # type: ignore[attr-defined]
    boxes: dict[str, PlatformSandbox] = {LOBBY: lobby}
    wanted = set(networks(reg) if platforms is None else platforms) - {"sandbox"}
    for name in sorted(wanted):
        box = reg.factories[name].sandbox(str(tmp / name))
        if box is not None:
            boxes[name] = box
    started: list[PlatformSandbox] = []
    try:
        for box in boxes.values():
            await box.start()
            started.append(box)
    except BaseException:
        for box in started:
            await box.stop()
        raise
    return boxes


async def stop_boxes(boxes: Mapping[str, PlatformSandbox]) -> None:
    for box in boxes.values():
        try:
            await box.stop()
        except Exception:
            log.exception("stopping the %s sandbox", box.platform)


def copy_capabilities(config: Config) -> dict[str, Capabilities]:
    """What each account's copies can do (edit, delete, split...): its adapter's own
    ``capabilities`` for its first channel, built from *config* without any I/O."""
    out: dict[str, Capabilities] = {}
    for name, acct in config.accounts.items():
        specs = config.channel_specs(name)
        if not specs:
            continue
        out[name] = acct.factory.create(acct.options, specs, Services()).capabilities(specs[0].key)
    return out


# ---------------------------------------------------------------- a real process
def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(type(v))


def write_config(path: Path, boxes: Mapping[str, PlatformSandbox], data: Path,
                 overrides: Mapping[str, Mapping[str, Any]],
                 channel_overrides: Mapping[str, Mapping[str, Any]], *,
                 bridge_options: Mapping[str, Any] | None = None,
                 accounts: Mapping[str, Mapping[str, Any]] | None = None) -> Config:
    """The bridge's config: one account and one channel of the ``kmers`` community per
    sandbox; *accounts* replace whole account tables (an address through a fault
    proxy), *overrides* single account keys, *channel_overrides* channel keys.
    Returns it parsed (so a mistake fails here, not in the process)."""
    bridge = {"data_dir": str(data), "log_level": "warning", **(bridge_options or {})}
    lines = ["[bridge]", *(f"{k} = {toml_value(v)}" for k, v in bridge.items()), ""]
    for name, box in boxes.items():
        base = (accounts or {}).get(name) or box.account_config()
        table = {"platform": box.platform, **base, **overrides.get(name, {})}
        lines.append(f"[accounts.{name}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in table.items()]
        lines.append("")
    lines += ["[[communities]]", 'name = "kmers"', 'hashtag = "kmers"',
              "author_rate_per_minute = 100000", "duplicate_window = 0", ""]
    for name, box in boxes.items():
        lines += ["[[communities.channels]]", f"account = {toml_value(name)}"]
        table = {**box.channel_config(), **channel_overrides.get(name, {})}
        lines += [f"{k} = {toml_value(v)}" for k, v in table.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    path.chmod(0o600)
    return load(str(path), load_factories(), {})


def bridge_env() -> dict[str, str]:
    """The environment of a bridge process: this one's, with the code this process
    runs first on its path (a worktree's, not an installed copy)."""
    root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}


def start_bridge(cfg: Path, log_file: Path, prefix: Sequence[str] = ()
                 ) -> subprocess.Popen[bytes]:
    """``hashbridge run -c cfg`` as a process, its output appended to *log_file*;
    *prefix* runs it inside something (a namespace holding its filesystem)."""
    return subprocess.Popen([*prefix, sys.executable, "-m", "bridge.cli", "run", "-c", str(cfg)],
                            stdout=log_file.open("ab"), stderr=subprocess.STDOUT,
                            env=bridge_env())


async def stop_bridge(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """SIGTERM, and SIGKILL if it has not stopped within *timeout* seconds; waited
    for in a thread, so the sandboxes on this loop keep answering meanwhile."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.to_thread(proc.wait, timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        await asyncio.to_thread(proc.wait, 10)


async def kill9(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    await asyncio.to_thread(proc.wait, 10)


def status_json(cfg: Path) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "bridge.cli", "status", "-c", str(cfg),
                          "--json"], capture_output=True, timeout=60, env=bridge_env(),
                         check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


async def _read(db: Path, what: str) -> list[Any]:
    return peek_sqlite(str(db), what)


async def wait_connected(db: Path, accounts: set[str], timeout: float, *,
                         read: Callable[[Path, str], Awaitable[list[Any]]] = _read,
                         proc: subprocess.Popen[bytes] | None = None,
                         log_file: Path | None = None) -> None:
    """Until every account's health in the bridge's database says connected;
    *read* runs a query (from another process where the database is only seen
    there).  Fails at once when *proc* exits."""
    deadline = time.monotonic() + timeout
    up: set[str] = set()
    while up != accounts:
        if proc is not None and proc.poll() is not None:
            tail = (await asyncio.to_thread(log_file.read_text))[-3000:] if log_file else ""
            raise AssertionError(f"the bridge exited ({proc.returncode}):\n{tail}")
        if time.monotonic() > deadline:
            raise AssertionError(f"adapters not connected: {accounts - up}")
        await asyncio.sleep(0.5)
        try:
            rows = await read(db, "health")
        except StoreError:
            continue
        up = {a for a, state in rows if state == "connected"}


def pending(db: Path) -> list[tuple[str, str, str]]:
    """Deliveries still pending or dead: ``(channel, op, last error)``."""
    return peek_sqlite(str(db), "open deliveries")


# ---------------------------------------------------------------- counting on the platforms
def copies_by_mark(msgs: list[SandboxMessage], mark: re.Pattern[str] = MARK
                   ) -> dict[int, list[SandboxMessage]]:
    out: dict[int, list[SandboxMessage]] = defaultdict(list)
    for m in msgs:
        if m.by_bridge:
            found = mark.search(m.text)
            if found:
                out[int(found.group(1))].append(m)
    return out


async def wait_complete(boxes: Mapping[str, PlatformSandbox],
                        origin: Mapping[int, tuple[str, str]], deleted: set[int],
                        timeout: float, read_only: set[str],
                        caps: Mapping[str, Capabilities],
                        mark: re.Pattern[str] = MARK) -> None:
    """Until every post reached every other network (deleted ones: gone where the
    copies can be deleted)."""
    deadline = time.monotonic() + timeout
    while True:
        missing = []
        for net, box in boxes.items():
            have = copies_by_mark(await box.messages(), mark)
            missing += [(net, i) for i, (src, _) in origin.items()
                        if src != net and i not in deleted and not have.get(i)
                        and net not in read_only]
            if caps[net].delete:  # deletes still to be applied
                missing += [(net, -i) for i in deleted if origin[i][0] != net
                            and any(not m.deleted for m in have.get(i, []))]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(missing)} copies never arrived, e.g. {missing[:8]}")
        await asyncio.sleep(1.0)


def check(snapshot: Mapping[str, list[SandboxMessage]], origin: Mapping[int, tuple[str, str]],
          edited: set[int], deleted: set[int], log_file: Path | None, read_only: set[str],
          caps: Mapping[str, Capabilities], mark: re.Pattern[str] = MARK) -> None:
    """Exactly once, in order, edits and deletes applied where the copies can be."""
    problems: list[str] = []
    for net, msgs in snapshot.items():
        have = copies_by_mark(msgs, mark)
        for i, (src, _) in origin.items():
            if src == net or net in read_only:
                continue
            live = [m for m in have.get(i, []) if not m.deleted]
            if i in deleted:
                if caps[net].delete and live:
                    problems.append(f"{net}: copy of deleted #{i} still there")
                if len(have.get(i, [])) > 1:
                    problems.append(f"{net}: #{i} copied {len(have[i])} times")
                continue
            if len(live) != 1:
                problems.append(f"{net}: #{i} from {src} has {len(live)} copies")
            elif i in edited and caps[net].edit and "edited" not in live[0].text:
                problems.append(f"{net}: edit of #{i} not applied: {live[0].text!r}")
        # order: copies from one source keep their order here
        for src in snapshot:
            seq = []
            for m in msgs:
                found = mark.search(m.text) if m.by_bridge else None
                if found and origin.get(int(found.group(1)), ("", ""))[0] == src:
                    seq.append(int(found.group(1)))
            if seq != sorted(seq):
                problems.append(f"{net}: copies from {src} out of order: {seq[:20]}")
    tail = "\n--- bridge log tail:\n" + log_file.read_text()[-3000:] if log_file else ""
    assert not problems, "\n".join(problems[:30]) + tail
