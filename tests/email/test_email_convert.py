"""The pure converters on hostile and ordinary mail: never a crash, every rule applied."""

from __future__ import annotations

import time
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.email.compose import (
    MAX_REFERENCES,
    Outgoing,
    build_mail,
    defuse_administrivia,
    references_for,
    subject_for,
)
from adapters.email.convert import (
    Identity,
    ListMail,
    ListSpec,
    list_id_of,
    parse_list_mail,
    strip_subject,
    unflow,
)
from bridge.contract.adapter import Unsupported
from bridge.contract.model import ChannelKey
from bridge.contract.textconv import to_plain

SPEC = ListSpec(channel=ChannelKey("kmers/mail"), list_id="kmers.lists.test",
                address="kmers@lists.test", subject_tag="kmers")
ME = Identity(address="bridge@bridge.test", domain="bridge.test", salt=b"salt")
LIST_HEADERS = (b"Return-Path: <kmers-bounces@lists.test>\r\n"
                b"List-Id: Kmers list <kmers.lists.test>\r\n"
                b"List-Post: <mailto:kmers@lists.test>\r\n")


def list_mail(msg: EmailMessage, *, return_path: str = "kmers-bounces@lists.test") -> bytes:
    if "List-Id" not in msg:
        msg["List-Id"] = "Kmers list <kmers.lists.test>"
    if "Message-ID" not in msg and not msg.get("X-No-Id"):
        msg["Message-ID"] = "<m1@members.test>"
    del msg["X-No-Id"]
    return f"Return-Path: <{return_path}>\r\n".encode() + msg.as_bytes()


