"""The relay pipeline and the delivery workers, with the real store and the
shipped FakeAdapter as platforms."""

from __future__ import annotations

import errno
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from bridge.contract.adapter import (
    Capabilities,
    PermanentError,
    SendCreate,
    SendDelete,
    SendEdit,
    TransientError,
)
from bridge.contract.model import Author, ChannelKey, Deleted, Edited, NativeId, Posted
from bridge.contract.testing import FakeAdapter, FakeFactory
from bridge.contract.textconv import from_plain
from bridge.daemon.harness import ChannelDef, build_config, quiescent, running
from bridge.daemon.supervisor import Bridge
from bridge.runtime.registry import load_factories
from bridge.store import TransientStoreError

A, B, C = ChannelKey("kmers/a"), ChannelKey("kmers/b"), ChannelKey("kmers/c")


def registry(fakes: dict[str, FakeAdapter] | None = None) -> Any:
    """The installed adapters plus ``fake``, whose adapters are *fakes* (by display name)."""
    base = load_factories()
    return type(base)({**base.factories, "fake": FakeFactory(fakes)})


def chans(**opts: Mapping[str, Any]) -> list[ChannelDef]:
    return [ChannelDef(n, "fake", {"display_name": n.upper()}, {"spot": n}, opts.get(n, {}))
            for n in ("a", "b", "c")]


class Env:
    def __init__(self, bridge: Bridge, fakes: dict[str, FakeAdapter]) -> None:
        self.bridge = bridge
        self.fakes = fakes
        self.n = 0

    def fake(self, name: str) -> FakeAdapter:
        return self.fakes[name.upper()]

    def post(self, channel: str, text: str, *, author: str = "alice", reply_to: str | None = None,
             **kw: Any) -> NativeId:
        self.n += 1
        nid = NativeId(f"{channel}-{self.n}")
        self.fake(channel).inject(Posted(
            channel=ChannelKey(f"kmers/{channel}"), native_id=nid,
            author=kw.pop("author_obj", None) or Author(platform="fake", handle=author,
                                                        display_name=author.title()),
            text=from_plain(text), reply_to_native=NativeId(reply_to) if reply_to else None,
            **kw))
        return nid

    def sent(self, name: str, kind: type = SendCreate) -> list[Any]:
        return [op for op in self.fake(name).sent if isinstance(op, kind)]

    async def settle(self) -> None:
        await quiescent(self.bridge, timeout=20, settle=0.15)


async def start(tmp_path: Path, community: Mapping[str, Any] | None = None,
                caps: Mapping[str, Capabilities] | None = None,
                bridge_options: Mapping[str, Any] | None = None,
                **opts: Mapping[str, Any]) -> AsyncIterator[Env]:
    fakes = {name.upper(): FakeAdapter(caps=c) for name, c in (caps or {}).items()}
    cfg = build_config(tmp_path, chans(**opts), registry=registry(fakes),
                       community_options={"author_rate_per_minute": 1000, **(community or {})},
                       bridge_options=bridge_options)
    async with running(cfg) as bridge:
        yield Env(bridge, fakes)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async for e in start(tmp_path):
        yield e


async def test_post_reaches_every_other_channel_once_with_attribution(env: Env) -> None:
    env.post("a", "hello #kmers")
    await env.settle()
    for name in ("b", "c"):
        [op] = env.sent(name)
        assert op.rendered.plain == "Alice (A): hello #kmers"
        assert op.idempotency_key.endswith(".0")
    assert env.sent("a") == []


async def test_echo_of_our_copy_is_dropped(env: Env) -> None:
    env.post("a", "hello")
    await env.settle()
    [op] = env.sent("b")
    copy_id = await env.bridge.store.run(lambda tx: tx.copies(op.post.id, B))
    # The platform shows our copy back to us: it must not be relayed again.
    env.fake("b").inject(Posted(channel=B, native_id=copy_id[0].native_id,
                                author=Author(platform="fake", handle="bot"),
                                text=from_plain("Alice (A): hello")))
    await env.settle()
    assert len(env.sent("a")) == 0 and len(env.sent("c")) == 1
    assert env.bridge.metrics.dropped[(B, "echo")] == 1


async def test_replies_thread_to_the_parent_copy(env: Env) -> None:
    parent = env.post("a", "question")
    await env.settle()
    parent_copy_on_b = env.fake("b").sent[0]
    assert isinstance(parent_copy_on_b, SendCreate)
    env.post("b", "answer", author="bob", reply_to="fake-1")  # FakeAdapter's first native id
    await env.settle()
    [answer_on_a] = env.sent("a")
    assert answer_on_a.reply_to == parent  # threads under the original on its own network
    answer_on_c = env.sent("c")[-1]
    assert answer_on_c.reply_to is not None and answer_on_c.reply_to.startswith("fake-")


