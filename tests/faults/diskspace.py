"""A small filesystem the tests can fill: a tmpfs mounted for one test, and a
ballast file written until the kernel answers ENOSPC.

Mounting needs root (as here and in CI).  Without it the tmpfs is mounted in a
user namespace of its own (``unshare -rm``: this user is root of a private
mount namespace there), held open by a sleeping process:

* processes that must see it as a normal directory (the bridge, ``hashbridge
  status``, SQLite) run inside with ``nsenter`` (:attr:`SmallFs.prefix`);
* the test itself writes its ballast and reads files through the holder's
  root, ``/proc/PID/root/...`` (:attr:`SmallFs.path`); SQLite cannot use
  that path (it resolves the symlink), hence the subprocesses;
* tests that use the store in-process re-run themselves inside ``unshare -rm``
  (:func:`delegated_to_userns`).

Only when neither works is the test skipped, with the reason.
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
from dataclasses import dataclass, field
from pathlib import Path

import pytest

IN_USERNS = "HASHBRIDGE_TEST_IN_USERNS"
NO_FS = ("disk-full tests need a small filesystem to fill: not root (mount -t tmpfs "
         "refused) and no user namespace (unshare -rm failed)")


@dataclass(frozen=True)
class SmallFs:
    path: Path
    """Where this process reads and writes its files (not for SQLite)."""
    inner: Path
    """Where processes started with :attr:`prefix` see it (configs name this)."""
    prefix: list[str] = field(default_factory=list)
    """Command prefix for a process that must see the filesystem at :attr:`inner`."""


def _mount(where: Path, size: str) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                    str(where)], check=True, capture_output=True, timeout=30)


def _umount(where: Path) -> None:
    for attempt in range(20):
        done = subprocess.run(["umount", str(where)], capture_output=True, timeout=30)
        if done.returncode == 0:
            return
        if attempt == 19:  # still busy: detach it rather than leave it behind
            subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)
        else:
            time.sleep(0.25)


def _can_mount(scratch: Path) -> bool:
    probe = scratch / "mount-probe"
    probe.mkdir(parents=True, exist_ok=True)
    try:
        _mount(probe, "1m")
    except (subprocess.CalledProcessError, FileNotFoundError, PermissionError):
        return False
    _umount(probe)
    return True


@contextlib.contextmanager
def _userns_fs(where: Path, size: str) -> Iterator[SmallFs]:
    if shutil.which("unshare") is None or shutil.which("nsenter") is None:
        pytest.skip(NO_FS)
    holder = subprocess.Popen(
        ["unshare", "-rm", "sh", "-c",
         f'mount -t tmpfs -o size={size},mode=0755 tmpfs "$0" && echo ready && exec sleep 86400',
         str(where)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        if holder.stdout.readline().strip() != "ready":
            holder.wait(10)
            assert holder.stderr is not None
            pytest.skip(f"{NO_FS}: {holder.stderr.read()[-300:]}")
        yield SmallFs(path=Path(f"/proc/{holder.pid}/root") / where.relative_to("/"),
                      inner=where, prefix=["nsenter", "-t", str(holder.pid), "-U", "-m"])
    finally:
        # The tmpfs goes with its namespace once nothing uses it any more.
        holder.kill()
        holder.wait(10)


@contextlib.contextmanager
def small_fs(where: Path, size: str = "16m") -> Iterator[SmallFs]:
    """A tmpfs of *size* for one test: unmounted (or its namespace ended) on
    the way out, whatever happened."""
    where = where.absolute()
    where.mkdir(parents=True, exist_ok=True)
    if _can_mount(where.parent):
        _mount(where, size)
        try:
            yield SmallFs(path=where, inner=where)
        finally:
            _umount(where)
    else:
        with _userns_fs(where, size) as fs:
            yield fs


@contextlib.contextmanager
def mounted_here(where: Path, size: str = "16m") -> Iterator[Path]:
    """A tmpfs this process can use as an ordinary path (SQLite included);
    only when this process may mount (see :func:`delegated_to_userns`)."""
    where = where.absolute()
    where.mkdir(parents=True, exist_ok=True)
    _mount(where, size)
    try:
        yield where
    finally:
        _umount(where)


def delegated_to_userns(request: pytest.FixtureRequest, scratch: Path) -> bool:
    """False when this process may mount a tmpfs (run the test here).  Otherwise
    run the test again inside ``unshare -rm`` (root of its own user and mount
    namespace there), fail if it failed there and return True (nothing more to
    do here); skip when that is impossible too."""
    if _can_mount(scratch):
        return False
    if os.environ.get(IN_USERNS) or shutil.which("unshare") is None:
        pytest.skip(NO_FS)
    done = subprocess.run(
        ["unshare", "-rm", sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         request.node.nodeid], cwd=str(request.config.rootpath),
        env={**os.environ, IN_USERNS: "1"}, capture_output=True, text=True, timeout=1800)
    summary = (done.stdout.strip().splitlines() or [""])[-1]
    assert done.returncode == 0, f"the test failed inside unshare -rm:\n{done.stdout[-6000:]}"
    if " passed" not in summary:
        pytest.skip(f"inside unshare -rm: {summary}")
    return True


class Ballast:
    """A file that takes every free byte of a filesystem, until :meth:`free`."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "ballast"
        self.size = 0

    def fill(self) -> int:
        """Write until ENOSPC (the last bytes in small pieces); return the size."""
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