def simple(body: str, **headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = headers.pop("From", "Alice Liddell <alice@members.test>")
    msg["To"] = "kmers@lists.test"
    msg["Subject"] = headers.pop("Subject", "[kmers] hello")
    for k, v in headers.items():
        msg[k.replace("_", "-")] = v
    msg.set_content(body)
    return msg


def parsed(raw: bytes, **kw: int) -> ListMail:
    res = parse_list_mail(raw, SPEC, ME, **kw)
    assert isinstance(res, ListMail), res
    return res


def skipped(raw: bytes) -> str:
    res = parse_list_mail(raw, SPEC, ME)
    assert isinstance(res, Unsupported), res
    return res.reason


def test_plain_post_footer_quote_signature_stripped() -> None:
    body = ("Yes, rye works best.\n\n-- \nAlice\nhttps://alice.example\n\n"
            "On Mon, 1 Jan 2024, Bob <bob@members.test> wrote:\n> which flour?\n> any?\n"
            "\n_______________________________________________\n"
            "kmers mailing list -- kmers@lists.test\n"
            "To unsubscribe send an email to kmers-leave@lists.test\n")
    res = parsed(list_mail(simple(body, Subject="Re: [kmers] Re: flour",
                                  In_Reply_To="<p@members.test>",
                                  References="<r@members.test> <p@members.test>")))
    assert to_plain(res.event.text) == "Yes, rye works best."
    assert res.subject == "flour"
    assert res.event.reply_to_native == "p@members.test"
    assert res.references == ("r@members.test", "p@members.test")
    assert res.event.author.display_name == "Alice Liddell"


def test_reply_to_falls_back_to_last_reference() -> None:
    res = parsed(list_mail(simple("x y z", References="<a@m.test> <b@m.test>")))
    assert res.event.reply_to_native == "b@m.test"


def test_wrong_charset_declaration_is_repaired() -> None:
    raw = (LIST_HEADERS + b"From: Alice <alice@members.test>\r\nSubject: x\r\n"
           b"Message-ID: <cs@m.test>\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
           b"Content-Transfer-Encoding: 8bit\r\n\r\nGr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln\r\n")
    assert to_plain(parsed(raw).event.text) == "Grüße aus Köln"


def test_unknown_charset_and_8bit_headers_survive() -> None:
    raw = (LIST_HEADERS + b"From: J\xfcrgen M\xfcller <jm@members.test>\r\n"
           b"Subject: [kmers] \xe2\x9c\x93 caf\xc3\xa9\r\nMessage-ID: <8b@m.test>\r\n"
           b"Content-Type: text/plain; charset=x-unknown-42\r\n\r\nna\xefve text\r\n")
    res = parsed(raw)
    assert "ve text" in to_plain(res.event.text)
    assert "café" in res.subject
    assert "members.test" not in res.event.author.display_name


def test_nested_multiparts_prefer_plain_and_keep_attachment() -> None:
    msg = simple("the plain body")
    msg.add_alternative("<p>the <b>html</b> body</p>", subtype="html")
    msg.get_payload()[1].add_related(b"\x89PNG fake", maintype="image", subtype="png",
                                     cid="<img1>")
    msg.add_attachment(b"%PDF-1.4 tiny", maintype="application", subtype="pdf",
                       filename="notes.pdf")
    res = parsed(list_mail(msg))
    assert to_plain(res.event.text) == "the plain body"
    assert [(p.filename, p.media_type) for p in res.parts] == [("notes.pdf",
                                                                "application/pdf")]


def test_html_only_with_script_is_sanitised_and_unquoted() -> None:
    msg = simple("x")
    msg.set_content("<p>Hello <b>all</b><script>alert('pwn')</script></p>"
                    "<img src=x onerror=alert(1)>"
                    "<div>On Mon, Bob wrote:</div><blockquote type='cite'>old stuff"
                    "</blockquote>", subtype="html")
    text = to_plain(parsed(list_mail(msg)).event.text)
    assert "Hello" in text and "all" in text
    assert "alert" not in text and "pwn" not in text and "old stuff" not in text


def test_20mb_attachment_is_dropped_with_a_note_quickly() -> None:
    msg = simple("see attached")
    msg.add_attachment(b"\0" * (20 * 1024 * 1024), maintype="application",
                       subtype="octet-stream", filename="huge.bin")
    raw = list_mail(msg)
    t = time.monotonic()
    res = parsed(raw)
    assert time.monotonic() - t < 10
    assert res.parts == () and res.dropped_parts == ("huge.bin (21.0 MB)",)


def test_missing_message_id_gets_a_stable_id() -> None:
    msg = simple("no id here")
    msg["X-No-Id"] = "1"
    raw = list_mail(msg)
    a, b = parsed(raw), parsed(raw)
    assert a.event.native_id == b.event.native_id
    assert a.event.native_id.endswith("@no-message-id.invalid")


def test_forged_list_id_from_non_member_is_refused() -> None:
    raw = list_mail(simple("buy now"), return_path="spammer@evil.test")
    assert "envelope sender" in skipped(raw)


def test_other_lists_and_missing_list_id_are_refused() -> None:
    msg = simple("hi")
    msg["List-Id"] = "<other.lists.test>"
    assert "is not" in skipped(list_mail(msg))
    assert list_id_of(list_mail(simple("x"))) == "kmers.lists.test"
    plain = simple("direct mail")
    assert "missing" in skipped(plain.as_bytes())


@pytest.mark.parametrize("headers", [
    {"Auto_Submitted": "auto-replied"},
    {"Precedence": "junk"},
    {"Precedence": "bulk"},
    {"X_Autoreply": "yes"},
    {"From": "kmers-owner@lists.test"},
    {"From": "MAILER-DAEMON@mx.members.test"},
])
def test_auto_replies_and_robots_are_dropped(headers: dict[str, str]) -> None:
    skipped(list_mail(simple("I am out of office until Monday.", **headers)))


def test_bounce_report_is_dropped() -> None:
    msg = EmailMessage()
    msg["From"] = "Mail Delivery System <mailer-daemon@mx.test>"
    msg["Subject"] = "Undelivered Mail Returned to Sender"
    msg.set_content("could not deliver")
    msg.make_mixed()
    msg.replace_header("Content-Type", 'multipart/report; report-type=delivery-status; '
                       'boundary="' + str(msg.get_boundary()) + '"')
    assert "delivery status" in skipped(list_mail(msg))


def test_own_mail_is_dropped_by_its_stamps_not_by_its_domain() -> None:
    assert "own" in skipped(list_mail(simple("x", X_Hashbridge_Delivery="k1")))
    assert "own" in skipped(list_mail(simple("x", X_Loop="bridge@bridge.test")))
    # The parser does not know which ids we sent (the adapter's journal does): an id
    # on our domain, from a member there, is a member's post.
    msg = simple("x", From="Carol <carol@bridge.test>")
    msg["Message-ID"] = "<k2@bridge.test>"
    assert parsed(list_mail(msg)).event.native_id == "k2@bridge.test"
    # X-Loop names addresses exactly: one that merely contains ours is not ours.
    parsed(list_mail(simple("x", X_Loop="xbridge@bridge.test.example")))


@pytest.mark.parametrize("subject,body", [("unsubscribe", ""), ("hi", "unsubscribe\n"),
                                          ("[kmers] help", "")])
def test_administrivia_is_dropped(subject: str, body: str) -> None:
    assert "administrivia" in skipped(list_mail(simple(body or "\n", Subject=subject)))


def test_longer_post_mentioning_help_is_kept() -> None:
    parsed(list_mail(simple("Help me understand k-mer counting please, thanks all",
                            Subject="Help with jellyfish")))


def test_dmarc_munged_from_is_undone() -> None:
    munged = simple("hello", From="Alice Liddell via Kmers <kmers@lists.test>",
                    Reply_To="Alice Liddell <alice@members.test>")
    normal = simple("hello")
    a, b = parsed(list_mail(munged)), parsed(list_mail(normal))
    assert a.event.author.display_name == "Alice Liddell"
    assert a.event.author.handle == b.event.author.handle
    assert "alice@" not in repr(a.event)


def test_address_in_display_name_and_body_is_not_published() -> None:
    res = parsed(list_mail(simple("mail me at alice@members.test anytime",
                                  From="alice@members.test <alice@members.test>")))
    assert "alice@members.test" not in repr(res.event)
    assert res.event.author.display_name == ""


def test_format_flowed_is_unflowed() -> None:
    assert unflow("a long \nline\n>quoted \n>more\n -- \nsig", delsp=False) == \
        "a long line\n>quoted >more\n-- \nsig"
    msg = simple("x")
    msg.set_content("This is a soft \nbroken line.\n", params={"format": "flowed"})
    assert to_plain(parsed(list_mail(msg)).event.text) == "This is a soft broken line."


def test_strip_subject() -> None:
    assert strip_subject("Re: [kmers] RE: AW: [kmers] Topic", "kmers") == "Topic"
    assert strip_subject("[other] x") == "x"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_random_bytes_never_raise(data: bytes) -> None:
    assert isinstance(parse_list_mail(LIST_HEADERS + data, SPEC, ME), ListMail | Unsupported)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400), st.sampled_from(["utf-8", "latin-1", "x-bogus", "utf-16"]),
       st.sampled_from(["7bit", "8bit", "base64", "quoted-printable", "x-weird"]))
