"""``hashbridge matrix-registration -c FILE`` prints the homeserver's registration."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CONFIG = """
[accounts.mx]
platform = "matrix"
homeserver = "https://matrix.example"
user_id = "@kmbridge:matrix.example"
mode = "appservice"
as_token = "${AS_TOKEN}"
hs_token = "${HS_TOKEN}"
as_listen = "127.0.0.1:29331"

[accounts.lobby]
platform = "sandbox"
dir = "nets"

[[communities]]
name = "kmers"
hashtag = "kmers"
[[communities.channels]]
account = "mx"
room = "#kmers:matrix.example"
[[communities.channels]]
account = "lobby"
network = "lobby"
"""


def test_registration_command_prints_yaml_with_namespace(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG)
    res = subprocess.run(
        [sys.executable, "-m", "bridge.cli", "matrix-registration", "-c", str(cfg)],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "AS_TOKEN": "as-4f8e2a91c7", "HS_TOKEN": "hs-93b1d07e55",
             "PYTHONPATH": str(Path(__file__).parents[2])})
    assert res.returncode == 0, res.stderr
    body = "\n".join(line for line in res.stdout.splitlines() if not line.startswith("#"))
    reg = json.loads(body)  # JSON is valid YAML
    assert reg["as_token"] == "as-4f8e2a91c7" and reg["hs_token"] == "hs-93b1d07e55"
    assert reg["url"] == "http://127.0.0.1:29331"
    assert reg["namespaces"]["users"] == [{"exclusive": True, "regex": r"@hb_.*:matrix\.example"}]


def test_registration_command_explains_when_no_appservice_account(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG.replace('mode = "appservice"',
                                  'mode = "relay"\naccess_token = "t0k-91x"'))
    cfg.chmod(0o600)  # an inline secret: the file must not be world-readable
    res = subprocess.run(
        [sys.executable, "-m", "bridge.cli", "matrix-registration", "-c", str(cfg)],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "AS_TOKEN": "a", "HS_TOKEN": "b",
             "PYTHONPATH": str(Path(__file__).parents[2])})
    assert res.returncode == 1 and "no matrix account has mode" in res.stderr
