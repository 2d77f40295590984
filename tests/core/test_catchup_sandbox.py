"""``catchup_window`` on the sandbox network: its first start reads the posts made
within the window (by their time), not the whole history as it used to."""

from __future__ import annotations

from pathlib import Path

from catchupkit import first_start_relays_the_window

from adapters.sandbox import SandboxPlatform
from bridge.daemon.harness import ChannelDef


async def test_catchup_window_relays_the_last_hour_at_first_start(
        lobby: SandboxPlatform, tmp_path: Path) -> None:
    garden = SandboxPlatform(str(tmp_path / "networks"), "garden")
    await garden.start()
    try:
        async def post_at(author: str, text: str, at: float, reply_to: str | None) -> str:
            return str(garden.net.post(author, text, at=at,
                                       reply_to=int(reply_to) if reply_to else None))

        channel = ChannelDef("sb_garden", "sandbox", {"dir": str(tmp_path / "networks")},
                             {"network": "garden"})
        await first_start_relays_the_window(post_at, channel, lobby, tmp_path)
    finally:
        await garden.stop()
