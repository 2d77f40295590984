"""Blended chat events (#chatmixer): during an occurrence of an event naming a guest
community, a post of either community reaches the channels of both, one copy per
place; edits and deletes follow every copy after the window; the bridge's own copy
read back through the partner's channel is dropped.

The real relay, store and workers; the platforms are the shipped FakeAdapter
(and, for a network read by hashtag, the same fake with a hashtag locator).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest

from bridge.contract.adapter import SendCreate, SendDelete, SendEdit, StrictModel
from bridge.contract.model import Author, ChannelKey, Deleted, Edited, NativeId, Posted
from bridge.contract.testing import FakeAdapter, FakeFactory
from bridge.contract.textconv import from_plain
from bridge.daemon.harness import quiescent, running
from bridge.daemon.supervisor import Bridge
from bridge.runtime.blend import Blend
from bridge.runtime.config import Config, parse
from bridge.runtime.registry import load_factories

IN = datetime(2026, 1, 1, 10, 30, tzinfo=UTC)
"""Inside the one occurrence of the blended event (10:00-11:00 UTC that day)."""
AFTER = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class HashtagChannel(StrictModel):
    hashtag: str


class HashtagFactory(FakeFactory):
    """The fake adapter on a network read by hashtag (as Mastodon, X, Bluesky):
    its channels' place is the bridge's account."""

    platform: ClassVar[str] = "fakehash"
    channel_model = HashtagChannel
    channel_locator = "hashtag"


def registry(fakes: dict[str, FakeAdapter]) -> Any:
    base = load_factories()
    return type(base)({**base.factories, "fake": FakeFactory(fakes),
                       "fakehash": HashtagFactory(fakes)})


def raw_config(tmp_path: Path, *, guest: str = "pkmchat") -> dict[str, Any]:
    """kmers: room FA, hashtag #kmers on account SH, room "commons" on FC;
    pkmchat: room FB, hashtag #pkmchat on the same account SH, the same room on FC."""
    return {
        "bridge": {"data_dir": str(tmp_path / "data")},
        "accounts": {"fa": {"platform": "fake", "display_name": "FA"},
                     "fb": {"platform": "fake", "display_name": "FB"},
                     "fc": {"platform": "fake", "display_name": "FC"},
                     "sh": {"platform": "fakehash", "display_name": "SH"}},
        "communities": [
            {"name": "kmers", "hashtag": "kmers", "author_rate_per_minute": 1000,
             "events": [{"id": "mixer", "title": "#chatmixer", "timezone": "UTC",
                         "rrule": "FREQ=DAILY;COUNT=1", "dtstart": datetime(2026, 1, 1, 10),
                         "duration_minutes": 60, "announce": False, "guest": guest}],
             "channels": [{"account": "fa", "spot": "kroom"},
                          {"account": "sh", "hashtag": "kmers"},
                          {"account": "fc", "spot": "commons"}]},
            {"name": "pkmchat", "hashtag": "pkmchat", "author_rate_per_minute": 1000,
             "channels": [{"account": "fb", "spot": "proom"},
                          {"account": "sh", "hashtag": "pkmchat"},
                          {"account": "fc", "spot": "commons"}]},
        ]}


def config(tmp_path: Path, fakes: dict[str, FakeAdapter]) -> Config:
    return parse(raw_config(tmp_path), registry(fakes), {})


class Env:
    def __init__(self, bridge: Bridge, fakes: dict[str, FakeAdapter]) -> None:
        self.bridge, self.fakes = bridge, fakes

    def post(self, channel: str, nid: str, text: str, at: datetime = IN) -> NativeId:
        account = channel.split("/")[1].upper()
        self.fakes[account].inject(Posted(
            channel=ChannelKey(channel), native_id=NativeId(nid),
            author=Author(platform="fake", handle="alice", display_name="Alice"),
            text=from_plain(text), created_at=at))
        return NativeId(nid)

    def sent(self, account: str, kind: type = SendCreate) -> list[Any]:
        return [op for op in self.fakes[account].sent if isinstance(op, kind)]

    def where(self, account: str, kind: type = SendCreate) -> list[str]:
        return [op.channel for op in self.sent(account, kind)]

    async def settle(self) -> None:
        await quiescent(self.bridge, timeout=30, settle=0.15)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    fakes = {n: FakeAdapter() for n in ("FA", "FB", "FC", "SH")}
    async with running(config(tmp_path, fakes)) as bridge:
        yield Env(bridge, fakes)