async def test_edit_and_delete_follow_the_map(env: Env) -> None:
    nid = env.post("a", "frist")
    await env.settle()
    env.fake("a").inject(Edited(channel=A, native_id=nid, text=from_plain("first")))
    await env.settle()
    [edit] = env.sent("b", SendEdit)
    assert edit.rendered.plain.endswith("first") and edit.native_id.startswith("fake-")
    env.fake("a").inject(Deleted(channel=A, native_id=nid))
    await env.settle()
    [delete] = env.sent("c", SendDelete)
    assert delete.native_id == env.sent("c", SendEdit)[0].native_id
    post = await env.bridge.store.run(lambda tx: tx.get_post(edit.post.id))
    assert post is not None and post.text.is_empty()  # content removed from our store


async def test_cross_posted_duplicate_is_linked_not_copied(env: Env) -> None:
    env.post("a", "same words #kmers")
    env.post("b", "Same words")  # the member posted by hand on b too
    await env.settle()
    assert len(env.sent("c")) == 1
    assert env.sent("b") == []  # b already has it: the queued copy is skipped
    assert env.sent("a") == []


async def test_policy_refusals_are_recorded(env: Env) -> None:
    env.post("a", "please do not relay #nobridge")
    env.post("a", "private", public=False)
    env.post("a", "opted out in profile",
             author_obj=Author(platform="fake", handle="olga", opted_out=True))
    env.post("a", "a bot", author_obj=Author(platform="fake", handle="b0t", is_bot=True))
    env.post("a", "fine")
    await env.settle()
    assert [op.rendered.plain for op in env.sent("b")] == ["Alice (A): fine"]
    reasons = {r[2] for r in await env.bridge.store.run(lambda tx: tx.rejections())}
    assert {"post carries #nobridge/#nobot", "not public", "author is a bot"} <= reasons


async def test_opt_in_community_needs_join_and_answers_once(tmp_path: Path) -> None:
    async for env in start(tmp_path, community={"consent": "opt-in"}):
        env.post("a", "before joining")
        env.post("a", "!join", command="!join")
        env.post("a", "!join again", command="!join")
        env.post("a", "after joining")
        await env.settle()
        assert [op.rendered.plain for op in env.sent("b")] == ["Alice (A): after joining"]
        answers = env.sent("a")
        assert len(answers) == 1 and answers[0].rendered.is_notice
        assert answers[0].reply_to == "a-2" and "!leave" in answers[0].rendered.plain
        env.post("a", "!leave", command="!leave")
        env.post("a", "after leaving")
        await env.settle()
        assert len(env.sent("b")) == 1 and len(env.sent("a")) == 2


async def test_blocklist_and_author_rate(tmp_path: Path) -> None:
    community = {"blocklist": ["fake:mallory"], "author_rate_per_minute": 3}
    async for env in start(tmp_path, community=community):
        assert env.bridge.relay is not None
        env.bridge.relay.rate.window = 1.0  # the rate's "minute", shortened for the test
        env.post("a", "hi", author="mallory")
        for i in range(5):
            env.post("a", f"burst {i}", author="carol")
        await env.settle()
        # Over the rate, posts are held, not dropped (tests/core/test_held_posts.py).
        assert [op.rendered.plain for op in env.sent("b")] == [
            f"Carol (A): burst {i}" for i in range(5)]


async def test_directions_route(tmp_path: Path) -> None:
    async for env in start(tmp_path, a={"direction": "in"}, c={"direction": "out"}):
        env.post("a", "from a")
        env.post("c", "from c is ignored")
        await env.settle()
        assert [op.rendered.plain for op in env.sent("b")] == ["Alice (A): from a"]
        assert len(env.sent("c")) == 1 and env.sent("a") == []


async def test_transient_errors_retry_in_order_and_honour_retry_after(env: Env) -> None:
    fake = env.fake("b")
    fake.failures = [TransientError("429", retry_after=0.6), TransientError("500")]
    t0 = time.monotonic()
    for i in range(5):
        env.post("a", f"m{i}")
    await quiescent(env.bridge, timeout=30, settle=0.2)
    assert [op.rendered.plain[-2:] for op in env.sent("b")] == ["m0", "m1", "m2", "m3", "m4"]
    assert time.monotonic() - t0 >= 0.6  # waited for the server's retry time


async def test_a_send_that_never_answers_times_out_and_is_retried_with_its_key(
        tmp_path: Path) -> None:
    async for env in start(tmp_path, bridge_options={"send_timeout_seconds": 0.3}):
        env.fake("b").stalls = 1
        env.post("a", "m0")
        env.post("a", "m1")
        await quiescent(env.bridge, timeout=30, settle=0.2)
        sent = env.sent("b")
        assert [op.rendered.plain[-2:] for op in sent] == ["m0", "m1"]
        rows = await env.bridge.store.run(lambda tx: tx.c.execute(
            "SELECT id, attempts, state FROM deliveries WHERE channel = ? ORDER BY seq",
            (str(B),)).fetchall())
        # the stalled try counted, then the same delivery (same key) went through
        assert [(r[1], r[2]) for r in rows] == [(2, "sent"), (1, "sent")]
        assert sent[0].idempotency_key == f"{rows[0][0]}.0"


async def test_an_adapters_full_disk_is_retried_not_parked(tmp_path: Path) -> None:
    async for env in start(tmp_path, bridge_options={"retry_max_seconds": 0.05}):
        env.fake("b").failures = [
            TransientStoreError("full", "store write failed: database or disk is full"),
            OSError(errno.ENOSPC, "No space left on device")] * 6
        env.post("a", "m0")
        await quiescent(env.bridge, timeout=30, settle=0.2)
        assert [op.rendered.plain[-2:] for op in env.sent("b")] == ["m0"]
        assert await env.bridge.store.run(lambda tx: tx.dead()) == []


async def test_permanent_error_parks_as_dead_and_retry_requeues(env: Env) -> None:
    env.fake("b").failures = [PermanentError("422: text too long")]
    env.post("a", "m0")
    env.post("a", "m1")
    await env.settle()
    assert [op.rendered.plain[-2:] for op in env.sent("b")] == ["m1"]
    dead = await env.bridge.store.run(lambda tx: tx.dead())
    assert [(d.channel, d.last_error) for d in dead] == [(B, "422: text too long")]
    assert await env.bridge.store.run(lambda tx: tx.requeue_dead()) == 1
    env.bridge.workers[B].wake()
    await env.settle()
    assert [op.rendered.plain[-2:] for op in env.sent("b")] == ["m1", "m0"]


async def test_capabilities_decide_edits_and_split(tmp_path: Path) -> None:
    caps = {"b": Capabilities(edit=False, delete=False, max_length=40, reply=True),
            "c": Capabilities(edit=False, delete=True)}
    async for env in start(tmp_path, caps=caps, c={"on_edit": "correct"}):
        nid = env.post("a", "a long message that will not fit in forty characters at all")
        await env.settle()
        parts = env.sent("b")
        assert len(parts) > 1 and all(len(p.rendered.plain) <= 40 for p in parts)
        # each part answers the one before (a thread)
        assert [p.reply_to for p in parts[1:]] == [f"fake-{i}" for i in range(1, len(parts))]
        env.fake("a").inject(Edited(channel=A, native_id=nid, text=from_plain("short now")))
        await env.settle()
        assert env.sent("b", SendEdit) == []  # b cannot edit: skipped
        correction = env.sent("c")[-1]
        assert correction.rendered.plain.startswith("✏️ correction: Alice (A): short now")
        assert correction.reply_to == "fake-1"  # under the copy it corrects


async def test_reply_waits_for_parent_then_posts_plain(tmp_path: Path) -> None:
    async for env in start(tmp_path, b={"reply_wait": 0.5}):
        env.fake("b").failures = [PermanentError("parent refused")]
        parent = env.post("a", "parent")
        await env.settle()
        env.post("a", "child", reply_to=parent)
        await env.settle()
        [child] = env.sent("b")
        assert child.reply_to is None  # parent's copy is dead: posted without the link


async def test_reluctant_author_is_relayed_only_after_join(env: Env) -> None:
    shy = Author(platform="fake", handle="dave", display_name="Dave", reluctant="#nobot")
    env.post("a", "before", author_obj=shy)
    env.post("a", "!join", author_obj=shy, command="!join")
    env.post("a", "after", author_obj=shy)
    hard = Author(platform="fake", handle="erin", opted_out=True)
    env.post("a", "!join", author_obj=hard, command="!join")
    env.post("a", "never", author_obj=hard)
    await env.settle()
    assert [op.rendered.plain for op in env.sent("b")] == ["Dave (A): after"]
