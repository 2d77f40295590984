"""``hashbridge`` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from bridge.contract.adapter import ChannelCheck
from bridge.contract.model import ChannelKey
from bridge.contract.services import Services
from bridge.daemon.cluster import lease_name
from bridge.daemon.reload import orphaned_queues, read_outcome, running_processes
from bridge.daemon.reload import outcomes as reload_outcomes
from bridge.inbound.steps import described, recorded_drops
from bridge.runtime import logs
from bridge.runtime.config import EXIT_CONFIG, Config, ConfigError, load, parse_database
from bridge.runtime.registry import Registry, RegistryError, load_factories
from bridge.store import DiskFullError, Store, StoreError, Tx
from bridge.store.backends import migrate_to_postgresql, open_store, read_last_checkpoint
from bridge.store.leases import Member, leases_of
from bridge.store.space import LOW_FREE_BYTES, MIN_FREE_BYTES, free_space, human

EXIT_STORE = 74  # sysexits EX_IOERR: the database cannot be used
EXIT_FAILED = 1
EXIT_USAGE = 2  # a wrong argument (an unknown channel name), as argparse's own errors
EXIT_NOT_STARTED = 3  # `status` before the first run (systemctl's "not running")
ONLINE_STEP_TIMEOUT = 20.0
"""Seconds one account's online check may take (a server that accepts and never answers)."""

EXIT_CODES = """exit codes:
  0   done (check: the configuration is valid, and with --online every account logged in)
  1   check --online: an account could not log in, or a channel cannot be used
  2   a wrong argument (e.g. an unknown channel name; the known ones are listed)
  3   status: the bridge has not run yet here (no database); reload: no running bridge
      found for this config
  74  the database cannot be used (corrupt, from a newer version, the disk full)
  78  the configuration has errors (each listed with its key path and a fix); reload:
      the running bridge refused the file and kept its configuration
"""

log = logging.getLogger("hashbridge.cli")


def _load(args: argparse.Namespace) -> tuple[Config, Registry]:
    registry = load_factories()
    cfg = load(args.config, registry)
    # From here on every log line (libraries' too) is scrubbed of this config's secrets.
    logs.setup(args.log_level or "warning", args.log_format, cfg.secrets)
    return cfg, registry


def _print_config_errors(path: str, e: ConfigError) -> None:
    n = len(e.errors)
    print(f"{path}: {n} problem{'s' if n != 1 else ''} in the configuration:", file=sys.stderr)
    scrub = logs.Redactor(e.secrets).scrub  # a value read from a secret's variable
    for err in e.errors:
        print(f"  {scrub(err)}", file=sys.stderr)
    print("Nothing was started.  See config/example.toml for every key.", file=sys.stderr)