async def test_during_the_event_a_post_reaches_both_communities_once_per_place(
        env: Env) -> None:
    env.post("kmers/fa", "a1", "hello from kmers")
    await env.settle()
    assert env.where("FB") == ["pkmchat/fb"]  # the guest's room
    # One account, one copy: made for the post's own community (its hashtag).
    assert env.where("SH") == ["kmers/sh"]
    # One room both communities use: one copy.
    assert env.where("FC") == ["kmers/fc"]
    assert env.where("FA") == []

    env.post("pkmchat/fb", "b1", "hello from pkmchat")
    await env.settle()
    assert env.where("FA") == ["kmers/fa"]
    assert env.where("SH") == ["kmers/sh", "pkmchat/sh"]
    assert env.where("FC") == ["kmers/fc", "pkmchat/fc"]


async def test_outside_the_event_each_community_keeps_to_itself(env: Env) -> None:
    env.post("kmers/fa", "a1", "after the mixer", at=AFTER)
    await env.settle()
    assert env.where("FB") == []
    assert env.where("SH") == ["kmers/sh"] and env.where("FC") == ["kmers/fc"]


async def test_a_post_with_both_hashtags_read_twice_at_one_place_is_one_post(
        env: Env) -> None:
    env.post("kmers/sh", "s1", "tagged #kmers #pkmchat")
    env.post("pkmchat/sh", "s1", "tagged #kmers #pkmchat")
    await env.settle()
    assert env.where("FA") == ["kmers/fa"] and env.where("FB") == ["pkmchat/fb"]
    assert env.where("FC") == ["kmers/fc"] and env.where("SH") == []
    m = env.bridge.metrics.dropped
    assert m[(ChannelKey("pkmchat/sh"), "read already through a blended community's "
              "channel at the same place")] == 1


async def test_our_copy_read_back_through_the_partners_channel_is_dropped(env: Env) -> None:
    env.post("kmers/fa", "a1", "see #pkmchat too")
    await env.settle()
    [copy] = env.sent("SH")
    copy_ids = await env.bridge.store.run(
        lambda tx: tx.copies(copy.post.id, ChannelKey("kmers/sh")))
    # The #pkmchat stream of the same account shows the bridge's copy (it carries
    # the tag): the same message, not a pkmchat member's post.
    env.post("pkmchat/sh", copy_ids[0].native_id, "Alice (FA): see #pkmchat too #kmers")
    await env.settle()
    assert env.bridge.metrics.dropped[(ChannelKey("pkmchat/sh"), "echo")] == 1
    assert len(env.sent("FB")) == 1 and len(env.sent("FA")) == 0


async def test_edits_and_deletes_reach_every_copy_after_the_window(env: Env) -> None:
    nid = env.post("kmers/fa", "a1", "frist")
    await env.settle()
    # Now is long after 2026-01-01 11:00: the blend is over, the copies are not.
    env.fakes["FA"].inject(Edited(channel=ChannelKey("kmers/fa"), native_id=nid,
                                  text=from_plain("first")))
    await env.settle()
    for account, channel in (("FB", "pkmchat/fb"), ("SH", "kmers/sh"), ("FC", "kmers/fc")):
        [edit] = env.sent(account, SendEdit)
        assert edit.channel == channel and edit.rendered.plain.endswith("first")
    env.fakes["FA"].inject(Deleted(channel=ChannelKey("kmers/fa"), native_id=nid))
    await env.settle()
    for account in ("FB", "SH", "FC"):
        [delete] = env.sent(account, SendDelete)
        assert delete.native_id == env.sent(account, SendEdit)[0].native_id


def test_partners_and_targets(tmp_path: Path) -> None:
    blend = Blend(config(tmp_path, {}))
    kmers = next(c for c in blend._communities.values() if c.name == "kmers")
    assert blend.partners("kmers", IN.timestamp()) == {"pkmchat"}
    assert blend.partners("pkmchat", IN.timestamp()) == {"kmers"}
    assert blend.partners("kmers", AFTER.timestamp()) == frozenset()
    assert blend.targets(kmers, "kmers/fa", IN.timestamp()) == (
        "kmers/sh", "kmers/fc", "pkmchat/fb")
    assert blend.targets(kmers, "kmers/sh", IN.timestamp()) == (
        "kmers/fa", "kmers/fc", "pkmchat/fb")
    assert blend.targets(kmers, None, AFTER.timestamp()) == ("kmers/fa", "kmers/sh", "kmers/fc")
    assert blend.targets(kmers, "kmers/fa", IN.timestamp(), skip_platform="fakehash") == (
        "kmers/fc", "pkmchat/fb")
    assert [c.key for c in blend.same_place("kmers/sh")] == ["pkmchat/sh"]
    assert blend.same_place("kmers/fa") == ()


def test_no_guest_no_blend(tmp_path: Path) -> None:
    raw = raw_config(tmp_path)
    raw["communities"][0]["events"][0].pop("guest")
    blend = Blend(parse(raw, registry({}), {}))
    assert not blend.any and blend.partners("kmers", IN.timestamp()) == frozenset()

