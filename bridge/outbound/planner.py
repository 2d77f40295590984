"""What one delivery sends: pure functions from what the store knows to a plan.

The worker (:mod:`bridge.outbound.worker`) reads a :class:`PlanInput` for each
delivery from the store, asks :func:`plan` (``plan_create``, ``plan_edit``,
``plan_delete``) what to do, and carries out the :class:`Plan`: sends its
steps in order, or skips the delivery with a reason, or looks again later.
Nothing here touches the store, the network or a clock: the same input gives
the same plan, and a table of inputs tests every decision.

Edits of a post split into parts (a numbered thread) make the copy hold the
new text exactly, in order, whatever the new number of parts:

* the parts both versions have are edited in place;
* parts the new text no longer needs are deleted, last first, where the
  target can delete and the channel lets the bridge delete (``on_delete =
  "delete"``); elsewhere they are edited to :data:`REMOVED_NOTICE` (and take
  text again if a later edit needs them);
* parts the new text needs beyond the old ones are posted as replies in the
  same thread, the first answering the copy's last part.

A target that cannot edit gets no edit under ``on_edit = "update"`` whatever the
part count (X, email: the copy keeps the text it was posted with), and a
correction thread under ``on_edit = "correct"``.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from dataclasses import dataclass

from bridge.contract.adapter import (
    Capabilities,
    Rendered,
    SendCreate,
    SendDelete,
    SendEdit,
    SendOp,
)
from bridge.contract.model import ChannelKey, DeliveryId, DeliveryState, NativeId, Op, Post
from bridge.contract.richtext import Inline, Link, RichText, Text
from bridge.outbound.ratelimit import ShareView
from bridge.outbound.render import Target, render

CORRECTION_PREFIX = "✏️ correction: "
DELETED_NOTICE = "(this message was deleted by its author)"
REMOVED_NOTICE = "(removed in an edit)"
"""What a part an edit no longer needs says where the target cannot delete it."""


class EditMode(enum.StrEnum):
    """A channel's ``on_edit``."""

    UPDATE = "update"
    SKIP = "skip"
    CORRECT = "correct"


class DeleteMode(enum.StrEnum):
    """A channel's ``on_delete``."""

    DELETE = "delete"
    SKIP = "skip"
    NOTICE = "notice"


# ---------------------------------------------------------------- input


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """The outbox row being planned."""

    id: DeliveryId
    op: Op
    parts_done: int = 0
    """Parts of a create already sent (a create resumed after a crash)."""
    created_at: float = 0.0
    maybe_sent: bool = False
    """Tried before (a failure was recorded), or queued before the worker last
    started (it may have been in flight at a kill -9): it may have reached the
    platform though no answer came back."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CopyPart:
    """One part of the bridge's copy of a post on the target channel."""

    native_id: NativeId
    part: int
    subject: str = ""
    aliases: tuple[NativeId, ...] = ()
    """The platform's other ids for this part (media sent as separate events)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OnChannel:
    """What the target channel holds of one post."""

    origin: CopyPart | None = None
    """The author's own message, where the post was written on this channel
    (it is not copied back there)."""
    parts: tuple[CopyPart, ...] = ()
    """Our copy's parts, in order (empty: no copy yet)."""

    @property
    def messages(self) -> tuple[CopyPart, ...]:
        """Every message of the post here, in order: what a reply answers."""
        return self.parts if self.origin is None else (self.origin, *self.parts)


