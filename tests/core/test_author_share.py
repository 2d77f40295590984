"""One author's long posts cannot spend a channel's daily budget (issue 12,
item 4): parts count against the author's fair share of the channel's daily
post budget; a post that would take more goes out as one part, cut, with a
link to where the whole post is."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from bridge.contract.adapter import Capabilities, SendCreate
from bridge.contract.model import Author, ChannelKey, NativeId, Posted
from bridge.contract.testing import FakeAdapter
from bridge.contract.textconv import from_plain
from bridge.daemon.harness import build_config, quiescent, running
from bridge.outbound.ratelimit import AuthorShare
from bridge.outbound.render import ONE_DOT_LEADER
from bridge.runtime.config import ConfigError
from tests.core.test_relay import chans, registry

A = ChannelKey("kmers/a")
LONG = " ".join(f"word{i}" for i in range(120))  # about 12 parts of 60
BUDGET = Capabilities(max_length=60, reply=True, edit=True, delete=True, posts_per_day=50)


class Env:
    def __init__(self, bridge: Any, fakes: dict[str, FakeAdapter]) -> None:
        self.bridge, self.fakes, self.n = bridge, fakes, 0

    def post(self, text: str, author: str = "alice") -> None:
        self.n += 1
        self.fakes["A"].inject(Posted(
            channel=A, native_id=NativeId(f"a-{self.n}"), text=from_plain(text),
            author=Author(platform="fake", handle=author, display_name=author.title()),
            permalink=f"https://a.example/{author}/{self.n}"))

    def parts(self, author: str) -> list[str]:
        return [op.rendered.plain for op in self.fakes["B"].sent
                if isinstance(op, SendCreate) and op.post.author.handle == author]

    async def settle(self) -> None:
        await quiescent(self.bridge, timeout=20, settle=0.15)


async def start(tmp_path: Path, caps: Capabilities, b: Mapping[str, Any] | None = None,
                bridge_options: Mapping[str, Any] | None = None) -> AsyncIterator[Env]:
    fakes = {"B": FakeAdapter(caps=caps)}
    cfg = build_config(tmp_path, chans(b=b or {}), registry=registry(fakes),
                       community_options={"author_rate_per_minute": 1000},
                       bridge_options=bridge_options)
    async with running(cfg) as bridge:
        yield Env(bridge, fakes)


async def test_two_long_posts_do_not_become_long_threads(tmp_path: Path) -> None:
    async for env in start(tmp_path, BUDGET):
        env.post(LONG)
        env.post(LONG + " again")
        await env.settle()
        alice = env.parts("alice")
        # 50 posts a day, share 0.1: 5 parts for Alice; each post would take ~12
        assert len(alice) == 2, alice
        for i, text in enumerate(alice, 1):
            assert len(text) <= 60 and text.endswith(f"… https://a.example/alice/{i}")
        # another author still has a share of their own
        env.post(" ".join(f"w{i}" for i in range(25)), author="bob")
        await env.settle()
        bob = env.parts("bob")
        assert 1 < len(bob) <= 5 and bob[-1].endswith(f"({len(bob)}/{len(bob)})")


async def test_parts_count_against_the_share_not_posts(tmp_path: Path) -> None:
    three = " ".join(f"w{i}" for i in range(38))  # 3 parts of 60
    async for env in start(tmp_path, BUDGET):
        env.post(three)
        await env.settle()
        assert len(env.parts("alice")) == 3          # 3 of 5 parts used
        env.post(three + " more")
        await env.settle()
        assert len(env.parts("alice")) == 4          # 3 more would pass 5: one part
        assert env.parts("alice")[-1].endswith("… https://a.example/alice/2")
        env.post("short")
        await env.settle()
        assert env.parts("alice")[-1].endswith("short")  # a single part always goes


async def test_the_share_is_configurable_per_channel(tmp_path: Path) -> None:
    async for env in start(tmp_path, BUDGET, b={"author_share": 1.0}):
        env.post(LONG)
        await env.settle()
        assert len(env.parts("alice")) > 5  # the whole budget: a thread


async def test_no_daily_budget_no_cut(tmp_path: Path) -> None:
    caps = Capabilities(max_length=60, reply=True, edit=True, delete=True)
    async for env in start(tmp_path, caps):
        env.post(LONG)
        env.post(LONG)
        await env.settle()
        assert len(env.parts("alice")) > 20


async def test_the_cut_post_links_to_the_web_view_as_text_where_links_cost(
        tmp_path: Path) -> None:
    caps = Capabilities(max_length=100, reply=True, posts_per_day=50, links_cost=True)
    async for env in start(tmp_path, caps,
                           bridge_options={"web": {"public_url": "https://bridge.example.org"}}):
        env.post(LONG)
        await env.settle()
        [text] = env.parts("alice")
        assert len(text) <= 100
        assert re.search(f"… bridge{ONE_DOT_LEADER}example{ONE_DOT_LEADER}org/c/kmers#p-\\w+$",
                         text), text
        assert "https://" not in text


@pytest.mark.parametrize("share", [0, -0.5, 1.5, "half"])
def test_check_refuses_a_bad_share(tmp_path: Path, share: Any) -> None:
    with pytest.raises(ConfigError) as e:
        build_config(tmp_path, chans(b={"author_share": share}), registry=registry())
    assert any("channels[1].author_share" in line for line in e.value.errors), e.value.errors


def test_share_is_decided_once_per_delivery_and_rolls_over_daily() -> None:
    now = [1_800_000_000.0]
    share = AuthorShare(clock=lambda: now[0])
    allowance = AuthorShare.allowance(50, 0.1)
    assert allowance == 5
    assert share.fits("d1", "fake:alice", 4, allowance)
    share.charge("d1", "fake:alice", 4, cut=False)
    share.charge("d1", "fake:alice", 4, cut=False)  # a re-plan: charged once
    assert share.used("fake:alice") == 4
    assert not share.fits("d2", "fake:alice", 2, allowance)
    share.charge("d2", "fake:alice", 1, cut=True)
    assert not share.fits("d2", "fake:alice", 2, allowance)  # the same answer again
    now[0] += 86_400
    assert share.used("fake:alice") == 0 and share.fits("d3", "fake:alice", 5, allowance)


def test_x_declares_its_daily_budget() -> None:
    from tests.core.test_mentions import x_caps

    assert x_caps().posts_per_day == 50


def x_priced(**kw: Any) -> Capabilities:
    """A target priced as X prices posts (the X adapter's own price rule)."""
    from tests.core.test_mentions import x_caps

    x = x_caps()
    return Capabilities(max_length=70, reply=True, edit=True, delete=True, posts_per_day=50,
                        part_cost=x.part_cost, cost_per_day=x.cost_per_day, **kw)


URLS = ("read https://example.org/one and https://example.org/two and "
        "https://example.org/three then")  # 2 parts of 70, each with a URL


async def test_parts_with_urls_cost_more_of_the_share(tmp_path: Path) -> None:
    """Two parts are well within 5 parts a day, but on X each part with a URL
    costs $0.20: two cost $0.40, past a share of 0.1 of $2.00 a day."""
    async for env in start(tmp_path, x_priced()):
        env.post("plain " * 14)
        await env.settle()
        assert len(env.parts("alice")) == 2                      # $0.03: a thread
        env.post(URLS)
        await env.settle()
        alice = env.parts("alice")
        assert len(alice) == 3, alice                              # $0.40 more: one part
        assert alice[-1].endswith("… https://a.example/alice/2"), alice[-1]
        # Bob's plain thread is cheap: it goes as a thread, his URLs do not.
        env.post(URLS.replace("https", "nope"), author="bob")
        await env.settle()
        assert len(env.parts("bob")) == 2
        env.post(URLS, author="bob")
        await env.settle()
        assert len(env.parts("bob")) == 3


async def test_money_spent_cuts_even_cheap_threads(tmp_path: Path) -> None:
    async for env in start(tmp_path, x_priced()):
        env.post("https://example.org/x")       # one part always goes: $0.20, the share
        env.post("plain " * 14)                 # 2 more parts, $0.03: past $0.20
        await env.settle()
        alice = env.parts("alice")
        assert len(alice) == 2 and alice[-1].endswith("… https://a.example/alice/2"), alice


async def test_the_money_share_is_configurable_per_channel(tmp_path: Path) -> None:
    async for env in start(tmp_path, x_priced(), b={"author_share": 0.5}):
        env.post(URLS)                          # $0.40 of $1.00
        await env.settle()
        assert len(env.parts("alice")) == 2


def test_share_counts_cost() -> None:
    share = AuthorShare(clock=lambda: 1_800_000_000.0)
    money = AuthorShare.cost_allowance(2.0, 0.1)
    assert money is not None and abs(money - 0.2) < 1e-9
    assert share.fits("d1", "x:alice", 2, 5, cost=0.03, cost_allowance=money)
    share.charge("d1", "x:alice", 2, cut=False, cost=0.03)
    assert not share.fits("d2", "x:alice", 2, 5, cost=0.40, cost_allowance=money)
    assert share.fits("d2", "x:alice", 2, 5, cost=0.40, cost_allowance=None)  # parts only
    assert share.fits("d3", "x:alice", 1, 5, cost=0.20, cost_allowance=money)  # one part goes
    assert share.used("x:alice") == 2 and abs(share.spent("x:alice") - 0.03) < 1e-9


def test_x_prices_each_part() -> None:
    from tests.core.test_mentions import x_caps

    caps = x_caps()
    assert caps.part_cost is not None and caps.cost_per_day == 2.0
    assert caps.part_cost("read https://example.org/a") == 0.20
    assert caps.part_cost("read example.org/a") == 0.20       # X links bare domains too
    assert caps.part_cost("read example\u2024org/a (1/2)") == 0.015