def _run_async(coro_fn: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run with SIGINT/SIGTERM cancelling the main task (a clean shutdown)."""

    async def main() -> int:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        assert task is not None
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, task.cancel)
        try:
            return await coro_fn()
        except asyncio.CancelledError:
            log.info("stopped; work in flight will resume at the next start")
            return 0

    return asyncio.run(main())


# ---------------------------------------------------------------- commands

def cmd_run(args: argparse.Namespace) -> int:
    cfg, _ = _load(args)
    logs.setup(args.log_level or cfg.bridge.log_level, args.log_format, cfg.secrets)
    from bridge.daemon import reload
    from bridge.daemon.supervisor import Bridge

    # Until the reload service answers it, a SIGHUP must not end the process.
    with contextlib.suppress(ValueError, OSError):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    async def go() -> int:
        extra = []
        if cfg.bridge.web is not None:
            with contextlib.suppress(ImportError):
                from bridge.web import serve_web
                extra.append(serve_web)  # it also announces chat events
        if not extra and any(c.settings.events for c in cfg.communities):
            from bridge.features.chatevents import run_announcements
            extra.append(run_announcements)
        # SIGHUP re-reads the config (bridge/daemon/reload.py).
        extra.append(functools.partial(reload.serve, keep_log_level=args.log_level is not None))
        bridge = Bridge(cfg, extra_tasks=extra)
        log.info("hashbridge starting: %d communities, %d channels, data in %s, database %s",
                 len(cfg.communities), len(cfg.all_channels()), cfg.data_path(), cfg.database)
        await bridge.run()
        return 0

    return _run_async(go)


def _also_read_note(cfg: Any, ch: Any, tags: list[str]) -> str:
    """What ``also_read`` does on channel *ch*: another hashtag read, nothing to
    add (the channel reads a whole room, list or network), or, where reads are
    billed (a search query), the operator's edit to make."""
    listed = " ".join(f"#{t}" for t in tags)
    kind = cfg.accounts[ch.account].factory.channel_locator
    if kind == "hashtag":
        return f"also reads {listed} (read-only: never copied back to {ch.platform})"
    if kind == "query":
        example = " OR ".join([f"#{ch.hashtag}", *(f"#{t}" for t in tags)])
        return (f"note: also_read is not read here: each read is billed, so it is not "
                f"added for you; to read {listed} too, put it in this channel's query, "
                f"e.g. query = \"({example}) -is:retweet\"")
    return (f"reads the whole {kind}: also_read ({listed}) needs nothing more here")


def cmd_check(args: argparse.Namespace) -> int:
    cfg, _registry = _load(args)
    print(f"{args.config}: configuration is valid")
    print(f"database: {cfg.database}")
    for comm in cfg.communities:
        print(f"community {comm.name} (#{comm.settings.hashtag}, consent {comm.settings.consent}):")
        for ch in comm.channels:
            verbs = {"both": "reads and writes", "in": "reads", "out": "writes"}[
                ch.common.direction]
            print(f"  {ch.key}: {verbs} {ch.platform} {ch.locator or ''} via account "
                  f"{ch.account}")
            if comm.settings.also_read and ch.reads:
                print(f"    {_also_read_note(cfg, ch, comm.settings.also_read)}")
    if not args.online:
        return 0
    import aiohttp

    async def one(name: str, http: aiohttp.ClientSession) -> bool:
        acct = cfg.accounts[name]
        specs = cfg.channel_specs(name)
        print(f"account {name} ({acct.platform}): checking (at most {args.timeout:.0f}s) ...",
              flush=True)
        t0 = time.monotonic()
        try:
            async with asyncio.timeout(args.timeout):
                res = await acct.factory.check_online(acct.options, http, Services())
        except TimeoutError:
            print(f"account {name}: FAILED: no answer within {args.timeout:.0f}s (the server "
                  "may accept connections and never reply: check the host, the port and "
                  "the security setting (tls/starttls/none); --timeout gives it longer)")
            return False
        except Exception as e:
            why = str(e) or "no reason given"
            print(f"account {name}: FAILED: {type(e).__name__}: {why}")
            return False
        status = "ok" if res.ok else "FAILED"
        who = f" as {res.identity}" if res.identity else ""
        error = res.error if res.error.strip(" :") else "refused, no reason given"
        print(f"account {name} ({acct.platform}): {status}{who}"
              + ("" if res.ok else f": {error}") + f" ({time.monotonic() - t0:.1f}s)")
        for w in res.warnings:
            print(f"  warning: {w}")
        for n in res.notes:
            print(f"  {n}")
        found: dict[ChannelKey, ChannelCheck] = {}
        unchecked = "not checked: the account did not log in"
        if res.ok and specs:
            t1 = time.monotonic()
            try:
                async with asyncio.timeout(args.timeout):
                    found = await acct.factory.check_channels(acct.options, specs, http,
                                                              Services())
                unchecked = f"not checked online by the {acct.platform} adapter"
            except TimeoutError:
                unchecked = f"not checked: no answer within {args.timeout:.0f}s"
            except Exception as e:
                unchecked = f"not checked: {type(e).__name__}: {str(e) or 'no reason given'}"
            if found:
                print(f"  channels checked ({time.monotonic() - t1:.1f}s):")
        usable = True
        for spec in specs:
            verbs = {"both": "will read and write", "in": "will read", "out": "will write"}[
                spec.direction]
            ch = cfg.channel(spec.key)
            print(f"  {spec.key}: {verbs} {ch.locator or acct.platform}")
            got = found.get(spec.key)
            if got is None:
                print(f"    ({unchecked})")
                continue
            if got.reads and spec.direction != "out":
                print(f"    reads: {got.reads}")
            if got.writes and spec.direction != "in":
                print(f"    writes: {got.writes}")
            for w in got.warnings:
                print(f"    warning: {w}")
            if not got.ok:
                usable = False
                print(f"    FAILED: {got.error or 'cannot be used, no reason given'}")
        return res.ok and usable

    async def online() -> int:
        bad = 0
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(
                total=args.timeout)) as http:
            for name in cfg.accounts:
                bad += 0 if await one(name, http) else 1
        print("online check: " + ("every account logged in, every channel checked usable"
                                  if not bad else
                                  f"{bad} account{'s' if bad != 1 else ''} FAILED (an account "
                                  "that cannot log in, or a channel it cannot use)"))
        return 0 if not bad else EXIT_FAILED

    redactor = logs.Redactor(cfg.secrets)
    with _redacted_stdout(redactor):
        return asyncio.run(online())


