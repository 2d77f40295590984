"""config/example.toml documents the Bluesky keys, and the block is valid once
uncommented; the account and channel keys are validated with clear errors."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from adapters.bluesky import BlueskyFactory
from adapters.bluesky.config import BlueskyAccount, BlueskyChannel
from bridge.runtime.config import load
from bridge.runtime.registry import load_factories

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "example.toml"
ENV = {v: "t0k3n-for-tests-4821" for v in (
    "HASHBRIDGE_ADMIN_TOKEN", "MASTODON_TOKEN", "X_BEARER_TOKEN", "X_CONSUMER_KEY",
    "X_CONSUMER_SECRET", "X_ACCESS_TOKEN", "X_ACCESS_TOKEN_SECRET", "MATRIX_TOKEN",
    "IMAP_PASSWORD", "SMTP_PASSWORD", "BSKY_APP_PASSWORD")}


def test_example_bluesky_block_is_valid_and_documents_every_key(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    start = text.index("# [accounts.bsky]")
    end = text.index("# ----", start)
    live = text[:start] + re.sub(r"^# ?", "", text[start:end], flags=re.M) + text[end:]
    tail = live.rindex("# [[communities.channels]]")
    live = live[:tail] + re.sub(r"^# ?", "", live[tail:], flags=re.M)
    path = tmp_path / "example.toml"
    path.write_text(live)
    path.chmod(0o600)
    registry = load_factories()
    if "bluesky" not in registry.factories:
        pytest.skip("the bluesky adapter is not installed (pip install -e '.[bluesky]')")
    cfg = load(str(path), registry, ENV)
    assert [c.account for c in cfg.all_channels()][-1] == "bsky"
    block = text[start:end] + text[tail:]
    missing = [k for m in (BlueskyAccount, BlueskyChannel) for k in m.model_fields
               if k not in text]
    assert not missing, f"config/example.toml does not document: {missing}"
    assert "app password" in block.lower()


@pytest.mark.parametrize(("key", "value", "says"), [
    ("firehose", "https://bsky.network", "wss://"),
    ("firehose", "wss://bsky.network/xrpc/other", "subscribeRepos"),
    ("service", "bsky.social", "https://"),
    ("handle", "kmbridge", "bsky.social"),
])
def test_bad_account_keys_say_what_to_fix(key: str, value: str, says: str) -> None:
    base = {"handle": "kmbridge.bsky.social", "app_password": "x"}
    with pytest.raises(ValidationError) as exc:
        BlueskyAccount(**(base | {key: value}))
    assert says in str(exc.value)


def test_channel_tag() -> None:
    assert BlueskyChannel(hashtag="#KMers").hashtag == "KMers"
    with pytest.raises(ValidationError):
        BlueskyChannel(hashtag="two words")


def test_no_local_pds_is_said_plainly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("HASHBRIDGE_BLUESKY_DIR", str(tmp_path / "absent"))
    caplog.set_level(logging.INFO, "hashbridge.adapter.bluesky")
    assert BlueskyFactory().sandbox(str(tmp_path)) is None
    assert "not installed" in caplog.text and "scripts/test.sh" in caplog.text
    # what the demo prints on screen, with --no-install or when npm is missing
    why = BlueskyFactory().sandbox_missing()
    assert f"not installed in {tmp_path / 'absent'}" in why
    assert "`hashbridge demo` installs it on first use" in why
