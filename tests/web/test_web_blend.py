"""A blended event's posts on the partner's pages, page after page (the keyset
paging of the live page across both communities' posts)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from test_web_browser_blend import blended

from bridge.daemon.harness import quiescent
from bridge.web.site import Site


async def test_the_partners_posts_are_paged_in_order(tmp_path: Path) -> None:
    async with blended(tmp_path) as (bridge, _url, nets):
        order = []
        for i, net in enumerate(["lobby", "yard", "garden", "porch", "yard", "lobby", "porch"]):
            await nets[net].post_as_member("alice", f"post {i} from {net}")
            await quiescent(bridge, timeout=30)  # one at a time: a known order
            order.append(f"post {i} from {net}")
        site = Site(bridge)
        for community in ("kmers", "pkmchat"):
            seen: list[str] = []
            before = None
            while True:
                cards = await site.cards(community, limit=3, before=before)
                if not cards:
                    break
                seen = [c.html for c in cards] + seen
                before = cards[0].id
            assert [next(o for o in order if o in s) for s in seen] == order, community


async def test_the_web_view_follows_a_reload_that_ends_the_blend(tmp_path: Path) -> None:
    """The pages read the blend of the config now: a reload that drops the guest (or adds
    one) shows at once, without a restart of the web view."""
    async with blended(tmp_path) as (bridge, _url, _nets):
        site = Site(bridge)
        assert site.blend.blended("kmers") and site.blend.blended("pkmchat")
        running = bridge.config
        bridge.config = dataclasses.replace(running, communities=tuple(
            dataclasses.replace(c, settings=c.settings.model_copy(update={"events": []}))
            for c in running.communities))
        try:
            assert not site.blend.blended("kmers") and not site.blend.blended("pkmchat")
        finally:
            bridge.config = running
        assert site.blend.blended("kmers")
