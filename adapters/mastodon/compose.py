"""Pure outbound composition for Mastodon: a core send operation into the keyword
arguments of Mastodon.py's ``status_post``/``status_update``.

No I/O and no client objects (the adapter makes the call); the inbound half is
:mod:`adapters.mastodon.convert`.
"""

from __future__ import annotations

from typing import Any

from adapters.mastodon.convert import status_length
from bridge.contract.adapter import SendCreate, SendEdit
from bridge.contract.mentions import neutralise_mastodon


def neutralise(text: str) -> str:
    """Never send a bare ``@name`` to Mastodon: it would resolve to a local
    account and notify a stranger.  Mastodon's own rule, the one the core
    renderer applied before fitting (so this changes nothing it fitted)."""
    return neutralise_mastodon(text)


def fit_with_warning(text: str, warning: str, max_characters: int, url_weight: int) -> str:
    """Shorten *text* so text plus content warning fit: Mastodon counts the
    warning too, while the core fits the text alone."""
    if not warning or status_length(text, url_weight, warning) <= max_characters:
        return text  # a text too long on its own is the core's to fit (or a 422)
    budget = max_characters - status_length("", url_weight, warning) - 1
    words = text.split(" ")
    while len(words) > 1 and status_length(" ".join(words), url_weight) > budget:
        words.pop()
    kept = " ".join(words)
    while kept and status_length(kept, url_weight) > budget:
        kept = kept[:-1]
    return kept + "…"


VISIBILITIES = ("public", "unlisted", "private", "direct")
"""Mastodon's visibilities, widest first."""


def reply_visibility(configured: str, parent: str) -> str:
    """The visibility of a reply: the configured one, never wider than its parent's
    (the rule Mastodon's own clients apply; the server does not narrow a reply, so a
    public reply to an unlisted or followers-only post would widen the thread).  An
    unknown parent visibility counts as the narrowest but ``direct``: followers-only."""
    rank = VISIBILITIES.index
    p = parent if parent in VISIBILITIES else "private"
    return configured if rank(configured) >= rank(p) else p


def addressed(text: str, acct: str, max_characters: int = 0, url_weight: int = 23,
              warning: str = "") -> str:
    """*text* opening with ``@acct``: a followers-only or direct reply is seen only
    by those it mentions, so one that answers someone mentions them (as Mastodon's
    apps do), cut by words to stay within *max_characters*."""
    head = f"@{acct} "
    if not acct or text.startswith(head.strip()):
        return text
    out = head + text
    if not max_characters or status_length(out, url_weight, warning) <= max_characters:
        return out
    words = text.split(" ")
    while len(words) > 1 and status_length(
            head + " ".join(words) + "…", url_weight, warning) > max_characters:
        words.pop()
    return head + " ".join(words) + "…"


def status_params(op: SendCreate, *, visibility: str, max_characters: int = 0,
                  url_weight: int = 23, address: str = "") -> dict[str, Any]:
    """``status_post`` keyword arguments for one create (media ids added by the caller).
    *address*: the account a followers-only or direct reply must mention."""
    text = neutralise(op.rendered.plain)
    if max_characters:
        text = fit_with_warning(text, op.rendered.content_warning, max_characters, url_weight)
    if address:
        text = addressed(text, address, max_characters, url_weight,
                         op.rendered.content_warning)
    params: dict[str, Any] = {
        "status": text, "visibility": visibility,
        "idempotency_key": op.idempotency_key,
    }
    if op.reply_to:
        params["in_reply_to_id"] = str(op.reply_to)
    if op.rendered.content_warning:
        params["spoiler_text"] = op.rendered.content_warning
        params["sensitive"] = True
    if op.post.language and len(op.post.language) == 2:
        params["language"] = op.post.language
    return params


def edit_params(op: SendEdit, *, max_characters: int = 0, url_weight: int = 23
                ) -> dict[str, Any]:
    """``status_update`` keyword arguments (visibility and reply target cannot change)."""
    text = neutralise(op.rendered.plain)
    if max_characters:
        text = fit_with_warning(text, op.rendered.content_warning, max_characters, url_weight)
    params: dict[str, Any] = {"id": str(op.native_id), "status": text,
                              "spoiler_text": op.rendered.content_warning}
    if op.rendered.content_warning:
        params["sensitive"] = True
    return params
