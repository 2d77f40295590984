"""Polls and Mastodon 4.5 quotes, read from the statuses a real Mastodon 4.6.4
served (Mastodon.py's cassettes, tests/fixtures/mastodon/polls_quotes/): by the
converter, and through the emulator serving those recorded objects to the real
adapter (Mastodon.py underneath)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from test_masto_adapter import running

from adapters.mastodon.convert import parse_edit, parse_status, split_quote_inline
from adapters.mastodon.emulator.server import MastodonEmulator
from bridge.contract.model import ChannelKey, Edited, Posted
from bridge.contract.textconv import to_plain

CH = ChannelKey("kmers/masto")
HERE = Path(__file__).resolve().parents[1] / "fixtures" / "mastodon" / "polls_quotes"


@cache
def recorded(cassette: str, method: str, path: str, body_part: str = "") -> dict[str, Any]:
    """The first recorded JSON response to *method* on a URI ending with *path*
    (whose request body holds *body_part*)."""
    for it in yaml.safe_load((HERE / f"{cassette}.yaml").read_text())["interactions"]:
        req = it["request"]
        if req["method"] == method and req["uri"].endswith(path) \
                and body_part in (req.get("body") or ""):
            return json.loads(it["response"]["body"]["string"])  # type: ignore[no-any-return]
    raise LookupError(f"{cassette}: no {method} {path}")


def poll_status() -> dict[str, Any]:
    return recorded("test_polls", "POST", "/api/v1/statuses")


def quote_status() -> dict[str, Any]:
    return recorded("test_status_post_with_quote", "POST", "/api/v1/statuses",
                    "quoted_status_id")


def revoked_status() -> dict[str, Any]:
    return recorded("test_status_quote_revoke", "POST", "/revoke")


def test_a_recorded_poll_keeps_its_options_and_end() -> None:
    ev = parse_status(poll_status(), channel=CH)
    assert isinstance(ev, Posted) and ev.poll is not None
    assert to_plain(ev.text) == "nice"
    assert [o.title for o in ev.poll.options] == ["four twenty", "sixty-nine"]
    assert ev.poll.ends_at is not None and ev.poll.ends_at.isoformat().startswith(
        "2026-08-01T13:58:07")
    assert ev.poll.multiple and not ev.poll.closed


def test_an_accepted_quote_carries_author_words_and_address() -> None:
    raw = quote_status()
    assert raw["quote"]["state"] == "accepted"
    ev = parse_status(raw, channel=CH)
    assert isinstance(ev, Posted) and ev.quote is not None
    assert to_plain(ev.text) == "yoooooooo"  # the quote-inline "RE: …" paragraph is gone
    q = ev.quote
    assert q.url == "http://localhost:3000/@mastodonpy_test/117020582917124092"
    assert q.network == "Mastodon" and q.author is not None
    assert q.author.handle == "@mastodonpy_test@localhost:3000"
    assert to_plain(q.text) == "Toot!"


def test_a_revoked_quote_keeps_only_the_link() -> None:
    raw = revoked_status()
    assert raw["quote"] == {"state": "revoked", "quoted_status": None}
    ev = parse_status(raw, channel=CH)
    assert isinstance(ev, Posted) and ev.quote is not None
    assert ev.quote.url == "http://localhost:3000/@mastodonpy_test/117020583073249915"
    assert ev.quote.author is None and ev.quote.text.is_empty()
    assert to_plain(ev.text) == "check this mother fucker out"
    # any state but accepted: the quoted status's words are not copied even when sent
    # read as an edit (status.update), the quote's new state comes with it
    edit = parse_edit(raw, channel=CH)
    assert isinstance(edit, Edited) and edit.extras is not None
    assert edit.extras[1] == ev.quote and to_plain(edit.text) == "check this mother fucker out"
    pending = {**quote_status(), "quote": {**quote_status()["quote"], "state": "pending"}}
    ev2 = parse_status(pending, channel=CH)
    assert isinstance(ev2, Posted) and ev2.quote is not None and ev2.quote.author is None


def test_the_quote_inline_paragraph_goes_whatever_its_attributes() -> None:
    html = ('<p data-x="1" class="quote-inline extra">RE: <a href="https://a.example/@b/1">'
            'a.example/@b/1</a></p><p>mine</p>')
    assert split_quote_inline(html) == ("<p>mine</p>", "https://a.example/@b/1")


async def test_the_adapter_reads_recorded_polls_and_quotes_from_the_emulator(
        emulator: MastodonEmulator) -> None:
    async with running(emulator) as env:
        for raw in (poll_status(), quote_status(), revoked_status()):
            env.emu.post("alice", "#kmers", content_html=raw["content"] + "<p>#kmers</p>",
                         wire_overrides={"poll": raw["poll"], "quote": raw["quote"]})
        events = [e for e in await env.settle(3, timeout=60) if isinstance(e, Posted)]
    poll, quote, revoked = events
    assert poll.poll is not None and [o.title for o in poll.poll.options] == [
        "four twenty", "sixty-nine"]
    assert quote.quote is not None and quote.quote.author is not None
    assert to_plain(quote.quote.text) == "Toot!"
    assert to_plain(quote.text) == "yoooooooo\n\n#kmers"
    assert revoked.quote is not None and revoked.quote.author is None
    assert "RE:" not in to_plain(revoked.text)
