"""What a host meets in the first hour at the command line: ``--version``, ``status``
before the first run, unknown channel names, ``check --online`` against a server
that accepts and never answers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sandboxconfig import two_sandboxes

SANDBOXES = two_sandboxes()


def cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          env={k: v for k, v in os.environ.items()
                               if k not in ("IMAP_PASSWORD",)})


def config(tmp_path: Path, text: str = SANDBOXES) -> str:
    p = tmp_path / "c.toml"
    p.write_text(text)
    p.chmod(0o600)
    return str(p)


def test_version(tmp_path: Path) -> None:
    res = cli("--version", cwd=tmp_path)
    assert res.returncode == 0
    assert res.stdout.startswith("hashbridge ")


def test_status_before_the_first_run_says_not_started_yet(tmp_path: Path) -> None:
    c = config(tmp_path)
    res = cli("status", "-c", c, cwd=tmp_path)
    assert res.returncode == 3, res.stdout + res.stderr
    assert res.stdout.startswith("not started yet: no database at ")
    res = cli("status", "-c", c, "--json", cwd=tmp_path)
    assert res.returncode == 3 and '"state": "not started"' in res.stdout


@pytest.mark.parametrize("args", [("preview", "hello", "--origin", "kmers/nope"),
                                  ("retry", "--channel", "kmers/nope"),
                                  ("preview", "hello", "--origin", "kmers/b2")])
def test_unknown_channel_names_are_refused_naming_the_known_ones(
        tmp_path: Path, args: tuple[str, ...]) -> None:
    res = cli(args[0], "-c", config(tmp_path), *args[1:], cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    assert f"no channel '{args[-1]}'" in res.stderr
    assert "the channels are: kmers/a, kmers/b" in res.stderr
    if args[-1] == "kmers/b2":
        assert "(did you mean 'kmers/b'?)" in res.stderr


def _mail(port: int, imap_timeout: float) -> str:
    return SANDBOXES.replace('[[communities]]', f'''
[accounts.mail]
platform = "email"
address = "bridge@example.org"

[accounts.mail.imap]
host = "127.0.0.1"
port = {port}
username = "bridge"
password = "pw-local"
security = "none"
timeout = {imap_timeout}

[accounts.mail.smtp]
host = "127.0.0.1"
port = {port}
security = "none"

[[communities]]''') + '\n[[communities.channels]]\naccount = "mail"\nlist = "k@lists.example"\n'


def test_online_check_of_a_silent_server_says_why_per_step(tmp_path: Path,
                                                           silent_server: int) -> None:
    res = cli("check", "-c", config(tmp_path, _mail(silent_server, 2)), "--online",
              cwd=tmp_path)
    out = res.stdout
    assert res.returncode == 1, out + res.stderr
    assert "account mail (email): checking" in out
    assert (f"FAILED: IMAP 127.0.0.1:{silent_server}: no answer within 2s (connected, but "
            "the server never greeted or replied") in out
    assert "  kmers/mail: will read and write k@lists.example\n"\
           "    (not checked: the account did not log in)" in out
    assert "account a (sandbox): ok" in out and "  kmers/a: will read and write lobby" in out
    assert "online check: 1 account FAILED" in out


def test_online_check_says_what_each_channel_will_read_and_write(tmp_path: Path) -> None:
    """The channels are asked of the platform, not read from the config: a network
    with messages, one created at start, and a file that is no network (FAILED, exit 1);
    nothing is created by the check."""
    from adapters.sandbox.network import Network

    nets = tmp_path / "nets"
    nets.mkdir()
    net = Network(str(nets / "lobby.sqlite"))
    net.post("alice", "hello")
    net.post("bob", "hi")
    net.close()
    c = config(tmp_path)
    res = cli("check", "-c", c, "--online", cwd=tmp_path)
    out = res.stdout
    assert res.returncode == 0, out + res.stderr
    assert "  kmers/a: will read and write lobby\n"\
           f"    reads: network lobby (2 messages in {nets}/lobby.sqlite)\n"\
           "    writes: posts as hashbridge\n" in out
    assert "  kmers/b: will read and write garden\n"\
           f"    reads: network garden (new: {nets}/garden.sqlite is created at start)" in out
    assert not (nets / "garden.sqlite").exists()
    assert "online check: every account logged in, every channel checked usable" in out

    (nets / "garden.sqlite").write_text("not a database, but long enough to be read as one")
    res = cli("check", "-c", c, "--online", cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    assert f"    FAILED: {nets}/garden.sqlite is not a sandbox network (" in res.stdout
    assert "move it away or name another network" in res.stdout
    assert "online check: 1 account FAILED (an account that cannot log in, or a channel it "\
           "cannot use)" in res.stdout


def test_online_check_is_bounded_per_account_with_a_reason(tmp_path: Path,
                                                           silent_server: int) -> None:
    res = cli("check", "-c", config(tmp_path, _mail(silent_server, 60)), "--online",
              "--timeout", "2", cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "account mail: FAILED: no answer within 2s (the server may accept connections "\
           "and never reply" in res.stdout


def test_readme_command_table_lists_every_verb() -> None:
    from bridge.cli.main import build_parser
    from bridge.runtime.registry import load_factories

    commands = [c for f in load_factories().factories.values() for c in f.cli_commands()]
    parser = build_parser(commands)
    sub = next(a for a in parser._actions if a.dest == "command")
    verbs = sorted(sub.choices)  # type: ignore[arg-type]
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme[readme.index("| command | what it does |"):]
    table = table[:table.index("\n\n")]
    missing = [v for v in verbs if f"`hashbridge {v}" not in table]
    assert not missing, f"README's command table lacks {missing}"
    assert "`hashbridge --version`" in table
    assert {"export", "matrix-registration", "demo", "check"} <= set(verbs)
