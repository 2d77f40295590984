"""Member commands, as steps of the inbound pipeline: ``!join``/``!leave``
(consent) and ``!link``/``!unlink`` (:mod:`bridge.inbound.links`).  A command is
never relayed: it is kept as a hidden post (so a re-read is recognised) and
answered where it was said."""

from __future__ import annotations

from bridge.contract.model import Post, Posted, new_post_id
from bridge.inbound import links
from bridge.inbound.persist import answer
from bridge.inbound.pipeline import DONE, Drop, DropReason, Inbound, Outcome
from bridge.inbound.policy import blocked, command_rate

CONSENT_REPLIES = {
    "in": "Thanks, {name}: your posts with #{tag} will now be relayed to the community's "
          "other networks. Reply !leave to stop.",
    "out": "Done, {name}: your posts will not be relayed any more. Reply !join to opt in again.",
}

_LINK_VERBS = {"link": DropReason.LINK_COMMAND, "unlink": DropReason.UNLINK_COMMAND}


def consent_command(ib: Inbound[Posted]) -> Outcome:
    """``!join``/``!leave`` as the adapter parsed it (``Posted.command``)."""
    ev, tx = ib.ev, ib.tx
    if not ev.command:
        return None
    decision = {"!join": "in", "!leave": "out"}.get(ev.command.strip().lower())
    if decision is None:
        return Drop(DropReason.UNKNOWN_COMMAND, f"unknown command {ev.command!r}")
    a = ev.author
    before = tx.consent(a.platform, a.handle)
    tx.set_consent(a.platform, a.handle, decision)
    command = _keep(ib)
    if before == decision or not ib.channel.writes:
        return Drop(DropReason.CONSENT_UNCHANGED)
    _answer(ib, command, CONSENT_REPLIES[decision].format(
        name=a.name, tag=ib.community.settings.hashtag))
    return DONE


def link_command(ib: Inbound[Posted]) -> Outcome:
    """``!link``/``!unlink`` said in the post's (size-capped) text: counts
    against the author's rate like a post."""
    cmd = links.parse(ib.plain)
    if cmd is None:
        return None
    command = _keep(ib)
    a = ib.ev.author
    if a.is_bot or blocked(a, ib.community.settings, ib.tx):
        return Drop(DropReason.LINK_REFUSED)
    over = command_rate(ib)
    if over is not None:
        return over
    text = links.answer(ib.tx, cmd, a, ib.services.platforms, ib.channel.platform)
    if ib.channel.writes:
        _answer(ib, command, text)
    return Drop(_LINK_VERBS[cmd.verb])


def _keep(ib: Inbound[Posted]) -> Post:
    """A command is kept as a hidden post (never relayed, never shown) so a
    re-read is recognised and the answer can thread under it."""
    ev, tx, channel = ib.ev, ib.tx, ib.channel
    command = Post(id=new_post_id(), community=ib.community.name, origin_channel=channel.key,
                   origin_native_id=ev.native_id, permalink=ev.permalink, author=ev.author,
                   text=ev.text, created_at=ev.created_at)
    tx.insert_post(command, "")
    tx.set_hidden(command.id, True)
    tx.add_native(channel.key, ev.native_id, command.id, "origin")
    return command


def _answer(ib: Inbound[Posted], command: Post, text: str) -> None:
    """The bridge's answer to a command, threaded under it on its channel only."""
    answer(ib, command.id, text)
