"""The inbound pipeline, declared: for each kind of event, its steps in order.

This is the list ``hashbridge status``, ``/metrics`` and the admin page show;
the relay runs exactly these (:func:`bridge.inbound.pipeline.run`).  Order
matters where a step has an effect the ones after it rely on or must not pay:
``echo`` comes first (an echo of our own copy is never a duplicate, a command or
a refusal); commands come before the policy (``!join`` is how a reluctant author
opts in); ``rate`` counts the post against its author, so the free refusals come
before it; ``duplicate`` links only a post the policy let through; ``persist``
is last.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bridge.contract.model import Deleted, Edited, InboundEvent, Posted, Reacted, Rejected
from bridge.inbound import commands, persist, policy, reactions
from bridge.inbound.pipeline import DropReason as R
from bridge.inbound.pipeline import Step, check_declared, reason_of
from bridge.runtime.metrics import StepInfo

CHANNEL: Step[Any] = Step(
    name="channel", run=persist.known_channel, reasons=(R.UNKNOWN_CHANNEL,),
    description="The event's channel is in the config (an adapter reporting another one "
                "is logged).")

POSTED: tuple[Step[Posted], ...] = (
    CHANNEL,
    Step(name="echo", run=persist.echo, reasons=(R.ECHO, R.ALREADY_INGESTED),
         description="A message the id map knows already: our own copy read back (echo) or "
                     "an original read again (a re-read page, stream and catch-up both)."),
    Step(name="same-place", run=persist.same_place, reasons=(R.ECHO, R.SAME_POST),
         description="Read where another community's channel reads too (the same bot "
                     "account on a hashtag network, the same room): the bridge's copy made "
                     "for that community is an echo; during a blended event a post tagged "
                     "with both hashtags, read there already, stays one post."),
    Step(name="direction", run=persist.direction, reasons=(R.WRITE_ONLY,),
         description='The channel is write-only (direction = "out"): nothing read there is '
                     "relayed."),
    Step(name="consent-command", run=commands.consent_command,
         reasons=(R.UNKNOWN_COMMAND, R.CONSENT_UNCHANGED),
         description="!join / !leave addressed to the bridge: the author's consent is "
                     "recorded and answered once where it was said; never relayed."),
    Step(name="size", run=persist.size,
         description="The text is cut to max_post_chars (never drops; the later steps read "
                     "the cut text)."),
    Step(name="link-command", run=commands.link_command,
         reasons=(R.LINK_REFUSED, R.RATE, R.LINK_COMMAND, R.UNLINK_COMMAND),
         description="!link / !unlink (linked accounts): answered where it was said, never "
                     "relayed; counts against the author's rate, refused to bots and "
                     "blocked authors."),
    Step(name="visibility", run=policy.visibility, reasons=(R.NOT_PUBLIC,), recorded=True,
         description="Only public posts are relayed (not followers-only posts or DMs)."),
    Step(name="opt-out", run=policy.opt_out, reasons=(R.PROFILE_OPTED_OUT, R.OPT_OUT_TAG),
         recorded=True,
         description="The author's profile says #nobridge (or is not indexable), or the post "
                     "carries #nobridge/#nobot."),
    Step(name="bot", run=policy.bot, reasons=(R.BOT,), recorded=True,
         description="Posts by bot accounts are not relayed."),
    Step(name="consent", run=policy.consent,
         reasons=(R.RELUCTANT, R.NOT_OPTED_IN, R.OPTED_OUT), recorded=True,
         description="The consent registry: a reluctant profile (#nobot) or an opt-in "
                     "community needs !join first; !leave stops relaying."),
    Step(name="moderation", run=policy.moderation, reasons=(R.BLOCKED,), recorded=True,
         description="Authors on the community's blocklist or blocked on the admin page."),
    Step(name="rate", run=policy.rate, reasons=(R.RATE,), recorded=True,
         description="At most author_rate_per_minute posts and edits a minute per author "
                     "(counted here, so the refusals above cost nothing); a post over it is "
                     "held, not dropped: relayed in order when the author's minute has room "
                     "(refused only beyond 10 minutes of held posts)."),
    Step(name="quoted-author", run=policy.quoted_author,
         description="A quote post's quoted author is asked for consent as if they had "
                     "posted: where the bridge would not relay them, only the quoted post's "
                     "link is copied (never drops)."),
    Step(name="empty", run=policy.empty, reasons=(R.EMPTY,), recorded=True,
         description="A post with neither text nor attachments."),
    Step(name="duplicate", run=persist.duplicate, reasons=(R.DUPLICATE,),
         description="The same words the same person (or an account they linked) posted on "
                     "another channel within duplicate_window: linked to that post as its "
                     "presence here, not copied again."),
    Step(name="persist", run=persist.persist_post,
         description="Stored with its id map entry and one outbox row per writable channel "
                     "(the workers deliver them; held until its slot when over the rate, the "
                     "author told once a minute where the bridge can answer)."),
)

EDITED: tuple[Step[Edited], ...] = (
    CHANNEL,
    Step(name="edit-known", run=persist.edit_known, reasons=(R.EDIT_UNKNOWN, R.ECHO),
         description="An edit of a post the id map knows as an original here (an edit of "
                     "our own copy is its echo)."),
    Step(name="edit-origin", run=persist.edit_origin, reasons=(R.EDIT_OF_DUPLICATE,),
         description="Only the original's edits are relayed, not a hand-posted duplicate's."),
    Step(name="edit-deleted", run=persist.edit_deleted, reasons=(R.EDIT_OF_DELETED,),
         description="A deleted post stays deleted."),
    Step(name="edit-withdrawn", run=persist.edit_withdrawn,
         description="An edit that adds #nobridge/#nobot withdraws the post: relayed as a "
                     "delete."),
    Step(name="edit-unchanged", run=persist.edit_unchanged, reasons=(R.EDIT_UNCHANGED,),
         description="Text (cut to max_post_chars) and content warning as stored: nothing "
                     "to send."),
    Step(name="edit-persist", run=persist.persist_edit,
         description="Stored; queued edits of the post are replaced by this one; held while "
                     "the author is over the rate."),
)

DELETED: tuple[Step[Deleted], ...] = (
    CHANNEL,
    Step(name="delete-known", run=persist.delete_known,
         reasons=(R.DELETE_UNKNOWN, R.COPY_REMOVED),
         description="A delete of a post the id map knows as an original here (one of our "
                     "copies removed on its platform is logged)."),
    Step(name="delete-origin", run=persist.delete_origin, reasons=(R.DELETE_OF_DUPLICATE,),
         description="Only the original's delete is relayed, not a hand-posted duplicate's."),
    Step(name="delete-persist", run=persist.persist_delete, reasons=(R.ALREADY_DELETED,),
         description="The post's content is removed and its copies' deletes queued."),
)

REACTED: tuple[Step[Reacted], ...] = (
    CHANNEL,
    Step(name="reaction-known", run=reactions.reaction_known, reasons=(R.REACTION_UNKNOWN,),
         description="A like, favourite or reaction on a post the id map knows (one of our "
                     "copies or an original the bridge relayed) and not deleted."),
    Step(name="reaction-consent", run=reactions.reaction_consent,
         reasons=(R.PROFILE_OPTED_OUT, R.RELUCTANT, R.NOT_OPTED_IN, R.OPTED_OUT, R.BLOCKED),
         description="Only reactions of people whose own posts would be relayed are "
                     "counted (consent, #nobridge, the blocklist)."),
    Step(name="reaction-persist", run=reactions.reaction_persist,
         reasons=(R.REACTION_UNKNOWN,),
         description="Counted on the post (one per person, network and key; taken back "
                     "when the platform says so); never relayed as a message."),
)

REJECTED: tuple[Step[Rejected], ...] = (
    CHANNEL,
    Step(name="rejected", run=persist.record_rejection, rejection=True,
         reasons=(R.UNREADABLE, R.TOO_LARGE, R.RELAY_ERROR, R.POLICY, R.REJECTED_AGAIN),
         description="An event the adapter could not read (unreadable, too large) or the "
                     "relay's steps failed on (relay error): recorded once with its reason; "
                     "its page goes on without it."),
)

PIPELINES: dict[type[InboundEvent], tuple[Step[Any], ...]] = {
    Posted: POSTED, Edited: EDITED, Deleted: DELETED, Reacted: REACTED, Rejected: REJECTED}
"""The steps for each kind of event, in order."""

check_declared(PIPELINES.values())


def declared() -> list[tuple[str, Step[Any]]]:
    """Every step once, as ``(event kind, step)`` in pipeline order (the shared
    ``channel`` step under the first kind)."""
    out: list[tuple[str, Step[Any]]] = []
    seen: set[str] = set()
    for kind, steps in PIPELINES.items():
        for step in steps:
            if step.name not in seen:
                seen.add(step.name)
                out.append((kind.__name__.lower(), step))
    return out


def described() -> tuple[StepInfo, ...]:
    """:func:`declared` as the metrics, ``status`` and the admin page show it."""
    return tuple(StepInfo(event=kind, name=step.name, description=step.description,
                          reasons=tuple(r.value for r in step.reasons),
                          kept=tuple(r.value for r in step.kept))
                 for kind, step in declared())


_RECORDED_STEP = {r: step.name for _, step in declared() if step.recorded for r in step.reasons}
_REJECTED_STEP = {r: step.name for _, step in declared() if step.rejection for r in step.reasons}


def recorded_drops(policy: Iterable[tuple[str, str, int, float]],
                   rejections: Iterable[tuple[str, str, int, float]]
                   ) -> list[tuple[str, str, str, int, float]]:
    """The drops the store keeps, by ``(channel, step, reason)``: *policy* are
    ``Tx.policy_refusal_counts()`` rows (channel, recorded text, count, latest),
    *rejections* ``Tx.rejection_counts()`` rows (channel, kind, count, latest).
    Returns ``(channel, step, reason, count, latest)`` sorted.  A refusal of
    kind ``policy`` whose text no policy step writes was an adapter's
    ``Rejected(kind=policy)`` (or an older version's text): it counts under
    the ``rejected`` step, reason ``policy``."""
    got: dict[tuple[str, str, str], list[float]] = {}

    def add(channel: str, step: str, reason: str, n: int, at: float) -> None:
        row = got.setdefault((channel, step, reason), [0, 0.0])
        row[0] += n
        row[1] = max(row[1], at)

    for channel, text, n, at in policy:
        reason = reason_of(text)
        step = _RECORDED_STEP.get(reason) if reason is not None else None
        if reason is None or step is None:
            add(channel, _REJECTED_STEP[R.POLICY], R.POLICY.value, n, at)
        else:
            add(channel, step, reason.value, n, at)
    for channel, kind, n, at in rejections:
        if kind == R.POLICY.value:
            continue  # by reason above
        reason = reason_of(kind)
        add(channel, _REJECTED_STEP.get(reason, "?") if reason else "?", kind, n, at)
    return sorted((c, st, r, int(v[0]), v[1]) for (c, st, r), v in got.items())
