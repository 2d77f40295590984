"""Routing changes without a restart: ``SIGHUP`` (``systemctl reload``,
``hashbridge reload``) re-reads the config file.

The file is read through the same loader as ``hashbridge check``.  An invalid file
is refused: each of check's messages on its own ERROR log line (secrets redacted)
and the running config stays.  A valid one is compared with the running config
(:func:`diff`) and applied:

* added communities, channels and accounts start;
* a removed channel is read no more at once (the relay routes by the new config),
  its queue is sent, then its sender stops; a process stopped meanwhile leaves the
  rest in the database, which the next start and ``hashbridge status`` report;
* changed delivery options (and ``[bridge]`` retry and timeout settings) apply to
  the next deliveries;
* an account is restarted only when its own keys or its set of channels changed;
* ``data_dir``, ``database``, ``[bridge.web]`` and ``failover_seconds`` keep their
  running values and are reported as needing a restart.

Each outcome is recorded per process (the store's ``hashbridge``/``reload`` state,
keyed ``host:pid``, and a file next to the process file) for ``hashbridge status``,
the admin page and ``hashbridge reload``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bridge.contract.adapter import ChannelSpec
from bridge.daemon.cluster import lease_name
from bridge.runtime import logs
from bridge.runtime.config import ChannelConfig, Config, ConfigError, load
from bridge.runtime.registry import Registry, RegistryError, load_factories
from bridge.store import Store, Tx

log = logging.getLogger("hashbridge.reload")

RESTART_ONLY = ("data_dir", "database", "web", "failover_seconds")
"""``[bridge]`` keys a running process keeps until it is restarted."""
STATE_ACCOUNT, STATE_NAMESPACE = "hashbridge", "reload"
RUN_DIR = "run"
"""Under ``data_dir``: one ``<pid>.pid`` file per running process, and its last
reload's outcome in ``<pid>.reload.json``."""


# ------------------------------------------------------------------ the diff

@dataclass(frozen=True, slots=True, kw_only=True)
class Diff:
    """What a new config changes in the running one (pure: see :func:`diff`)."""

    added_communities: tuple[str, ...] = ()
    removed_communities: tuple[str, ...] = ()
    changed_communities: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """Community name, the keys that changed (consent, blocklist, events...)."""
    added_channels: tuple[str, ...] = ()
    removed_channels: tuple[str, ...] = ()
    changed_channels: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """Channel key, the keys that changed (delivery options, direction...)."""
    added_accounts: tuple[str, ...] = ()
    """Accounts that start (new, or serving a channel now)."""
    removed_accounts: tuple[str, ...] = ()
    """Accounts that stop (gone, or serving no channel now)."""
    restarted_accounts: tuple[tuple[str, str], ...] = ()
    """Account, why: its own keys or its set of channels changed."""
    bridge_changed: tuple[str, ...] = ()
    """``[bridge]`` keys applied at once."""
    needs_restart: tuple[str, ...] = ()
    """``[bridge]`` keys kept at their running value until a restart."""

    @property
    def unchanged(self) -> bool:
        return not any(getattr(self, f.name) for f in dataclasses.fields(self))

    def changes(self) -> list[str]:
        """What changed, one line each, as logged and shown by ``status``."""
        out = [f"community added: {c}" for c in self.added_communities]
        out += [f"community removed: {c}" for c in self.removed_communities]
        out += [f"community {c}: {', '.join(keys)} changed"
                for c, keys in self.changed_communities]
        out += [f"channel added: {c}" for c in self.added_channels]
        out += [f"channel removed: {c}" for c in self.removed_channels]
        out += [f"channel {c}: {', '.join(keys)} changed (new deliveries)"
                for c, keys in self.changed_channels]
        out += [f"account started: {a}" for a in self.added_accounts]
        out += [f"account removed: {a}" for a in self.removed_accounts]
        out += [f"account restarted: {a} ({why})" for a, why in self.restarted_accounts]
        out += [f"bridge.{k} changed" for k in self.bridge_changed]
        return out

    def restart_lines(self) -> list[str]:
        return [f"bridge.{'web' if k == 'web' else k}: changed; needs a restart (the running "
                "value stays until then)" for k in self.needs_restart]


