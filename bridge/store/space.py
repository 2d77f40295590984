"""The data dir's filesystem: free space, and what a failed write means.

A full disk, a failing device and another writer holding the lock say nothing
about the data: the transaction is rolled back whole, and the same writes
succeed once the cause is gone.  The store therefore holds them and tries again
(see :class:`~bridge.store.sqlite.SqliteStore`) instead of failing its callers,
which would drop events or lose the record of a send.  A backend reports such a
failure as :class:`~bridge.store.errors.TransientStoreError`; the operating
system as ``OSError`` (``ENOSPC``, ``EIO``).
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

from bridge.store.errors import FailureKind, TransientStoreError

MIN_FREE_BYTES = 1 << 20
"""Below this much free space the bridge does not start, and held writes are
not tried again (each try would only fail, and churn the disk)."""

LOW_FREE_BYTES = 64 << 20
"""``hashbridge status`` calls the storage *low* below this."""

_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


@dataclass(frozen=True, slots=True)
class StorageState:
    """What the store's writer sees; ``state`` is ``ok``, ``full``, ``io_error``
    or ``locked`` (the last three: writes are held and retried)."""

    state: str = "ok"
    detail: str = ""
    since: float | None = None
    """Wall-clock time the writes started to fail."""
    held: int = 0
    """Units of work waiting to be written (approximate)."""
    checkpoint_error: str = ""
    """The background checkpointer's last failure, if it has not succeeded since."""

    @property
    def ok(self) -> bool:
        return self.state == "ok"

    def as_dict(self) -> dict[str, object]:
        return {"state": self.state, "detail": self.detail, "since": self.since,
                "held": self.held, "checkpoint_error": self.checkpoint_error}


def failure_kind(e: BaseException) -> FailureKind | None:
    """``full``, ``io_error`` or ``locked`` when *e* is a failed write that will
    succeed once its cause goes away; None for anything else (a bug, a
    constraint, a corrupt file)."""
    if isinstance(e, TransientStoreError):
        return e.kind
    if isinstance(e, OSError):
        if e.errno in _NO_SPACE:
            return "full"
        if e.errno == errno.EIO:
            return "io_error"
    return None


def free_space(path: str) -> tuple[int, int] | None:
    """(free, total) bytes on the filesystem holding *path* (or its nearest
    existing parent), as an unprivileged process may use them; None if unknown."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            return None
        probe = parent
    try:
        st = os.statvfs(probe)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


def human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover - the loop returns


def describe_free(path: str) -> str:
    """``"0 B free of 8.0 MiB"`` for log lines and errors."""
    got = free_space(path)
    if got is None:
        return "free space unknown"
    return f"{human(got[0])} free of {human(got[1])}"


def probe_write(directory: str, need: int = MIN_FREE_BYTES) -> None:
    """Write (and remove) *need* bytes in *directory*; raises ``OSError``
    (``ENOSPC``/``EDQUOT`` when there is no room, quotas included, which
    ``statvfs`` does not show)."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f".hashbridge-space-check.{os.getpid()}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        chunk = b"\0" * 65536
        left = need
        while left > 0:
            left -= os.write(fd, chunk[:left])
        os.fsync(fd)
    finally:
        os.close(fd)
        os.unlink(path)


def looks_writable(path: str, kind: str) -> bool:
    """Worth trying held writes again?  For a full disk only once there is room
    again; for the other kinds the backoff alone decides."""
    if kind != "full":
        return True
    got = free_space(path)
    return got is None or got[0] >= MIN_FREE_BYTES
