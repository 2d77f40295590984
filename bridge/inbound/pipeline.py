"""The inbound pipeline's machinery: named steps, run in order by one loop.

Every inbound event goes through the steps declared for its kind
(:data:`bridge.inbound.steps.PIPELINES`), one after the other.  A step looks at
the event and at what the steps before it worked out (:class:`Inbound`), may
write to the store, and answers one of three things:

* ``None``: go on with the next step;
* a :class:`Drop`: the event stops here, not relayed, for a :class:`DropReason`;
* :data:`DONE`: the event was handled (stored and queued, or a command answered).

The loop (:func:`run`) does the bookkeeping the same way for every step: it
counts each drop by step and reason (``/metrics``, the admin page), and for a
step declared ``recorded`` (the community's policy) records the refusal in the
store's rejections and logs it (``status``, the admin page).  Mailman's
handler pipeline, in small.
"""

from __future__ import annotations

import enum
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from bridge.contract.model import Author, ChannelKey, InboundEvent, Poll, Post, PostId, QuotedPost
from bridge.contract.richtext import RichText
from bridge.inbound.rate import AuthorRate
from bridge.runtime.blend import Blend
from bridge.runtime.config import ChannelConfig, CommunityConfig
from bridge.store import Tx

log = logging.getLogger("hashbridge.relay")

E = TypeVar("E", bound=InboundEvent)


class DropReason(enum.StrEnum):
    """Why the pipeline stopped an event: the ``reason`` label of
    ``hashbridge_inbound_dropped_total``.  The value is what the legacy
    ``hashbridge_posts_dropped_total`` shows too, except where a :class:`Drop`
    carries a more specific detail (``author over 3 posts/minute``)."""

    UNKNOWN_CHANNEL = "unknown channel"
    # posted: the id map
    ECHO = "echo"
    SAME_POST = "read already through a blended community's channel at the same place"
    ALREADY_INGESTED = "already ingested"
    WRITE_ONLY = "channel is write-only"
    # posted: member commands
    UNKNOWN_COMMAND = "unknown command"
    CONSENT_UNCHANGED = "consent unchanged"
    LINK_REFUSED = "!link from a bot or a blocked author"
    LINK_COMMAND = "!link command"
    UNLINK_COMMAND = "!unlink command"
    # posted: the community's policy (recorded in the store's rejections)
    NOT_PUBLIC = "not public"
    PROFILE_OPTED_OUT = "author opted out (#nobridge/#nobot or not indexable)"
    OPT_OUT_TAG = "post carries #nobridge/#nobot"
    BOT = "author is a bot"
    RELUCTANT = "author's profile objects (relayed after !join)"
    NOT_OPTED_IN = "author has not opted in (community is opt-in)"
    OPTED_OUT = "author opted out"
    BLOCKED = "author is blocked"
    RATE = "author over the posts/minute rate"
    EMPTY = "empty post"
    DUPLICATE = "cross-posted duplicate linked"
    # edited
    EDIT_UNKNOWN = "edit of an unknown post"
    EDIT_OF_DUPLICATE = "edit of a linked duplicate"
    EDIT_OF_DELETED = "edit of a deleted post"
    EDIT_UNCHANGED = "edit without change"
    # deleted
    DELETE_UNKNOWN = "delete of an unknown post"
    COPY_REMOVED = "copy removed on its platform"
    DELETE_OF_DUPLICATE = "delete of a linked duplicate"
    ALREADY_DELETED = "already deleted"
    # reacted
    REACTION_UNKNOWN = "reaction to a post the bridge does not know"
    # rejected (the values of RejectKind)
    UNREADABLE = "unreadable"
    TOO_LARGE = "too large"
    RELAY_ERROR = "relay error"
    POLICY = "policy"
    REJECTED_AGAIN = "rejected event read again"


DETAILED: dict[DropReason, re.Pattern[str]] = {
    DropReason.RATE: re.compile(r"author over \d+ posts/minute( with \d+ posts held)?"),
    DropReason.RELUCTANT: re.compile(r"author's profile: .* \(relayed after !join\)", re.S),
    DropReason.UNKNOWN_COMMAND: re.compile(r"unknown command .*", re.S),
}
"""The reasons whose drops carry a detail of their own (what the store's
rejections and the legacy metric show), and the shape of that detail."""


def reason_of(detail: str) -> DropReason | None:
    """The :class:`DropReason` a recorded refusal's text stands for (the store
    keeps the text, as shown to operators); None for a text no step writes."""
    try:
        return DropReason(detail)
    except ValueError:
        pass
    for reason, pattern in DETAILED.items():
        if pattern.fullmatch(detail):
            return reason
    return None


@dataclass(frozen=True, slots=True)
class Drop:
    reason: DropReason
    detail: str = ""
    """The specific text (``author over 3 posts/minute``) when the reason's
    value is not all there is to say."""

    @property
    def text(self) -> str:
        """What is recorded, logged and shown as the legacy metric's label."""
        return self.detail or self.reason.value


class Done(enum.Enum):
    DONE = "done"


DONE = Done.DONE
"""The event was handled: stored and queued, or a command answered."""

