"""The admin token is compared in constant time; config files holding secrets inline are
refused when other users can read them (through the real CLI, for every adapter's
credential fields)."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import hmac
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from canary import canary, to_toml

from bridge.daemon.harness import build_config, running, sandbox_channels
from bridge.runtime.config import EXIT_CONFIG, ConfigError, load
from bridge.runtime.registry import load_factories

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "bridge" / "web"


def _names(node: ast.AST) -> set[str]:
    out = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            out.add(n.id)
        elif isinstance(n, ast.Attribute):
            out.add(n.attr)
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Name):
            out.add(n.func.id)
    return out


def test_web_never_compares_a_token_with_eq() -> None:
    """``==`` on secrets returns at the first differing byte (a timing oracle)."""
    offenders = []
    for path in WEB.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare) and any(
                    isinstance(op, ast.Eq | ast.NotEq | ast.In | ast.NotIn)
                    for op in node.ops):
                names = {n.lower() for n in _names(node)}
                if any(w in n for n in names for w in ("token", "secret", "csrf", "mac",
                                                       "cookie", "password", "auth")):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


@pytest.fixture
async def web_bridge(tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    from bridge.web import serve_web

    token = canary("admin")
    cfg = build_config(tmp_path, sandbox_channels(tmp_path), bridge_options={
        "web": {"listen": "127.0.0.1:0", "admin_token": "${ADMIN_TOKEN}"}},
        env={"ADMIN_TOKEN": token})
    async with running(cfg) as bridge:
        task = asyncio.create_task(serve_web(bridge))
        try:
            for _ in range(200):
                if bridge.services.web_url:
                    break
                await asyncio.sleep(0.05)
            yield bridge.services.web_url, token
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_admin_token_checked_with_compare_digest(
        web_bridge: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    url, token = web_bridge
    calls: list[tuple[bytes | str, bytes | str]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    async with aiohttp.ClientSession() as http:
        async def admin(headers: dict[str, str]) -> str:
            async with http.get(f"{url}/admin", headers=headers,
                                allow_redirects=False) as r:
                return f"{r.status} {await r.text()}"

        good = await admin({"Authorization": f"Bearer {token}"})
        assert good.startswith("200") and "csrf" in good.lower()
        assert any(token.encode() in (a, b) or token in (a, b) for a, b in calls)
        # The form first: five wrong tokens in a row (the loop below) throttle the
        # address, after which even the right token is refused unread (429).
        async with http.post(f"{url}/admin/login", data={"token": token[:-1] + "x"},
                             allow_redirects=False) as r:
            assert r.status == 303 and "error" in r.headers["Location"]
        async with http.post(f"{url}/admin/login", data={"token": token},
                             allow_redirects=False) as r:
            assert r.status == 303 and token not in r.headers.get("Set-Cookie", "")
        for wrong in (token[:-1] + "x", token[:-1], token + "x", "", token.upper()):
            calls.clear()
            page = await admin({"Authorization": f"Bearer {wrong}"})
            assert "csrf" not in page.lower(), f"admin page shown for {wrong!r}"
            if wrong:
                assert calls, "the wrong token was not compared with compare_digest"


# ----------------------------------------------------- world-readable config files

ACCOUNTS: dict[str, dict[str, Any]] = {
    "mastodon": {"base_url": "https://masto.example", "access_token": "x"},
    "twitter": {"consumer_key": "x", "consumer_secret": "x", "access_token": "x",
                "access_token_secret": "x", "bearer_token": "x"},
    "matrix": {"homeserver": "https://matrix.example", "user_id": "@bot:matrix.example",
               "access_token": "x", "password": "x", "as_token": "x", "hs_token": "x"},
    "email": {"address": "bot@example.org",
              "imap": {"host": "imap.example.org", "port": 993, "username": "bot",
                       "password": "x"},
              "smtp": {"host": "smtp.example.org", "port": 465, "username": "bot",
                       "password": "x"}},
}
CHANNELS = {"mastodon": {"hashtag": "kmers"}, "twitter": {"query": "#kmers"},
            "matrix": {"room": "!room:matrix.example"}, "email": {"list": "k@lists.example"}}


def _fields() -> list[tuple[str, str]]:
    factories = load_factories().factories
    return sorted((p, f) for p in ACCOUNTS if p in factories
                  for f in factories[p].secret_fields)


def _config(tmp_path: Path, platform: str, field: str, value: str) -> dict[str, Any]:
    table: dict[str, Any] = {"platform": platform}
    for k, v in ACCOUNTS[platform].items():
        table[k] = dict(v) if isinstance(v, dict) else v
    # Every credential from the environment except the one under test, inline.
    for f in load_factories().factories[platform].secret_fields:
        node, *rest = f.split(".")
        if rest:
            table[node][rest[0]] = "${OTHER_SECRET}"
        else:
            table[f] = "${OTHER_SECRET}"
    node, *rest = field.split(".")
    if rest:
        table[node][rest[0]] = value
    else:
        table[field] = value
    return {"bridge": {"data_dir": str(tmp_path / "data")},
            "accounts": {"acct": table, "sb": {"platform": "sandbox",
                                               "dir": str(tmp_path / "net")}},
            "communities": [{"name": "k", "hashtag": "kmers", "channels": [
                {"account": "acct", **CHANNELS[platform]},
                {"account": "sb", "network": "lobby"}]}]}


async def _check(path: Path, env: dict[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        str(ROOT / ".venv/bin/python"), "-m", "bridge.cli", "check", "-c", str(path),
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


# Nested fields (email's imap.password) included: fixed in the core by 0ffcb21.
@pytest.mark.parametrize(("platform", "field"), _fields())
def test_world_readable_config_with_inline_secret_refused(
        tmp_path: Path, platform: str, field: str) -> None:
    secret = canary(f"{platform}.{field}", plain=True)
    path = tmp_path / "hashbridge.toml"
    path.write_text(to_toml(_config(tmp_path, platform, field, secret)))
    env = {"OTHER_SECRET": canary("other", plain=True)}
    path.chmod(0o600)
    load(str(path), load_factories(), env)
    path.chmod(0o604)  # readable by others only
    with pytest.raises(ConfigError) as e:
        load(str(path), load_factories(), env)
    text = "\n".join(e.value.errors)
    assert "readable by every user" in text and secret not in text


async def test_cli_refuses_world_readable_config_end_to_end(tmp_path: Path) -> None:
    """``hashbridge check`` on a 0644 file with a Mastodon token inline: exit 78, one
    clear line with the fix, the token not echoed; 0600 passes."""
    secret = canary("mastodon.access_token", plain=True)
    path = tmp_path / "hashbridge.toml"
    path.write_text(to_toml(_config(tmp_path, "mastodon", "access_token", secret)))
    env = {"OTHER_SECRET": canary("other", plain=True)}
    path.chmod(0o644)
    code, out = await _check(path, env)
    assert code == EXIT_CONFIG, out
    assert f"chmod o-rwx {path}" in out and "readable by every user" in out
    assert "Traceback" not in out and secret not in out
    path.chmod(0o600)
    code, out = await _check(path, env)
    assert code == 0 and "configuration is valid" in out, out


async def test_world_readable_config_without_inline_secrets_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "hashbridge.toml"
    raw = _config(tmp_path, "mastodon", "access_token", "${MASTO_TOKEN}")
    path.write_text(to_toml(raw))
    path.chmod(0o644)
    code, out = await _check(path, {"MASTO_TOKEN": canary("m", plain=True),
                                    "OTHER_SECRET": canary("o", plain=True)})
    assert code == 0, out
