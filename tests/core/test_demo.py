"""``hashbridge demo`` as a new host runs it: every platform relays, a network that
cannot start says why on screen, and no child process outlives the demo (the end,
a sandbox failing, Ctrl-C)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from adapters.email.testserver import dovecot_binary, pymap_missing
from adapters.matrix.testserver import synapse_python


def _env(marker: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ, HASHBRIDGE_TEST_MARKER=marker, **extra)
    return env


def survivors(marker: str, workdir: Path | None = None) -> list[str]:
    """Processes that carry the test's marker in their environment or the demo's
    workdir on their command line (Dovecot's master re-execs with a clean env)."""
    found = []
    me = os.getpid()
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == me:
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if (f"HASHBRIDGE_TEST_MARKER={marker}".encode() in environ
                or (workdir is not None and str(workdir).encode() in cmdline)):
            found.append(f"{pid}: {cmdline.decode(errors='replace')[:200]}")
    return found


def _demo(args: list[str], env: dict[str, str], cwd: Path,
          timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge.cli", "demo", *args],
                          env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _gone(marker: str, workdir: Path | None = None, wait: float = 10) -> list[str]:
    deadline = time.monotonic() + wait
    while (left := survivors(marker, workdir)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


@pytest.mark.timeout(900)
def test_fresh_machine_demo_relays_on_all_five_and_leaves_nothing_running(
        tmp_path: Path) -> None:
    """The README's first command on a machine without Dovecot, Synapse or the Bluesky
    PDS: the email sandbox runs on pymap, Synapse and the PDS are installed on first
    use (progress lines with their time), all five platforms relay, nothing survives."""
    if pymap_missing():
        pytest.fail(f"the demo extra is part of [test]: {pymap_missing()}")
    if shutil.which("npm") is None:
        pytest.fail("npm (Node.js) is part of every machine here; the PDS comes from it")
    marker = uuid.uuid4().hex
    env = _env(marker, HASHBRIDGE_DOVECOT="none",
               HASHBRIDGE_SYNAPSE_VENV=str(tmp_path / ".venv-synapse"),
               HASHBRIDGE_BLUESKY_DIR=str(tmp_path / ".bluesky"))
    env.pop("SYNAPSE_PYTHON", None)
    res = _demo(["--for", "20", "--port", "0", "--workdir", str(tmp_path / "w")], env,
                tmp_path)
    out = res.stdout
    assert res.returncode == 0, out[-4000:] + res.stderr[-4000:]
    assert "Matrix: installing Synapse into" in out
    assert "Synapse installed in" in out
    assert "Bluesky: installing Node 22" in out and "Bluesky PDS installed in" in out
    lines = ["X          emulator", "Mastodon   emulator", "Matrix     real server (Synapse)",
             "Email      real IMAP server (pymap) + SMTP list (aiosmtpd)",
             "Bluesky    real server (the reference Bluesky PDS"]
    for line in lines:
        assert line in out, out
    assert f"across {len(lines)} networks" in out and "0 lost, 0 duplicated" in out, out
    assert "NOT IN THE DEMO" not in out
    assert "X cannot edit: kept the first text" in out
    assert "(yet)" not in out and "delete (Bluesky) followed" in out
    assert _gone(marker, tmp_path / "w") == []


def test_demo_says_why_a_network_cannot_start_and_stops_the_others(tmp_path: Path) -> None:
    """Email's server dies at start and Synapse is absent with --no-install: both say
    why and what to install on screen; X and Mastodon still relay; the mail list
    and every other sandbox are stopped."""
    marker = uuid.uuid4().hex
    env = _env(marker, HASHBRIDGE_DOVECOT="/bin/false",
               SYNAPSE_PYTHON=str(tmp_path / "no-such-python"))
    res = _demo(["--for", "1", "--port", "0", "--no-install", "--skip", "bluesky", "--workdir",
                 str(tmp_path / "w")], env, tmp_path, timeout=300)
    out = res.stdout
    assert res.returncode == 0, out[-4000:] + res.stderr[-4000:]
    assert "Email: cannot start: dovecot exited" in out
    assert "Matrix: cannot start: Synapse is not installed" in out
    assert "let `hashbridge demo` install it" in out
    assert "run without --no-install to install it" in out
    assert "across 2 networks" in out and "0 lost, 0 duplicated" in out
    assert "matrix not in the demo: Synapse is not installed" in out
    assert _gone(marker, tmp_path / "w") == []


def test_demo_skip_is_the_one_word_opt_out(tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    res = _demo(["--for", "1", "--port", "0", "--skip", "matrix", "--skip", "email",
                 "--skip", "matrx", "--workdir", str(tmp_path / "w")], _env(marker), tmp_path,
                timeout=300)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    assert "--skip matrx: no such platform (the platforms: twitter, mastodon, matrix, email" \
        in res.stdout
    assert "matrix not in the demo: skipped (--skip)" in res.stdout
    assert "Synapse" not in res.stdout
    assert _gone(marker, tmp_path / "w") == []


@pytest.mark.timeout(600)
def test_ctrl_c_stops_every_sandbox_process(tmp_path: Path) -> None:
    """SIGINT while the relay runs and the script plays (real Synapse and a real IMAP
    server up): the demo exits and no server it started survives."""
    if synapse_python() is None:
        pytest.fail("Synapse is part of the test setup (scripts/test.sh)")
    marker = uuid.uuid4().hex
    work = tmp_path / "w"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge.cli", "demo", "--port", "0", "--workdir", str(work)],
        env=_env(marker), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("relay running with"):
                break  # every server is up; the script is being played
        else:
            pytest.fail("".join(lines[-80:]))
        servers = [p for p in survivors(marker, work) if "synapse" in p or "pymap" in p
                   or "dovecot" in p]
        assert servers, "the servers should be running now"
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, rest[-3000:]
    assert _gone(marker, work) == []
    if dovecot_binary():
        assert not any("dovecot" in p for p in survivors(marker, work))


@pytest.mark.timeout(600)
def test_ctrl_c_while_the_sandboxes_start_stops_the_ones_already_up(tmp_path: Path) -> None:
    """SIGINT as soon as the first local server process exists, before the relay
    runs: the servers already started (and the one starting) are stopped."""
    if synapse_python() is None:
        pytest.fail("Synapse is part of the test setup (scripts/test.sh)")
    marker = uuid.uuid4().hex
    work = tmp_path / "w"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge.cli", "demo", "--port", "0", "--workdir", str(work)],
        env=_env(marker), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    try:
        deadline = time.monotonic() + 120
        while not [p for p in survivors(marker, work)
                   if any(s in p for s in ("synapse", "pymap", "dovecot"))]:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "relay running with" not in out, "the signal should come during start-up"
    assert _gone(marker, work) == [], out[-3000:]
