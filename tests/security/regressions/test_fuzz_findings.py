"""Inputs found by the atheris runs (``bench/fuzz_email.py``, ``bench/fuzz_html.py``),
replayed with the properties the fuzzers check.  Each file under ``inputs/`` is a finding
(or a near miss worth keeping); the name says what it exercises.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from htmlsafety import unsafe_html

from adapters.email.convert import Identity, ListMail, ListSpec, parse_list_mail
from bridge.contract.adapter import Unsupported
from bridge.contract.model import ChannelKey
from bridge.contract.textconv import from_html, from_plain, to_html, to_plain

INPUTS = Path(__file__).parent / "inputs"
SPEC = ListSpec(channel=ChannelKey("mail"), list_id="kmers.lists.example.org",
                address="kmers@lists.example.org", subject_tag="kmers")
ME = Identity(address="bridge@bridge.example", domain="bridge.example", salt=b"s" * 16)
HEAD = (b"Return-Path: <kmers-bounces@lists.example.org>\r\n"
        b"List-Id: K-mers <kmers.lists.example.org>\r\n")
# name -> reason, for findings not fixed yet (strict xfail: a fix makes them fail loudly
# so the marker is removed).  nul-in-rfc2231-charset.eml was fixed in a97200c.
KNOWN: dict[str, str] = {}


@pytest.mark.parametrize("path", sorted((INPUTS / "html").glob("*")), ids=lambda p: p.name)
def test_html_finding_converts_to_safe_html(path: Path) -> None:
    tree = from_html(path.read_bytes().decode("utf-8", "replace"))
    assert unsafe_html(to_html(tree)) == ""
    to_plain(tree)


@pytest.mark.parametrize("path", [
    pytest.param(p, marks=pytest.mark.xfail(strict=True, reason=KNOWN[p.name])
                 if p.name in KNOWN else ()) for p in sorted((INPUTS / "email").glob("*"))],
    ids=lambda p: p.name)
def test_email_finding_parses_without_falling_back(path: Path) -> None:
    data = path.read_bytes()
    for raw in (data, HEAD + data):
        result = parse_list_mail(raw, SPEC, ME, max_attachment_bytes=10_000)
        assert not (isinstance(result, Unsupported) and result.reason.startswith("unparseable")), \
            result


def test_nul_in_a_mime_parameter_does_not_drop_the_post() -> None:
    """Minimised atheris finding: the text part is fine; one attachment header has a NUL
    in the RFC 2231 charset, on which CPython's header parser raised ValueError and the
    whole post was dropped as "unparseable" (fixed in a97200c)."""
    raw = HEAD + (b"From: Alice <alice@example.com>\r\nMessage-ID: <nul@example.com>\r\n"
                  b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
                  b"Content-Type: text/plain\r\n\r\nHello list #kmers\r\n--b\r\n"
                  b"Content-Type: image/png; name*=ut\x00f-8''x.png\r\n\r\nxx\r\n--b--\r\n")
    result = parse_list_mail(raw, SPEC, ME)
    assert isinstance(result, ListMail), result
    assert "Hello list" in to_plain(result.event.text)
    assert result.event.native_id == "nul@example.com"


def test_mention_html_round_trip_keeps_the_text() -> None:
    """atheris (fuzz_html): a Mention was written as <a href> without class="mention", so
    from_html read our own HTML back as a link and to_plain added the URL."""
    tree = from_html('<p>Hi <a href="https://ex.org/@bob" class="u-url mention">'
                     '@<span>bob</span></a></p>')
    assert to_plain(from_html(to_html(tree))) == to_plain(tree) == "Hi @bob@ex.org"


def test_plain_round_trip_control() -> None:
    """The same round trip without a mention holds (so the xfail above is specific)."""
    tree = from_plain("Hi https://ex.org/x #kmers")
    assert to_plain(from_html(to_html(tree))) == to_plain(tree)


@pytest.mark.parametrize("name", ["mention-with-a-broken-url.html",
                                  "matrix-pill-marked-mention.html",
                                  "mention-without-a-name.html",
                                  "url-with-a-run-of-spaces.html"])
def test_html_round_trip_keeps_the_text(name: str) -> None:
    """atheris (fuzz_html, 2026-11-24): a mention whose URL has no profile shape was
    written as a plain <a href>, read back as a link, and to_plain added the URL; our
    HTML now marks mentions class="mention", as Mastodon does.  The second input: a
    Matrix pill so marked must still be read as the Matrix user, not user@matrix.to."""
    html = (INPUTS / "html" / name).read_bytes().decode("utf-8", "replace")
    tree = from_html(html)
    assert " ".join(to_plain(from_html(to_html(tree))).split()) == \
        " ".join(to_plain(tree).split())