@contextlib.contextmanager
def _redacted_stdout(redactor: logs.Redactor) -> Any:
    class W:
        def write(self, s: str) -> int:
            return real.write(redactor.scrub(s))

        def flush(self) -> None:
            real.flush()

    real = sys.stdout
    sys.stdout = W()  # type: ignore[assignment,unused-ignore]
    try:
        yield
    finally:
        sys.stdout = real


async def _open_store(cfg: Config) -> Store:
    return await open_store(cfg.database, must_exist=True)


def storage_report(cfg: Config) -> dict[str, Any]:
    """The data dir's filesystem as ``status`` shows it: ``ok``, ``low``, or
    ``full`` (a running bridge then holds its writes until space returns)."""
    # The database's own directory when it is a SQLite file outside the data dir.
    where = (os.path.dirname(cfg.database.path)
             if cfg.bridge.database and cfg.database.scheme == "sqlite" else cfg.data_path())
    got = free_space(where)
    if got is None:
        return {"data_dir": where, "state": "unknown", "free_bytes": None, "total_bytes": None}
    free, total = got
    state = "full" if free < MIN_FREE_BYTES else "low" if free < LOW_FREE_BYTES else "ok"
    return {"data_dir": where, "state": state, "free_bytes": free, "total_bytes": total}


def _storage_line(s: dict[str, Any]) -> str:
    if s["state"] == "unknown":
        return f"storage: {s['data_dir']}: free space unknown"
    line = (f"storage: {s['state']}: {human(s['free_bytes'])} free of "
            f"{human(s['total_bytes'])} in {s['data_dir']}")
    if s["state"] == "full":
        line += ("\n  a running bridge holds its writes (and reads nothing new) until space "
                 "returns; free some space there")
    if s.get("read"):
        line += f"\n  shown as of the database's {s['read']}"
    return line


