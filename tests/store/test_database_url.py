"""``[bridge] database``: parsed and checked by ``hashbridge check``, used by the bridge."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sandboxconfig import two_sandboxes

from bridge.contract.model import Author, ChannelKey, NativeId, Posted
from bridge.contract.richtext import RichText
from bridge.daemon.harness import build_config, running, sandbox_channels
from bridge.runtime.config import EXIT_CONFIG, ConfigError, load, redact_url
from bridge.runtime.registry import load_factories
from bridge.store.backends import open_store

CONFIG = two_sandboxes(bridge="{database}")


def write(tmp_path: Path, database: str | None) -> str:
    p = tmp_path / "cfg.toml"
    p.write_text(CONFIG.format(database="" if database is None else
                               f"database = {database!r}".replace("'", '"')))
    p.chmod(0o600)
    return str(p)


def errors(tmp_path: Path, database: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load(write(tmp_path, database), load_factories(), env or {})
    return [x for x in e.value.errors if x.startswith("bridge.database")]


def test_default_is_the_sqlite_file_in_the_data_dir(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, None), load_factories(), {})
    assert cfg.database.scheme == "sqlite"
    assert cfg.database.path == str(tmp_path / "data" / "hashbridge.sqlite")


def test_sqlite_urls_absolute_and_relative(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, f"sqlite://{tmp_path}/elsewhere/db.sqlite"), load_factories(), {})
    assert cfg.database.path == str(tmp_path / "elsewhere" / "db.sqlite")
    cfg = load(write(tmp_path, "sqlite:store/db.sqlite"), load_factories(), {})
    assert cfg.database.path == str(tmp_path / "store" / "db.sqlite")  # next to the config
    assert str(cfg.database) == f"sqlite://{tmp_path}/store/db.sqlite"


@pytest.mark.parametrize(("url", "says"), [
    ("mysql://u@h/db", "unknown database scheme 'mysql'; supported: sqlite://, postgresql://"),
    ("postgresql://bridge@db.example/", "names no database"),
    ("postgresql://bridge@db.example", "names no database"),
    ("sqlite://db.example/x.sqlite", "a SQLite database is a file on this machine"),
    ("sqlite:///tmp/x.sqlite?mode=ro", "SQLite takes no options"),
    ("sqlite:///tmp/dir/", "names no file"),
    ("sqlite::memory:", "in-memory database would lose everything"),
    ("/var/lib/hashbridge/db.sqlite", "has no scheme"),
])
def test_bad_urls_say_what_to_write(tmp_path: Path, url: str, says: str) -> None:
    [line] = errors(tmp_path, url)
    assert says in line, line


def test_an_inline_password_is_refused_and_never_shown(tmp_path: Path) -> None:
    [line] = errors(tmp_path, "postgresql://bridge:hunter2@db.example/hashbridge")
    assert "hunter2" not in line
    assert "postgresql://bridge:***@db.example/hashbridge" in line
    assert "holds a password inline" in line and "PGPASSWORD" in line and ".pgpass" in line
    # as a libpq option too
    [line] = errors(tmp_path, "postgresql://bridge@db.example/hb?sslmode=require&password=pw9")
    assert "pw9" not in line and "password=***" in line and "holds a password inline" in line
    # from the environment too (the whole URL in a variable)
    [line] = errors(tmp_path, "${DATABASE_URL}",
                    {"DATABASE_URL": "postgresql://u:s3cr3t@h/db"})
    assert "s3cr3t" not in line and "holds a password inline" in line
    assert redact_url("postgresql://u:p%40ss@h:5432/db?x=1") == "postgresql://u:***@h:5432/db?x=1"
    assert redact_url("sqlite:///a/b.sqlite") == "sqlite:///a/b.sqlite"
    assert redact_url("postgresql://u@h/db?password=x&sslmode=require") == \
        "postgresql://u@h/db?password=***&sslmode=require"


def test_postgresql_urls_are_accepted(tmp_path: Path) -> None:
    for url in ("postgresql://bridge@db.example/hashbridge",
                "postgres://bridge@db.example:6432/hashbridge?sslmode=verify-full",
                "postgresql:///hashbridge?host=/run/postgresql"):
        cfg = load(write(tmp_path, url), load_factories(), {})
        assert cfg.database.scheme == "postgresql"
        assert cfg.database.path == url and str(cfg.database) == url


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})


def test_check_shows_the_database_and_refuses_bad_ones(tmp_path: Path) -> None:
    res = run_cli("check", "-c", write(tmp_path, "sqlite:db/bridge.sqlite"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert f"database: sqlite://{tmp_path}/db/bridge.sqlite" in res.stdout
    res = run_cli("check", "-c", write(tmp_path, "postgresql://u:pw-123@h/db"), cwd=tmp_path)
    assert res.returncode == EXIT_CONFIG
    assert "bridge.database:" in res.stderr and "holds a password inline" in res.stderr
    assert "pw-123" not in res.stderr + res.stdout


async def test_the_bridge_keeps_its_data_where_database_says(tmp_path: Path) -> None:
    where = tmp_path / "db-elsewhere" / "bridge.sqlite"
    cfg = build_config(tmp_path, sandbox_channels(tmp_path),
                       bridge_options={"database": f"sqlite://{where}"})
    event = Posted(channel=ChannelKey("kmers/sb_lobby"), native_id=NativeId("m1"),
                   author=Author(platform="sandbox", handle="alice"),
                   text=RichText.plain("hello"))
    async with running(cfg) as bridge:
        await bridge.ingest("sb_lobby", [event], ("seq", "1"))
    assert where.exists()
    assert not (tmp_path / "data" / "hashbridge.sqlite").exists()
    store = await open_store(cfg.database, must_exist=True)
    try:
        assert await store.run(lambda tx: tx.get_cursor("sb_lobby", "seq")) == "1"
        assert [p.text for p in await store.run(lambda tx: tx.recent_posts("kmers"))] == \
            [RichText.plain("hello")]
    finally:
        await store.close()
