"""Helpers for the email adapter tests (fixtures are in conftest.py).

Real mail servers for the email adapter tests.

Each test gets its own Dovecot (IMAP + LMTP) and aiosmtpd mini list: Dovecot is ready in
~30 ms, so a fresh server per test costs less than the isolation is worth (restarts,
UIDVALIDITY changes and maildir assertions cannot leak between tests).  Tests skip with
the reason when dovecot is not installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from adapters.email.adapter import EmailAdapter
from adapters.email.config import EmailAccount, EmailChannel
from adapters.email.sandbox import EmailSandbox
from bridge.contract.adapter import ChannelSpec, Health, Rendered, SendCreate
from bridge.contract.model import Author, ChannelKey, DeliveryId, NativeId, Post, PostId
from bridge.contract.testing import FakeContext
from bridge.contract.textconv import from_plain, to_html, to_plain

CHANNEL = ChannelKey("kmers/mail")

needs_dovecot = pytest.mark.skipif(
    bool(EmailSandbox.available()),
    reason=EmailSandbox.available() or "dovecot present")


def make_channel(sb: EmailSandbox, **opts: Any) -> ChannelSpec:
    return ChannelSpec(key=CHANNEL, community="kmers", hashtag="kmers", direction="both",
                       options=EmailChannel(**{**sb.channel_config(), **opts}))


def make_adapter(sb: EmailSandbox, data_dir: Path, *, account: dict[str, Any] | None = None,
                 **channel_opts: Any) -> tuple[EmailAdapter, FakeContext]:
    acc = EmailAccount(**{**sb.account_config(), **(account or {})})
    spec = make_channel(sb, **channel_opts)
    data_dir.mkdir(parents=True, exist_ok=True)
    return EmailAdapter(acc, (spec,)), FakeContext([spec], name="mail",
                                                   data_dir=str(data_dir))


class Running:
    """An adapter's run() as a task, with a restart that keeps the context (cursors)."""

    def __init__(self, adapter: EmailAdapter, ctx: FakeContext) -> None:
        self.adapter, self.ctx = adapter, ctx
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self.adapter.run(self.ctx))
        async with asyncio.timeout(60):
            while self.ctx.health is not Health.CONNECTED \
                    or self.adapter.cursor_name not in self.ctx.cursors:
                if self.task.done():
                    self.task.result()
                await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            # Shutdown is cancellation: an adapter that does not stop promptly is a bug.
            done, _ = await asyncio.wait({self.task}, timeout=5)
            if not done:
                buf = io.StringIO()
                for tk in asyncio.all_tasks():
                    if tk is not asyncio.current_task():
                        buf.write(f"-- {tk!r:.200}\n")
                        tk.print_stack(limit=8, file=buf)
                raise AssertionError("adapter did not stop within 5 s of cancellation\n"
                                     + buf.getvalue())
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None


def make_op(text: str, *, key: str, author: str = "Alice", platform: str = "mastodon",
            reply_to: str | None = None, parent_subject: str = "") -> SendCreate:
    rt = from_plain(text)
    post = Post(id=PostId("01J" + key.upper()[:20]), community="kmers",
                origin_channel=ChannelKey("kmers/masto"), origin_native_id=NativeId(key),
                permalink=f"https://masto.test/@alice/{key}",
                author=Author(platform=platform, handle="@alice@masto.test",
                              display_name=author), text=rt)
    return SendCreate(delivery_id=DeliveryId(key), idempotency_key=key, channel=CHANNEL,
                      post=post, rendered=Rendered(text=rt, plain=to_plain(rt),
                                                   html=to_html(rt), markdown=text),
                      reply_to=NativeId(reply_to) if reply_to else None,
                      parent_subject=parent_subject)


async def wait_until(pred: Callable[[], Any], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        # Polls state outside our control (a maildir, another task's cursor).
        while not pred():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
