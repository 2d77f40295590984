"""Control of a private Synapse homeserver for tests, the fault suite, benchmarks and
the demo sandbox (recipe: shared/notes/real-servers.md section 1).

Synapse runs from its own venv (``SYNAPSE_PYTHON``, else ``.venv-synapse`` in the
current directory or the source tree) so its pins never meet ours.  Everything
binds to 127.0.0.1 on a free port and lives in one directory.  Only
:func:`provision_synapse` installs anything (``hashbridge demo`` on first use).
"""

from __future__ import annotations

import base64
import ctypes
import hashlib
import hmac
import json
import os
import secrets
import signal
import socket
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
SERVER_NAME = "test.local"

# Every rc_* key that can matter to a bridge test, relaxed so bulk tests never
# meet a limit; the one default-limits test passes relaxed=False.
_RELAXED = {"per_second": 1000, "burst_count": 1000}
_RELAXED_LIMITS = {
    "rc_message": _RELAXED,
    "rc_registration": _RELAXED,
    "rc_login": {"address": _RELAXED, "account": _RELAXED, "failed_attempts": _RELAXED},
    "rc_joins": {"local": _RELAXED, "remote": _RELAXED},
    "rc_joins_per_room": _RELAXED,
    "rc_invites": {"per_room": _RELAXED, "per_user": _RELAXED, "per_issuer": _RELAXED},
    "rc_room_creation": _RELAXED,
    "rc_admin_redaction": _RELAXED,
    "rc_profile": _RELAXED,
    "rc_presence": {"per_user": _RELAXED},
    "rc_media_create": _RELAXED,
}
# Even with default message limits, setup (users, rooms) must not be throttled.
_SETUP_LIMITS = {k: v for k, v in _RELAXED_LIMITS.items() if k != "rc_message"}


SYNAPSE_REQUIREMENT = "matrix-synapse"


def synapse_venv() -> Path:
    """Where :func:`provision_synapse` installs Synapse: ``HASHBRIDGE_SYNAPSE_VENV``,
    else ``.venv-synapse`` in the current directory."""
    return Path(os.environ.get("HASHBRIDGE_SYNAPSE_VENV") or Path.cwd() / ".venv-synapse")


def synapse_python() -> str | None:
    """The interpreter of the Synapse venv, or None when it is not installed.

    ``SYNAPSE_PYTHON`` when set (only it), else the provisioning venv
    (:func:`synapse_venv`; only it when ``HASHBRIDGE_SYNAPSE_VENV`` names it), else
    ``<repo>/.venv-synapse``."""
    forced = os.environ.get("SYNAPSE_PYTHON")
    venv = str(synapse_venv() / "bin" / "python")
    candidates = [forced] if forced else [venv] if os.environ.get(
        "HASHBRIDGE_SYNAPSE_VENV") else [venv, str(REPO / ".venv-synapse" / "bin" / "python")]
    for py in candidates:
        if not Path(py).exists():
            continue
        probe = subprocess.run([py, "-c", "import synapse"], capture_output=True, timeout=60)
        if probe.returncode == 0:
            return py
    return None


def provision_synapse(progress: Callable[[str], None], target: Path | None = None) -> str:
    """Install Synapse into its own venv (:func:`synapse_venv`) and return its python.

    A first-use step of ``hashbridge demo``: a few minutes once, then reused.  Raises
    RuntimeError with pip's last lines when the install fails."""
    import sys

    target = target or synapse_venv()
    py = target / "bin" / "python"
    t0 = time.monotonic()
    progress(f"installing Synapse into {target} (first run only; a few minutes) ...")
    steps = [[sys.executable, "-m", "venv", str(target)],
             [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
              SYNAPSE_REQUIREMENT]]
    for cmd in steps:
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
            raise RuntimeError(f"installing Synapse failed ({' '.join(cmd[-2:])}): {tail}")
    probe = subprocess.run([str(py), "-c", "import synapse"], capture_output=True, text=True)
    if probe.returncode != 0:
        raise RuntimeError(f"Synapse installed but does not import: {probe.stderr[-300:]}")
    progress(f"Synapse installed in {time.monotonic() - t0:.0f}s; reused from now on")
    return str(py)


