"""End to end, on every network: an edit that changes how many parts a split
post takes (3 -> 3, 3 -> 1, 3 -> 5, 1 -> 3) leaves the copy holding exactly the
edited text, in order, in one thread, as the platform itself shows it.

The real relay (``bridge.daemon.harness``) runs between a sandbox network
("lobby", where the author writes and edits) and each platform's own sandbox
(the Mastodon and X emulators, a real Synapse, Dovecot with the mini list, a
second sandbox network); the target channel's ``max_length`` makes a short
post split.  A network that cannot edit (X, email) keeps the copy as it was
under ``on_edit = "update"`` and gets a correction thread under ``"correct"``
(docs/operations.md, *Edits*).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from adapters.sandbox import SandboxPlatform
from bridge.contract.sandbox import SandboxMessage
from bridge.daemon.harness import (
    ChannelDef,
    build_config,
    quiescent,
    running,
    sandbox_channels,
)
from bridge.outbound.planner import CORRECTION_PREFIX, REMOVED_NOTICE
from bridge.runtime.registry import load_factories

LIMIT = 100
"""The target channel's ``max_length``: a post of 44 words takes three parts."""
WORDS = {1: 10, 3: 44, 5: 78}
"""Words of a post that takes this many parts at LIMIT on every network (with
or without the hashtag appended)."""
ATTRIBUTION = "Dora (Lobby): "
TAIL = re.compile(r"(?: \((\d+)/(\d+)\))?(?: #kmers)?$")

CASES = [pytest.param(3, 3, id="same"), pytest.param(3, 1, id="shrink"),
         pytest.param(3, 5, id="grow"), pytest.param(1, 3, id="grow-from-one")]
EDITING = ["sandbox", "mastodon", "matrix"]
"""Networks that edit in place."""
NOT_EDITING = ["twitter", "email"]


def text(prefix: str, parts: int) -> str:
    return " ".join(f"{prefix}{i:03d}" for i in range(WORDS[parts]))


class Garden(SandboxPlatform):
    """A second sandbox network as the target, which may lack edits or deletes."""

    def __init__(self, workdir: Path, **account: Any) -> None:
        super().__init__(str(workdir / "networks"), "garden")
        self.account_extra = account


async def start_box(platform: str, workdir: Path, **garden: Any) -> Any:
    if platform == "sandbox":
        box: Any = Garden(workdir, **garden)
    else:
        box = load_factories().factories[platform].sandbox(str(workdir / platform))
        if box is None:
            pytest.skip(f"no {platform} sandbox on this machine")
    await box.start()
    return box


def target(platform: str, box: Any, workdir: Path, **options: Any) -> ChannelDef:
    opts = {"max_length": LIMIT, "author_share": 1.0, **options}
    if platform == "sandbox":
        return ChannelDef("sb_garden", "sandbox",
                          {"dir": str(workdir / "networks"), "display_name": "Garden",
                           **box.account_extra}, {"network": "garden"}, opts)
    return ChannelDef("target", platform, box.account_config(), box.channel_config(), opts)


def thread(msgs: list[SandboxMessage]) -> list[SandboxMessage]:
    """The bridge's messages still shown, in reply order from the top-level
    one; fails unless they form exactly one chain."""
    live = [m for m in msgs if m.by_bridge and not m.deleted]
    roots = [m for m in live if m.reply_to is None]
    assert len(roots) == 1, f"one top-level copy expected: {[m.text for m in live]}"
    chain = roots
    while True:
        nxt = [m for m in live if m.reply_to == chain[-1].native_id]
        assert len(nxt) <= 1, f"the thread forks at {chain[-1].text!r}"
        if not nxt:
            break
        chain.append(nxt[0])
    assert len(chain) == len(live), (
        f"copies outside the thread: {[m.text for m in live if m not in chain]}")
    return chain


def words_of(parts: list[SandboxMessage], head: str) -> str:
    """The text the parts hold together: the attribution, the numbering
    ``(i/n)`` (checked: 1..n in order) and the hashtag taken off."""
    out = []
    for i, m in enumerate(parts):
        body = m.text.strip()
        tail = TAIL.search(body)
        assert tail is not None
        if len(parts) > 1:
            assert tail.group(1) is not None, f"part {i + 1} is not numbered: {body!r}"
            assert (int(tail.group(1)), int(tail.group(2))) == (i + 1, len(parts)), body
        body = body[:tail.start()]
        if i == 0:
            assert body.startswith(head), body
            body = body[len(head):]
        out.append(body)
    return " ".join(out)


async def edit_on(platform: str, workdir: Path, before: int, after: int, *,
                  garden: dict[str, Any] | None = None, **options: Any
                  ) -> tuple[list[SandboxMessage], list[SandboxMessage]]:
    """Post a *before*-part post on the lobby, edit it to *after* parts: the
    copy's thread on *platform* before and after the edit."""
    lobby = SandboxPlatform(str(workdir / "networks"), "lobby")
    await lobby.start()
    # (a short path: Dovecot's sockets live under it)
    short = Path(tempfile.mkdtemp(prefix="hb-"))
    box = await start_box(platform, workdir if platform == "sandbox" else short,
                          **(garden or {}))
    try:
        cfg = build_config(workdir, [*sandbox_channels(workdir, ["lobby"]),
                                     target(platform, box, workdir, **options)])
        async with running(cfg) as bridge:
            nid = await lobby.post_as_member("dora", text("a", before))
            await quiescent(bridge)
            first = thread(await box.messages())
            await lobby.edit_as_member(nid, text("b", after))
            await quiescent(bridge)
            return first, thread(await box.messages())
    finally:
        await box.stop()
        await lobby.stop()
        shutil.rmtree(short, ignore_errors=True)


