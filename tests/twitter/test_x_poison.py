"""Poison pills from X: a post the bridge cannot read costs that post only.

The real relay (bridge.daemon.harness) between a sandbox network and the X emulator;
the emulator serves some posts with malformed fields (``wire_overrides``) and
one longer than X allows.  Each is recorded as a rejection with its reason (it
used to be dropped without a trace, or relayed), the posts around it are
relayed, the poller stays connected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adapters.sandbox import SandboxPlatform
from adapters.twitter.convert import MAX_POST_CHARS
from adapters.twitter.sandbox import TwitterSandbox
from bridge.contract.adapter import Health
from bridge.daemon.harness import ChannelDef, build_config, eventually, running, sandbox_channels

MALFORMED: list[dict[str, Any]] = [
    # entity offsets of the wrong type: sorting them raised TypeError
    {"entities": {"hashtags": [{"start": "0", "end": 6, "tag": "kmers"},
                               {"start": 7, "end": 9, "tag": "x"}]}},
    # referenced_tweets not a list of objects
    {"referenced_tweets": 7},
    # attachments of the wrong shape
    {"attachments": {"media_keys": 3}},
]


async def test_malformed_and_oversized_posts_are_recorded_and_cost_only_themselves(
        xbox: TwitterSandbox, lobby: SandboxPlatform, tmp_path: Path) -> None:
    cfg = build_config(tmp_path, [*sandbox_channels(tmp_path, ["lobby"]),
                                  ChannelDef("x", "twitter", xbox.account_config(),
                                             xbox.channel_config())])
    st = xbox.emulator.state
    async with running(cfg) as bridge:
        rt = bridge.accounts["x"]
        await eventually(lambda: _true(rt.health == Health.CONNECTED), 20, "connected")
        # One search page: good posts around the poison.
        await xbox.post_as_member("alice", "before the poison #kmers")
        bad = {}
        for fields in MALFORMED:
            t = st.create(st.user("mallory"), "odd post #kmers")
            t.wire_overrides.update(fields)
            bad[t.id] = "unreadable"
        huge = st.create(st.user("mallory"), "#kmers " + "a" * MAX_POST_CHARS)
        bad[huge.id] = "too large"
        await xbox.post_as_member("bob", "after the poison #kmers")

        async def texts() -> list[str]:
            return [m.text for m in await lobby.messages() if m.by_bridge]

        await eventually(lambda: _has(texts(), "before the poison", "after the poison"), 30,
                         "the good posts on the lobby")

        async def recorded() -> dict[str, tuple[str, str]] | None:
            rows = await bridge.store.run(lambda tx: tx.c.execute(
                "SELECT native_id, kind, reason FROM rejections").fetchall())
            got = {nid: (kind, reason) for nid, kind, reason in rows}
            return got if len(got) >= len(bad) else None

        got = await eventually(recorded, 30, "the rejections")
        assert {nid: kind for nid, (kind, _) in got.items()} == bad
        assert got[huge.id][1] == (f"too large: {MAX_POST_CHARS + 7:,} characters "
                                   f"(X posts are at most {MAX_POST_CHARS:,})")
        assert not any("odd post" in t for t in await texts())
        assert rt.health == Health.CONNECTED and rt.restarts == []


async def _true(value: bool) -> bool:
    return value


async def _has(coro: Any, *words: str) -> bool:
    found = await coro
    return all(any(w in t for t in found) for w in words)
