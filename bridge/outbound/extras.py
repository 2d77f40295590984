"""A post's poll and quote as text every network can show, sans I/O.

A poll becomes one paragraph ("Poll: 1) … 2) … — ends 10 Dec 18:00 UTC; vote
on <link>"), its counts shown only once voting has ended (counts the platform
gave for a closed poll; an open poll's counts are not its result); never a poll of the
target's own (votes cast on copies would split and could not be merged back).
A quote becomes a quote block: "Quoting <author> on <Network>:", the quoted
words, the quoted post's address.  Over a target's length limit the quoted
words are shortened first (see :func:`shortened_quote`), never the member's own.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from bridge.contract.model import Poll, Post, QuotedPost, utcnow
from bridge.contract.richtext import Block, Inline, Link, Paragraph, Quote, RichText, Text
from bridge.contract.textconv import to_plain

ELLIPSIS = "…"


def end_time(at: datetime) -> str:
    """``10 Dec 18:00 UTC``: the same for every reader, whatever their zone."""
    at = at.astimezone(UTC)
    return f"{at.day} {at:%b %H:%M} UTC"


def _votes(n: int) -> str:
    return f"{n} vote" if n == 1 else f"{n} votes"


def poll_paragraph(poll: Poll, permalink: str, now: datetime | None = None) -> Paragraph:
    """The poll as one paragraph of text (see the module's docstring)."""
    ended = poll.ended(now or utcnow())
    # Counts only from a poll its platform said was closed when it was read:
    # counts read while it was open are not its result.
    counts = poll.closed and any(o.votes is not None for o in poll.options)
    options = []
    for i, o in enumerate(poll.options, 1):
        title = " ".join(o.title.split())
        options.append(f"{i}) {title}" + (f" ({_votes(o.votes or 0)})" if counts else ""))
    text = ("Poll (ended): " if ended else "Poll: ") + " ".join(options)
    if poll.multiple and not ended:
        text += " (several choices allowed)"
    inlines: list[Inline] = []
    if ended:
        if counts and poll.voters is not None:
            text += f" — {poll.voters} voter" + ("" if poll.voters == 1 else "s")
        if permalink:
            inlines = [Text(text + "; results on "), Link(permalink)]
    else:
        if poll.ends_at is not None:
            text += f" — ends {end_time(poll.ends_at)}"
        if permalink:
            inlines = [Text(text + "; vote on "), Link(permalink)]
    return Paragraph(tuple(inlines) if inlines else (Text(text),))


def quote_heading(quote: QuotedPost) -> str:
    if quote.author is None:
        return f"Quoting a post on {quote.network}:"
    return f"Quoting {' '.join(quote.author.name.split())} on {quote.network}:"


def quote_block(quote: QuotedPost, words: RichText | None = None) -> Quote:
    """The quote as a quote block; *words* in place of the quoted post's own
    (shortened ones), or none at all where *words* is empty."""
    words = quote.text if words is None else words
    if quote.author is None:
        words = RichText()  # only the link is copied
    return Quote((Paragraph((Text(quote_heading(quote)),)), *words.blocks,
                  Paragraph((Link(quote.url),))))


def extra_blocks(post: Post, quote_words: RichText | None = None,
                 now: datetime | None = None) -> tuple[Block, ...]:
    """The blocks that follow the member's own words: the poll, then the quote."""
    out: list[Block] = []
    if post.poll is not None:
        out.append(poll_paragraph(post.poll, post.permalink, now))
    if post.quote is not None:
        out.append(quote_block(post.quote, quote_words))
    return tuple(out)


def shortened_quote(words: RichText, fits: Callable[[RichText], bool]) -> RichText | None:
    """The longest cut of the quoted *words* (at a word boundary, with an
    ellipsis) for which ``fits(cut)`` holds; an empty text when only leaving
    them out fits; None when not even that does.  ``fits`` is monotone in the
    cut's length: binary search, a dozen or so measurements for a long quote."""
    plain = to_plain(words)
    if fits(words):
        return words
    if not fits(RichText()):
        return None
    lo, hi = 0, len(plain)  # a cut of lo characters fits, hi does not
    best = RichText()
    while hi - lo > 1:
        mid = (lo + hi) // 2
        cut = _cut_words(plain, mid)
        if cut is not None and fits(cut):
            lo, best = mid, cut
        else:
            hi = mid
    return best


def _cut_words(plain: str, n: int) -> RichText | None:
    head = plain[:n]
    space = max(head.rfind(" "), head.rfind("\n"))
    if space > n * 0.6:
        head = head[:space]
    head = head.rstrip()
    return RichText.plain(head + ELLIPSIS) if head else None