def _specs(cfg: Config) -> dict[str, tuple[ChannelSpec, ...]]:
    """Each account's channels as its adapter is given them (one pass: a config may
    have thousands)."""
    out: dict[str, list[ChannelSpec]] = {}
    for ch in cfg.all_channels():
        out.setdefault(ch.account, []).append(ChannelSpec(
            key=ch.key, community=ch.community, hashtag=ch.hashtag,
            direction=ch.common.direction, options=ch.options))
    return {a: tuple(sorted(specs, key=lambda s: s.key)) for a, specs in out.items()}


def _changed_keys(a: dict[str, Any], b: dict[str, Any]) -> tuple[str, ...]:
    return tuple(sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k)))


def diff(old: Config, new: Config) -> Diff:
    """What applying *new* over the running *old* changes."""
    old_comms = {c.name: c for c in old.communities}
    new_comms = {c.name: c for c in new.communities}
    changed_comms = []
    for name in sorted(old_comms.keys() & new_comms.keys()):
        keys = _changed_keys(old_comms[name].settings.model_dump(exclude={"channels"}),
                             new_comms[name].settings.model_dump(exclude={"channels"}))
        if keys:
            changed_comms.append((name, keys))
    old_ch = {c.key: c for c in old.all_channels()}
    new_ch = {c.key: c for c in new.all_channels()}
    changed_ch = []
    for key in sorted(old_ch.keys() & new_ch.keys()):
        oc, nc = old_ch[key], new_ch[key]
        if (oc.common, oc.options, oc.hashtag) == (nc.common, nc.options, nc.hashtag):
            continue  # (the common case, and cheaper than comparing key by key)
        keys = _changed_keys(_channel_dump(oc), _channel_dump(nc))
        if keys:
            changed_ch.append((key, keys))
    old_specs, new_specs = _specs(old), _specs(new)
    old_run, new_run = set(old_specs), set(new_specs)
    restarted = []
    for a in sorted(old_run & new_run):
        o, n = old.accounts[a], new.accounts[a]
        if (o.platform, o.options, o.rate_per_minute, o.rate_burst) != \
                (n.platform, n.options, n.rate_per_minute, n.rate_burst):
            restarted.append((a, "its keys changed"))
        elif old_specs[a] != new_specs[a]:
            restarted.append((a, "its channels changed"))
    bridge_changed: list[str] = []
    needs_restart: list[str] = []
    ob, nb = old.bridge.model_dump(), new.bridge.model_dump()
    for k in _changed_keys(ob, nb):
        (needs_restart if k in RESTART_ONLY else bridge_changed).append(k)
    return Diff(
        added_communities=tuple(sorted(new_comms.keys() - old_comms.keys())),
        removed_communities=tuple(sorted(old_comms.keys() - new_comms.keys())),
        changed_communities=tuple(changed_comms),
        added_channels=tuple(sorted(new_ch.keys() - old_ch.keys())),
        removed_channels=tuple(sorted(old_ch.keys() - new_ch.keys())),
        changed_channels=tuple(changed_ch),
        added_accounts=tuple(sorted(new_run - old_run)),
        removed_accounts=tuple(sorted(old_run - new_run)),
        restarted_accounts=tuple(restarted),
        bridge_changed=tuple(bridge_changed), needs_restart=tuple(needs_restart))


def _channel_dump(ch: ChannelConfig) -> dict[str, Any]:
    return {**ch.common.model_dump(), **ch.options.model_dump(), "hashtag": ch.hashtag}


def kept(old: Config, new: Config) -> Config:
    """*new*, with the running values of the keys that need a restart."""
    bridge = new.bridge.model_copy(update={k: getattr(old.bridge, k) for k in RESTART_ONLY})
    return dataclasses.replace(new, bridge=bridge, path=old.path or new.path)


# ------------------------------------------------------------------ the outcome

