"""The steps of the inbound pipeline for reactions (likes, favourites, Matrix
reactions): counted per post, never relayed as messages.

A reaction names the post it is on by a native id, one of our copies or an
original the bridge relayed; the id map gives the post.  A reactor whose own
posts would not be relayed (blocked, ``#nobridge``, after ``!leave``, an opt-in
community not joined) is not counted: the same rules as for authors
(:func:`bridge.inbound.policy.consent_of`, :func:`bridge.inbound.policy.blocked`).
"""

from __future__ import annotations

import logging

from bridge.contract.model import Reacted
from bridge.inbound.pipeline import DONE, Drop, DropReason, Inbound, Outcome, ReactionChange
from bridge.inbound.policy import blocked, consent_of

log = logging.getLogger("hashbridge.relay")


def reaction_known(ib: Inbound[Reacted]) -> Drop | None:
    """The post reacted to, through the id map (copy, origin or alias)."""
    ev = ib.ev
    if not ev.native_id:
        # a removal known only by the reaction's own id: found in the persist step
        return None if not ev.added and ev.reaction_id else Drop(DropReason.REACTION_UNKNOWN)
    known = ib.known = ib.tx.native_lookup(ib.channel.key, ev.native_id)
    if known is None:
        return Drop(DropReason.REACTION_UNKNOWN)
    if ib.tx.post_state(known[0])[1] is not None:
        return Drop(DropReason.REACTION_UNKNOWN)  # deleted at its origin
    return None


def reaction_consent(ib: Inbound[Reacted]) -> Drop | None:
    """Only reactions of people whose posts would be relayed are counted.  A
    removal always goes through (it only takes away); so does an aggregate,
    which names nobody."""
    ev = ib.ev
    a = ev.reactor
    if not ev.added or ev.total is not None:
        return None
    if a.opted_out:
        return Drop(DropReason.PROFILE_OPTED_OUT)
    refused = consent_of(a, ib.community.settings, ib.tx)
    if refused is not None:
        return refused
    if blocked(a, ib.community.settings, ib.tx):
        return Drop(DropReason.BLOCKED)
    return None


def reaction_persist(ib: Inbound[Reacted]) -> Outcome:
    ev, tx = ib.ev, ib.tx
    network = ib.channel.platform
    reactor = "" if ev.total is not None else ev.reactor.identity
    key = ev.key
    if ev.added:
        assert ib.known is not None
        post_id = ib.known[0]
        changed = tx.add_reaction(post_id, network, reactor, key,
                                  reaction_id=ev.reaction_id,
                                  count=1 if ev.total is None else max(0, ev.total))
    elif ib.known is not None:
        post_id = ib.known[0]
        changed = tx.remove_reaction(post_id, network, reactor, key)
    else:
        found = tx.remove_reaction_by_id(network, ev.reaction_id)
        if found is None:
            return Drop(DropReason.REACTION_UNKNOWN)
        (post_id, reactor, key), changed = found, True
    if changed:
        ib.result.changed.append(("reacted", post_id))
        if ev.total is None:
            ib.result.reactions.append(ReactionChange(
                ib.channel.key, post_id, key, ev.added, reactor,
                ev.reactor if ev.added else None))
    return DONE
