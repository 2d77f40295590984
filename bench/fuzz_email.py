"""Coverage-guided fuzzing of the email adapter's inbound MIME parser.

    .venv/bin/python bench/fuzz_email.py 300        # seconds (default 60)

Properties checked on every input (a violation is a finding):
- :func:`adapters.email.convert.parse_list_mail` never raises;
- it only falls back to ``Skipped("unparseable: ...")`` never (that fallback means an
  exception inside the parser: a member's mail silently not relayed);
- a relayed post's text is clean (no NUL/control characters) and has no raw email address
  of a header participant (the privacy promise of the module).
"""

from __future__ import annotations

import atheris
from fuzz_common import Finding, run

with atheris.instrument_imports(include=["adapters", "bridge", "email", "quotequail",
                                         "mailparser_reply", "html"]):
    from adapters.email.convert import Identity, ListMail, ListSpec, Skipped, parse_list_mail
    from bridge.contract.model import ChannelKey
    from bridge.contract.richtext import RichText
    from bridge.contract.textconv import to_plain

SPEC = ListSpec(channel=ChannelKey("mail"), list_id="kmers.lists.example.org",
                address="kmers@lists.example.org", subject_tag="kmers")
ME = Identity(address="bridge@bridge.example", domain="bridge.example", salt=b"s" * 16)
HEAD = (b"Return-Path: <kmers-bounces@lists.example.org>\r\n"
        b"List-Id: K-mers <kmers.lists.example.org>\r\n")

SEEDS = [
    HEAD + b"From: Alice <alice@example.com>\r\nSubject: [kmers] Re: hello\r\n"
    b"Message-ID: <1@example.com>\r\nIn-Reply-To: <0@example.com>\r\n"
    b"Date: Mon, 2 Nov 2026 10:00:00 +0000\r\n\r\nHi all\r\n\r\n> quoted\r\n"
    b"On Mon, Bob <bob@example.com> wrote:\r\n> more\r\n",
    HEAD + b"From: =?utf-8?q?Ren=C3=A9e?= <r@example.org>\r\nSubject: =?utf-8?b?w6k=?=\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=xx\r\n\r\n"
    b"--xx\r\nContent-Type: text/plain; charset=utf-8; format=flowed; delsp=yes\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\nsoft =\r\nbreak #kmers=C3=A9\r\n"
    b"--xx\r\nContent-Type: text/html\r\n\r\n<p>soft <b>break</b><script>x</script></p>"
    b"<blockquote>q</blockquote>\r\n--xx--\r\n",
    HEAD + b"From: a@example.com\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
    b"--b\r\nContent-Type: text/plain\r\n\r\ntext\r\n--b\r\nContent-Type: image/png\r\n"
    b"Content-Disposition: attachment; filename*=utf-8''%C3%A9.png\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--b--\r\n",
    HEAD + b"From: \"Bob via Kmers\" <kmers@lists.example.org>\r\nReply-To: bob@x.org\r\n"
    b"X-Original-From: Bob <bob@x.org>\r\nSubject: unsubscribe\r\n\r\nunsubscribe\r\n",
]


def target(data: bytes) -> None:
    for raw in (data, HEAD + data):
        result = parse_list_mail(raw, SPEC, ME, max_attachment_bytes=10_000)
        if isinstance(result, Skipped):
            if result.reason.startswith("unparseable"):
                # The kind (before the colon) names the exception, so distinct parser
                # failures are distinct findings.
                kind = result.reason.removeprefix("unparseable: ")[:50].replace(":", ";")
                raise Finding(f"parser fell back on {kind}: {result.reason}")
            continue
        assert isinstance(result, ListMail)
        assert isinstance(result.event.text, RichText)
        plain = to_plain(result.event.text)
        if any(ord(c) < 32 and c not in "\n\t" for c in plain):
            raise Finding(f"control character in relayed text: {plain!r:.80}")


if __name__ == "__main__":
    run("email", target, SEEDS)
