"""X polls (``attachments.poll_ids`` + ``includes.polls``) and quote posts
(``referenced_tweets`` type ``quoted`` + ``includes.tweets``), from real API v2
pages (twarc-csv's recordings, tests/fixtures/twitter/polls_quotes/): by the
converter, and through the emulator serving the recorded poll and words to the
real adapter (tweepy underneath)."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from test_adapter import CH, running
from twitter_support import LOCAL, Running, load_jsonl

from adapters.twitter.convert import parse_page
from bridge.contract.adapter import Capabilities
from bridge.contract.model import Post, Posted, PostId
from bridge.contract.textconv import to_plain
from bridge.outbound.render import Target, render

HERE = LOCAL / "polls_quotes"


def poll_page() -> dict[str, Any]:
    page = json.loads((HERE / "brexit_poll_page.json").read_text())
    page.pop("__twarc", None)
    return page  # type: ignore[no-any-return]


def quote_page() -> dict[str, Any]:
    return load_jsonl(HERE / "quoted_edit.jsonl")[0]


def as_post(ev: Posted) -> Post:
    return Post(id=PostId("01X"), community="kmers", origin_channel=ev.channel,
                origin_native_id=ev.native_id, permalink=ev.permalink, author=ev.author,
                text=ev.text, poll=ev.poll, quote=ev.quote)


def test_a_recorded_poll_keeps_options_end_and_votes() -> None:
    [ev] = parse_page(poll_page(), CH).events
    assert ev.poll is not None
    assert [o.title for o in ev.poll.options] == ["Yes I do", "No I don’t", "Don’t know"]
    assert [o.votes for o in ev.poll.options] == [60, 185, 24]
    assert ev.poll.ends_at == datetime(2021, 9, 22, 18, 27, 34, tzinfo=UTC)
    assert not ev.poll.closed  # voting_status "open" when recorded
    caps = Capabilities(max_length=500)
    # it has ended since, but was read while open: ended, without the counts of then
    [r] = render(as_post(ev), Target(caps=caps, hashtag="kmers"), "X")
    assert "Poll (ended): 1) Yes I do 2) No I don’t 3) Don’t know; results on" in r.plain
    assert "60 votes" not in r.plain
    # read once X said it was closed: the counts show
    closed = dataclasses.replace(ev.poll, closed=True)
    [r3] = render(dataclasses.replace(as_post(ev), poll=closed),
                  Target(caps=caps, hashtag="kmers"), "X")
    assert "Poll (ended): 1) Yes I do (60 votes) 2) No I don’t (185 votes)" in r3.plain
    # while it is open, no counts
    open_poll = dataclasses.replace(ev.poll, ends_at=datetime.now(UTC) + timedelta(days=1))
    [r2] = render(dataclasses.replace(as_post(ev), poll=open_poll),
                  Target(caps=caps, hashtag="kmers"), "X")
    assert "Poll: 1) Yes I do 2) No I don’t 3) Don’t know — ends " in r2.plain
    assert "votes" not in r2.plain and f"vote on {ev.permalink}" in r2.plain


def test_a_recorded_quote_post_names_the_quoted_author_and_drops_its_link() -> None:
    [ev] = parse_page(quote_page(), CH).events
    assert to_plain(ev.text) == "@wongmjane Test"  # the t.co link for the quote is gone
    q = ev.quote
    assert q is not None and q.network == "X"
    assert q.url == "https://x.com/wongmjane/status/1576994746135764992"
    assert q.author is not None and q.author.handle == "@wongmjane"
    assert q.author.display_name == "Jane Manchun Wong"
    assert to_plain(q.text).startswith("i miss y’all so much haha,,,")


def test_a_quoted_post_missing_from_includes_is_only_linked() -> None:
    page = quote_page()
    page["includes"].pop("tweets")
    [ev] = parse_page(page, CH).events
    assert ev.quote is not None and ev.quote.author is None
    assert ev.quote.url == "https://x.com/i/status/1576994746135764992"


async def test_the_adapter_asks_for_polls_and_quotes_and_reads_them(xemu: Running) -> None:
    st = xemu.emu.state
    [recorded_poll] = poll_page()["includes"]["polls"]
    quoted_raw = next(t for t in quote_page()["includes"]["tweets"]
                      if t["id"] == "1576994746135764992")
    async with running(xemu) as (ad, ctx):
        assert await ad.poll_once(ad.channels[CH]) == 0  # first run starts now
        jane = st.user("wongmjane", "Jane Manchun Wong")
        quoted = st.create(jane, quoted_raw["text"].split(" https://")[0])
        member = st.user("alice", "Alice")
        st.create(member, "#kmers which one?",
                  poll={k: v for k, v in recorded_poll.items() if k != "id"})
        st.create(member, "#kmers so true", quote_of=quoted.id)
        assert await ad.poll_once(ad.channels[CH]) >= 2
    events = {to_plain(e.text): e for e in ctx.events if isinstance(e, Posted)}
    polled = events["#kmers which one?"]
    assert polled.poll is not None and [o.title for o in polled.poll.options] == [
        "Yes I do", "No I don’t", "Don’t know"]
    quoting = events["#kmers so true"]  # the quote's t.co link dropped from the words
    assert quoting.quote is not None and quoting.quote.author is not None
    assert quoting.quote.url == f"https://x.com/wongmjane/status/{quoted.id}"
    assert to_plain(quoting.quote.text) == "i miss y’all so much haha,,,"