@dataclass(slots=True, kw_only=True)
class Outcome:
    at: float
    ok: bool
    seconds: float = 0.0
    changes: list[str] = field(default_factory=list)
    needs_restart: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    """Refused: check's messages, secrets redacted."""
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)

    def summary(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.at))
        if not self.ok and self.changes:  # valid, but applying it failed
            return f"FAILED at {when} while applying; restart the bridge"
        if not self.ok:
            return f"refused at {when}: {len(self.errors)} problem(s); the running config stays"
        what = "; ".join(self.changes) if self.changes else "nothing changed"
        return f"ok at {when} ({self.seconds:.2f}s): {what}"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Outcome:
        data = json.loads(text)
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


def outcomes(tx: Tx) -> list[Outcome]:
    """The last reload of every process that recorded one (newest first)."""
    out = []
    for _key, value in tx.state_items(STATE_ACCOUNT, STATE_NAMESPACE):
        with contextlib.suppress(ValueError, TypeError, KeyError):
            out.append(Outcome.from_json(value))
    return sorted(out, key=lambda o: o.at, reverse=True)


def orphaned_queues(tx: Tx, cfg: Config) -> dict[str, int]:
    """Pending deliveries of channels the config no longer has (a reload removed
    them and the process stopped before they were sent)."""
    known = {c.key for c in cfg.all_channels()}
    return {k: d.get("pending", 0) for k, d in sorted(tx.queue_depths().items())
            if k not in known and d.get("pending", 0)}


# ------------------------------------------------------------------ process files

def run_dir(cfg: Config) -> str:
    return cfg.data_path(RUN_DIR)


def running_processes(directory: str) -> list[int]:
    """Pids of the live processes with a process file in *directory* (stale files,
    of processes gone, are removed)."""
    pids = []
    with contextlib.suppress(FileNotFoundError):
        for name in sorted(os.listdir(directory)):
            if not name.endswith(".pid") or not name[:-4].isdigit():
                continue
            pid = int(name[:-4])
            if _alive(pid):
                pids.append(pid)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(directory, name))
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    cmdline = f"/proc/{pid}/cmdline"
    if os.path.exists(cmdline):  # a pid reused by another program is not ours
        with open(cmdline, "rb") as f:
            words = f.read()
        return b"hashbridge" in words or b"bridge.cli" in words
    return True


def read_outcome(directory: str, pid: int) -> Outcome | None:
    try:
        with open(os.path.join(directory, f"{pid}.reload.json"), encoding="utf-8") as f:
            return Outcome.from_json(f.read())
    except (OSError, ValueError, TypeError):
        return None


# ------------------------------------------------------------------ the reloader

