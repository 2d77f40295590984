"""Reactions through the relay core: mapped through the id map (copy or
original), counted per network, never relayed as messages, and refused for
reactors whose own posts would not be relayed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bridge.contract.model import Author, ChannelKey, NativeId, PostId, Reacted
from tests.core.test_relay import Env, start

A, B = ChannelKey("kmers/a"), ChannelKey("kmers/b")


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async for e in start(tmp_path):
        yield e


def who(handle: str, **kw: Any) -> Author:
    return Author(platform="fake", handle=handle, **kw)


async def _relayed(env: Env) -> tuple[PostId, NativeId, NativeId]:
    """A post from a, relayed: (post id, its origin id on a, its copy's id on b)."""
    origin = env.post("a", "Q1 what do you read? #kmers")
    await env.settle()
    [op] = env.sent("b")
    [copy] = await env.bridge.store.run(lambda tx: tx.copies(op.post.id, B))
    return op.post.id, origin, copy.native_id


async def counts(env: Env, post_id: PostId) -> dict[str, int]:
    got = await env.bridge.store.run(lambda tx: tx.reaction_counts([post_id]))
    return got.get(post_id, {})


async def test_reactions_on_copy_and_original_are_counted_not_relayed(env: Env) -> None:
    post_id, origin, copy = await _relayed(env)
    q = env.bridge.subscribe()
    env.fake("b").inject(Reacted(channel=B, native_id=copy, reactor=who("bob")))
    env.fake("b").inject(Reacted(channel=B, native_id=copy, reactor=who("bob")))  # again
    env.fake("b").inject(Reacted(channel=B, native_id=copy, reactor=who("bob"), key="🎉"))
    env.fake("a").inject(Reacted(channel=A, native_id=origin, reactor=who("carol")))
    await env.settle()
    assert await counts(env, post_id) == {"fake": 3}
    # never relayed as a message: nothing more was sent anywhere
    assert len(env.sent("b")) == 1 and len(env.sent("c")) == 1 and env.sent("a") == []
    changes = []
    while not q.empty():
        changes.append(q.get_nowait())
    assert changes.count(("reacted", post_id)) == 3  # the repeat changed nothing

    env.fake("b").inject(Reacted(channel=B, native_id=copy, reactor=who("bob"), key="🎉",
                                 added=False))
    await env.settle()
    assert await counts(env, post_id) == {"fake": 2}


async def test_removal_by_the_reactions_own_id(env: Env) -> None:
    post_id, _, copy = await _relayed(env)
    env.fake("b").inject(Reacted(channel=B, native_id=copy, reactor=who("bob"),
                                 reaction_id="like-1"))
    await env.settle()
    assert await counts(env, post_id) == {"fake": 1}
    env.fake("b").inject(Reacted(channel=B, native_id=NativeId(""), reactor=who("bob"),
                                 added=False, reaction_id="like-1"))
    env.fake("b").inject(Reacted(channel=B, native_id=NativeId(""), reactor=who("bob"),
                                 added=False, reaction_id="never-seen"))
    await env.settle()
    assert await counts(env, post_id) == {}
    assert env.bridge.metrics.dropped[(B, "reaction to a post the bridge does not know")] == 1


async def test_aggregate_total_replaces_the_count(env: Env) -> None:
    post_id, _, copy = await _relayed(env)
    for total in (2, 5, 4):
        env.fake("b").inject(Reacted(channel=B, native_id=copy, reactor=who(""), total=total))
        await env.settle()
    assert await counts(env, post_id) == {"fake": 4}


async def test_unknown_posts_and_refused_reactors_are_not_counted(tmp_path: Path) -> None:
    community = {"blocklist": ["fake:mallory"]}
    async for env in start(tmp_path, community=community):
        post_id, _, copy = await _relayed(env)
        await env.bridge.store.run(lambda tx: tx.set_consent("fake", "leaver", "out"))
        for reactor in (who("mallory"), who("olga", opted_out=True), who("leaver"),
                        who("shy", reluctant="#nobot")):
            env.fake("b").inject(Reacted(channel=B, native_id=copy, reactor=reactor))
        env.fake("b").inject(Reacted(channel=B, native_id=NativeId("no-such-post"),
                                     reactor=who("bob")))
        await env.settle()
        assert await counts(env, post_id) == {}
        dropped = env.bridge.metrics.dropped
        assert dropped[(B, "author is blocked")] == 1
        assert dropped[(B, "author opted out")] == 1
        assert dropped[(B, "reaction to a post the bridge does not know")] == 1
        # a refused reactor's reaction never reached the rejections (it is not a post)
        assert await env.bridge.store.run(lambda tx: tx.rejections()) == []


async def test_opt_in_community_counts_only_joined_reactors(tmp_path: Path) -> None:
    async for env in start(tmp_path, community={"consent": "opt-in"}):
        env.post("a", "!join", command="!join")
        env.post("a", "joined and posting")
        await env.settle()
        await _opt_in_check(env)


async def _opt_in_check(env: Env) -> None:
    [op] = env.sent("b")
    [copy] = await env.bridge.store.run(lambda tx: tx.copies(op.post.id, B))
    env.fake("b").inject(Reacted(channel=B, native_id=copy.native_id, reactor=who("stranger")))
    env.fake("b").inject(Reacted(channel=B, native_id=copy.native_id, reactor=who("alice")))
    await env.settle()
    assert await counts(env, op.post.id) == {"fake": 1}