def cmd_status(args: argparse.Namespace) -> int:
    cfg, _ = _load(args)
    db = cfg.database.path
    if cfg.database.scheme == "sqlite" and not os.path.exists(db):
        if args.json:
            print(json.dumps({"state": "not started", "database": db}, indent=2))
        else:
            print(f"not started yet: no database at {db}; `hashbridge run -c {args.config}` "
                  "creates it at its first start")
        return EXIT_NOT_STARTED

    keys = [ch.key for ch in cfg.all_channels()]

    async def go() -> int:
        storage = storage_report(cfg)
        lag: dict[str, float] = {}
        holders: dict[str, Any] | None = None
        reloads: list[Any] = []
        orphans: dict[str, int] = {}
        try:
            store = await _open_store(cfg)
        except StoreError:
            if storage["state"] != "full":
                raise
            # Too full to open the database the normal way: read its last
            # checkpoint (what the bridge committed before it stopped).
            health, depths, dead, rejected, refusals = await read_last_checkpoint(
                cfg.database, lambda tx: (tx.health(), tx.queue_depths(), tx.dead(args.limit),
                                          _rejections(tx, args.limit),
                                          tx.policy_refusal_counts()))
            storage["read"] = "last checkpoint (the disk is full)"
        else:
            try:
                reloads = await store.run(reload_outcomes)
                orphans = await store.run(lambda tx: orphaned_queues(tx, cfg))
                health = await store.run(lambda tx: tx.health())
                depths = await store.run(lambda tx: tx.queue_depths())
                dead = await store.run(lambda tx: tx.dead(args.limit))
                rejected = await store.run(lambda tx: _rejections(tx, args.limit))
                refusals = await store.run(lambda tx: tx.policy_refusal_counts())
                lag = await store.run(lambda tx: channel_lag(tx, keys))
                holders = await process_report(store, cfg)
            finally:
                await store.close()
        pipeline = _pipeline(refusals, rejected["counts"])
        if args.json:
            print(json.dumps({
                "storage": storage,
                "adapters": [{"account": a, "platform": p, "health": s, "detail": d,
                              "updated_at": u} for a, p, s, d, u in health],
                "queues": depths,
                "dead": [{"id": r.id, "channel": r.channel, "op": r.op.value, "post": r.post_id,
                          "reason": r.last_error, "attempts": r.attempts} for r in dead],
                "rejected": rejected,
                "pipeline": pipeline,
                "lag_seconds": lag,
                "processes": holders,
                "reloads": [dataclasses.asdict(o) for o in reloads],
                "removed_channels_queued": orphans,
            }, indent=2))
            return 0
        print(_storage_line(storage))
        print("adapters:")
        for account, platform, state, detail, updated in health:
            ago = time.time() - updated
            print(f"  {account:<16} {platform:<9} {state:<16} {detail}  ({ago:.0f}s ago)")
        print("queues (pending / dead, lag):")
        for ch in cfg.all_channels():
            q = depths.get(ch.key, {})
            where = ""
            if holders is not None:
                h = holders["channels"].get(ch.key)
                where = f"  in {h['host']} pid {h['pid']}" if h else "  in no process"
            print(f"  {ch.key:<28} {q.get('pending', 0):>6} / {q.get('dead', 0)}"
                  f"  lag {lag.get(ch.key, 0.0):.1f}s{where}")
        if holders is not None:
            print(f"processes ({len(holders['members'])} sharing the database):")
            for account in cfg.accounts:
                h = holders["accounts"].get(account)
                print(f"  {account:<16} " + (f"{h['host']} pid {h['pid']} (lease renewed, "
                                            f"{h['expires_in']:.0f}s left)" if h else
                                            "held by no process (taken over within "
                                            f"{cfg.bridge.failover_seconds:.0f}s)"))
        if orphans:
            print("queued for channels no longer in the configuration (kept in the database; "
                  "add the channel back and reload to send them):")
            for key, n in orphans.items():
                print(f"  {key:<28} {n:>6}")
        if reloads:
            print("last reload, per process:")
            for o in reloads:
                print(f"  {o.host} pid {o.pid}: {o.summary()}")
                for line in o.errors + o.needs_restart:
                    print(f"    {line}")
        if dead:
            print("dead deliveries (re-queue with `hashbridge retry`):")
            for r in dead:
                print(f"  {r.id} {r.op.value:<6} -> {r.channel}: {r.last_error}")
        unread = [c for c in rejected["counts"] if c["kind"] != "policy"]
        if unread:
            print("inbound events rejected (not read or not relayable; see docs/operations.md):")
            for c in unread:
                print(f"  {c['channel']:<28} {c['kind']:<12} {c['count']:>6}  "
                      f"(latest {time.time() - c['latest']:.0f}s ago)")
            for r in rejected["recent"]:
                print(f"  {r['channel']} {r['native_id']}: {r['reason']}")
        _print_pipeline(pipeline)
        return 0

    return asyncio.run(go())


