"""Config validation: every error at once, with its key path and a hint."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sandboxconfig import two_sandboxes

from bridge.runtime.config import EXIT_CONFIG, ConfigError, load
from bridge.runtime.registry import load_factories

GOOD = two_sandboxes(garden='direction = "out"')


def write(tmp_path: Path, text: str) -> str:
    p = tmp_path / "cfg.toml"
    p.write_text(text)
    p.chmod(0o600)
    return str(p)


def errors_of(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load(write(tmp_path, text), load_factories(), env or {})
    return e.value.errors


def test_good_config_loads(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, GOOD), load_factories(), {})
    assert [c.key for c in cfg.all_channels()] == ["kmers/a", "kmers/b"]
    assert cfg.channel("kmers/b").writes and not cfg.channel("kmers/b").reads


def test_malformed_toml_names_the_line(tmp_path: Path) -> None:
    [err] = errors_of(tmp_path, "[bridge\ndata_dir = 1")
    assert "not valid TOML" in err and "line 1" in err


def test_all_errors_at_once_with_paths_and_suggestions(tmp_path: Path) -> None:
    text = GOOD.replace('dir = "nets"\n\n[accounts.b]', 'dri = "nets"\n\n[accounts.b]')
    text = text.replace('account = "b"', 'acount = "b"')
    text = text.replace('platform = "sandbox"\ndir = "nets"\n\n[[', 'platform = "sandbx"\n\n[[')
    text += '\n[[communities]]\nname = "solo"\nhashtag = "solo"\n[[communities.channels]]\n' \
            'account = "nobody"\nnetwork = "x"\n'
    errs = errors_of(tmp_path, text)
    joined = "\n".join(errs)
    assert "accounts.a.dri: unknown key (did you mean 'dir'?)" in joined
    assert "accounts.a.dir: required" not in joined  # the typo is the one message
    assert "accounts.b.platform: no adapter named 'sandbx' (did you mean 'sandbox'?)" in joined
    assert "communities[0].channels[1].acount: unknown key (did you mean 'account'?)" in joined
    assert "communities[0].channels[1].account: required" not in joined
    assert "communities[1].channels: a community needs at least two channels" in joined
    assert "communities[1].channels[0].account: no account named 'nobody'" in joined
    assert len(errs) == 5  # one message per root cause


def test_missing_environment_variable_is_named(tmp_path: Path) -> None:
    text = GOOD.replace('dir = "nets"', 'dir = "${NETS_DIR}"', 1)
    [err] = errors_of(tmp_path, text)
    assert err == "accounts.a.dir: environment variable NETS_DIR is not set (export NETS_DIR=...)"
    cfg = load(write(tmp_path, text), load_factories(), {"NETS_DIR": "/tmp/x"})
    assert cfg.accounts["a"].options.dir == "/tmp/x"  # type: ignore[attr-defined]


def test_unknown_section_and_bad_values(tmp_path: Path) -> None:
    text = GOOD.replace('data_dir = "data"', 'data_dir = "data"\nlog_level = "loud"') + \
        "\n[brdige]\n"
    errs = "\n".join(errors_of(tmp_path, text))
    assert "brdige: unknown section (did you mean 'bridge'?)" in errs
    assert "bridge.log_level:" in errs


def test_write_only_community_is_an_error(tmp_path: Path) -> None:
    text = GOOD.replace('network = "lobby"', 'network = "lobby"\ndirection = "out"')
    assert any("no channel reads" in e for e in errors_of(tmp_path, text))


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})


def test_cli_exit_code_and_message_for_config_errors(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("acount", "x").replace('account = "b"', 'account = "zz"'))
    res = run_cli("check", "-c", path, cwd=tmp_path)
    assert res.returncode == EXIT_CONFIG
    assert "communities[0].channels[1].account: no account named 'zz'" in res.stderr
    assert "Nothing was started" in res.stderr
    res = run_cli("run", "-c", str(tmp_path / "missing.toml"), cwd=tmp_path)
    assert res.returncode == EXIT_CONFIG and "no such file" in res.stderr


def test_cli_check_describes_channels(tmp_path: Path) -> None:
    res = run_cli("check", "-c", write(tmp_path, GOOD), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "kmers/a: reads and writes sandbox lobby via account a" in res.stdout
    assert "kmers/b: writes sandbox garden" in res.stdout


def test_corrupt_database_is_a_clear_error(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "hashbridge.sqlite").write_bytes(b"garbage" * 1000)
    res = run_cli("status", "-c", path, cwd=tmp_path)
    assert res.returncode == 74
    assert "database:" in res.stderr and "backup" in res.stderr


def test_example_config_is_valid_and_documents_every_key(tmp_path: Path) -> None:
    example = Path(__file__).parents[2] / "config" / "example.toml"
    registry = load_factories()
    text = example.read_text()
    env = {v: "t0k3n-for-tests-4821" for v in (
        "HASHBRIDGE_ADMIN_TOKEN", "MASTODON_TOKEN", "X_BEARER_TOKEN", "X_CONSUMER_KEY",
        "X_CONSUMER_SECRET", "X_ACCESS_TOKEN", "X_ACCESS_TOKEN_SECRET", "MATRIX_TOKEN",
        "IMAP_PASSWORD", "SMTP_PASSWORD")}
    platforms = {"mastodon", "twitter", "matrix", "email"}
    if not platforms <= set(registry.factories):
        pytest.skip(f"adapters not installed: {platforms - set(registry.factories)}")
    cfg = load(str(example), registry, env)
    assert len(cfg.all_channels()) == 4
    from bridge.runtime.config import BridgeSettings, ChannelCommon, CommunityCommon, WebSettings
    models = [BridgeSettings, WebSettings, ChannelCommon, CommunityCommon]
    models += [f.account_model for n, f in registry.factories.items() if n in platforms]
    models += [f.channel_model for n, f in registry.factories.items() if n in platforms]
    missing = [f"{m.__name__}.{k}" for m in models for k in m.model_fields
               if k not in text]
    assert not missing, f"config/example.toml does not document: {missing}"


def test_world_readable_file_with_inline_secret_is_refused(tmp_path: Path) -> None:
    registry = load_factories()
    from bridge.contract.testing import FakeFactory

    class SecretFake(FakeFactory):
        secret_fields = frozenset({"display_name"})

    reg = type(registry)({**registry.factories, "fake": SecretFake()})
    text = GOOD.replace('platform = "sandbox"\ndir = "nets"',
                        'platform = "fake"\ndisplay_name = "s3cr3t-value"', 1)
    text = text.replace('network = "lobby"', 'spot = "lobby"')
    path = write(tmp_path, text)
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="readable by every user"):
        load(path, reg, {})
    os.chmod(path, 0o600)
    assert load(path, reg, {}).secrets == frozenset({"s3cr3t-value"})


def test_nested_secret_fields_are_known_secrets_and_checked(tmp_path: Path) -> None:
    base = load_factories()
    if "email" not in base.factories:
        pytest.skip("email adapter not installed")
    text = """
[accounts.mail]
platform = "email"
address = "kmbridge@example.org"
imap = { host = "imap.example.org", port = 993, username = "kmbridge", password = "h2-imap-pw" }
smtp = { host = "smtp.example.org", port = 587, username = "kmbridge", password = "changeme" }
[accounts.b]
platform = "sandbox"
dir = "nets"
[[communities]]
name = "kmers"
hashtag = "kmers"
[[communities.channels]]
account = "mail"
list = "kmers@lists.example.org"
[[communities.channels]]
account = "b"
network = "garden"
"""
    errs = errors_of(tmp_path, text)
    assert any(e.startswith("accounts.mail.smtp.password: 'changeme' looks like a placeholder")
               for e in errs), errs
    path = write(tmp_path, text.replace('"changeme"', '"s3cond-smtp-pw"'))
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="readable by every user"):
        load(path, base, {})
    os.chmod(path, 0o600)
    cfg = load(path, base, {})
    assert {"h2-imap-pw", "s3cond-smtp-pw"} <= cfg.secrets
