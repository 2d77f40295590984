"""``catchup_window`` on Mastodon: the first start reads the tag timeline from the
window's start (``min_id`` of that moment's snowflake), oldest first."""

from __future__ import annotations

from pathlib import Path

from catchupkit import first_start_relays_the_window

from adapters.mastodon.adapter import window_start_id
from adapters.mastodon.emulator.state import snowflake
from adapters.mastodon.sandbox import MastodonSandbox
from adapters.sandbox import SandboxPlatform
from bridge.daemon.harness import ChannelDef


async def test_catchup_window_relays_the_last_hour_at_first_start(
        masto: MastodonSandbox, lobby: SandboxPlatform, tmp_path: Path) -> None:
    emu = masto.emulator

    async def post_at(author: str, text: str, at: float, reply_to: str | None) -> str:
        emu.member(author, display_name=author.title())
        return emu.post(author, f"{text} #{masto.hashtag}", in_reply_to_id=reply_to, at=at).id

    channel = ChannelDef("masto", "mastodon", masto.account_config(), masto.channel_config())
    await first_start_relays_the_window(post_at, channel, lobby, tmp_path)


def test_catchup_window_start_id_is_the_snowflake_of_that_moment() -> None:
    at = 1_765_000_000.25
    start = int(window_start_id(at))
    assert start == 1_765_000_000_250 << 16
    assert int(snowflake(at - 0.001)) < start <= int(snowflake(at))