def test_declared_encodings_never_raise(body: str, charset: str, cte: str) -> None:
    raw = (LIST_HEADERS + b"From: A <a@m.test>\r\nMessage-ID: <f@m.test>\r\n"
           + f"Content-Type: text/plain; charset={charset}\r\n"
             f"Content-Transfer-Encoding: {cte}\r\n\r\n".encode()
           + body.encode("utf-8", "surrogatepass"))
    assert isinstance(parse_list_mail(raw, SPEC, ME), ListMail | Unsupported)


# ------------------------------------------------------------------ outbound

def out(**kw: object) -> Outgoing:
    base = dict(key="01jdel", from_address="bridge@bridge.test", domain="bridge.test",
                list_address="kmers@lists.test", author="Alice", network="Mastodon",
                plain="hello #kmers")
    return Outgoing(**{**base, **kw})  # type: ignore[arg-type]


def test_build_mail_headers() -> None:
    m = build_mail(out(html="<p>hello</p>", parent_id="p@m.test",
                       parent_references=("r@m.test",), parent_subject="[kmers] Re: Topic"))
    assert m["Message-ID"] == "<01jdel@bridge.test>"
    assert m["In-Reply-To"] == "<p@m.test>"
    assert m["References"] == "<r@m.test> <p@m.test>"
    assert m["Subject"] == "Re: Topic"
    assert m["To"] == m["Reply-To"] == "kmers@lists.test"
    assert m["Auto-Submitted"] is None and m["X-Hashbridge-Delivery"]
    assert m.get_body(("html",)) is not None and m.get_body(("plain",)) is not None
    # Our own mail, echoed by the list, is recognised as ours.
    raw = list_mail(m)
    assert "own" in skipped(raw)


