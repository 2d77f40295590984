"""A poll and a quote relayed to a mailing list: the mail the list delivers has
the poll as text in both parts and the quote as a real ``<blockquote>`` in its
HTML part (a real Dovecot and the aiosmtpd mini list)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

from mailhelp import CHANNEL, make_adapter, make_op

from adapters.email.sandbox import EmailSandbox
from bridge.contract.model import Author, Poll, PollOption, QuotedPost
from bridge.contract.richtext import RichText
from bridge.outbound.render import Target, render


async def test_the_mail_sent_quotes_in_a_blockquote_and_lists_the_poll(
        mail: EmailSandbox, tmp_path: Path, running) -> None:  # type: ignore[no-untyped-def]
    adapter, ctx = make_adapter(mail, tmp_path / "data")
    await running(adapter, ctx)
    op = make_op("what do you think?", key="pq1")
    post = dataclasses.replace(
        op.post,
        poll=Poll(options=(PollOption(title="Agree"), PollOption(title="Disagree")),
                  ends_at=datetime(2026, 12, 10, 18, 0, tzinfo=UTC)),
        quote=QuotedPost(url="https://x.com/dan/status/42", network="X",
                         author=Author(platform="twitter", handle="@dan", display_name="Dan"),
                         text=RichText.plain("words <b>worth</b> quoting")))
    [rendered] = render(post, Target(caps=adapter.capabilities(CHANNEL), hashtag="kmers"),
                        "Mastodon")
    await adapter.send(dataclasses.replace(op, post=post, rendered=rendered))
    raw = next(m for m in mail.dovecot.messages("reader") if "pq1@" in str(m["Message-ID"]))
    html = raw.get_body(("html",)).get_content()
    assert "<blockquote><p>Quoting Dan on X:</p><p>words &lt;b&gt;worth&lt;/b&gt; quoting</p>" \
        in html
    assert 'href="https://x.com/dan/status/42"' in html
    text = raw.get_body(("plain",)).get_content()
    assert "Poll: 1) Agree 2) Disagree — ends 10 Dec 18:00 UTC; vote on " \
           "https://masto.test/@alice/pq1" in " ".join(text.split())
    assert "> Quoting Dan on X:" in text
