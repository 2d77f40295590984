"""The web view shows a post's poll (a box of numbered options with the end
time) and its quote (a grey-ruled block "Quoting <author> on <Network>:", the
words, the link), on the live page and in what the live stream sends."""

from __future__ import annotations

from datetime import UTC, datetime

import aiohttp
from webhelp import Live

from bridge.contract.model import (
    Author,
    ChannelKey,
    NativeId,
    Poll,
    PollOption,
    Posted,
    QuotedPost,
)
from bridge.contract.richtext import RichText
from bridge.contract.textconv import from_plain


async def test_the_live_page_shows_polls_and_quotes(live: Live) -> None:
    alice = Author(platform="sandbox", handle="alice", display_name="Alice")
    poll = Posted(channel=ChannelKey("kmers/sb_porch"), native_id=NativeId("p1"), author=alice,
                  permalink="https://porch.example/p1", text=from_plain("pick one"),
                  poll=Poll(options=(PollOption(title="Tea <3", votes=4),
                                     PollOption(title="Coffee", votes=9)),
                            ends_at=datetime(2099, 12, 10, 18, 0, tzinfo=UTC)))
    ended = Posted(channel=ChannelKey("kmers/sb_porch"), native_id=NativeId("p2"), author=alice,
                   text=from_plain("the results"),
                   poll=Poll(options=(PollOption(title="Yes", votes=1),), closed=True,
                             voters=1))
    quote = Posted(channel=ChannelKey("kmers/sb_porch"), native_id=NativeId("p3"), author=alice,
                   text=from_plain("so true"),
                   quote=QuotedPost(url="https://x.com/dan/status/42", network="X",
                                    author=Author(platform="twitter", handle="@dan",
                                                  display_name="Dan <b>"),
                                    text=RichText.plain("quoted <script>words</script>")))
    await live.bridge.ingest("sb_porch", [poll, ended, quote], None)
    await live.settle()
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{live.url}/c/kmers") as r:
            assert r.status == 200
            page = await r.text()
        exports = {}
        for path in ("/c/kmers/feed.atom", "/c/kmers/export.md", "/c/kmers/export.jsonl"):
            async with s.get(live.url + path) as r:
                assert r.status == 200, path
                exports[path] = await r.text()
    for path, body in exports.items():  # the feed and the exports leave none of it out
        assert "Poll: 1) Tea " in body and "3 2) Coffee — ends 10 Dec 18:00 UTC" in body, path
        assert "Quoting Dan" in body and "x.com/dan/status/42" in body, path
    assert '<div class="poll" role="group" aria-label="Poll">' in page
    assert "<li>Tea &lt;3</li><li>Coffee</li>" in page  # no counts while it is open
    assert 'Ends <time datetime="2099-12-10T18:00:00Z">10 Dec 18:00 UTC</time>' in page
    assert "vote on the original" in page
    assert 'Yes <span class="votes">(1 vote)</span>' in page and "1 voter" in page
    assert '<blockquote class="quoted">' in page
    assert "Quoting Dan &lt;b&gt; on X:" in page
    assert "quoted &lt;script&gt;words&lt;/script&gt;" in page and "<script>words" not in page
    assert 'href="https://x.com/dan/status/42"' in page