def test_new_thread_subject_from_first_line() -> None:
    assert subject_for(out(plain="First line here\nsecond")) == "First line here"
    long = "word " * 30
    assert len(subject_for(out(plain=long))) <= 71


def test_administrivia_lines_are_defused() -> None:
    text = defuse_administrivia("unsubscribe\nplease do not unsubscribe me, it is fine")
    first, second = text.split("\n")
    assert first != "unsubscribe" and first.endswith("unsubscribe")
    assert second == "please do not unsubscribe me, it is fine"
    assert not subject_for(out(plain="Subscribe")).startswith("Subscribe")


def test_references_are_trimmed_in_the_middle() -> None:
    chain = tuple(f"m{i}@x" for i in range(40))
    refs = references_for("p@x", chain)
    assert len(refs) == MAX_REFERENCES and refs[0] == "m0@x" and refs[-1] == "p@x"


def test_nul_in_a_mime_parameter_keeps_the_post() -> None:
    raw = LIST_HEADERS + (b"From: Alice <alice@members.test>\r\nMessage-ID: <nul@m.test>\r\n"
                          b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
                          b"Content-Type: text/plain\r\n\r\nHello list #kmers\r\n--b\r\n"
                          b"Content-Type: image/png; name*=ut\x00f-8''x.png\r\n\r\nxx\r\n"
                          b"--b--\r\n")
    res = parsed(raw)
    assert "Hello list" in to_plain(res.event.text) and res.event.native_id == "nul@m.test"


def test_attachments_inside_a_lists_wrapper_are_kept() -> None:
    # A list that adds a footer to a multipart post wraps the original parts in
    # another multipart/mixed (Mailman's decorate); a signed post nests them too.
    inner = simple("look at this")
    inner.add_attachment(b"\x89PNG fake", maintype="image", subtype="png", filename="k.png")
    outer = simple("x")
    outer.set_content("look at this")
    outer.make_mixed()
    outer.get_payload().clear()  # type: ignore[union-attr]
    wrapped = EmailMessage()
    wrapped.set_type("multipart/mixed")
    for part in inner.get_payload():  # type: ignore[union-attr]
        wrapped.attach(part)
    outer.attach(wrapped)
    footer = EmailMessage()
    footer.set_content("_______________\nkmers mailing list\n")
    outer.attach(footer)
    res = parsed(list_mail(outer))
    assert "look at this" in to_plain(res.event.text)
    assert [(p.filename, p.media_type) for p in res.parts] == [("k.png", "image/png")]


# ------------------------------------------------------------------ poison pills

def test_a_mail_over_the_text_cap_is_skipped_with_its_error_under_its_message_id() -> None:
    from adapters.email.convert import MAX_BODY_BYTES
    from bridge.contract.adapter import TooLarge

    raw = (LIST_HEADERS + b"From: A <a@m.test>\r\nMessage-ID: <big@m.test>\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
           + b"word " * (MAX_BODY_BYTES // 5 + 1))
    res = parse_list_mail(raw, SPEC, ME)
    assert isinstance(res, Unsupported) and isinstance(res.error, TooLarge)
    assert res.native_id == "big@m.test"
    assert res.reason == (f"too large: {MAX_BODY_BYTES // 5 * 5 + 5:,} bytes "
                          f"(a list mail's text is taken up to {MAX_BODY_BYTES:,})")

