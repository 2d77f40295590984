"""``catchup_window``: one key for every network, per channel over per account over
the default (3600 s); Matrix's account key keeps its old place; bad values are
refused by ``hashbridge check`` with the key's path."""

from __future__ import annotations

from pathlib import Path

import pytest
from sandboxconfig import two_sandboxes
from test_config import errors_of, run_cli, write

from bridge.runtime.config import EXIT_CONFIG, load
from bridge.runtime.registry import load_factories


def _windows(tmp_path: Path, text: str) -> dict[str, float]:
    cfg = load(write(tmp_path, text), load_factories(), {})
    return {spec.key: spec.catchup_window
            for account in cfg.accounts for spec in cfg.channel_specs(account)}


def test_catchup_window_channel_beats_account_beats_default(tmp_path: Path) -> None:
    assert _windows(tmp_path, two_sandboxes()) == {"kmers/a": 3600.0, "kmers/b": 3600.0}
    by_account = two_sandboxes().replace('platform = "sandbox"\ndir', 'platform = "sandbox"\n'
                                         'catchup_window = 600\ndir', 1)
    assert _windows(tmp_path, by_account) == {"kmers/a": 600.0, "kmers/b": 3600.0}
    both = by_account.replace('network = "lobby"', 'network = "lobby"\ncatchup_window = 0')
    assert _windows(tmp_path, both) == {"kmers/a": 0.0, "kmers/b": 3600.0}
    only_channel = two_sandboxes(garden="catchup_window = 7200")
    assert _windows(tmp_path, only_channel) == {"kmers/a": 3600.0, "kmers/b": 7200.0}


def test_catchup_window_matrix_account_key_keeps_its_place(tmp_path: Path) -> None:
    registry = load_factories()
    if "matrix" not in registry.factories:
        pytest.skip("the Matrix adapter is not installed")
    text = two_sandboxes() + """
[accounts.mx]
platform = "matrix"
homeserver = "https://matrix.example"
user_id = "@kmbridge:matrix.example"
access_token = "${MATRIX_TOKEN}"
catchup_window = 900

[[communities.channels]]
account = "mx"
room = "#kmers:matrix.example"
"""
    cfg = load(write(tmp_path, text), registry, {"MATRIX_TOKEN": "t0k3n-for-tests-4821"})
    assert [s.catchup_window for s in cfg.channel_specs("mx")] == [900.0]


@pytest.mark.parametrize(("value", "message"), [
    ("-5", "communities[0].channels[1].catchup_window: must be at least 0 (got -5)"),
    ('"an hour"', "communities[0].channels[1].catchup_window: must be a number "
                  "(got 'an hour')"),
    ("5000000", "communities[0].channels[1].catchup_window: must be at most 2592000"),
])
def test_catchup_window_bad_values_are_refused(tmp_path: Path, value: str,
                                               message: str) -> None:
    errors = errors_of(tmp_path, two_sandboxes(garden=f"catchup_window = {value}"))
    assert any(e.startswith(message) for e in errors), errors


def test_catchup_window_bad_account_value_refused_by_check(tmp_path: Path) -> None:
    text = two_sandboxes().replace('platform = "sandbox"\ndir', 'platform = "sandbox"\n'
                                   'catchup_window = -1\ndir', 1)
    res = run_cli("check", "-c", write(tmp_path, text), cwd=tmp_path)
    assert res.returncode == EXIT_CONFIG
    assert "accounts.a.catchup_window: must be at least 0 (got -1)" in res.stderr, res.stderr
