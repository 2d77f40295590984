"""A canary in every credential field of every installed adapter must never show up in
logs (debug level, failing logins included), ``status``/``check --online`` output,
tracebacks, the web pages, the store or any file in the data dir.

One real relay runs two communities: one whose accounts hold valid canary credentials
on the local platforms (Mastodon and X emulators, Dovecot + list server, Synapse, where
installed), and one whose accounts hold *wrong* canary credentials against the same
platforms, so every login-failure path logs and records what it does with them.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from canary import canary, find_leaks, scan_dir, secret_values, to_toml

from bridge.contract.sandbox import PlatformSandbox
from bridge.daemon.harness import running
from bridge.runtime import logs
from bridge.runtime.config import parse
from bridge.runtime.registry import load_factories

pytestmark = pytest.mark.timeout(300)
ROOT = Path(__file__).resolve().parents[2]
HASHBRIDGE = [str(ROOT / ".venv/bin/python"), "-m", "bridge.cli"]
TAG = "kmers"


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _valid_box(platform: str, factory: Any, workdir: Path) -> PlatformSandbox | None:
    """The platform's sandbox with its credentials replaced by canaries it accepts."""
    box = factory.sandbox(str(workdir / platform))
    if box is None:
        return None
    if platform == "mastodon":
        box.emulator.bridge.token = canary("masto.access_token")
    elif platform == "twitter":
        emu, creds = box.emulator, box.creds
        emu.consumer_key, emu.consumer_secret, emu.bearer_token = (
            canary("x.consumer_key", plain=True), canary("x.consumer_secret", plain=True),
            canary("x.bearer", plain=True))
        _, uid = emu.tokens.pop(creds["access_token"])
        token = canary("x.access_token", plain=True)
        token_secret = canary("x.access_token_secret", plain=True)
        emu.tokens[token] = (token_secret, uid)
        box.creds = {"bearer_token": emu.bearer_token, "consumer_key": emu.consumer_key,
                     "consumer_secret": emu.consumer_secret, "access_token": token,
                     "access_token_secret": token_secret}
    elif platform == "email":
        from adapters.email.testserver import Dovecot, MiniList
        box.imap_password = canary("mail.imap.password")
        box.dovecot = Dovecot(box.workdir / "dovecot",
                              {"bridge": box.imap_password, "reader": "pw-reader"})
        box.list = MiniList(box.dovecot, name=TAG)
    await box.start()
    return box


def _valid_account(box: Any) -> dict[str, Any]:
    table = dict(box.account_config())
    if box.platform == "email":
        table["imap"] = {**table["imap"], "password": box.imap_password}
    return table


