"""The store's failures, as the core sees them, whatever the backend.

A backend maps its driver's errors to these (the SQLite one in
:mod:`bridge.store.sqlite.errors`), so no caller outside the backend package catches
a driver's exception type.
"""

from __future__ import annotations

from typing import Literal

FailureKind = Literal["full", "io_error", "locked", "unreachable", "read_only"]
"""Why a write could not go through *now*: no space left, a failing device,
another writer holding the lock (a busy database), or (a database server) the
server unreachable or restarting, or read-only for now (a primary being failed
over).  None of them says anything about the data; the same write succeeds once
the cause is gone."""


class StoreError(Exception):
    """The database cannot be used (corrupt, unwritable, unreachable) or a statement
    failed; the message says what to do."""


class SchemaError(StoreError):
    """The database was written by a newer hashbridge."""


class DiskFullError(StoreError):
    """No space left on the data dir's filesystem (at start-up)."""


class TransientStoreError(StoreError):
    """A write failed for a reason that goes away (see :data:`FailureKind`): the
    caller holds its work and tries again rather than give up on it or blame its
    input.  Inside a unit of work the store raises it from the statement that hit
    the failure; the writer then holds the whole batch and retries it."""

    def __init__(self, kind: FailureKind, message: str) -> None:
        super().__init__(message)
        self.kind: FailureKind = kind


__all__ = ["DiskFullError", "FailureKind", "SchemaError", "StoreError", "TransientStoreError"]
