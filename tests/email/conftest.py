"""Real mail servers for the email adapter tests.

Each test gets its own Dovecot (IMAP + LMTP) and aiosmtpd mini list: Dovecot is ready in
~30 ms, so a fresh server per test costs less than the isolation is worth (restarts,
UIDVALIDITY changes and maildir assertions cannot leak between tests).  Tests skip with
the reason when dovecot is not installed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from mailhelp import Running

from adapters.email.adapter import EmailAdapter
from adapters.email.sandbox import EmailSandbox
from bridge.contract.testing import FakeContext


@pytest.fixture
async def mail(tmp_path: Path) -> AsyncIterator[EmailSandbox]:
    reason = EmailSandbox.available()
    if reason:
        pytest.skip(reason)
    sb = EmailSandbox(tmp_path / "mail")
    await sb.start()
    try:
        yield sb
    finally:
        await sb.stop()


@pytest.fixture
async def running() -> AsyncIterator[Callable[..., Any]]:
    """``await running(adapter, ctx)`` starts run() as a task; all stop at teardown."""
    started: list[Running] = []

    async def start(adapter: EmailAdapter, ctx: FakeContext) -> Running:
        r = Running(adapter, ctx)
        await r.start()
        started.append(r)
        return r

    yield start
    for r in reversed(started):
        await r.stop()