@dataclass(frozen=True, slots=True, kw_only=True)
class Parent:
    """For a reply: where the post it answers is on the target channel."""

    here: OnChannel = OnChannel()
    create_state: DeliveryState | None = None
    """Of the parent's own create delivery to this channel (None: none was queued)."""
    permalink: str = ""
    """Of the parent's original, named in the text when it has no copy here."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Rules:
    """The channel's settings the planner follows."""

    on_edit: EditMode = EditMode.UPDATE
    on_delete: DeleteMode = DeleteMode.DELETE
    reply_wait: float = 30.0
    author_share: float = 0.1


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanInput:
    """Everything one delivery's plan depends on."""

    delivery: Delivery
    channel: ChannelKey
    post: Post | None
    """None: the post no longer exists."""
    deleted: bool = False
    """Deleted at its origin."""
    here: OnChannel = OnChannel()
    parent: Parent | None = None
    """For a create of a reply (None otherwise, or when the parent is unknown)."""
    target: Target
    network: str
    """Display name of the post's origin network (attributions)."""
    rules: Rules = Rules()
    share: ShareView | None = None
    """The author's standing against the channel's daily budget, where it has one."""
    web_link: str = ""
    """Where the whole post can be read (a post cut to spare the budget links it)."""
    now: float = 0.0


# ---------------------------------------------------------------- output


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One message to send, and what it means for the copy's parts."""

    op: SendOp
    part: int
    """The part of the copy it makes, changes or removes."""
    chain: bool = False
    """A create answering the create sent just before it in the same plan
    (its id is known only then): the worker fills in ``reply_to``."""
    retire: bool = False
    """Sent, the part is no longer part of the copy (deleted by an edit)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Charge:
    """Parts (and money) a create takes from its author's daily share."""

    author: str
    parts: int
    cost: float
    cut: bool
    """Cut to one part because a thread would have taken too much."""


@dataclass(frozen=True, slots=True)
class Send:
    steps: tuple[Step, ...]
    charge: Charge | None = None
    note: str = ""
    """Worth logging (why a post was cut)."""


@dataclass(frozen=True, slots=True)
class Skip:
    reason: str


@dataclass(frozen=True, slots=True)
class Wait:
    """Not ready (a reply waiting for its parent's copy): look again later."""

    seconds: float
    reason: str = "waiting for the parent's copy"


Plan = Send | Skip | Wait


# ---------------------------------------------------------------- planning


def plan(inp: PlanInput) -> Plan:
    """The plan for one delivery; every op it sends names the origin network."""
    if inp.post is None:
        return Skip("post no longer exists")
    match inp.delivery.op:
        case Op.CREATE:
            out = plan_create(inp, inp.post)
        case Op.EDIT:
            out = plan_edit(inp, inp.post)
        case Op.DELETE:
            out = plan_delete(inp, inp.post)
        case _:
            return Skip(f"unknown op {inp.delivery.op}")
    if isinstance(out, Send) and inp.network:
        out = dataclasses.replace(out, steps=tuple(
            dataclasses.replace(s, op=dataclasses.replace(s.op, origin_network=inp.network))
            for s in out.steps))
    return out


def plan_create(inp: PlanInput, post: Post) -> Plan:
    """A new post: its parts, the first answering its parent's copy (or naming
    the parent's original when the parent has no copy here)."""
    d = inp.delivery
    if inp.deleted and not d.maybe_sent:
        # Never tried: nothing can be there. A create that may have reached the
        # platform with its answer lost (a time-out, a kill -9 mid-send) goes out
        # again under the same idempotency key, so its copy is recorded and the delete
        # queued behind it removes it, instead of leaving a copy nobody knows of.
        return Skip("deleted at its origin before delivery")
    if inp.here.origin is not None:
        return Skip("already on this channel (posted there by its author)")
    reply_to: NativeId | None = None
    subject = ""
    reference = ""
    parent = inp.parent
    if parent is not None:
        there = parent.here.messages
        if there:
            reply_to, subject = there[-1].native_id, there[0].subject
        else:
            waited = inp.now - d.created_at
            if parent.create_state == DeliveryState.PENDING and waited < inp.rules.reply_wait:
                return Wait(min(1.0, inp.rules.reply_wait - waited))
            reference = parent.permalink
    text = post.text.with_suffix(_reply_ref(reference)) if reference else None
    parts, charge, note = _fair_parts(inp, post, lambda t, ref, keep: render(
        post, t, inp.network, reference=ref, text=text, keep_reference=keep))
    # Parts of a split thread chain to the part before; when resuming after a
    # crash, the last part sent is known, later ones are filled in as they go.
    previous = inp.here.parts
    steps: list[Step] = []
    for i, rendered in enumerate(parts):
        if i < d.parts_done:
            continue
        if i == 0:
            to, chain = reply_to, False
        elif i == d.parts_done and previous:
            to, chain = previous[-1].native_id, False
        else:
            to, chain = None, True
        steps.append(Step(part=i, chain=chain, op=SendCreate(
            delivery_id=d.id, idempotency_key=f"{d.id}.{i}", channel=inp.channel, post=post,
            rendered=rendered, reply_to=to,
            thread_root=previous[0].native_id if previous else None, part=i,
            parts=len(parts), parent_subject=subject)))
    return Send(tuple(steps), charge=charge, note=note)