Outcome = Drop | Done | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Step(Generic[E]):
    """One named handler of the inbound pipeline."""

    name: str
    """Unique across the pipelines: the ``step`` label of the metrics."""
    description: str
    """What the step does and why, one or two sentences (``status``, the admin page)."""
    run: Callable[[Inbound[E]], Outcome]
    reasons: tuple[DropReason, ...] = ()
    """Every reason it may drop an event with (a step that never drops has none)."""
    recorded: bool = False
    """Its drops are refusals by the community's rules: recorded in the store's
    rejections (kind ``policy``: ``status``, the admin page) and logged."""
    rejection: bool = False
    """Its drops are events that could not be read or relayed: counted in
    ``hashbridge_inbound_rejected_total`` (once per event) rather than in
    ``hashbridge_posts_dropped_total``."""

    @property
    def kept(self) -> tuple[DropReason, ...]:
        """The reasons whose drops the store keeps (``status`` counts them
        across restarts); the others are counted in memory only."""
        if self.recorded:
            return self.reasons
        if self.rejection:  # an event read again is not recorded again
            return tuple(r for r in self.reasons if r is not DropReason.REJECTED_AGAIN)
        return ()


@dataclass(frozen=True, slots=True)
class ReactionChange:
    channel: ChannelKey
    """Where the reaction was made."""
    post_id: PostId
    key: str
    added: bool
    reactor: str
    """The reactor's identity."""
    author: Author | None
    """The reactor as their platform described them (None on a removal)."""


@dataclass
class IngestResult:
    accepted: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    wake: set[ChannelKey] = field(default_factory=set)
    changed: list[tuple[str, PostId]] = field(default_factory=list)
    """``(kind, post id)`` for live views: kind is posted, edited or deleted."""
    counts: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    """``(channel, what, reason)`` -> n, for the metrics: *what* is ``accepted``
    (reason ""), ``held`` (accepted and held over the author's rate, reason ""),
    ``dropped`` or ``rejected`` (reason: the rejection's kind)."""
    steps: Counter[tuple[str, str]] = field(default_factory=Counter)
    """``(step, reason)`` -> n: every event a step stopped, by its
    :class:`DropReason` (``hashbridge_inbound_dropped_total``)."""
    channel: str = ""
    """The channel of the event being ingested (what :meth:`drop` counts under)."""
    reactions: list[ReactionChange] = field(default_factory=list)
    """Each reaction that changed a count: an adapter with native reactions
    shows them on its other channels."""

    def drop(self, why: str) -> None:
        self.dropped[why] = self.dropped.get(why, 0) + 1
        self.counts[(self.channel, "dropped", why)] += 1

    def reject(self, kind: str) -> None:
        self.counts[(self.channel, "rejected", kind)] += 1

    def stopped(self, step: Step[Any], drop: Drop) -> None:
        """Count *drop* by *step*: by step and reason, and in the legacy counters."""
        self.steps[(step.name, drop.reason.value)] += 1
        if step.rejection:
            # counted as "rejected" by the step itself, once per event
            self.dropped[drop.text] = self.dropped.get(drop.text, 0) + 1
        else:
            self.drop(drop.text)


@dataclass(slots=True)
class Inbound(Generic[E]):
    """One event on its way through the steps, and what the steps worked out."""

    ev: E
    tx: Tx
    result: IngestResult
    services: Services
    channel: ChannelConfig = field(init=False)
    """The event's channel and its community: set by the first step
    (``channel``), which drops an event for a channel not in the config."""
    community: CommunityConfig = field(init=False)
    # worked out on the way
    known: tuple[PostId, str] | None = None
    """The event's id in the id map: ``(post id, role)``."""
    post: Post | None = None
    """The stored post an edit or delete is about."""
    text: RichText | None = None
    """The text cut to ``max_post_chars`` (the size step)."""
    plain: str = ""
    cut: bool = False
    fingerprint: str = ""
    hold_until: float = 0.0
    """When a post over its author's rate goes out (wall clock; the rate
    step): 0.0, at once."""
    extras: tuple[Poll | None, QuotedPost | None] | None = None
    """An edit's new poll and quote (the quote as it may be copied), where they
    changed; None: unchanged."""
    quote: QuotedPost | None = None
    """The post's quote as it may be copied (the quoted-author step: only its
    link where the quoted author would not be relayed)."""


@dataclass(frozen=True, slots=True)
class Services:
    """What the steps share across events: the config's channels (with their
    community), the per-author rate and the platforms the config has (``!link``
    names them)."""

    routes: Mapping[str, tuple[ChannelConfig, CommunityConfig]]
    rate: AuthorRate
    platforms: frozenset[str]
    blend: Blend
    """Blended events' partners and each post's targets, one per place."""


def run(steps: Sequence[Step[E]], ib: Inbound[E]) -> Outcome:
    """Run *ib* through *steps* until one drops it or handles it."""
    for step in steps:
        outcome = step.run(ib)
        if outcome is None:
            continue
        if isinstance(outcome, Drop):
            if step.recorded:
                channel = ib.channel.key
                ib.tx.reject(channel, ib.ev.native_id, outcome.text)
                log.info("not relayed: %s %s: %s", channel, ib.ev.native_id, outcome.text)
            ib.result.stopped(step, outcome)
        return outcome
    raise AssertionError(f"no step handled {type(ib.ev).__name__}: the last must")


def check_declared(pipelines: Iterable[Sequence[Step[Any]]]) -> None:
    """Raise ValueError when two steps share a name (the metrics' label)."""
    seen: dict[str, Step[Any]] = {}
    for steps in pipelines:
        for step in steps:
            if seen.get(step.name, step) is not step:
                raise ValueError(f"two inbound steps are named {step.name!r}")
            seen[step.name] = step
