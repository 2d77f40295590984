"""``catchup_window`` on an email list: the first start reads the box from ``SEARCH
SINCE`` the window's day and keeps the mails whose INTERNALDATE is inside it."""

from __future__ import annotations

from pathlib import Path

from catchupkit import first_start_relays_the_window

from adapters.email.client import _parse_internaldate, imap_date
from adapters.email.sandbox import EmailSandbox
from adapters.sandbox import SandboxPlatform
from bridge.daemon.harness import ChannelDef


async def test_catchup_window_relays_the_last_hour_at_first_start(
        mail: EmailSandbox, lobby: SandboxPlatform, tmp_path: Path) -> None:
    async def post_at(author: str, text: str, at: float, reply_to: str | None) -> str:
        return await mail.post_as_member(author.title(), text, reply_to, at=at)

    async def now(author: str, text: str, at: float, reply_to: str | None) -> str:
        return await mail.post_as_member(author.title(), text, reply_to)

    channel = ChannelDef("mail", "email", mail.account_config(), mail.channel_config())
    await first_start_relays_the_window(post_at, channel, lobby, tmp_path, while_down=now)


def test_catchup_imap_dates_are_english_and_utc() -> None:
    assert imap_date(1_765_000_000.0) == "6-Dec-2025"
    assert _parse_internaldate("06-Dec-2025 06:46:40 +0100") == 1_765_000_000.0
    assert _parse_internaldate(" 6-Dec-2025 05:46:40 +0000") == 1_765_000_000.0
    assert _parse_internaldate("garbage") is None
