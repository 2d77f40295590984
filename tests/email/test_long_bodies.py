"""A long plain-text mail costs time linear in its length (issue 12, item 3).

The reply parser (mailparser_reply, some 70 regex passes) took 1.5 s of CPU
for a 1 MB body.  It now reads a bounded head; the rest of a long text is cut
by a linear pass that keeps everything the member wrote.
"""

from __future__ import annotations

from typing import Any

import pytest
import quotequail
from mailparser_reply import EmailReplyParser

from adapters.email import convert
from adapters.email.convert import REPLY_PARSER_CHARS, strip_quotes

PARA = "The committee met on Tuesday and agreed on the schedule for spring. " * 4 + "\n\n"
LONG = PARA * (3 * REPLY_PARSER_CHARS // len(PARA))


def lines(text: str) -> str:
    """*text* without the spaces at line ends (the reply parser strips them)."""
    return "\n".join(ln.strip() for ln in text.split("\n")).strip()


@pytest.fixture
def parser_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The length of every text the third-party reply parser is given."""
    seen: list[int] = []
    real = EmailReplyParser.read

    def read(self: EmailReplyParser, text: str) -> Any:
        seen.append(len(text))
        return real(self, text)

    monkeypatch.setattr(EmailReplyParser, "read", read)
    return seen


@pytest.mark.parametrize("shape", ["paragraphs", "one line", "no spaces", "quotes"])
def test_the_reply_parser_reads_a_bounded_head_of_a_1_mb_body(
        parser_reads: list[int], shape: str) -> None:
    unit = {"paragraphs": PARA, "one line": "word " * 20, "no spaces": "x" * 100,
            "quotes": "> quoted line\nanswer\n"}[shape]
    body = unit * (1024 * 1024 // len(unit))
    out = strip_quotes(body)
    assert parser_reads and max(parser_reads) <= REPLY_PARSER_CHARS
    if shape == "quotes":
        assert "quoted" not in out and out.count("answer") == body.count("answer")
    else:
        assert len(out) >= len(body.strip()) - 1  # nothing the member wrote is lost


def test_a_long_text_keeps_all_it_says_and_ends_at_the_attribution() -> None:
    body = LONG + "On Mon, 1 Jan 2026, Bob <bob@example.org> wrote:\n> old text\n> more\n"
    out = strip_quotes(body)
    assert lines(out) == lines(LONG)


def test_a_long_text_ends_at_its_signature_delimiter() -> None:
    out = strip_quotes(LONG + "-- \nAlice, treasurer\n+1 555 0100\n")
    assert lines(out) == lines(LONG)


def test_a_long_reply_on_top_of_a_quote_ends_where_the_parser_says() -> None:
    top = "Agreed, let us do that.\n\n"
    body = top + "On Mon, 1 Jan 2026, Bob <bob@example.org> wrote:\n" + LONG
    assert strip_quotes(body) == strip_quotes(top + "On Mon, 1 Jan 2026, Bob "
                                              "<bob@example.org> wrote:\nold") \
        == "Agreed, let us do that."


def test_interleaved_answers_in_a_long_text_stay_and_quotes_go() -> None:
    body = "".join(f"> question {i}\nanswer {i}\n\n" for i in range(2000))
    assert len(body) > REPLY_PARSER_CHARS
    out = strip_quotes(body)
    assert "question" not in out
    assert [ln for ln in out.split("\n") if ln] == [f"answer {i}" for i in range(2000)]


def test_a_long_mail_that_is_all_quote_is_kept() -> None:
    body = "> quoted line of an old message\n" * 2000
    assert strip_quotes(body) == body.strip()


def test_short_mail_still_goes_through_the_reply_parser(parser_reads: list[int]) -> None:
    text = "Yes.\n\nOn Mon, 1 Jan 2026, Bob <bob@example.org> wrote:\n> Shall we?\n"
    assert strip_quotes(text) == "Yes."
    assert parser_reads == [len(text)]
    assert convert.REPLY_PARSER_CHARS >= 4096  # ordinary mail is read as before


# ------------------------------------------------------------------ HTML bodies

@pytest.fixture
def quote_parser_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The length of every HTML quotequail is given."""
    seen: list[int] = []
    real = quotequail.quote_html

    def quote_html(html: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(len(html))
        return real(html, *args, **kwargs)

    monkeypatch.setattr(quotequail, "quote_html", quote_html)
    return seen


HTML_PARA = "<p>" + "The committee met on Tuesday and agreed on the schedule. " * 4 + "</p>\n"
QUOTE = ("<div>On Mon, 1 Jan 2026, Bob &lt;bob@example.org&gt; wrote:</div>"
         "<blockquote>old text we do not want again</blockquote>")


def test_quotequail_reads_a_bounded_head_of_a_1_mb_html_body(
        quote_parser_reads: list[int]) -> None:
    html = HTML_PARA * (1024 * 1024 // len(HTML_PARA))
    out = convert._strip_html_quotes(html)
    assert quote_parser_reads and max(quote_parser_reads) <= convert.QUOTE_PARSER_CHARS
    assert out == html  # no quote: every paragraph is kept


def test_a_long_html_reply_ends_at_a_quote_in_its_head() -> None:
    top = HTML_PARA * 3
    html = top + QUOTE + HTML_PARA * (2 * convert.QUOTE_PARSER_CHARS // len(HTML_PARA))
    out = convert._strip_html_quotes(html)
    assert "old text" not in out  # (quotequail keeps the attribution line)
    assert out.count("committee") == 3 * 4
    assert out == convert._strip_html_quotes(top + QUOTE + HTML_PARA)


def test_a_quote_after_the_head_of_a_long_html_body_is_kept_not_the_text_lost() -> None:
    html = HTML_PARA * (2 * convert.QUOTE_PARSER_CHARS // len(HTML_PARA)) + QUOTE
    out = convert._strip_html_quotes(html)
    assert out.count("committee") == html.count("committee")


def test_short_html_still_goes_through_quotequail() -> None:
    out = convert._strip_html_quotes(HTML_PARA + QUOTE)
    assert "committee" in out and "old text" not in out


# ------------------------------------------------------------------ addresses

@pytest.mark.parametrize("extra", ["", "Grüße aus Köln. "])
def test_every_header_address_is_blanked_out_of_the_body_in_one_pass(extra: str) -> None:
    body = (extra + "Write to Alice@Example.ORG or bob.alice@example.org, "
            "not carol@example.org. ") * 3
    out = convert._redact(body, ["alice@example.org", "bob.alice@example.org",
                                 "dave@example.org", ""])
    assert "alice" not in out.lower() and "dave" not in out
    assert out.count("[address removed]") == 6 and out.count("carol@example.org") == 3
