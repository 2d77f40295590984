"""The ``catchup_window`` scenario every network's tests run: history made before the
bridge's first start, inside and outside the window, relayed (or not) to a sandbox
network; a second start relays nothing again."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from adapters.sandbox import SandboxPlatform
from bridge.daemon.harness import ChannelDef, build_config, eventually, quiescent, running

PostAt = Callable[[str, str, float, str | None], Awaitable[str]]
"""Post as member *author* the *text*, dated *at* (Unix seconds), as a reply to the
native id given (or None); return its native id."""

WINDOW = 3600.0


def catchup_config(tmp: Path, channel: ChannelDef, window: float | None = WINDOW) -> Any:
    """The network's channel (with ``catchup_window`` = *window* when not None)
    bridged to the sandbox network ``lobby``."""
    opts = dict(channel.channel_options)
    if window is not None:
        opts["catchup_window"] = window
    lobby = ChannelDef("sb_lobby", "sandbox", {"dir": str(tmp / "networks")},
                       {"network": "lobby"}, {"direction": "both"})
    return build_config(tmp, [lobby, ChannelDef(channel.account, channel.platform,
                                                channel.account_table, channel.channel_table,
                                                opts)])


async def bridged(lobby: SandboxPlatform) -> list[Any]:
    return [m for m in await lobby.messages() if m.by_bridge and not m.deleted]


async def _count(lobby: SandboxPlatform, n: int) -> list[Any] | None:
    got = await bridged(lobby)
    return got if len(got) >= n else None


async def first_start_relays_the_window(post_at: PostAt, channel: ChannelDef,
                                        lobby: SandboxPlatform, tmp: Path, *,
                                        ages: Sequence[float] = (7200.0, 1800.0, 1200.0),
                                        while_down: PostAt | None = None) -> None:
    """Posts dated *ages* seconds ago: the first (older than the window) is not
    relayed, the next two (a question and its answer) are, oldest first and
    threaded; after a restart nothing is relayed again and a post made while the
    bridge was down is (resumed from the cursor)."""
    now = time.time()
    too_old, q_age, a_age = ages
    await post_at("olga", "too old to relay", now - too_old, None)
    q = await post_at("hana", "Q1 which tools do you use", now - q_age, None)
    await post_at("ivan", "A1 a notebook", now - a_age, q)
    # Old too, but it came in last (a mail moved into the box late, say): its own
    # date, not its place, says it is outside the window.
    await post_at("olga", "too old as well, arrived late", now - too_old, None)
    cfg = catchup_config(tmp, channel)
    async with running(cfg, timeout=60.0) as bridge:
        await eventually(lambda: _count(lobby, 2), 60.0, "the window's two posts relayed")
        await quiescent(bridge, timeout=60.0)
    first = await bridged(lobby)
    assert [("Q1" in m.text, "A1" in m.text) for m in first] == [(True, False), (False, True)], \
        [m.text for m in first]
    assert first[1].reply_to == first[0].native_id, "the answer is threaded under Q1"
    assert not any("too old" in m.text for m in first)
    post = while_down or post_at
    await post("hana", "Q2 while the bridge was down", time.time(), None)
    async with running(cfg, timeout=60.0) as bridge:
        await eventually(lambda: _count(lobby, 3), 60.0, "the post made while down")
        await quiescent(bridge, timeout=60.0)
    again = await bridged(lobby)
    assert [m.native_id for m in again[:2]] == [m.native_id for m in first]
    assert len(again) == 3 and "Q2" in again[2].text, [m.text for m in again]
    assert not any("too old" in m.text for m in again)
