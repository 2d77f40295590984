"""Policy steps of the relay pipeline, each a small named check (Mailman's
handlers): consent, blocklist, per-author rate, size."""

from __future__ import annotations

import functools
import hashlib
import re
import time
from collections import deque
from dataclasses import dataclass

from bridge.contract.model import Author, Posted
from bridge.contract.richtext import RichText, iter_text
from bridge.contract.textconv import from_plain, to_plain
from bridge.runtime.config import CommunityCommon
from bridge.store import Tx

OPT_OUT_TAGS = frozenset({"nobridge", "nobot"})


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    reason: str = ""


ACCEPT = Verdict(True)


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


class AuthorRate:
    """Sliding one-minute window per author over posts and edits (kept in memory:
    a restart forgives)."""

    def __init__(self, window: float = 60.0) -> None:
        self.window = window
        """Seconds; the limits are per minute (shorter in tests only)."""
        self._seen: dict[tuple[str, str, str], deque[float]] = {}
        self._counted: dict[str, float] = {}
        """Messages already counted, by key, with the time they count at: a store
        unit run again (its commit failed on a full disk and was retried) must
        not count its posts twice, and a held edit keeps its slot."""

    def allow(self, community: str, platform: str, handle: str, per_minute: int,
              key: str = "") -> bool:
        return self.reserve(community, platform, handle, per_minute, key) == 0.0

    def reserve(self, community: str, platform: str, handle: str, per_minute: int,
                key: str = "", *, book: bool = False) -> float:
        """Count one message of the author now and return 0.0; or, when the
        author is over the rate, return the seconds until the window has room
        again.  With *book*, that later room is taken for this message (a held
        edit goes out then, and counts then): messages held one after another
        get successive slots, never more than the rate."""
        now = time.monotonic()
        if key and key in self._counted:
            return max(self._counted[key] - now, 0.0)
        q = self._seen.setdefault((community, platform, handle.casefold()), deque())
        while q and q[0] < now - self.window:
            q.popleft()
        if len(q) >= per_minute:
            # Room comes when the entry per_minute places from the end expires
            # (entries may be booked in the future: the deque stays sorted).
            at = q[len(q) - per_minute] + self.window
            if not book:
                return max(at - now, 0.001)
            q.append(at)
            wait = max(at - now, 0.001)
        else:
            q.append(now)
            at, wait = now, 0.0
        if key:
            self._counted[key] = at
            if len(self._counted) > 100_000:
                self._counted = {k: t for k, t in self._counted.items()
                                 if t > now - self.window}
        if len(self._seen) > 50_000:  # bound memory on a months-long run
            self._seen = {k: v for k, v in self._seen.items()
                          if v and v[-1] > now - self.window}
        return wait


def check_posted(ev: Posted, community: CommunityCommon, tx: Tx, rate: AuthorRate,
                 plain: str) -> Verdict:
    """Run the policy handlers in order; the first refusal wins.  *plain*: the
    text's plain rendering."""
    a = ev.author
    if not ev.public:
        return Verdict(False, "not public")
    if a.opted_out:
        return Verdict(False, "author opted out (#nobridge/#nobot or not indexable)")
    if ev.text.hashtags() & OPT_OUT_TAGS:
        return Verdict(False, "post carries #nobridge/#nobot")
    if a.is_bot:
        return Verdict(False, "author is a bot")
    decision = tx.consent(a.platform, a.handle)
    if a.reluctant and decision != "in":
        return Verdict(False, f"author's profile: {a.reluctant} (relayed after !join)")
    if community.consent == "opt-in" and decision != "in":
        return Verdict(False, "author has not opted in (community is opt-in)")
    if decision == "out":
        return Verdict(False, "author opted out")
    if blocked(a, community, tx):
        return Verdict(False, "author is blocked")
    if not rate.allow(community.name, a.platform, a.handle, community.author_rate_per_minute,
                      key=f"{ev.channel} {ev.native_id}"):
        return Verdict(False, f"author over {community.author_rate_per_minute} posts/minute")
    # Any character but spaces and quote marks in the plain text is some text; else
    # walk the tree (an empty quote renders as ">" yet says nothing).
    has_text = bool(plain.replace(">", "").strip())
    if not ev.attachments and not has_text and not any(True for _ in iter_text(ev.text)):
        return Verdict(False, "empty post")
    return ACCEPT


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