UNREADABLE_KINDS = ("unreadable", "too large", "relay error")


def channel_lag(tx: Tx, channels: Sequence[str]) -> dict[str, float]:
    """Seconds the oldest pending delivery of each channel has waited (0: none)."""
    now = time.time()
    out: dict[str, float] = {}
    for key in channels:
        first = tx.pending(key, 1)
        out[key] = round(max(0.0, now - first[0].created_at), 1) if first else 0.0
    return out


async def process_report(store: Store, cfg: Config) -> dict[str, Any] | None:
    """Which process (host, pid) holds which account and channel, where several
    share the database; None where the store serves one process."""
    leases = leases_of(store, Member())
    if leases is None:
        return None
    rows = {r.name: r for r in await leases.holders() if r.expires_in > 0}
    accounts: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    for account in cfg.accounts:
        r = rows.get(lease_name(account))
        accounts[account] = None if r is None else {
            "host": r.host, "pid": r.pid, "member": r.member,
            "expires_in": round(r.expires_in, 1), "since": r.acquired_at}
    for ch in cfg.all_channels():
        a = accounts.get(ch.account)
        channels[ch.key] = None if a is None else {"account": ch.account, "host": a["host"],
                                                   "pid": a["pid"]}
    members = sorted({(a["host"], a["pid"]) for a in accounts.values() if a})
    return {"accounts": accounts, "channels": channels,
            "members": [{"host": h, "pid": p} for h, p in members]}


def _rejections(tx: Tx, limit: int) -> dict[str, Any]:
    """Rejected inbound events for ``status``: counts by channel and kind (the
    policy's refusals included), and the latest that could not be read."""
    return {
        "counts": [{"channel": ch, "kind": kind, "count": n, "latest": at}
                   for ch, kind, n, at in tx.rejection_counts()],
        "recent": [{"channel": ch, "native_id": nid, "reason": reason, "at": at}
                   for ch, nid, reason, at in tx.rejections(limit, kinds=UNREADABLE_KINDS)],
    }


def _pipeline(refusals: list[tuple[str, str, int, float]],
              rejection_counts: list[dict[str, Any]]) -> dict[str, Any]:
    """The inbound steps in order, and the drops the database keeps by step and
    reason (the policy's refusals and the rejected events; the other drops
    are counted in memory by the running bridge)."""
    rows = recorded_drops(refusals, [(c["channel"], c["kind"], c["count"], c["latest"])
                                     for c in rejection_counts])
    return {
        "steps": [{"event": st.event, "step": st.name, "description": st.description,
                   "reasons": list(st.reasons), "kept": list(st.kept)}
                  for st in described()],
        "recorded": [{"channel": ch, "step": step, "reason": reason, "count": n,
                      "latest": at} for ch, step, reason, n, at in rows],
        "note": "recorded: the drops the database keeps (each step's kept reasons: the "
                "policy's refusals and rejected events); all drops are counted by the "
                "running bridge since it started: /metrics hashbridge_inbound_dropped_total "
                "and the admin page",
    }


def _print_pipeline(pipeline: dict[str, Any]) -> None:
    totals: dict[tuple[str, str], int] = {}
    for r in pipeline["recorded"]:
        totals[(r["step"], r["reason"])] = totals.get((r["step"], r["reason"]), 0) + r["count"]
    print("inbound steps, in order (drops recorded in the database, all channels; the "
          "others: /metrics and the admin page):")
    for st in pipeline["steps"]:
        print(f"  {st['event']:<8} {st['step']:<16} {st['description']}")
        if st["kept"]:
            counts = [f"{reason}: {totals.get((st['step'], reason), 0)}"
                      for reason in st["kept"]]
            print(f"  {'':<8} {'':<16} dropped: {'; '.join(counts)}")
