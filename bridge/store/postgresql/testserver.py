"""A private PostgreSQL server for tests, benches and the fault suite.

:class:`PgServer` runs Debian's PostgreSQL (``initdb`` + ``pg_ctl``) on 127.0.0.1 on a
free port, in a temporary data dir, with its Unix socket in that dir too.  PostgreSQL
refuses to run as root, so when we are root the server runs as the ``postgres`` user
(or ``nobody``) through ``runuser``, the data dir owned by it.

Connections authenticate with a password (``scram-sha-256`` on loopback), given the
way an operator would: a ``.pgpass``-style file (:attr:`PgServer.passfile`), which
:meth:`PgServer.client_env` points ``PGPASSFILE`` at.  Nothing here is imported by the
backend itself.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SUPERUSER = "hashbridge_admin"
PASSWORD = "test-only-secret"  # a throwaway server on loopback


def pg_bindir() -> str | None:
    """Where ``initdb``, ``pg_ctl`` and ``postgres`` are (``HASHBRIDGE_PG_BIN`` wins;
    else ``pg_config --bindir``, else Debian's newest ``/usr/lib/postgresql/N/bin``);
    None when PostgreSQL is not installed."""
    env = os.environ.get("HASHBRIDGE_PG_BIN")
    if env:
        return env if os.path.exists(os.path.join(env, "initdb")) else None
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if found:
        return os.path.dirname(found[-1])
    if (pg_config := shutil.which("pg_config")) is not None:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                 check=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None
        if os.path.exists(os.path.join(out, "initdb")):
            return out
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_user() -> pwd.struct_passwd | None:
    """The unprivileged user the server runs as when we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists "
                       "to run PostgreSQL as")


class PgServer:
    """One PostgreSQL instance; :meth:`start`, :meth:`stop`, and the crash helpers the
    fault suite uses (:meth:`kill`, :meth:`restart`)."""

    def __init__(self, bindir: str | None = None, base: str | None = None) -> None:
        got = bindir or pg_bindir()
        if got is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
        self.bindir = got
        self.base = Path(tempfile.mkdtemp(prefix="hashbridge-pg-", dir=base))
        self.data = self.base / "data"
        self.sockets = self.base / "run"
        self.log = self.base / "server.log"
        self.passfile = self.base / "pgpass"
        self.port = 0
        self.host = "127.0.0.1"
        self._user = _server_user()

    # -- running things as the server's user
    def _cmd(self, *args: str) -> list[str]:
        if self._user is None:
            return list(args)
        return ["runuser", "-u", self._user.pw_name, "--", *args]

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(self._cmd(*args), capture_output=True, text=True,
                              timeout=timeout, cwd=str(self.base))
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({done.returncode}):\n"
                               f"{done.stdout}\n{done.stderr}\n{self._log_tail()}")
        return done

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def _own(self, path: Path) -> None:
        if self._user is not None:
            os.chown(path, self._user.pw_uid, self._user.pw_gid)

    def init(self) -> None:
        """``initdb`` a fresh cluster: password authentication on loopback, trust only
        on the private socket (for :meth:`admin_url`'s superuser)."""
        self.base.chmod(0o755)
        self.sockets.mkdir(mode=0o755)
        self._own(self.sockets)
        pw = self.base / "initpw"
        pw.write_text(PASSWORD + "\n")
        self._own(pw)
        self._own(self.base)
        self._run(f"{self.bindir}/initdb", "-D", str(self.data), "-U", SUPERUSER,
                  "--auth-host=scram-sha-256", "--auth-local=trust", "--pwfile", str(pw),
                  "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
        pw.unlink()
        # Whoever runs the tests reads this; the server never does.
        self.passfile.write_text(f"127.0.0.1:*:*:{SUPERUSER}:{PASSWORD}\n"
                                 f"localhost:*:*:{SUPERUSER}:{PASSWORD}\n")
        self.passfile.chmod(0o600)
        if self._user is not None:
            self.passfile.chmod(0o600)

    def start(self, port: int | None = None) -> None:
        """Start (``pg_ctl start -w``) on *port* (a free one the first time)."""
        if not self.data.exists():
            self.init()
        for attempt in range(5):
            self.port = port or self.port or free_port()
            opts = (f"-c listen_addresses={self.host} -p {self.port} "
                    f"-c unix_socket_directories={self.sockets} "
                    # A test server: durability against an OS crash is not under test
                    # (a killed server is: its WAL is in the page cache).
                    "-c fsync=off -c full_page_writes=off -c max_connections=300 "
                    "-c shared_buffers=64MB")
            try:
                self._run(f"{self.bindir}/pg_ctl", "-D", str(self.data), "-l", str(self.log),
                          "-o", opts, "-w", "-t", "60", "start")
                return
            except RuntimeError:
                if port is not None or attempt == 4:
                    raise
                self.port = 0  # the free port was taken meanwhile: pick another

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m`` *mode* (``fast``, or ``immediate``: a crash)."""
        if self.data.exists() and (self.data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._run(f"{self.bindir}/pg_ctl", "-D", str(self.data), "-m", mode, "-w",
                          "-t", "60", "stop")

    def kill(self) -> None:
        """SIGKILL the postmaster (its children exit as it is gone): a crash."""
        pid_file = self.data / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int(pid_file.read_text().splitlines()[0])
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)

    def restart(self) -> None:
        self.stop()
        self.start(self.port)

    def cleanup(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)

    # -- what clients need
    def url(self, dbname: str, user: str = SUPERUSER) -> str:
        """A ``postgresql://`` URL for *dbname* (no password: that is in :attr:`passfile`)."""
        return f"postgresql://{user}@{self.host}:{self.port}/{dbname}"

    def admin_url(self, dbname: str = "postgres") -> str:
        """The superuser over the private socket (trusted, no password)."""
        return f"postgresql://{SUPERUSER}@/{dbname}?host={self.sockets}&port={self.port}"

    def client_env(self) -> dict[str, str]:
        """Environment variables a client (or a ``hashbridge`` subprocess) connects with."""
        return {"PGPASSFILE": str(self.passfile)}

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run *sql* as the superuser through ``psql`` (for set-up, not for the store)."""
        done = subprocess.run(
            [f"{self.bindir}/psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", str(self.sockets), "-p", str(self.port), "-U", SUPERUSER, "-d", dbname,
             "-c", sql], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr.strip()}")
        return done.stdout

    def create_database(self, name: str) -> str:
        """A fresh empty database; its URL."""
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        with contextlib.suppress(RuntimeError):
            self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
