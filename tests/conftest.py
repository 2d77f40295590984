"""Fixtures every platform's end-to-end tests share (and a server that never answers, for
the checks' timeouts)."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from adapters.sandbox import SandboxPlatform
from bridge.store.postgresql.testserver import PgServer, pg_bindir


@pytest.fixture
async def lobby(tmp_path: Path) -> AsyncIterator[SandboxPlatform]:
    """A sandbox network, "lobby", the other side of a platform under test."""
    net = SandboxPlatform(str(tmp_path / "networks"), "lobby")
    await net.start()
    yield net
    await net.stop()


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    """The session's PostgreSQL server (Debian's, started once on 127.0.0.1, run as an
    unprivileged user when we are root).  ``PGPASSFILE`` points at its password file,
    so the bridge, a CLI subprocess and the tests log in as an operator's would."""
    try:
        import psycopg  # noqa: F401 - the backend's driver
    except ImportError:
        pytest.skip("psycopg is not installed: pip install -e '.[postgresql]'")
    if pg_bindir() is None:
        pytest.skip("PostgreSQL is not installed: apt-get install postgresql")
    server = PgServer()
    server.start()
    before = os.environ.get("PGPASSFILE")
    os.environ.update(server.client_env())
    try:
        yield server
    finally:
        server.cleanup()
        if before is None:
            os.environ.pop("PGPASSFILE", None)
        else:
            os.environ["PGPASSFILE"] = before


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts connections and never says a word."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
                held.append(conn)
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        t.join(2)
        for c in held:
            c.close()
        srv.close()