def _known_channel(cfg: Config, key: str | None, option: str) -> bool:
    """*key* names a channel of *cfg* (or is None); else say which ones exist."""
    if key is None:
        return True
    known = [c.key for c in cfg.all_channels()]
    if key in known:
        return True
    import difflib
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    print(f"{option}: no channel {key!r}{hint}; the channels are: {', '.join(known)}",
          file=sys.stderr)
    return False


def cmd_reload(args: argparse.Namespace) -> int:
    """Signal the running processes of *args.config* (their process files under
    data_dir/run) to re-read it, and print what each did."""
    directory = _run_dir_of(args.config)
    if isinstance(directory, int):
        return directory
    pids = running_processes(directory)
    if not pids:
        print(f"no running hashbridge for {args.config} on this host (no process file in "
              f"{directory}); start it with `hashbridge run -c {args.config}`", file=sys.stderr)
        return EXIT_NOT_STARTED
    sent = time.time()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + args.timeout
    answers: dict[int, Any] = {}
    while len(answers) < len(pids) and time.monotonic() < deadline:
        for pid in pids:
            got = read_outcome(directory, pid)
            if got is not None and got.at >= sent:
                answers[pid] = got
        time.sleep(0.1)
    code = 0
    for pid in pids:
        o = answers.get(pid)
        if o is None:
            print(f"pid {pid}: no answer within {args.timeout:.0f}s (see its log)")
            code = code or EXIT_FAILED
            continue
        print(f"pid {pid}: {o.summary()}")
        for line in o.errors:
            print(f"  {line}")
        if not o.ok:
            code = EXIT_CONFIG
        for line in o.changes + o.needs_restart:
            print(f"  {line}")
    return code


def _run_dir_of(path: str) -> str | int:
    """Where the processes of config *path* keep their process files (read from the
    file's ``data_dir`` alone: the daemon, not this command, validates the rest,
    with the secrets of its own environment)."""
    import tomllib

    from bridge.daemon.reload import RUN_DIR
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        print(f"{path}: cannot read: {e}", file=sys.stderr)
        return EXIT_CONFIG
    section = raw.get("bridge")
    data_dir = str(section.get("data_dir", "data")) if isinstance(section, dict) else "data"
    base = os.path.dirname(os.path.abspath(path))
    return os.path.join(base if not os.path.isabs(data_dir) else "", data_dir, RUN_DIR)


def cmd_retry(args: argparse.Namespace) -> int:
    cfg, _ = _load(args)
    if not _known_channel(cfg, args.channel, "--channel"):
        return EXIT_USAGE

    async def go() -> int:
        store = await _open_store(cfg)
        try:
            n = await store.run(lambda tx: tx.requeue_dead(args.channel, args.id))
        finally:
            await store.close()
        print(f"re-queued {n} dead deliver{'y' if n == 1 else 'ies'}; a running bridge "
              "picks them up within its next pass")
        return 0

    return asyncio.run(go())


def cmd_preview(args: argparse.Namespace) -> int:
    cfg, _ = _load(args)
    if not _known_channel(cfg, args.origin, "--origin"):
        return EXIT_USAGE
    from bridge.features.preview import preview
    print(preview(cfg, args.text, origin=args.origin, author=args.author))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write the community's archive; see :mod:`bridge.web.export`."""
    cfg, _ = _load(args)
    from bridge.web import export as exporter

    out = args.output
    if out is None:
        if args.format == "html":
            print("export: --format html writes a directory; give it with -o DIR",
                  file=sys.stderr)
            return EXIT_FAILED
        out = "-"

    async def go() -> int:
        store = await _open_store(cfg)
        target = out
        tmp = None
        if out == "-" and args.format == "mbox":  # mailbox writes files, not streams
            import tempfile
            fd, tmp = tempfile.mkstemp(suffix=".mbox")
            os.close(fd)
            target = tmp
        try:
            n = await exporter.export(store, cfg, args.community, args.format, target,
                                      event=args.event, progress=exporter.ProgressBar())
            if tmp is not None:
                with open(tmp, encoding="utf-8") as f:  # noqa: ASYNC230 - local temp
                    sys.stdout.write(f.read())
        except exporter.ExportError as e:
            print(f"export: {e}", file=sys.stderr)
            return EXIT_FAILED
        finally:
            await store.close()
            if tmp is not None:
                os.unlink(tmp)
        where = "" if out == "-" else f" to {out}"
        print(f"exported {n} post{'s' if n != 1 else ''}{where}", file=sys.stderr)
        return 0

    return asyncio.run(go())