def plan_edit(inp: PlanInput, post: Post) -> Plan:
    """An edited post: under ``update`` the copy's parts come to hold the new
    text exactly (see the module's docstring); under ``correct`` a correction
    thread answers the copy."""
    d = inp.delivery
    caps = inp.target.caps
    own = inp.here.parts
    if inp.deleted:
        return Skip("deleted at its origin")
    if not own:
        return Skip("no copy on this channel to edit")
    mode = inp.rules.on_edit
    if mode == EditMode.SKIP or (mode == EditMode.UPDATE and not caps.edit):
        return Skip("edits not relayed to this channel"
                    + ("" if caps.edit else " (it cannot edit)"))
    if mode == EditMode.CORRECT:
        parts, charge, note = _fair_parts(inp, post, lambda t, ref, keep: render(
            post, t, inp.network, prefix=CORRECTION_PREFIX, reference=ref, keep_reference=keep))
        return Send(tuple(
            Step(part=i, chain=i > 0, op=SendCreate(
                delivery_id=d.id, idempotency_key=f"{d.id}.{i}", channel=inp.channel,
                post=post, rendered=r, reply_to=own[-1].native_id, part=i,
                parts=len(parts), parent_subject=own[0].subject))
            for i, r in enumerate(parts)), charge=charge, note=note)
    parts = render(post, inp.target, inp.network, reference=post.permalink)
    steps: list[Step] = []
    for have, rendered in zip(own, parts, strict=False):
        steps.append(Step(part=have.part, op=SendEdit(
            delivery_id=d.id, idempotency_key=f"{d.id}.{have.part}", channel=inp.channel,
            post=post, native_id=have.native_id, rendered=rendered)))
    surplus = own[len(parts):]
    if surplus and caps.delete and inp.rules.on_delete == DeleteMode.DELETE:
        for have in reversed(surplus):
            steps.append(Step(part=have.part, retire=True, op=SendDelete(
                delivery_id=d.id, idempotency_key=f"{d.id}.{have.part}.del",
                channel=inp.channel, post=post, native_id=have.native_id,
                extra_native_ids=have.aliases)))
    elif surplus:
        removed = _removed(post, inp)
        for have in surplus:
            steps.append(Step(part=have.part, op=SendEdit(
                delivery_id=d.id, idempotency_key=f"{d.id}.{have.part}", channel=inp.channel,
                post=post, native_id=have.native_id, rendered=removed)))
    last = own[-1]
    for i in range(len(own), len(parts)):
        # (numbered on from the copy's last part, the next free number in the id map)
        number = last.part + 1 + i - len(own)
        steps.append(Step(part=number, chain=i > len(own), op=SendCreate(
            delivery_id=d.id, idempotency_key=f"{d.id}.{number}.add", channel=inp.channel,
            post=post, rendered=parts[i], reply_to=last.native_id,
            thread_root=own[0].native_id, part=i, parts=len(parts),
            parent_subject=own[0].subject)))
    return Send(tuple(steps))


