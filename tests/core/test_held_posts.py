"""Posts over the author's rate are held, not dropped (issue 17, item 1).

Through the real relay, store and workers, with the shipped FakeAdapter as the
platforms: a burst over ``author_rate_per_minute`` reaches every target whole and
in order once the author's window has room, other members' posts are not held
up behind it, the author is told once per window, a restart keeps the held posts
(and their order), ``/metrics`` counts them, and a flood is capped.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from bridge.contract.adapter import SendCreate, SendEdit
from bridge.contract.model import Author, ChannelKey, Deleted, Edited, NativeId, Posted
from bridge.contract.testing import FakeAdapter, FakeFactory
from bridge.contract.textconv import from_plain, to_plain
from bridge.daemon.harness import ChannelDef, build_config, eventually, quiescent, running
from bridge.daemon.supervisor import Bridge
from bridge.inbound import held
from bridge.inbound.pipeline import DropReason
from bridge.runtime.registry import load_factories

WINDOW = 1.5
"""The rate's "minute", shortened for the tests."""


def registry(fakes: dict[str, FakeAdapter]) -> Any:
    base = load_factories()
    return type(base)({**base.factories, "fake": FakeFactory(fakes)})


class Env:
    def __init__(self, bridge: Bridge, fakes: dict[str, FakeAdapter], n: int = 0) -> None:
        self.bridge, self.fakes, self.n = bridge, fakes, n

    def post(self, channel: str, text: str, author: str = "carol",
             reply_to: NativeId | None = None) -> NativeId:
        self.n += 1
        nid = NativeId(f"{channel}-{self.n}")
        self.fakes[channel.upper()].inject(Posted(
            channel=ChannelKey(f"kmers/{channel}"), native_id=nid,
            author=Author(platform="fake", handle=author, display_name=author.title()),
            text=from_plain(text), reply_to_native=reply_to))
        return nid

    def sent(self, channel: str) -> list[SendCreate]:
        return [op for op in self.fakes[channel.upper()].sent if isinstance(op, SendCreate)]

    def texts(self, channel: str) -> list[str]:
        return [op.rendered.plain for op in self.sent(channel) if not op.rendered.is_notice]

    def notices(self, channel: str) -> list[SendCreate]:
        return [op for op in self.sent(channel) if op.rendered.is_notice]

    async def ingested(self, n: int, timeout: float = 10.0) -> None:
        """Wait until *n* events were accepted or dropped since the start."""
        m = self.bridge.metrics

        async def done() -> bool:
            return sum(m.posts_in.values()) + sum(m.dropped.values()) >= n

        await eventually(done, timeout=timeout, what=f"{n} events ingested")

    async def copied(self, channel: str, n: int) -> None:
        async def done() -> bool:
            return len(self.texts(channel)) >= n

        await eventually(done, timeout=10, what=f"{n} copies on {channel}")

    async def settle(self, timeout: float = 30.0) -> None:
        await quiescent(self.bridge, timeout=timeout, settle=0.2)

    async def figures(self) -> Any:
        return await self.bridge.store.run(held.figures)


async def start(tmp_path: Path, rate: int, window: float = WINDOW,
                community: Mapping[str, Any] | None = None) -> AsyncIterator[Env]:
    fakes = {n: FakeAdapter() for n in ("A", "B", "C")}
    chans = [ChannelDef(n, "fake", {"display_name": n.upper()}, {"spot": n}, {})
             for n in ("a", "b", "c")]
    cfg = build_config(tmp_path, chans, registry=registry(fakes),
                       community_options={"author_rate_per_minute": rate, **(community or {})})
    async with running(cfg) as bridge:
        assert bridge.relay is not None
        bridge.relay.rate.window = window
        yield Env(bridge, fakes)


async def test_a_burst_over_the_rate_is_relayed_whole_and_in_order(tmp_path: Path) -> None:
    async for env in start(tmp_path, rate=3):
        t0 = time.monotonic()
        for i in range(8):
            env.post("a", f"Q{i}")
        await env.ingested(8)
        env.post("a", "unrelated news", author="bob")
        await env.settle()
        want = [f"Carol (A): Q{i}" for i in range(8)]
        for target in ("b", "c"):
            got = env.texts(target)
            assert [t for t in got if "Carol" in t] == want, target
            # Bob's post was not held up behind Carol's held ones.
            assert got.index("Bob (A): unrelated news") < got.index("Carol (A): Q3"), got
        # Three went at once, the rest a window (then two) later: never faster than the rate.
        assert time.monotonic() - t0 >= WINDOW
        figures = await env.figures()
        assert (figures.held, figures.released, figures.discarded, figures.refused) == \
            (0, 5, 0, 0)
        rejected = await env.bridge.store.run(lambda tx: tx.rejections(50))
        assert not [r for r in rejected if "posts/minute" in r[2]]


async def test_the_author_is_told_once_per_window(tmp_path: Path) -> None:
    async for env in start(tmp_path, rate=2, window=3.0):
        ids = [env.post("a", f"m{i}") for i in range(6)]
        await env.ingested(6)
        await env.settle()
        [told] = env.notices("a")  # one notice for the whole burst, on the author's network
        assert told.reply_to == ids[2]  # under the first post that was held
        assert "2 a minute" in told.rendered.plain and "in order" in told.rendered.plain
        assert env.notices("b") == [] and env.notices("c") == []
        # A later window: told again when held again.
        for i in range(6, 9):
            env.post("a", f"m{i}")
        await env.ingested(9)
        await env.settle()
        assert len(env.notices("a")) == 2
        assert len(env.texts("b")) == 9


