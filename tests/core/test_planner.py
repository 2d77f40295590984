"""The pure planner (bridge.outbound.planner): typed input in, typed plan out,
no store, no network.  Tables of edits that keep, shrink and grow a split
post's part count on targets that can edit and delete, edit only, or neither;
and the decisions of creates and deletes."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest

from bridge.contract.adapter import Capabilities, SendCreate, SendDelete, SendEdit
from bridge.contract.model import (
    Attachment,
    Author,
    ChannelKey,
    DeliveryId,
    DeliveryState,
    NativeId,
    Op,
    Post,
    PostId,
)
from bridge.contract.richtext import RichText
from bridge.outbound.planner import (
    CORRECTION_PREFIX,
    REMOVED_NOTICE,
    CopyPart,
    DeleteMode,
    Delivery,
    EditMode,
    OnChannel,
    Parent,
    PlanInput,
    Rules,
    Send,
    Skip,
    Wait,
    plan,
)
from bridge.outbound.ratelimit import ShareView
from bridge.outbound.render import Target

LIMIT = 100
WORDS = {1: 10, 3: 44, 5: 78}
HEAD = "Dora (Lobby): "
NUMBER = re.compile(r" \((\d+)/(\d+)\)$")


def text(prefix: str, parts: int) -> str:
    return " ".join(f"{prefix}{i:03d}" for i in range(WORDS[parts]))


def post(body: str, **kw: Any) -> Post:
    return Post(id=PostId("p1"), community="kmers", origin_channel=ChannelKey("kmers/lobby"),
                origin_native_id=NativeId("n1"), permalink="https://lobby.example/1",
                author=Author(platform="sandbox", handle="dora", display_name="Dora"),
                text=RichText.plain(body), **kw)


def copy_of(parts: int) -> OnChannel:
    return OnChannel(parts=tuple(
        CopyPart(native_id=NativeId(f"c{i}"), part=i, subject="Re: the thread" if i == 0 else "",
                 aliases=(NativeId(f"c{i}-media"),) if i == 2 else ())
        for i in range(parts)))


NOTHING = OnChannel()
DEFAULT_RULES = Rules()


def inp(op: Op, body: str, *, here: OnChannel = NOTHING, edit: bool = True,
        delete: bool = True, rules: Rules = DEFAULT_RULES, **kw: Any) -> PlanInput:
    caps = Capabilities(max_length=LIMIT, edit=edit, delete=delete, reply=True)
    return PlanInput(delivery=Delivery(id=DeliveryId("d1"), op=op, created_at=1000.0),
                     channel=ChannelKey("kmers/garden"), post=post(body), here=here,
                     target=Target(caps=caps, hashtag="kmers"), network="Lobby", rules=rules,
                     now=1000.0, **kw)


def sent_text(parts: list[str]) -> str:
    """The words *parts* hold together, their numbering checked and removed."""
    out = []
    for i, t in enumerate(parts):
        m = NUMBER.search(t)
        if len(parts) > 1:
            assert m is not None and (int(m[1]), int(m[2])) == (i + 1, len(parts)), t
            t = t[:m.start()]
        out.append(t.removeprefix(HEAD) if i == 0 else t)
    return " ".join(out)


def steps(p: object) -> list[tuple[str, str, int]]:
    """(kind, native id or reply_to, part) for each step."""
    assert isinstance(p, Send), p
    out = []
    for s in p.steps:
        match s.op:
            case SendEdit(native_id=nid):
                out.append(("edit", nid, s.part))
            case SendDelete(native_id=nid):
                out.append(("delete", nid, s.part))
            case SendCreate(reply_to=to):
                out.append(("create", to or "", s.part))
    return out


# ---------------------------------------------------------------- edits, update mode

EDIT_TABLE = [
    # before, after, edit, delete: the steps
    pytest.param(3, 3, True, True, [("edit", "c0", 0), ("edit", "c1", 1), ("edit", "c2", 2)],
                 id="same"),
    pytest.param(3, 1, True, True, [("edit", "c0", 0), ("delete", "c2", 2),
                                    ("delete", "c1", 1)], id="shrink-deletes-the-rest"),
    pytest.param(3, 5, True, True, [("edit", "c0", 0), ("edit", "c1", 1), ("edit", "c2", 2),
                                    ("create", "c2", 3), ("create", "c2", 4)], id="grow"),
    pytest.param(1, 3, True, True, [("edit", "c0", 0), ("create", "c0", 1),
                                    ("create", "c0", 2)], id="grow-from-one"),
    pytest.param(3, 1, True, False, [("edit", "c0", 0), ("edit", "c1", 1), ("edit", "c2", 2)],
                 id="shrink-cannot-delete"),
    pytest.param(5, 3, True, False, [("edit", f"c{i}", i) for i in range(5)],
                 id="shrink-5-3-cannot-delete"),
]


@pytest.mark.parametrize(("before", "after", "edit", "delete", "want"), EDIT_TABLE)
def test_edit_table(before: int, after: int, edit: bool, delete: bool,
                    want: list[tuple[str, str, int]]) -> None:
    p = plan(inp(Op.EDIT, text("b", after), here=copy_of(before), edit=edit, delete=delete))
    assert steps(p) == want
    assert isinstance(p, Send)
    # The parts that remain hold exactly the edited text, numbered 1..n.
    live = [s.op.rendered.plain for s in p.steps
            if isinstance(s.op, SendEdit | SendCreate)
            and s.op.rendered.plain != REMOVED_NOTICE]
    assert sent_text(live) == text("b", after)
    removed = [s for s in p.steps if isinstance(s.op, SendEdit)
               and s.op.rendered.plain == REMOVED_NOTICE]
    assert len(removed) == (max(0, before - after) if not delete else 0)
    assert all(s.part >= after for s in removed)
    # parts deleted leave the copy; nothing else does
    assert {s.part for s in p.steps if s.retire} == (
        set(range(after, before)) if delete else set())


def test_grown_parts_chain_in_the_thread() -> None:
    p = plan(inp(Op.EDIT, text("b", 5), here=copy_of(3)))
    assert isinstance(p, Send)
    added = [s for s in p.steps if isinstance(s.op, SendCreate)]
    assert [s.chain for s in added] == [False, True]  # the first answers the last part
    for s in added:
        assert isinstance(s.op, SendCreate)
        assert s.op.thread_root == "c0" and s.op.parent_subject == "Re: the thread"
        assert s.op.parts == 5 and s.op.rendered.attachments == ()
    keys = [s.op.idempotency_key for s in p.steps]
    assert len(set(keys)) == len(keys)  # a create never reuses an edit's key


def test_deleted_parts_take_their_other_ids() -> None:
    p = plan(inp(Op.EDIT, text("b", 1), here=copy_of(3)))
    assert isinstance(p, Send)
    deletes = [s.op for s in p.steps if isinstance(s.op, SendDelete)]
    assert [(d.native_id, d.extra_native_ids) for d in deletes] == [
        ("c2", ("c2-media",)), ("c1", ())]


def test_channel_that_keeps_copies_gets_removed_notes_not_deletes() -> None:
    """``on_delete = "skip"`` (or ``"notice"``): the bridge deletes nothing on
    that channel, not even parts an edit no longer needs."""
    for mode in (DeleteMode.SKIP, DeleteMode.NOTICE):
        p = plan(inp(Op.EDIT, text("b", 1), here=copy_of(3),
                     rules=Rules(on_delete=mode)))
        assert [k for k, _, _ in steps(p)] == ["edit", "edit", "edit"]
        assert isinstance(p, Send)
        notes = [s.op.rendered.plain for s in p.steps[1:] if isinstance(s.op, SendEdit)]
        assert notes == [REMOVED_NOTICE, REMOVED_NOTICE]


def test_removed_note_is_short_and_bare() -> None:
    i = inp(Op.EDIT, text("b", 1), here=copy_of(2), delete=False)
    picture = Attachment(url="https://lobby.example/a.png", media_type="image/png")
    i = replace(i, post=post(text("b", 1), attachments=(picture,)),
                target=replace(i.target, caps=replace(i.target.caps,
                                                      media_types=frozenset({"image/*"}))))
    p = plan(i)
    assert isinstance(p, Send)
    assert p.steps[0].op.rendered.attachments == (picture,)  # type: ignore[union-attr]
    assert isinstance(p, Send)
    note = p.steps[1].op
    assert isinstance(note, SendEdit)
    assert note.rendered.plain == REMOVED_NOTICE and note.rendered.attachments == ()
    assert not note.rendered.is_notice  # sent as its author where the platform shows one


@pytest.mark.parametrize(("before", "after"), [(3, 3), (3, 1), (3, 5)])
def test_target_that_cannot_edit_is_left_alone_under_update(before: int, after: int) -> None:
    p = plan(inp(Op.EDIT, text("b", after), here=copy_of(before), edit=False))
    assert p == Skip("edits not relayed to this channel (it cannot edit)")


@pytest.mark.parametrize(("before", "after"), [(3, 3), (3, 1), (3, 5)])
def test_correction_answers_the_last_part(before: int, after: int) -> None:
    p = plan(inp(Op.EDIT, text("b", after), here=copy_of(before), edit=False,
                 rules=Rules(on_edit=EditMode.CORRECT)))
    assert isinstance(p, Send)
    creates = [s.op for s in p.steps]
    assert all(isinstance(c, SendCreate) for c in creates)
    assert [s.chain for s in p.steps] == [False] + [True] * (after - 1)
    first = creates[0]
    assert isinstance(first, SendCreate) and first.reply_to == f"c{before - 1}"
    plains = [c.rendered.plain for c in creates if isinstance(c, SendCreate)]
    assert plains[0].startswith(CORRECTION_PREFIX)
    plains[0] = plains[0].removeprefix(CORRECTION_PREFIX)
    assert sent_text(plains) == text("b", after)


def test_edit_skips() -> None:
    assert plan(inp(Op.EDIT, "x", here=copy_of(1), rules=Rules(on_edit=EditMode.SKIP))) == \
        Skip("edits not relayed to this channel")
    assert plan(inp(Op.EDIT, "x")) == Skip("no copy on this channel to edit")
    assert plan(inp(Op.EDIT, "x", here=copy_of(1), deleted=True)) == \
        Skip("deleted at its origin")
    assert plan(replace(inp(Op.EDIT, "x"), post=None)) == Skip("post no longer exists")


# ---------------------------------------------------------------- creates


def test_create_splits_and_chains() -> None:
    p = plan(inp(Op.CREATE, text("a", 3)))
    assert isinstance(p, Send)
    assert [s.chain for s in p.steps] == [False, True, True]
    assert [s.part for s in p.steps] == [0, 1, 2]
    assert sent_text([s.op.rendered.plain for s in p.steps  # type: ignore[union-attr]
                      ]) == text("a", 3)


def test_create_resumed_after_a_crash_goes_on_from_the_last_part() -> None:
    i = inp(Op.CREATE, text("a", 3), here=copy_of(2))
    p = plan(replace(i, delivery=replace(i.delivery, parts_done=2)))
    assert steps(p) == [("create", "c1", 2)]
    assert isinstance(p, Send) and not p.steps[0].chain
    assert isinstance(p.steps[0].op, SendCreate) and p.steps[0].op.thread_root == "c0"


def test_create_of_a_reply() -> None:
    # the parent's copy is here: answer its last part
    p = plan(inp(Op.CREATE, "a reply", parent=Parent(here=copy_of(2))))
    assert steps(p) == [("create", "c1", 0)]
    # the parent was written here: answer the author's own message
    origin = OnChannel(origin=CopyPart(native_id=NativeId("o1"), part=0))
    assert steps(plan(inp(Op.CREATE, "a reply", parent=Parent(here=origin)))) == \
        [("create", "o1", 0)]
    # its copy is still on its way: wait (at most a second at a time)
    waiting = Parent(create_state=DeliveryState.PENDING, permalink="https://lobby.example/0")
    assert plan(inp(Op.CREATE, "a reply", parent=waiting)) == Wait(1.0)
    # ... until reply_wait has passed: then plain, naming the original
    late = plan(replace(inp(Op.CREATE, "a reply", parent=waiting), now=1031.0))
    assert isinstance(late, Send) and isinstance(late.steps[0].op, SendCreate)
    assert late.steps[0].op.reply_to is None
    assert "(reply to https://lobby.example/0)" in late.steps[0].op.rendered.plain
    # it was skipped: at once
    gone = replace(waiting, create_state=DeliveryState.SKIPPED)
    p = plan(inp(Op.CREATE, "a reply", parent=gone))
    assert isinstance(p, Send) and "(reply to " in p.steps[0].op.rendered.plain  # type: ignore[union-attr]


def test_create_skips() -> None:
    assert plan(inp(Op.CREATE, "x", deleted=True)) == \
        Skip("deleted at its origin before delivery")
    origin = OnChannel(origin=CopyPart(native_id=NativeId("o1"), part=0))
    assert plan(inp(Op.CREATE, "x", here=origin)) == \
        Skip("already on this channel (posted there by its author)")


def test_create_that_may_have_been_sent_goes_out_again_though_deleted() -> None:
    """Its answer lost (a time-out, a kill -9 mid-send), a create may be on the platform:
    sent again under its idempotency key, its copy is recorded, and the delete queued
    behind it removes it (skipping it would leave a copy nobody knows of)."""
    base = inp(Op.CREATE, "x", deleted=True)
    again = replace(base, delivery=replace(base.delivery, maybe_sent=True))
    p = plan(again)
    assert isinstance(p, Send) and [s.op.idempotency_key for s in p.steps] == ["d1.0"]


def test_create_past_the_author_share_is_cut_to_one_part() -> None:
    share = ShareView(author="sandbox:dora", used=4, allowance=5)
    p = plan(inp(Op.CREATE, text("a", 3), share=share, web_link="https://web.example/c/kmers"))
    assert isinstance(p, Send) and len(p.steps) == 1
    assert p.charge is not None and p.charge.cut and p.charge.parts == 1
    assert "cut to one part" in p.note
    assert "web.example" in p.steps[0].op.rendered.plain  # type: ignore[union-attr]
    # within the share: the whole thread, charged
    p = plan(inp(Op.CREATE, text("a", 3), share=replace(share, used=0)))
    assert isinstance(p, Send) and len(p.steps) == 3
    assert p.charge is not None and not p.charge.cut and p.charge.parts == 3 and not p.note
    # decided before (a re-plan): the same answer
    p = plan(inp(Op.CREATE, text("a", 3), share=replace(share, used=0, decided=False)))
    assert isinstance(p, Send) and len(p.steps) == 1


# ---------------------------------------------------------------- deletes


def test_delete_removes_the_parts_last_first() -> None:
    assert steps(plan(inp(Op.DELETE, "x", here=copy_of(3)))) == [
        ("delete", "c2", 2), ("delete", "c1", 1), ("delete", "c0", 0)]


def test_delete_modes() -> None:
    p = plan(inp(Op.DELETE, "x", here=copy_of(3), rules=Rules(on_delete=DeleteMode.NOTICE)))
    assert steps(p) == [("create", "c2", 0)]
    assert isinstance(p, Send) and p.steps[0].op.rendered.is_notice  # type: ignore[union-attr]
    assert plan(inp(Op.DELETE, "x", here=copy_of(1), delete=False)) == \
        Skip("deletes not relayed to this channel (it cannot delete)")
    assert plan(inp(Op.DELETE, "x")) == Skip("no copy on this channel to delete")


@pytest.mark.parametrize(("op", "here"), [(Op.CREATE, None), (Op.EDIT, 3), (Op.DELETE, 3)])
def test_every_op_names_the_origin_network(op: Op, here: int | None) -> None:
    """Adapters that name the origin elsewhere (Matrix ghosts, a mail's From) read it from
    the op, never from a table of the other adapters."""
    p = plan(inp(op, text("n", 3), **({"here": copy_of(here)} if here else {})))
    assert isinstance(p, Send) and p.steps
    assert {s.op.origin_network for s in p.steps} == {"Lobby"}
