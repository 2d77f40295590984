"""The community's policy, as steps of the inbound pipeline: who and what may
be relayed (visibility, opt-out, bots, consent, blocks, the author's rate, empty
posts), and the helpers the other steps share (the text's size cap, its
fingerprint for duplicate linking, the blocklist).

Each policy step answers ``None`` (go on) or a :class:`~bridge.inbound.pipeline.Drop`;
the pipeline records its refusals (they are declared ``recorded`` in
:mod:`bridge.inbound.steps`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import re
import time

from bridge.contract.consent import OPT_OUT_TAGS
from bridge.contract.model import Author, Posted, QuotedPost
from bridge.contract.richtext import RichText, iter_text
from bridge.contract.textconv import from_plain, to_plain
from bridge.inbound import held
from bridge.inbound.pipeline import Drop, DropReason, Inbound
from bridge.inbound.rate import AuthorRate
from bridge.runtime.config import CommunityCommon
from bridge.store import Tx

__all__ = ["OPT_OUT_TAGS", "AuthorRate", "blocked", "fit_size", "text_hash"]

log = logging.getLogger("hashbridge.relay")

"""A post carrying one of these is never relayed, and an edit that adds one
withdraws the post (the core's one definition)."""


_SPACES = re.compile(r"\s+")


@functools.lru_cache(maxsize=1024)
def _tag_pattern(hashtag: str) -> re.Pattern[str]:
    return re.compile(rf"#{re.escape(hashtag.casefold())}\b")


def text_hash(text: RichText | str, hashtag: str) -> str:
    """A fingerprint for duplicate linking: the words, without the community tag,
    links' decoration, case or spacing.  Takes the text or its plain rendering."""
    plain = (text if isinstance(text, str) else to_plain(text)).casefold()
    plain = _tag_pattern(hashtag).sub("", plain)
    plain = _SPACES.sub(" ", plain).strip()
    return hashlib.sha1(plain.encode()).hexdigest() if plain else ""


def carries_opt_out_tag(text: RichText) -> bool:
    return not OPT_OUT_TAGS.isdisjoint(text.hashtags())


# ------------------------------------------------------------------ the steps
# In the order of steps.POSTED: the first refusal wins, and the rate step
# counts the post against the author, so what comes before it is free.

def visibility(ib: Inbound[Posted]) -> Drop | None:
    return Drop(DropReason.NOT_PUBLIC) if not ib.ev.public else None


def opt_out(ib: Inbound[Posted]) -> Drop | None:
    if ib.ev.author.opted_out:
        return Drop(DropReason.PROFILE_OPTED_OUT)
    if carries_opt_out_tag(ib.ev.text):
        return Drop(DropReason.OPT_OUT_TAG)
    return None


def bot(ib: Inbound[Posted]) -> Drop | None:
    return Drop(DropReason.BOT) if ib.ev.author.is_bot else None


def consent(ib: Inbound[Posted]) -> Drop | None:
    return consent_of(ib.ev.author, ib.community.settings, ib.tx)


def consent_of(a: Author, community: CommunityCommon, tx: Tx) -> Drop | None:
    """The consent registry's answer for *a* in *community*: None when their
    posts may be relayed (the reactions step asks it too)."""
    decision = tx.consent(a.platform, a.handle)
    if a.reluctant and decision != "in":
        return Drop(DropReason.RELUCTANT,
                    f"author's profile: {a.reluctant} (relayed after !join)")
    if community.consent == "opt-in" and decision != "in":
        return Drop(DropReason.NOT_OPTED_IN)
    if decision == "out":
        return Drop(DropReason.OPTED_OUT)
    return None


def moderation(ib: Inbound[Posted]) -> Drop | None:
    return Drop(DropReason.BLOCKED) if blocked(ib.ev.author, ib.community.settings,
                                               ib.tx) else None


def rate(ib: Inbound[Posted]) -> Drop | None:
    """Count the post against its author's rate.  Over it, the post is held,
    not dropped: its slot is booked after the author's earlier posts and edits
    (``ib.hold_until``; the persist step holds its deliveries until then).
    Beyond :data:`~bridge.inbound.held.MAX_WINDOWS` minutes of held posts, a
    Drop (the cap: a flood cannot fill the disk)."""
    a, settings = ib.ev.author, ib.community.settings
    per_minute = settings.author_rate_per_minute
    wait = ib.services.rate.hold(settings.name, a.platform, a.handle, per_minute,
                                 key=f"{ib.ev.channel} {ib.ev.native_id}",
                                 max_windows=held.MAX_WINDOWS)
    if wait is None:
        cap = per_minute * held.MAX_WINDOWS
        log.warning("not held: %s %s: author already has %d minutes of posts held "
                    "(%d at %d a minute); refused", ib.channel.key, ib.ev.native_id,
                    held.MAX_WINDOWS, cap, per_minute)
        held.refused(ib.tx)
        return Drop(DropReason.RATE, f"author over {per_minute} posts/minute with {cap} posts held")
    if wait:
        ib.hold_until = time.time() + wait
    return None


def command_rate(ib: Inbound[Posted]) -> Drop | None:
    """A member command counts against its author's rate like a post, but is
    not held: over the rate, a Drop (it is not answered)."""
    a, settings = ib.ev.author, ib.community.settings
    if ib.services.rate.allow(settings.name, a.platform, a.handle,
                              settings.author_rate_per_minute,
                              key=f"{ib.ev.channel} {ib.ev.native_id}"):
        return None
    return Drop(DropReason.RATE, f"author over {settings.author_rate_per_minute} posts/minute")


def quoted_author(ib: Inbound[Posted]) -> None:
    """The quoted post's author is asked for consent as if they had posted:
    where the bridge would not relay their own posts (opted out, #nobridge or
    #nobot, a bot, not joined an opt-in community, blocked), or the quoted words
    carry an opt-out tag, only the quoted post's address is copied."""
    ib.quote = allowed_quote(ib.ev.quote, ib.community.settings, ib.tx)
    return None


def allowed_quote(q: QuotedPost | None, community: CommunityCommon, tx: Tx
                  ) -> QuotedPost | None:
    """*q* as the bridge may copy it (see :func:`quoted_author`)."""
    if q is None or q.author is None:
        return q
    if not relayable(q.author, community, tx) or carries_opt_out_tag(q.text):
        return q.link_only()
    # the quoted words are bounded like the member's own (max_post_chars)
    words, _, cut = fit_size(q.text, community.max_post_chars)
    return dataclasses.replace(q, text=words) if cut else q


def empty(ib: Inbound[Posted]) -> Drop | None:
    # Any character but spaces and quote marks in the plain text is some text; else
    # walk the tree (an empty quote renders as ">" yet says nothing).  A poll or
    # a quote with no words of the member's own is something to relay.
    ev = ib.ev
    if ev.attachments or ev.poll or ev.quote or ib.plain.replace(">", "").strip():
        return None
    return None if any(True for _ in iter_text(ev.text)) else Drop(DropReason.EMPTY)


# ------------------------------------------------------------------ helpers

def relayable(a: Author, community: CommunityCommon, tx: Tx) -> bool:
    """Whether the bridge would relay a post of *a*'s in *community* (the
    opt-out, bot, consent and moderation steps, for someone else's post)."""
    if a.opted_out or a.is_bot or blocked(a, community, tx):
        return False
    decision = tx.consent(a.platform, a.handle)
    if decision == "out" or (a.reluctant and decision != "in"):
        return False
    return not (community.consent == "opt-in" and decision != "in")


def blocked(a: Author, community: CommunityCommon, tx: Tx) -> bool:
    """On the community's ``blocklist`` or blocked by an admin."""
    return _blocked(a.platform, a.handle, community.blocklist) or tx.is_blocked(a.platform,
                                                                                 a.handle)


def _blocked(platform: str, handle: str, blocklist: list[str]) -> bool:
    h = handle.casefold().lstrip("@")
    for entry in blocklist:
        e = entry.casefold().lstrip("@")
        if ":" in e and not e.startswith("@"):
            p, _, eh = e.partition(":")
            if p == platform and eh.lstrip("@") == h:
                return True
        elif e == h:
            return True
    return False


def fit_size(text: RichText, max_chars: int) -> tuple[RichText, str, bool]:
    """Cap a canonical text at *max_chars* of plain text.  Returns the text, its
    plain rendering (reused by the later steps) and whether it was cut."""
    plain = to_plain(text)
    if len(plain) <= max_chars:
        return text, plain, False
    cut = from_plain(plain[:max_chars].rstrip() + " …")
    return cut, to_plain(cut), True