def cmd_migrate_store(args: argparse.Namespace) -> int:
    """Copy the config's SQLite store into an empty PostgreSQL database."""
    cfg, _ = _load(args)
    source = cfg.database
    if source.scheme != "sqlite":
        print(f"migrate-store: the config's database is {source}, not a SQLite file; "
              "nothing to copy", file=sys.stderr)
        return EXIT_FAILED
    if not os.path.exists(source.path):
        raise StoreError(f"{source.path}: no database yet (has `hashbridge run` started once?)")
    target = parse_database(args.to, os.getcwd(), "")
    if isinstance(target, str):
        print(f"migrate-store: --to {target}", file=sys.stderr)
        return EXIT_CONFIG
    if target.scheme != "postgresql":
        print(f"migrate-store: --to {target}: give a postgresql:// URL", file=sys.stderr)
        return EXIT_CONFIG
    copy_sqlite = migrate_to_postgresql()
    print(f"copying {source} into {target} (stop the bridge first: a running one keeps "
          "writing to the file)", file=sys.stderr)
    counts = copy_sqlite(source.path, target.path, target.redacted,
                         lambda table, n: print(f"  {table:<16} {n:>9} rows", file=sys.stderr))
    print(f"copied and verified {sum(counts.values())} rows in {len(counts)} tables; now set "
          f'database = "{target}" in [bridge] and start the bridge', file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    logs.setup(args.log_level or "warning", args.log_format)
    from bridge.cli.demo import run_demo
    return _run_async(lambda: run_demo(duration=args.duration, port=args.port,
                                       workdir=args.workdir, skip=args.skip or (),
                                       install=not args.no_install))


def cmd_plugin(args: argparse.Namespace) -> int:
    return int(args.plugin_fn(args))


# ---------------------------------------------------------------- parser

def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("hashbridge")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown (not installed)"


def build_parser(registry_commands: Sequence[tuple[str, str, Callable[..., int]]] = ()
                 ) -> argparse.ArgumentParser:
    return _parser(registry_commands)[0]


def _parser(registry_commands: Sequence[tuple[str, str, Callable[..., int]]]
            ) -> tuple[argparse.ArgumentParser, frozenset[str]]:
    """The parser, and the names of the built-in sub-commands."""
    p = argparse.ArgumentParser(prog="hashbridge", description=(
        "Relay a community's hashtag conversation across X, Mastodon, Matrix and email "
        "lists."), epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"hashbridge {_version()}")
    p.add_argument("--log-format", choices=["text", "json"], default="text")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(name: str, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("-c", "--config", required=True, help="the TOML config file")
        return sp

    with_config("run", "run the bridge daemon").set_defaults(fn=cmd_run)
    sp = with_config("check", "validate the config (and with --online, the credentials)")
    sp.epilog = EXIT_CODES
    sp.formatter_class = argparse.RawDescriptionHelpFormatter
    sp.add_argument("--online", action="store_true", help="log in to every account")
    sp.add_argument("--timeout", type=float, default=ONLINE_STEP_TIMEOUT, metavar="SECONDS",
                    help="how long one account's check may take (default %(default)s)")
    sp.set_defaults(fn=cmd_check)
    sp = with_config("status", "adapters' health, queue depths, dead deliveries "
                     "(exit 3: not started yet)")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--limit", type=int, default=50)
    sp.set_defaults(fn=cmd_status)
    sp = with_config("reload", "make the running bridge re-read its config (as SIGHUP), "
                     "and print what changed (exit 78: the file was refused)")
    sp.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                    help="how long to wait for each process's answer (default %(default)s)")
    sp.set_defaults(fn=cmd_reload)
    sp = with_config("retry", "re-queue dead deliveries")
    sp.add_argument("--channel", help="only this channel key (community/name)")
    sp.add_argument("--id", help="only this delivery id")
    sp.set_defaults(fn=cmd_retry)
    sp = with_config("preview", "show how a post renders on every channel")
    sp.add_argument("text")
    sp.add_argument("--origin", help="channel key it comes from (default: the first)")
    sp.add_argument("--author", default="Alice")
    sp.set_defaults(fn=cmd_preview)
    sp = with_config("export", "export a community's archive (deleted posts left out)")
    sp.add_argument("--community", required=True, help="community name")
    sp.add_argument("--format", required=True, choices=["jsonl", "mbox", "markdown", "html"])
    sp.add_argument("--event", help="only this chat event (ID, or ID/OCCURRENCE as in the "
                    "transcript URL)")
    sp.add_argument("-o", "--output", help="file (directory for html); default: stdout")
    sp.set_defaults(fn=cmd_export)
    sp = with_config("migrate-store", "copy the SQLite store into an empty PostgreSQL "
                     "database, and verify the counts")
    sp.add_argument("--to", required=True, metavar="URL",
                    help="postgresql://user@host/db (the password from PGPASSWORD or .pgpass)")
    sp.set_defaults(fn=cmd_migrate_store)
    sp = sub.add_parser("demo", help="run the relay on a local sandbox of every platform")
    sp.add_argument("--for", dest="duration", type=float, default=None, metavar="SECONDS",
                    help="stop after this many seconds with a summary (default: until Ctrl-C)")
    sp.add_argument("--port", type=int, default=8080, help="web view port (0: any free port)")
    sp.add_argument("--workdir", help="keep the sandbox here instead of a temp dir")
    sp.add_argument("--skip", action="append", metavar="PLATFORM",
                    help="leave this platform out (e.g. --skip matrix: no Synapse install); "
                    "repeatable")
    sp.add_argument("--no-install", action="store_true",
                    help="never install a missing local server (Synapse on first use)")
    sp.set_defaults(fn=cmd_demo)
    builtin = frozenset(sub.choices or ())
    for name, help_, fn in registry_commands:
        sp = with_config(name, help_)
        sp.set_defaults(fn=cmd_plugin, plugin_fn=fn)
    return p, builtin


def _command_word(argv: Sequence[str]) -> str | None:
    """The sub-command *argv* names (the first word that is not a global option or
    its value), or None."""
    takes_value = {"--log-format", "--log-level"}
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word in takes_value:
            skip = True
        elif not word.startswith("-"):
            return word
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands: list[tuple[str, str, Callable[..., int]]] = []
    # Adapters' own sub-commands are only looked for when the command is not a built-in
    # one (or for --help): finding them imports every installed adapter.
    if _command_word(argv) not in _parser(())[1]:
        with contextlib.suppress(RegistryError):
            for factory in load_factories().factories.values():
                commands.extend(factory.cli_commands())
    args = build_parser(commands).parse_args(argv)
    if args.command not in ("run", "demo"):
        logs.setup(args.log_level or "warning", args.log_format)
    try:
        return int(args.fn(args))
    except ConfigError as e:
        _print_config_errors(getattr(args, "config", "config"), e)
        return EXIT_CONFIG
    except RegistryError as e:
        print(f"adapters: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except DiskFullError as e:
        print(f"storage: {e}", file=sys.stderr)
        return EXIT_STORE
    except StoreError as e:
        print(f"database: {e}", file=sys.stderr)
        return EXIT_STORE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