@pytest.mark.parametrize(("before", "after"), CASES)
@pytest.mark.parametrize("platform", EDITING)
async def test_split_edit_holds_the_edited_text(platform: str, before: int, after: int,
                                                tmp_path: Path) -> None:
    first, now = await edit_on(platform, tmp_path, before, after)
    assert len(first) == before and words_of(first, ATTRIBUTION) == text("a", before)
    assert len(now) == after, [m.text for m in now]
    assert words_of(now, ATTRIBUTION) == text("b", after)
    # the parts kept are the ones posted (edited in place), the first one first
    kept = min(before, after)
    assert [m.native_id for m in now[:kept]] == [m.native_id for m in first[:kept]]
    assert all(m.edited for m in now[:kept])


@pytest.mark.parametrize(("before", "after"), CASES)
async def test_split_edit_where_parts_cannot_be_deleted(before: int, after: int,
                                                        tmp_path: Path) -> None:
    """A target that edits but cannot delete: parts no longer needed say so,
    at the end of the thread, and the text before them is the edited one."""
    first, now = await edit_on("sandbox", tmp_path, before, after,
                               garden={"deletes": False})
    assert len(first) == before
    assert len(now) == max(before, after)
    assert [m.native_id for m in now[:before]] == [m.native_id for m in first]
    assert words_of(now[:after], ATTRIBUTION) == text("b", after)
    assert [m.text for m in now[after:]] == [REMOVED_NOTICE] * (before - after)


@pytest.mark.parametrize(("before", "after"), CASES)
@pytest.mark.parametrize("platform", NOT_EDITING)
async def test_split_edit_where_the_network_cannot_edit(platform: str, before: int, after: int,
                                                        tmp_path: Path) -> None:
    """X and email cannot edit: under ``update`` the copy stays as posted (no
    part deleted, none added); under ``correct`` a correction thread answers
    its last part and holds the edited text."""
    first, now = await edit_on(platform, tmp_path / "update", before, after)
    assert len(first) == before and words_of(first, ATTRIBUTION) == text("a", before)
    assert [(m.native_id, m.text) for m in now] == [(m.native_id, m.text) for m in first]
    first, now = await edit_on(platform, tmp_path / "correct", before, after,
                               on_edit="correct")
    assert [m.native_id for m in now[:before]] == [m.native_id for m in first]
    assert words_of(now[:before], ATTRIBUTION) == text("a", before)
    assert len(now) == before + after, [m.text for m in now]
    assert words_of(now[before:], CORRECTION_PREFIX + ATTRIBUTION) == text("b", after)


@pytest.mark.parametrize("deletes", [True, False], ids=["deletes", "cannot-delete"])
async def test_edits_back_and_forth(deletes: bool, tmp_path: Path) -> None:
    """3 parts -> 1 -> 5 -> 3: each edit starts from what the copy holds after
    the one before (deleted parts are gone from it; parts noted as removed are
    filled again)."""
    lobby = SandboxPlatform(str(tmp_path / "networks"), "lobby")
    box = await start_box("sandbox", tmp_path, deletes=deletes)
    cfg = build_config(tmp_path, [*sandbox_channels(tmp_path, ["lobby"]),
                                  target("sandbox", box, tmp_path)])
    try:
        async with running(cfg) as bridge:
            nid = await lobby.post_as_member("dora", text("a", 3))
            await quiescent(bridge)
            for n, prefix in ((1, "b"), (5, "c"), (3, "d")):
                await lobby.edit_as_member(nid, text(prefix, n))
                await quiescent(bridge)
                now = thread(await box.messages())
                live = [m for m in now if m.text != REMOVED_NOTICE]
                assert words_of(live, ATTRIBUTION) == text(prefix, n), n
                assert len(now) == (n if deletes else max(n, len(now)))
                assert now[len(live):] == [m for m in now if m.text == REMOVED_NOTICE]
            pending = await bridge.store.run(lambda tx: tx.count_deliveries("dead"))
            assert pending == 0
    finally:
        await box.stop()
        await lobby.stop()


async def test_post_edit_and_reply_sent_in_one_pass(tmp_path: Path) -> None:
    """The target was down while a long post was written, edited from 3 parts
    to 5 and answered: when it is back, one pass sends the create (with the
    latest text, 5 parts), the edit (planned with the parts the create just
    made, not the store's empty answer of before the pass: the same 5 parts
    edited, none added) and the reply (answering the copy's last part)."""
    lobby = SandboxPlatform(str(tmp_path / "networks"), "lobby")
    box = await start_box("sandbox", tmp_path)
    cfg = build_config(tmp_path, [*sandbox_channels(tmp_path, ["lobby"]),
                                  target("sandbox", box, tmp_path)])
    try:
        async with running(cfg) as bridge:
            box.set_down(True)
            nid = await lobby.post_as_member("dora", text("a", 3))
            await quiescent(bridge, allow_deferred=True)
            await lobby.edit_as_member(nid, text("b", 5))
            await lobby.post_as_member("eve", "a reply", reply_to=nid)
            await quiescent(bridge, allow_deferred=True)
            box.set_down(False)
            await quiescent(bridge)  # (nothing pending: the copy and reply are out)
            msgs = await box.messages()
    finally:
        await box.stop()
        await lobby.stop()
    mine = [m for m in msgs if m.by_bridge]
    assert len(mine) == 6 and not any(m.deleted for m in mine)
    reply = [m for m in mine if "a reply" in m.text]
    assert len(reply) == 1
    post = thread([m for m in mine if m is not reply[0]])
    assert words_of(post, ATTRIBUTION) == text("b", 5) and all(m.edited for m in post)
    assert reply[0].reply_to == post[-1].native_id
