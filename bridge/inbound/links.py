"""Linked accounts: one person's accounts on several networks, linked from both sides.

The bridge never takes a display name for a person (anyone can call themselves
"Alice").  An account is its platform's stable id (:attr:`Author.identity`);
two accounts are the same person only when that person said so from both:

1. from account A: ``!link mastodon:@alice@example.social`` (the platform name
   as in the config, then the handle of the other account).  The bridge answers
   there with a code, valid for an hour.
2. from that other account: ``!link CODE``.  The bridge links the two only if
   the account posting the code is the one named in step 1, and answers there.

A code seen by someone else is useless to them (it names the account that must
post it), and a stranger who names Alice's account in step 1 gets nothing
unless Alice posts the stranger's code.  ``!unlink`` removes every link of the
account that says it.  Links only serve duplicate linking (a member who posts
the same words by hand on two networks gets one post, not three).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from bridge.contract.model import Author
from bridge.store import Tx

CLAIM_SECONDS = 3600.0
_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTVWXYZ23456789"
_CODE_LENGTH = 8
_MAX_LEADING = 20
"""Replies and mentions on X and Mastodon start with handles: ``@bridge !link ...``;
at most this many are skipped (a command is short)."""


@dataclass(frozen=True, slots=True)
class LinkCommand:
    verb: str
    """``link`` or ``unlink``."""
    argument: str
    """``platform:handle``, a code, or empty."""


def parse(plain: str) -> LinkCommand | None:
    """The ``!link``/``!unlink`` command a post's plain text says, if it is one.
    Hashtags (the community's tag) are not arguments.  Linear in the text (no
    regular expression that could backtrack on a hostile post)."""
    head = plain[:2000].split(None, _MAX_LEADING + 3)
    i = 0
    while i < len(head) and i < _MAX_LEADING and head[i].startswith("@"):
        i += 1
    if i >= len(head):
        return None
    verb = head[i].casefold()
    if verb not in ("!link", "!unlink"):
        return None
    words = [w for w in head[i + 1:i + 3] if not w.startswith("#")]
    argument = words[0].split(None, 1)[0] if words else ""
    if verb == "!link" and argument and ":" not in argument and not (
            len(argument) == _CODE_LENGTH and argument.isascii() and argument.isalnum()):
        return None  # "!link is broken on the site": a post, not a command
    return LinkCommand(verb[1:], argument)


def new_code() -> str:
    return "".join(secrets.choice(_CODE_ALPHABET) for _ in range(_CODE_LENGTH))


def _bare(handle: str) -> str:
    return handle.strip().casefold().lstrip("@")


def answer(tx: Tx, cmd: LinkCommand, author: Author, platforms: frozenset[str],
           network: str) -> str:
    """Carry out *cmd* for *author* (who posted it on *network*) and return the
    bridge's answer.  *platforms*: the platform names of the config."""
    me = author.identity
    label = f"{author.handle} on {network}"
    if cmd.verb == "unlink":
        n = tx.unlink_identity(me)
        return (f"Done: {author.handle} is no longer linked to any other account ({n} link"
                f"{'' if n == 1 else 's'} removed)." if n else
                f"{author.handle} was not linked to any other account.")
    arg = cmd.argument
    if not arg:
        return ("To link this account with your account on another network, say "
                "!link PLATFORM:HANDLE here (for example !link mastodon:@you@example.social), "
                "then post the code you get from that account. !unlink undoes it.")
    platform, sep, handle = arg.partition(":")
    if sep and platform.isalpha():
        platform = platform.casefold()
        if platform not in platforms:
            return (f"Unknown network {platform!r}: write one of "
                    f"{', '.join(sorted(platforms))}, then a colon and the handle.")
        if not _bare(handle):
            return "Give the handle of your other account after the colon."
        if platform == author.platform and _bare(handle) in (_bare(author.handle),
                                                             author.account_id.casefold()):
            return "That is this account; name your account on the other network."
        code = new_code()
        tx.add_link_claim(code, me, label, platform, handle.strip(),
                          time.time() + CLAIM_SECONDS)
        return (f"To confirm that {platform}:{handle.strip()} is also you, post !link {code} "
                f"from that account within an hour. Ignore this if you did not ask for it.")
    code = arg.upper()
    claim = tx.link_claim(code)
    if claim is None:
        return (f"No open link request has the code {code} (codes last an hour). Start with "
                "!link PLATFORM:HANDLE from your other account.")
    identity, other_label, target_platform, target_handle = claim
    if (target_platform != author.platform
            or _bare(target_handle) not in (_bare(author.handle), author.account_id.casefold())):
        # Someone read the code: it is not theirs to use.  The claim stays for
        # the account it names.
        return f"The code {code} is not for this account."
    tx.drop_link_claim(code)
    if identity == me:
        return "That is this account; nothing to link."
    tx.link_identities(identity, me)
    return (f"Linked: {author.handle} here and {other_label} are one person for the bridge "
            "(the same words posted by hand on both become one post). !unlink undoes it.")