class Reloader:
    """Re-reads *bridge*'s config file on SIGHUP (or :meth:`reload`) and applies it."""

    def __init__(self, bridge: Any, *, keep_log_level: bool = False,
                 registry: Registry | None = None) -> None:
        self.bridge = bridge
        self.registry = registry
        """The adapters to load with (default: the installed ones, found anew)."""
        self.path = bridge.config.path
        self.keep_log_level = keep_log_level
        self.secrets: set[str] = set(bridge.config.secrets)
        self.last: Outcome | None = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Outcome]] = set()

    def signalled(self) -> None:
        task = asyncio.get_running_loop().create_task(self.reload(), name="reload")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def reload(self) -> Outcome:
        """Read the file and apply it (one at a time); the outcome is recorded."""
        async with self._lock:
            started = time.monotonic()
            log.warning("reload: reading %s", self.path)
            try:
                new = await asyncio.to_thread(load, self.path,
                                              self.registry or load_factories())
            except (ConfigError, RegistryError) as e:
                errors = e.errors if isinstance(e, ConfigError) else [f"adapters: {e}"]
                found = e.secrets if isinstance(e, ConfigError) else frozenset()
                scrub = logs.Redactor(self.secrets | set(found)).scrub
                outcome = Outcome(at=time.time(), ok=False, seconds=time.monotonic() - started,
                                  errors=[scrub(m) for m in errors])
                log.error("reload refused: %s has %d problem(s); the running configuration "
                          "stays", self.path, len(errors))
                for m in outcome.errors:
                    log.error("reload refused: %s", m)
            else:
                d = diff(self.bridge.config, new)
                merged = kept(self.bridge.config, new)
                self._redact(merged.secrets)
                try:
                    await apply(self.bridge, merged, d)
                except Exception as e:  # an adapter refusing its new options, say
                    log.exception("reload: applying the new configuration failed")
                    why = logs.Redactor(self.secrets).scrub(f"{type(e).__name__}: {e}")
                    outcome = Outcome(
                        at=time.time(), ok=False, seconds=time.monotonic() - started,
                        changes=d.changes(), errors=[
                            f"applying failed: {why}; part of it may be in effect: "
                            "restart the bridge to run the file as it is"])
                    await self.record(outcome)
                    return outcome
                if not self.keep_log_level and "log_level" in d.bridge_changed:
                    logging.getLogger().setLevel(merged.bridge.log_level.upper())
                outcome = Outcome(at=time.time(), ok=True, seconds=time.monotonic() - started,
                                  changes=d.changes(), needs_restart=d.restart_lines())
                for line in outcome.changes or ["nothing changed"]:
                    log.warning("reload: %s", line)
                for line in outcome.needs_restart:
                    log.warning("reload: %s", line)
            await self.record(outcome)
            return outcome

    def _redact(self, secrets: Iterable[str]) -> None:
        """The new file's secrets are redacted from every log line from now on."""
        new = set(secrets) - self.secrets
        if not new:
            return
        self.secrets |= new
        for handler in logging.getLogger().handlers:
            for f in list(handler.filters):
                if isinstance(f, logs.Redactor):
                    handler.removeFilter(f)
                    handler.addFilter(logs.Redactor(self.secrets))

    async def record(self, outcome: Outcome) -> None:
        self.last = outcome
        key = f"{outcome.host}:{outcome.pid}"
        try:
            await self.bridge.store.run(
                lambda tx: tx.state_put(STATE_ACCOUNT, STATE_NAMESPACE, key, outcome.to_json()))
        except Exception as e:  # a full disk: the log and the file still say it
            log.warning("reload: outcome not recorded in the database: %s", e)
        _write_outcome(run_dir(self.bridge.config), outcome)


def _forget_gone_processes(tx: Tx) -> None:
    """The outcomes of this host's processes that are gone (an earlier run here)."""
    host = socket.gethostname()
    gone = [key for key, _ in tx.state_items(STATE_ACCOUNT, STATE_NAMESPACE)
            if key.rpartition(":")[0] == host and key.rpartition(":")[2].isdigit()
            and not _alive(int(key.rpartition(":")[2]))]
    if gone:
        tx.state_delete(STATE_ACCOUNT, STATE_NAMESPACE, gone)


def _write_outcome(directory: str, outcome: Outcome) -> None:
    """Next to the process file, for ``hashbridge reload`` (which may not reach the
    database: its password is in the daemon's environment)."""
    with contextlib.suppress(OSError):
        tmp = os.path.join(directory, f"{outcome.pid}.reload.json.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(outcome.to_json())
        os.replace(tmp, os.path.join(directory, f"{outcome.pid}.reload.json"))


def _write_process_file(directory: str, pidfile: str, cfg: Config) -> None:
    os.makedirs(directory, exist_ok=True)
    running_processes(directory)  # clears stale files
    with open(pidfile, "w", encoding="utf-8") as f:
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                            "config": os.path.abspath(cfg.path) if cfg.path else "",
                            "started_at": time.time()}))