def _die_with_parent() -> None:
    """Linux: SIGTERM the server when the process that started it dies, so a killed
    test run leaves no homeserver behind (teardown that does not depend on us)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True, slots=True)
class RegisteredUser:
    user_id: str
    password: str
    access_token: str
    device_id: str


class SynapseServer:
    """One Synapse process.  ``start()`` blocks until ``/versions`` answers."""

    def __init__(self, workdir: str | Path, *, relaxed: bool = True,
                 appservice_files: tuple[str, ...] = (), python: str | None = None) -> None:
        self.dir = Path(workdir)
        self.relaxed = relaxed
        self.appservice_files = appservice_files
        self.python = python or synapse_python()
        self.port = free_port()
        self.secret = secrets.token_hex(16)
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_seconds = 0.0
        self._t0 = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.dir / "homeserver.log"

    def _write_config(self) -> Path:
        d = self.dir
        d.mkdir(parents=True, exist_ok=True)
        cfg: dict[str, object] = {
            "server_name": SERVER_NAME,
            "pid_file": str(d / "homeserver.pid"),
            "public_baseurl": f"{self.url}/",
            "listeners": [{
                "port": self.port, "bind_addresses": ["127.0.0.1"], "type": "http",
                "tls": False, "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }],
            "database": {"name": "sqlite3", "args": {"database": str(d / "homeserver.db")}},
            "log_config": str(d / "log.yaml"),
            "media_store_path": str(d / "media"),
            "signing_key_path": str(d / "signing.key"),
            "registration_shared_secret": self.secret,
            "macaroon_secret_key": self.secret + "m",
            "form_secret": self.secret + "f",
            "report_stats": False,
            "enable_metrics": False,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "federation_domain_whitelist": [],
            "presence": {"enabled": False},
            "bcrypt_rounds": 4,
            "max_upload_size": "10M",
            "app_service_config_files": list(self.appservice_files),
            **(_RELAXED_LIMITS if self.relaxed else _SETUP_LIMITS),
        }
        # JSON is valid YAML: no yaml dependency on our side.
        (d / "homeserver.yaml").write_text(json.dumps(cfg, indent=1))
        (d / "log.yaml").write_text(json.dumps({
            "version": 1,
            "formatters": {"precise": {"format": "%(asctime)s %(name)s %(levelname)s "
                                                  "%(request)s %(message)s"}},
            "handlers": {"file": {"class": "logging.FileHandler", "formatter": "precise",
                                  "filename": str(self.log_path)}},
            "root": {"level": "WARNING", "handlers": ["file"]},
            "disable_existing_loggers": False,
        }))
        key = d / "signing.key"
        if not key.exists():
            # The key file is one line; writing it saves the 3 s --generate-keys run.
            seed = base64.b64encode(os.urandom(32)).decode().rstrip("=")
            key.write_text(f"ed25519 a_test {seed}\n")
        return d / "homeserver.yaml"

    def start(self, timeout: float = 60.0) -> None:
        self.spawn()
        self.wait_ready(timeout)

    def spawn(self) -> None:
        """Start the process without waiting.  Call it from the main thread (e.g. the
        event loop's) so the server dies with us: PDEATHSIG fires when the forking
        *thread* exits, so it is only set from the main thread."""
        if self.python is None:
            raise RuntimeError("Synapse is not installed (set SYNAPSE_PYTHON)")
        cfg = self._write_config()
        self._t0 = time.monotonic()
        out = (self.dir / "stdout.log").open("ab")
        self.proc = subprocess.Popen(
            [self.python, "-m", "synapse.app.homeserver", "-c", str(cfg)],
            stdout=out, stderr=subprocess.STDOUT, cwd=self.dir,
            preexec_fn=_die_with_parent
            if threading.current_thread() is threading.main_thread() else None)
        out.close()

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until ``/versions`` answers (any thread); stop and raise on failure."""
        assert self.proc is not None, "spawn() first"
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Synapse exited with {self.proc.returncode}:\n"
                                   + self.log_tail())
            try:
                with urllib.request.urlopen(f"{self.url}/_matrix/client/versions", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                if time.monotonic() - self._t0 > timeout:
                    self.stop()
                    tail = self.log_tail()
                    raise RuntimeError("Synapse did not become ready:\n" + tail) from None
                time.sleep(0.05)
        self.startup_seconds = time.monotonic() - self._t0

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def restart(self) -> None:
        """Stop and start on the same port and data (a homeserver outage)."""
        self.stop()
        self.start()

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for p in (self.dir / "stdout.log", self.log_path):
            if p.exists():
                parts.append(f"--- {p.name}\n" + "\n".join(
                    p.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(parts)

    def rss_bytes(self) -> int:
        if self.proc is None:
            return 0
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    # ------------------------------------------------------------ admin API
    def register(self, localpart: str, password: str | None = None, *,
                 admin: bool = False) -> RegisteredUser:
        """Create a user through the shared-secret admin API (HMAC-SHA1)."""
        password = password or f"pw-{localpart}"
        api = f"{self.url}/_synapse/admin/v1/register"
        with urllib.request.urlopen(api, timeout=10) as r:
            nonce = json.load(r)["nonce"]
        mac = hmac.new(self.secret.encode(), digestmod=hashlib.sha1)
        mac.update(b"\x00".join([nonce.encode(), localpart.encode(), password.encode(),
                                 b"admin" if admin else b"notadmin"]))
        body = json.dumps({"nonce": nonce, "username": localpart, "password": password,
                           "admin": admin, "mac": mac.hexdigest()}).encode()
        req = urllib.request.Request(api, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            data = json.load(r)
        return RegisteredUser(data["user_id"], password, data["access_token"],
                              data["device_id"])

    def request(self, method: str, path: str, token: str,
                body: object = None) -> dict[str, Any]:
        """A raw client-server API call (tests that need what nio won't send)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path, data=data, method=method,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.load(r)  # type: ignore[no-any-return]
