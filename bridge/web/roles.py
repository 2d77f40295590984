"""The host's questions on the live page: which card is ``Q3`` (a host's numbered
question), which is ``A3`` (an answer to it), whose author is a host.

The rules are the transcript's (:mod:`bridge.features.chatevents`): ``recognise``
reads the Q/A number, ``is_host`` matches an author against the events' ``hosts``
by account.  A community whose events name no host (or that has no events) lets
anyone ask numbered questions, as its transcripts do.  Each card costs one match
on the first paragraph of its text (``bench/live_roles.py`` measures it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bridge.contract.model import Post
from bridge.contract.richtext import RichText
from bridge.contract.textconv import to_plain
from bridge.features.chatevents import is_host, recognise
from bridge.runtime.schedule import ChatEventConfig


@dataclass(frozen=True, slots=True)
class Role:
    label: str = ""
    """``Q3``, ``A3`` or ""."""
    host: bool = False
    """The author is one of the events' named hosts."""

    @property
    def question(self) -> bool:
        return self.label.startswith("Q")


NONE = Role()


def _head(text: RichText) -> str:
    """The first paragraph as plain text: where a Q/A number is written (a long post
    is not converted whole for it)."""
    return to_plain(RichText(text.blocks[:1])) if text.blocks else ""


class Roles:
    """The roles of posts in one community, for its events' hosts."""

    def __init__(self, events: Sequence[ChatEventConfig]) -> None:
        self._named = tuple(ev for ev in events if ev.hosts)
        self._anyone_asks = not self._named or len(self._named) < len(events)

    def is_host(self, post: Post) -> bool:
        return any(is_host(ev, post) for ev in self._named)

    def _asks(self, host: bool) -> bool:
        """Whether a ``Q`` post by a host (or not) opens a question."""
        return host or self._anyone_asks

    def of(self, post: Post, parent: Post | None = None) -> Role:
        """*post*'s role; *parent* (the post it replies to) makes an unnumbered
        reply to a question an answer to it, as in transcripts."""
        if post.is_notice:
            return NONE
        host = bool(self._named) and self.is_host(post)
        found = recognise(_head(post.text))
        if found is not None:
            kind, n = found
            if kind == "A":
                return Role(f"A{n}", host)
            return Role(f"Q{n}", host) if self._asks(host) else Role("", host)
        if parent is not None and not parent.is_notice:
            asked = recognise(_head(parent.text))
            if asked is not None and asked[0] == "Q" and self._asks(
                    bool(self._named) and self.is_host(parent)):
                return Role(f"A{asked[1]}", host)
        return Role("", host)