def plan_delete(inp: PlanInput, post: Post) -> Plan:
    """A deleted post: its copy's parts deleted (last first), or a notice."""
    d = inp.delivery
    caps = inp.target.caps
    own = inp.here.parts
    if not own:
        return Skip("no copy on this channel to delete")
    mode = inp.rules.on_delete
    if mode == DeleteMode.SKIP or (mode == DeleteMode.DELETE and not caps.delete):
        return Skip("deletes not relayed to this channel"
                    + ("" if caps.delete else " (it cannot delete)"))
    if mode == DeleteMode.NOTICE:
        rendered = render(_notice(post, DELETED_NOTICE), inp.target, inp.network)[0]
        return Send((Step(part=0, op=SendCreate(
            delivery_id=d.id, idempotency_key=f"{d.id}.0", channel=inp.channel, post=post,
            rendered=rendered, reply_to=own[-1].native_id, parent_subject=own[0].subject)),))
    return Send(tuple(
        Step(part=c.part, op=SendDelete(
            delivery_id=d.id, idempotency_key=f"{d.id}.{c.part}", channel=inp.channel,
            post=post, native_id=c.native_id, extra_native_ids=c.aliases))
        for c in reversed(own)))


# ---------------------------------------------------------------- helpers


def _fair_parts(inp: PlanInput, post: Post,
                rendering: Callable[[Target, str, bool], list[Rendered]]
                ) -> tuple[list[Rendered], Charge | None, str]:
    """The post's parts on this channel, within its author's fair share of the
    channel's daily budget (``author_share`` of ``posts_per_day``, and of
    ``cost_per_day`` where each part has a price: on X a part with a URL costs
    over ten times one without): a post that would take the author past it
    goes out as one part, cut, with a link to the web view (or the original)
    instead of as a thread.  A thread already partly sent stays a thread."""
    caps = inp.target.caps
    parts = rendering(inp.target, post.permalink, False)
    share = inp.share
    if share is None:
        return parts, None, ""
    cost = part_cost(parts, caps)
    if inp.delivery.parts_done or share.fits(len(parts), cost):
        return parts, Charge(author=share.author, parts=len(parts), cost=cost, cut=False), ""
    note = (f"post {post.id} by {share.author} cut to one part on {inp.channel}: a thread of "
            f"{len(parts)} parts (cost {cost:.3f}) would take its author past their share "
            f"today (author_share {inp.rules.author_share:g} of {caps.posts_per_day} posts"
            + (f" and {caps.cost_per_day:g}" if share.cost_allowance is not None else "")
            + f" a day; used today: {share.used} parts, cost {share.spent:.3f})")
    parts = rendering(dataclasses.replace(inp.target, split="truncate"), inp.web_link, True)
    cost = part_cost(parts, caps)
    return parts, Charge(author=share.author, parts=len(parts), cost=cost, cut=True), note


def part_cost(parts: list[Rendered], caps: Capabilities) -> float:
    """What *parts* cost on a target that prices each part (0 elsewhere)."""
    price = caps.part_cost
    return sum(price(r.plain) for r in parts) if price is not None else 0.0


def _removed(post: Post, inp: PlanInput) -> Rendered:
    """What a part an edit no longer needs becomes where it cannot be deleted:
    a short note, without attribution, hashtag or media (its author is still
    its sender where the platform shows one)."""
    bare = dataclasses.replace(post, text=RichText.plain(REMOVED_NOTICE), attachments=(),
                               poll=None, quote=None)
    target = dataclasses.replace(inp.target, attribution="", append_hashtag=False,
                                 split="truncate")
    return render(bare, target, inp.network)[0]


def _reply_ref(url: str) -> list[Inline]:
    return [Text(" (reply to "), Link(url), Text(")")]


def _notice(post: Post, text: str) -> Post:
    return Post(id=post.id, community=post.community, origin_channel=post.origin_channel,
                origin_native_id=post.origin_native_id, permalink=post.permalink,
                author=post.author, text=RichText.plain(text), is_notice=True)
