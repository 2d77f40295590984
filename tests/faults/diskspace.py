"""A small filesystem the tests can fill: a tmpfs mounted for one test, and a
ballast file written until the kernel says ENOSPC.

Mounting needs root (as here and in CI).  Without it, :func:`mount_or_reason`
tells whether the test can re-run itself in a user namespace (``unshare -rm``,
where it is root of its own mount namespace) or must be skipped, and why.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

IN_USERNS = "HASHBRIDGE_TEST_IN_USERNS"


def _mount(where: Path, size: str) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                    str(where)], check=True, capture_output=True, timeout=30)


def _umount(where: Path) -> None:
    for attempt in range(20):
        done = subprocess.run(["umount", str(where)], capture_output=True, timeout=30)
        if done.returncode == 0:
            return
        if attempt == 19:  # busy: detach it rather than leave it behind
            subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)
        else:
            time.sleep(0.25)


def can_mount(scratch: Path) -> bool:
    probe = scratch / "mount-probe"
    probe.mkdir(exist_ok=True)
    try:
        _mount(probe, "1m")
    except (subprocess.CalledProcessError, FileNotFoundError, PermissionError):
        return False
    _umount(probe)
    return True


def userns_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    done = subprocess.run(["unshare", "-rm", "sh", "-c",
                           "mount -t tmpfs -o size=1m tmpfs /mnt 2>/dev/null || "
                           "mount -t tmpfs -o size=1m tmpfs /tmp"],
                          capture_output=True, timeout=30)
    return done.returncode == 0


@contextlib.contextmanager
def small_fs(where: Path, size: str = "16m") -> Iterator[Path]:
    """A tmpfs of *size* at *where*, unmounted on the way out whatever happened."""
    where.mkdir(parents=True, exist_ok=True)
    _mount(where, size)
    try:
        yield where
    finally:
        _umount(where)


def delegated_to_userns(request: pytest.FixtureRequest, scratch: Path) -> bool:
    """False when this process may mount a tmpfs (run the test here).  Otherwise
    run the test again inside ``unshare -rm`` (its own user and mount namespace,
    where it is root), fail if it failed there and return True (nothing more to
    do here); skip only when neither is possible."""
    if can_mount(scratch):
        return False
    if os.environ.get(IN_USERNS):
        pytest.skip("cannot mount a tmpfs even inside a user namespace")
    if not userns_works():
        pytest.skip("disk-full tests need a small filesystem to fill: not root (mount -t "
                    "tmpfs refused) and user namespaces unavailable (unshare -rm failed)")
    nodeid = request.node.nodeid
    done = subprocess.run(
        ["unshare", "-rm", sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
         nodeid], cwd=str(request.config.rootpath), env={**os.environ, IN_USERNS: "1"},
        capture_output=True, text=True, timeout=1800)
    summary = done.stdout.strip().splitlines()[-1:] or [""]
    assert done.returncode == 0, f"the test failed inside unshare -rm:\n{done.stdout[-6000:]}"
    if " passed" not in summary[0]:
        pytest.skip(f"skipped inside the user namespace: {summary[0]}")
    return True


class Ballast:
    """A file that takes every free byte of a filesystem, until :meth:`free`."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "ballast"
        self.size = 0

    def fill(self) -> int:
        """Write until ENOSPC (the last bytes page by page); return the size."""
        with open(self.path, "ab", buffering=0) as f:
            for chunk in (1 << 20, 64 << 10, 4 << 10, 512):
                block = b"\xa5" * chunk
                while True:
                    try:
                        self.size += f.write(block)
                    except OSError as e:
                        if e.errno != errno.ENOSPC:
                            raise
                        break
        return self.size

    def top_up(self) -> int:
        """Take whatever was freed since (a deleted temp file): keep it full."""
        return self.fill()

    def free(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.size = 0


def free_bytes(directory: Path) -> int:
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize
