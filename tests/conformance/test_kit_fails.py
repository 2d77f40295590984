"""The kit can fail: a network whose adapter doubles its posts, or drops the thread of a
reply, fails the scenarios that count those on the platform, with a message that says
what is wrong.  (The broken adapters are the sandbox adapter with one fault each, offered
to the kit through the registry like any third-party network.)"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest

from adapters.mastodon.sandbox import MastodonSandbox
from adapters.sandbox import SandboxAdapter, SandboxFactory, SandboxPlatform
from adapters.twitter.sandbox import TwitterSandbox
from bridge.conformance.kit import Kit
from bridge.conformance.scenarios import by_name
from bridge.contract.adapter import ChannelSpec, SendCreate, SendOp, SendResult, StrictModel
from bridge.runtime.registry import load_factories


class _Doubling(SandboxAdapter):
    async def send(self, op: SendOp) -> SendResult:
        if isinstance(op, SendCreate):  # a retry that forgot its idempotency key
            await super().send(dataclasses.replace(op, idempotency_key=op.idempotency_key + "x"))
        return await super().send(op)


class _Unthreaded(SandboxAdapter):
    async def send(self, op: SendOp) -> SendResult:
        if isinstance(op, SendCreate):
            op = dataclasses.replace(op, reply_to=None)
        return await super().send(op)


def _network(name: str, adapter: type[SandboxAdapter]) -> SandboxFactory:
    class Box(SandboxPlatform):
        platform = name

    class Factory(SandboxFactory):
        platform: ClassVar[str] = name

        def create(self, account: StrictModel, channels: tuple[ChannelSpec, ...],
                   services: Mapping[str, Any]) -> SandboxAdapter:
            return adapter(account, channels)  # type: ignore[arg-type]

        def sandbox(self, workdir: str) -> SandboxPlatform:
            return Box(workdir, "garden")

    return Factory()


@pytest.mark.parametrize(("adapter", "scenario", "says"), [
    (_Doubling, "post", "has 2 copies"),
    (_Unthreaded, "reply_threading", "reply copy answers None"),
])
async def test_a_broken_network_fails_the_kit(tmp_path: Path, adapter: type[SandboxAdapter],
                                              scenario: str, says: str) -> None:
    registry = load_factories(extra={"broken": _network("broken", adapter)})
    kit = Kit("broken", tmp_path, registry)
    kit.timeout = 15
    await kit.start()
    try:
        await kit.start_bridge()
        with pytest.raises(AssertionError, match=says):
            await by_name(scenario).run(kit)
    finally:
        await kit.stop()


async def test_the_sound_sandbox_passes_the_same_scenarios(tmp_path: Path) -> None:
    kit = Kit("sandbox", tmp_path)
    await kit.start()
    try:
        await kit.start_bridge()
        await by_name("post").run(kit)
        await by_name("reply_threading").run(kit)
    finally:
        await kit.stop()


async def test_the_sandboxes_see_a_ping_when_the_bot_makes_one(tmp_path: Path) -> None:
    """``mentions_never_ping`` counts ``SandboxMessage.pings``: a bare mention sent by the
    bot's account (what the renderer and the adapters prevent) shows there."""
    masto = MastodonSandbox(str(tmp_path))
    await masto.start()
    try:
        await masto.post_as_member("alice", "I am here")
        masto.emulator.state.create(masto.emulator.bridge, "hi @alice #kmers")
        [copy] = [m for m in await masto.messages() if m.by_bridge]
        assert copy.pings == ("alice",)
    finally:
        await masto.stop()
    x = TwitterSandbox(str(tmp_path))
    await x.start()
    try:
        st = x.emulator.state
        st.create(x.bot, "hi @alice #kmers")
        st.create(x.bot, "hi @\u2060alice #kmers")   # what the renderer sends: no ping
        copies = [m for m in await x.messages() if m.by_bridge]
        assert [c.pings for c in copies] == [("alice",), ()]
    finally:
        await x.stop()
