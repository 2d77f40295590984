"""Mastodon.py's exceptions mapped onto the core's three kinds of failure."""

from __future__ import annotations

import time

from mastodon import (
    MastodonAPIError,
    MastodonError,
    MastodonNetworkError,
    MastodonNotFoundError,
    MastodonRatelimitError,
    MastodonServerError,
    MastodonUnauthorizedError,
)

from bridge.contract.adapter import AuthError, PermanentError, TransientError


class Gone(PermanentError):
    """404: the status (or reply target) does not exist (any more)."""


def map_error(exc: MastodonError, retry_at: float | None) -> Exception:
    """Mastodon.py's exceptions into the core's three kinds of failure."""
    if isinstance(exc, MastodonRatelimitError):
        wait = max(0.0, retry_at - time.time()) if retry_at else None
        return TransientError("rate limited (429)", retry_after=wait)
    if isinstance(exc, MastodonUnauthorizedError):
        return AuthError("access token refused (401)")
    if isinstance(exc, MastodonNotFoundError):
        return Gone(_reason(exc) or "not found (404)")
    if isinstance(exc, MastodonServerError | MastodonNetworkError):
        return TransientError(f"server or network error: {_reason(exc) or exc}")
    if isinstance(exc, MastodonAPIError):
        status = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else 0
        if status == 403:
            return AuthError(f"forbidden (403): {_reason(exc)}")
        if status == 429 or status >= 500:
            return TransientError(f"HTTP {status}: {_reason(exc)}")
        return PermanentError(f"HTTP {status}: {_reason(exc)}")
    return TransientError(str(exc))


def _reason(exc: MastodonError) -> str:
    """The server's own ``error`` text (Mastodon.py puts it last in args)."""
    return str(exc.args[3]) if len(exc.args) > 3 and exc.args[3] else ""
