"""X likes: each relayed post's ``like_count`` comes with the deletion re-check's
lookup (``public_metrics``), so no read is added or billed, and is counted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from test_adapter import CH, Clock, running
from test_x_e2e import bridged, config
from twitter_support import Running, make_spec

from adapters.sandbox import SandboxPlatform
from adapters.twitter.sandbox import TwitterSandbox
from bridge.contract.model import Deleted, Reacted
from bridge.daemon import harness


async def test_recheck_brings_like_counts_without_another_read(xemu: Running) -> None:
    clock = Clock()
    st = xemu.emu.state
    st.clock = clock
    spec = make_spec(recheck_after_hours=2)
    async with running(xemu, clock=clock, channels=(spec,)) as (ad, ctx):
        spec = ad.channels[CH]
        await ad.poll_once(spec)
        clock.now += 5
        posts = [st.create(st.user("alice"), f"#kmers number {i}") for i in range(3)]
        await ad.poll_once(spec)
        st.tweets[posts[0].id].likes = 7
        st.tweets[posts[2].id].deleted = True
        reads = st.reads
        clock.now += 2 * 3600
        assert await ad.recheck_deletions(spec) == 1
        assert st.reads - reads == 2  # the two live posts, once: the likes rode along
        likes = [e for e in ctx.events if isinstance(e, Reacted)]
        assert [(e.native_id, e.total, e.channel) for e in likes] == [(posts[0].id, 7, CH)]
        assert ctx.events[-1] == Deleted(channel=CH, native_id=posts[2].id)
        assert json.loads(ctx.cursors[f"relayed:{CH}"]) == []


async def test_likes_of_relayed_posts_are_counted(xbox: TwitterSandbox, lobby: SandboxPlatform,
                                                  tmp_path: Path) -> None:
    async with harness.running(config(xbox, tmp_path)) as bridge:
        nid = await xbox.post_as_member("alice", "#kmers A1: like this one")

        async def relayed() -> Any:
            return await bridged(lobby)
        await harness.eventually(relayed, timeout=60, what="the post relayed")
        xbox.emulator.state.tweets[nid].likes = 4
        post_id = (await bridge.store.run(lambda tx: tx.native_lookup("kmers/x", nid)))[0]

        async def counted() -> dict[str, int] | None:
            got = await bridge.store.run(lambda tx: tx.reaction_counts([post_id]))
            return got.get(post_id)
        assert await harness.eventually(counted, timeout=60, what="the likes counted") == \
            {"twitter": 4}