def _bad_account(platform: str, good: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Wrong canary credentials against the same platform (or a closed port)."""
    closed = f"http://127.0.0.1:{_free_port()}"
    if platform == "mastodon":
        base = good["base_url"] if good else closed
        return [{"base_url": base, "access_token": canary("masto_bad.access_token"),
                 "catchup_interval": 1.0}]
    if platform == "twitter":
        return [{"api_base": good["api_base"] if good else closed, "bot_username": "kmbridge",
                 "search_share": 1.0, **{f: canary(f"x_bad.{f}") for f in (
                     "consumer_key", "consumer_secret", "access_token",
                     "access_token_secret", "bearer_token")}}]
    if platform == "email":
        imap = dict(good["imap"]) if good else {"host": "127.0.0.1", "port": _free_port(),
                                                "username": "bridge", "security": "none"}
        smtp = dict(good["smtp"]) if good else {"host": "127.0.0.1", "port": _free_port(),
                                                "security": "none"}
        return [{"address": good["address"] if good else "bridge@example.org",
                 "imap": {**imap, "password": canary("mail_bad.imap.password")},
                 "smtp": {**smtp, "username": "bridge",
                          "password": canary("mail_bad.smtp.password")},
                 "idle_seconds": 60}]
    if platform == "matrix":
        hs = good["homeserver"] if good else closed
        user = good["user_id"] if good else "@bridgebot:localhost"
        server = user.split(":", 1)[1]
        return [
            {"homeserver": hs, "user_id": user, "access_token": canary("mx_bad.access_token")},
            {"homeserver": hs, "user_id": user, "password": canary("mx_pw.password")},
            {"homeserver": hs, "user_id": f"@hashbridge:{server}", "mode": "appservice",
             "as_token": canary("mx_as.as_token"), "hs_token": canary("mx_as.hs_token"),
             "as_listen": f"127.0.0.1:{_free_port()}"},
        ]
    return []


@contextlib.contextmanager
def _captured_logs(secrets: frozenset[str]) -> Any:
    """The real logging set-up at debug level into a buffer (restored after), plus a
    raw handler ahead of the redactor that shows what redaction had to hide."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    buf, raw = io.StringIO(), io.StringIO()
    logs.setup("debug", "text", secrets, stream=buf)
    raw_handler = logging.StreamHandler(raw)
    root.handlers.insert(0, raw_handler)
    try:
        yield buf, raw
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


@contextlib.asynccontextmanager
async def _platforms(workdir: Path) -> AsyncIterator[dict[str, Any]]:
    registry = load_factories()
    boxes: dict[str, Any] = {}
    try:
        for platform, factory in sorted(registry.factories.items()):
            if platform != "sandbox":
                boxes[platform] = await _valid_box(platform, factory, workdir)
        yield boxes
    finally:
        for box in boxes.values():
            if box is not None:
                with contextlib.suppress(Exception):
                    await box.stop()


def _raw_config(tmp_path: Path, boxes: dict[str, Any], admin_token: str) -> dict[str, Any]:
    net = str(tmp_path / "networks")
    accounts: dict[str, dict[str, Any]] = {
        "sb_lobby": {"platform": "sandbox", "dir": net, "display_name": "Lobby"},
        "sb_garden": {"platform": "sandbox", "dir": net, "display_name": "Garden"},
    }
    good_channels = [{"account": "sb_lobby", "network": "lobby"}]
    bad_channels = [{"account": "sb_garden", "network": "garden"}]
    for platform, box in boxes.items():
        good = _valid_account(box) if box is not None else None
        if box is not None:
            accounts[platform] = {"platform": platform, **good}
            good_channels.append({"account": platform, **box.channel_config()})
        for i, table in enumerate(_bad_account(platform, good)):
            name = f"{platform}_bad{i}"
            accounts[name] = {"platform": platform, **table}
            loc = box.channel_config() if box is not None else {
                "mastodon": {"hashtag": TAG}, "twitter": {"query": f"#{TAG}"},
                "email": {"list": "kmers@lists.example.org"},
                "matrix": {"room": "!nowhere:localhost"}}[platform]
            bad_channels.append({"account": name, **loc})
    return {
        "bridge": {"data_dir": str(tmp_path / "data"),
                   "web": {"listen": "127.0.0.1:0", "admin_token": admin_token}},
        "accounts": accounts,
        "communities": [
            {"name": "kmers", "hashtag": TAG, "channels": good_channels},
            {"name": "wrongcreds", "hashtag": TAG, "channels": bad_channels},
        ],
    }


WEB_PATHS = ["/", "/healthz", "/metrics", "/static/live.js", "/static/style.css",
             "/c/{c}", "/c/{c}/posts", "/c/{c}/feed.atom", "/c/{c}/events",
             "/c/{c}/events.ics", "/c/{c}/export.jsonl", "/c/{c}/export.markdown",
             "/c/{c}/export.html", "/admin", "/nonexistent"]


async def _fetch_web(url: str, admin_token: str) -> dict[str, str]:
    pages: dict[str, str] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        for community in ("kmers", "wrongcreds"):
            for p in WEB_PATHS:
                path = p.format(c=community)
                for auth in ({}, {"Authorization": f"Bearer {admin_token}"}):
                    async with http.get(url + path, headers=auth) as r:
                        pages[f"{r.status} {path} {bool(auth)}"] = await r.text()
            with contextlib.suppress(TimeoutError):
                async with http.get(f"{url}/c/{community}/stream") as r:
                    async with asyncio.timeout(1.0):
                        pages[f"stream {community}"] = (await r.content.read(65536)).decode()
    return pages


async def _relay_until_copied(bridge: Any, boxes: dict[str, Any], lobby: Any) -> None:
    text = f"canary check {time.time_ns()} #{TAG}"
    await lobby.post_as_member("alice", text)
    for name, box in boxes.items():
        if box is not None and name in ("mastodon", "twitter"):
            await box.post_as_member("bob", f"from {name} #{TAG}")
    deadline = time.monotonic() + 60
    waiting = {n: b for n, b in boxes.items() if b is not None}
    while waiting and time.monotonic() < deadline:
        for name, box in list(waiting.items()):
            if any(m.by_bridge and "canary check" in m.text for m in await box.messages()):
                del waiting[name]
        await asyncio.sleep(0.3)
    assert not waiting, f"the relay never delivered to {sorted(waiting)}"
    await asyncio.sleep(4.0)  # the wrong-credential accounts retry and log a while


async def _cli(*args: str, cwd: Path) -> tuple[str, str]:
    # Not subprocess.run: the emulators answering it live on this event loop.
    proc = await asyncio.create_subprocess_exec(
        *HASHBRIDGE, *args, cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(120):
        out, err = await proc.communicate()
    return out.decode(), f"exit {proc.returncode}\n{err.decode()}"


@dataclass
class Scenario:
    secrets: dict[str, str]
    fields: dict[str, frozenset[str]]
    log_text: str
    raw_log_text: str
    pages: dict[str, str]
    cli: dict[str, tuple[str, str]]
    """command -> (stdout, stderr)"""
    data_dir: Path


async def _run_scenario(tmp_path: Path, workdir: Path) -> Scenario:
    from bridge.web import serve_web

    registry = load_factories()
    admin_token = canary("web.admin_token")
    async with _platforms(workdir) as platforms:
        raw = _raw_config(tmp_path, platforms, admin_token)
        fields = {p: f.secret_fields for p, f in registry.factories.items()}
        secrets = secret_values(raw["accounts"], fields)
        secrets["web.admin_token"] = admin_token
        cfg = parse(raw, registry, {})
        lobby = registry.factories["sandbox"].sandbox(raw["accounts"]["sb_lobby"]["dir"])
        lobby.network = "lobby"
        with _captured_logs(cfg.secrets) as (buf, raw_logs):
            async with running(cfg, timeout=90) as bridge:
                web_task = asyncio.create_task(serve_web(bridge))
                try:
                    await _relay_until_copied(bridge, platforms, lobby)
                    for _ in range(200):  # the web view binds its free port
                        if bridge.services.web_url:
                            break
                        await asyncio.sleep(0.05)
                    pages = await _fetch_web(bridge.services.web_url, admin_token)
                finally:
                    web_task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await web_task
        # The operator commands, with the config in a file only its owner can read.
        cfg_file = tmp_path / "hashbridge.toml"
        cfg_file.write_text(to_toml(raw))
        cfg_file.chmod(0o600)
        cli = {}
        for args in (("status",), ("status", "--json"),
                     ("--log-level", "debug", "check", "--online")):
            cli[" ".join(args)] = await _cli(*args, "-c", str(cfg_file), cwd=tmp_path)
    return Scenario(secrets=secrets, fields=fields, log_text=buf.getvalue(),
                    raw_log_text=raw_logs.getvalue(), pages=pages, cli=cli,
                    data_dir=tmp_path / "data")


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    # One relay run (Synapse and Dovecot start once) feeds every test below.
    with tempfile.TemporaryDirectory(prefix="hbsec") as short:
        # Dovecot's unix sockets need a short path (108 bytes); pytest's tmp is long.
        return asyncio.run(_run_scenario(tmp_path_factory.mktemp("canary"), Path(short)))


def _leaks(text: str | bytes, sc: Scenario, where: str, *, encoded: bool | None = None
           ) -> list[str]:
    """Leaks of any form; with *encoded* True/False only encoded/plain ones."""
    out = []
    for label, value in sc.secrets.items():
        for hit in find_leaks(text, [value], f"{where} {label}"):
            is_plain = value.encode() in (text if isinstance(text, bytes) else text.encode())
            if encoded is None or encoded is not is_plain:
                out.append(hit)
    return out


def test_every_credential_field_of_every_adapter_holds_a_canary(scenario: Scenario) -> None:
    for platform, fields in scenario.fields.items():
        for f in fields:
            assert any(k.split(".", 1)[1] == f and k.startswith(platform)
                       for k in scenario.secrets), f"no canary in {platform}.{f}"


def test_relay_debug_logs_hold_no_plain_canary(scenario: Scenario) -> None:
    assert "DEBUG" in scenario.log_text and len(scenario.log_text) > 10_000
    assert "credentials refused" in scenario.log_text or "401" in scenario.log_text, \
        "no failing login was logged"
    assert _leaks(scenario.log_text, scenario, "log", encoded=False) == []


def test_relay_debug_logs_hold_no_encoded_canary(scenario: Scenario) -> None:
    assert _leaks(scenario.log_text, scenario, "log", encoded=True) == []


def test_web_pages_hold_no_canary(scenario: Scenario) -> None:
    assert any(k.startswith("200 /c/kmers ") for k in scenario.pages)
    assert any(k.startswith("200 /admin True") for k in scenario.pages), \
        "the admin page was not reached with the token"
    for key, body in scenario.pages.items():
        assert _leaks(body, scenario, f"web {key}") == []


@pytest.mark.parametrize("command", ["status", "status --json"])
def test_status_output_holds_no_canary(scenario: Scenario, command: str) -> None:
    out, err = scenario.cli[command]
    assert ("kmers/" in out or '"adapters"' in out) and "Traceback" not in err, out + err
    assert _leaks(out + err, scenario, command) == []


def test_check_online_stdout_holds_no_canary(scenario: Scenario) -> None:
    out, _ = scenario.cli["--log-level debug check --online"]
    assert "FAILED" in out and "ok" in out, out  # both good and wrong credentials checked
    assert _leaks(out, scenario, "check --online stdout") == []


def test_check_online_logs_hold_no_canary(scenario: Scenario) -> None:
    _, err = scenario.cli["--log-level debug check --online"]
    assert _leaks(err, scenario, "check --online stderr") == []


def test_store_and_data_dir_hold_no_canary(scenario: Scenario) -> None:
    files = [p for p in scenario.data_dir.rglob("*") if p.is_file()]
    assert any(p.name.startswith("hashbridge.sqlite") for p in files), files
    assert scan_dir(scenario.data_dir, scenario.secrets.values()) == []


def test_report_what_redaction_hid(scenario: Scenario) -> None:
    """Not an assertion on redaction (that is the point of it), but the list of places
    that hand a credential to a logger at all, printed for the owners."""
    hid = _leaks(scenario.raw_log_text, scenario, "before redaction")
    print("\n".join(["credentials handed to loggers (redacted on output):", *hid]))
    assert scenario.raw_log_text