async def test_no_notice_where_the_bridge_cannot_answer(tmp_path: Path) -> None:
    fakes = {n: FakeAdapter() for n in ("A", "B")}
    chans = [ChannelDef("a", "fake", {"display_name": "A"}, {"spot": "a"}, {"direction": "in"}),
             ChannelDef("b", "fake", {"display_name": "B"}, {"spot": "b"}, {})]
    cfg = build_config(tmp_path, chans, registry=registry(fakes),
                       community_options={"author_rate_per_minute": 1})
    async with running(cfg) as bridge:
        assert bridge.relay is not None
        bridge.relay.rate.window = 0.5
        env = Env(bridge, fakes)
        for i in range(3):
            env.post("a", f"m{i}")
        await env.ingested(3)
        await env.settle()
        assert env.sent("a") == []
        assert env.texts("b") == [f"Carol (A): m{i}" for i in range(3)]


async def test_a_held_post_deleted_at_its_origin_is_never_relayed(tmp_path: Path) -> None:
    async for env in start(tmp_path, rate=1, window=2.0):
        env.post("a", "kept 0")
        gone = env.post("a", "deleted while held")
        env.post("a", "kept 1")
        await env.ingested(3)
        env.fakes["A"].inject(Deleted(channel=ChannelKey("kmers/a"), native_id=gone))
        await env.ingested(4)
        assert len(await env.bridge.store.run(held.pending)) == 1
        await env.settle()
        for target in ("b", "c"):
            assert env.texts(target) == ["Carol (A): kept 0", "Carol (A): kept 1"], target
            assert not [op for op in env.fakes[target.upper()].sent
                        if "deleted while held" in str(op)], target


async def test_an_edit_of_a_held_post_goes_out_with_it(tmp_path: Path) -> None:
    async for env in start(tmp_path, rate=1, window=2.0):
        env.post("a", "first")
        draft = env.post("a", "draft")
        env.post("a", "third")
        await env.ingested(3)
        env.fakes["A"].inject(Edited(channel=ChannelKey("kmers/a"), native_id=draft,
                                     text=from_plain("final")))
        await env.ingested(4)
        await env.settle()
        for target in ("b", "c"):
            fake = env.fakes[target.upper()]
            # The copy carries the final text (made from it, or edited to it), in its place.
            creates = env.texts(target)
            assert creates[0] == "Carol (A): first" and creates[2] == "Carol (A): third"
            assert creates[1] in ("Carol (A): final", "Carol (A): draft"), creates
            held_id = env.sent(target)[1].post.id
            last = [op.rendered.plain for op in fake.sent
                    if isinstance(op, (SendCreate, SendEdit)) and op.post.id == held_id]
            assert last[-1] == "Carol (A): final", last


async def test_a_reply_to_a_held_post_waits_with_it_and_answers_its_copy(
        tmp_path: Path) -> None:
    async for env in start(tmp_path, rate=1, window=2.0):
        env.post("a", "Q1")
        q2 = env.post("a", "Q2")  # held
        await env.ingested(2)
        t0 = time.monotonic()
        env.post("a", "A2 from bob", author="bob", reply_to=q2)
        env.post("a", "unrelated", author="dave")
        await env.ingested(4)
        await env.settle()
        for target in ("b", "c"):
            ops = env.sent(target)
            texts = [op.rendered.plain for op in ops]
            # Dave's post is not held up; Bob's answer comes after Q2 and threads under it.
            assert texts.index("Dave (A): unrelated") < texts.index("Carol (A): Q2"), texts
            assert texts.index("Bob (A): A2 from bob") > texts.index("Carol (A): Q2"), texts
            answer = ops[texts.index("Bob (A): A2 from bob")]
            copies = await env.bridge.store.run(
                lambda tx, t=target, a=answer: tx.copies(a.post.reply_to, f"kmers/{t}"))
            assert answer.reply_to == copies[0].native_id
        # It did not sit out the reply wait (30 s) holding up its channel.
        assert time.monotonic() - t0 < 20


async def test_held_posts_survive_a_restart_and_keep_their_order(tmp_path: Path) -> None:
    window = 4.0
    async for env in start(tmp_path, rate=2, window=window):
        for i in range(6):
            env.post("a", f"before {i}")
        await env.ingested(6)
        await env.copied("b", 2)
        held_now = await env.bridge.store.run(held.pending)
        assert [to_plain(h.post.text) for h in held_now] == [f"before {i}" for i in range(2, 6)]
        n = env.n
    # Restarted before the held posts' slots: they are in the store.
    async for env in start(tmp_path, rate=2, window=window):
        env.n = n
        env.post("a", "after the restart")
        await env.ingested(1)
        await env.settle(timeout=60)
        for target in ("b", "c"):
            assert env.texts(target) == [*(f"Carol (A): before {i}" for i in range(2, 6)),
                                         "Carol (A): after the restart"], target


async def test_a_flood_is_capped(tmp_path: Path) -> None:
    # A real minute: at one a minute, ten minutes of posts may wait; the rest is refused.
    async for env in start(tmp_path, rate=1, window=60.0):
        for i in range(14):
            env.post("a", f"flood {i}")
        await env.ingested(14)
        await env.copied("b", 1)
        figures = await env.figures()
        assert (figures.held, figures.refused) == (10, 3)
        assert env.bridge.metrics.step_drops[("rate", DropReason.RATE.value)] == 3
        rejected = await env.bridge.store.run(lambda tx: tx.rejections(50))
        assert sorted(r[1] for r in rejected if "10 posts held" in r[2]) == \
            ["a-12", "a-13", "a-14"]
        text = env.bridge.metrics.prometheus({}, figures)
        assert "hashbridge_posts_held 10\n" in text
        assert "hashbridge_posts_held_refused_total 3\n" in text
        assert 'hashbridge_posts_held_in_total{channel="kmers/a"} 10\n' in text
        assert env.texts("b") == ["Carol (A): flood 0"]