async def apply(bridge: Any, new: Config, d: Diff) -> None:
    """Apply *new* (already :func:`kept`) to the running *bridge*; see the module
    docstring for what each kind of change does."""
    old: Config = bridge.config
    cluster = bridge.cluster
    new_keys = {c.key for c in new.all_channels()}  # (a set: 1,000s of channels)
    # Channels whose queue is still to be sent: removed now, or by an earlier reload
    # (carried over where their account restarts now).
    drain: dict[str, dict[str, ChannelConfig]] = {}
    for key in d.removed_channels:
        ch = old.channel(key)
        if not ch.writes or key not in bridge.workers:
            continue  # (sent to or not: a page relayed until the routes change may add)
        if cluster is not None and ch.account in d.removed_accounts:
            continue  # its lease is given up at once; the queue stays in the database
        drain.setdefault(ch.account, {})[key] = bridge.workers[key].channel
    restarted = {a for a, _ in d.restarted_accounts} | (drain.keys() & bridge.accounts.keys())
    for account, keys in bridge.draining.items():
        if account in restarted or account in d.removed_accounts:
            for key in keys:
                if key not in new_keys and key in bridge.workers:
                    drain.setdefault(account, {})[key] = bridge.workers[key].channel
    stopping = [a for a in bridge.accounts if a in restarted or a in d.removed_accounts]
    starting = sorted((restarted | set(d.added_accounts) | drain.keys())
                      - (set(d.removed_accounts) - drain.keys()))

    # 1. Stop what restarts or goes (a send in progress ends first).
    if cluster is None:
        await asyncio.gather(*(bridge.stop_account(a) for a in stopping))
    else:
        await asyncio.gather(*(_pause(bridge, a) for a in stopping))
    for a in stopping:
        rt = bridge.accounts.pop(a)
        for spec in rt.channels:
            bridge.workers.pop(spec.key, None)
    if cluster is not None:
        gone = [lease_name(a) for a in d.removed_accounts if a not in drain]
        if gone:
            await cluster.remove(gone)

    # 2. Route by the new config: removed channels are read no more from here on.
    bridge.config = new
    bridge.relay.reconfigure(new)
    bridge._network_names.clear()
    changed = {key for key, _ in d.changed_channels}
    by_key = {c.key: c for c in new.all_channels()}
    for key, w in bridge.workers.items():
        if key in by_key and (key in changed or d.bridge_changed):
            w.reconfigure(by_key[key], new.bridge)

    # 3. Start what is new or restarted (a draining channel is only written to).
    for a in stopping:
        bridge.draining.pop(a, None)
    bridge.draining.update({a: set(keys) for a, keys in drain.items() if keys})
    built = []
    for a in starting:
        acct = new.accounts.get(a) or old.accounts[a]
        specs = new.channel_specs(a) if a in new.accounts else ()
        specs += tuple(ChannelSpec(key=ch.key, community=ch.community, hashtag=ch.hashtag,
                                   direction="out", options=ch.options)
                       for ch in drain.get(a, {}).values())
        if not specs:
            continue
        built.append(bridge.build_account(a, acct, specs, drain.get(a, {})))
    if cluster is None:
        for rt in built:
            bridge.start_account(rt)
    else:
        cluster.update({lease_name(rt.name): _runner(bridge, rt) for rt in built},
                       {lease_name(rt.name): [s.key for s in rt.channels] for rt in built})
        await cluster.restart([lease_name(rt.name) for rt in built])
    for rt in built:
        for spec in rt.channels:
            if (w := bridge.workers.get(spec.key)) is not None:
                w.wake()


async def _pause(bridge: Any, account: str) -> None:
    rt = bridge.accounts[account]
    workers = [w for s in rt.channels if (w := bridge.workers.get(s.key)) is not None]
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(bridge.config.bridge.send_timeout_seconds + 5):
            await asyncio.gather(*(w.pause() for w in workers))


def _runner(bridge: Any, rt: Any) -> Any:
    return lambda: bridge.run_account(rt)


async def serve(bridge: Any, *, keep_log_level: bool = False) -> None:
    """The running process's reload service (an extra task of ``hashbridge run``):
    writes the process file, answers SIGHUP, says at start which queues belong to
    channels no longer in the config, and cleans up at the end."""
    cfg: Config = bridge.config
    reloader = bridge.reloader = Reloader(bridge, keep_log_level=keep_log_level)
    loop = asyncio.get_running_loop()
    directory = run_dir(cfg)
    pidfile = os.path.join(directory, f"{os.getpid()}.pid")
    store: Store = bridge.store
    left = await store.run(lambda tx: orphaned_queues(tx, cfg))
    await store.run(_forget_gone_processes)
    for key, n in left.items():
        log.warning("%d deliveries queued for %s, which is no longer in the configuration: "
                    "they stay in the database (add the channel back and reload to send "
                    "them)", n, key)
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGHUP, reloader.signalled)
    try:
        _write_process_file(directory, pidfile, cfg)
        await asyncio.Event().wait()
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGHUP)
        for name in (pidfile, os.path.join(directory, f"{os.getpid()}.reload.json")):
            with contextlib.suppress(OSError):
                os.unlink(name)
