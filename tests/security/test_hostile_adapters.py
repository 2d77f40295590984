"""Hostile input on every adapter's inbound parser (hypothesis).

Payloads are realistic skeletons where any field may instead hold any JSON value (a
server bug, a malicious instance, a proxy).  Properties: the parser returns a value and
never raises (the converter contract); a relayed post's text renders to safe HTML and
carries no control/bidi characters; plain words in the payload survive.
"""

from __future__ import annotations

import re
from typing import Any

from htmlsafety import unsafe_html
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_hostile_text import hostile_html

from bridge.contract.model import ChannelKey, Posted
from bridge.contract.textconv import to_html, to_plain

FAST = settings(max_examples=120, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
CH = ChannelKey("k/x")
_BAD = re.compile("[\u202a-\u202e\u2066-\u2069\u200b\ufeff\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=3),
    max_leaves=8)
words = st.lists(st.from_regex(r"[A-Za-z]{2,8}", fullmatch=True), min_size=1, max_size=6).map(
    " ".join)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the right shape, sometimes any JSON at all."""
    return st.one_of(strategy, strategy, strategy, json_values)


def _check_text(event: Any) -> None:
    if isinstance(event, Posted):
        assert unsafe_html(to_html(event.text)) == ""
        assert not _BAD.search(to_plain(event.text))
        for att in event.attachments:
            assert isinstance(att.url, str)


# ------------------------------------------------------------------- Mastodon

masto_account = st.fixed_dictionaries({
    "id": maybe(st.from_regex(r"[0-9]{1,6}", fullmatch=True)), "acct": maybe(st.text()),
    "username": maybe(st.text(max_size=10)), "display_name": maybe(hostile_html),
    "note": maybe(hostile_html), "bot": maybe(st.booleans()), "url": maybe(st.text()),
    "fields": maybe(st.lists(st.fixed_dictionaries({"name": st.text(), "value": hostile_html}),
                             max_size=2)),
    "discoverable": json_values, "indexable": json_values,
})
masto_status = st.fixed_dictionaries({
    "id": maybe(st.from_regex(r"[1-9][0-9]{0,17}", fullmatch=True)),
    "content": maybe(hostile_html), "account": maybe(masto_account), "url": maybe(st.text()),
    "in_reply_to_id": json_values, "reblog": st.none() | json_values,
    "tags": maybe(st.lists(st.fixed_dictionaries({"name": st.text(max_size=10)}), max_size=3)),
    "mentions": json_values, "spoiler_text": maybe(hostile_html),
    "media_attachments": maybe(st.lists(st.fixed_dictionaries({
        "type": maybe(st.sampled_from(["image", "video", "gifv", "audio", "unknown"])),
        "url": maybe(st.text()), "description": maybe(st.text()), "meta": json_values,
        "remote_url": json_values}), max_size=3)),
    "language": json_values, "created_at": maybe(st.text(max_size=30)),
    "visibility": maybe(st.sampled_from(["public", "unlisted", "private", "direct"])),
    "edited_at": json_values,
})


@FAST
@given(masto_status)
def test_mastodon_status_parsers_never_raise(status: dict[str, Any]) -> None:
    from adapters.mastodon.convert import parse_edit, parse_status, parse_stream_event
    _check_text(parse_status(status, channel=CH, bridge_acct="kmbridge"))
    parse_edit(status, channel=CH)
    import json
    for ev in ("update", "status.update", "delete", "notification"):
        parse_stream_event(ev, json.dumps(status, default=str), channel=CH,
                           bridge_acct="kmbridge")


@FAST
@given(st.text(max_size=200), st.sampled_from(["update", "status.update", "delete", ""]))
def test_mastodon_stream_event_with_garbage_data(data: str, event: str) -> None:
    from adapters.mastodon.convert import parse_stream_event
    parse_stream_event(event, data, channel=CH)


@FAST
@given(words)
def test_mastodon_words_survive(text: str) -> None:
    from adapters.mastodon.convert import parse_status
    out = parse_status({"id": "1", "content": f"<p>{text}</p>", "visibility": "public",
                        "account": {"id": "2", "acct": "a", "username": "a"}}, channel=CH)
    assert isinstance(out, Posted) and to_plain(out.text) == text


# ------------------------------------------------------------------------- X

x_tweet = st.fixed_dictionaries({
    "id": maybe(st.from_regex(r"[1-9][0-9]{0,18}", fullmatch=True)),
    "text": maybe(st.text(max_size=300) | hostile_html), "author_id": maybe(st.just("7")),
    "created_at": maybe(st.text(max_size=30)), "lang": json_values,
    "entities": maybe(st.fixed_dictionaries({
        "hashtags": maybe(st.lists(st.fixed_dictionaries({
            "start": maybe(st.integers(-5, 400)), "end": maybe(st.integers(-5, 400)),
            "tag": maybe(st.text(max_size=10))}), max_size=3)),
        "urls": maybe(st.lists(st.fixed_dictionaries({
            "start": maybe(st.integers(-5, 400)), "end": maybe(st.integers(-5, 400)),
            "expanded_url": maybe(st.text()), "display_url": maybe(st.text())}), max_size=3)),
        "mentions": maybe(st.lists(st.fixed_dictionaries({
            "start": maybe(st.integers(-5, 400)), "end": maybe(st.integers(-5, 400)),
            "username": maybe(st.text(max_size=10))}), max_size=3))})),
    "referenced_tweets": maybe(st.lists(st.fixed_dictionaries({
        "type": maybe(st.sampled_from(["replied_to", "quoted", "retweeted"])),
        "id": maybe(st.text(max_size=5))}), max_size=2)),
    "attachments": maybe(st.fixed_dictionaries({"media_keys": maybe(st.lists(
        st.sampled_from(["3_1", "3_2"]), max_size=2))})),
    "note_tweet": st.none() | maybe(st.fixed_dictionaries({"text": maybe(st.text())})),
    "edit_history_tweet_ids": json_values,
})
x_page = st.fixed_dictionaries({
    "data": maybe(st.lists(x_tweet, max_size=3)),
    "includes": maybe(st.fixed_dictionaries({
        "users": maybe(st.lists(st.fixed_dictionaries({
            "id": maybe(st.just("7")), "username": maybe(st.text(max_size=10)),
            "name": maybe(hostile_html), "description": maybe(st.text())}), max_size=2)),
        "media": maybe(st.lists(st.fixed_dictionaries({
            "media_key": maybe(st.sampled_from(["3_1", "3_2"])),
            "type": maybe(st.sampled_from(["photo", "video", "animated_gif"])),
            "url": maybe(st.text()), "alt_text": maybe(st.text())}), max_size=2))})),
    "meta": maybe(st.fixed_dictionaries({"newest_id": json_values})),
})


@FAST
@given(x_page)
def test_x_page_parser_never_raises(page: dict[str, Any]) -> None:
    from adapters.twitter.convert import missing_ids, parse_page
    parsed = parse_page(page, CH, own_user_id="9")
    for ev in parsed.events:
        _check_text(ev)
    missing_ids(page)


@FAST
@given(words)
def test_x_words_survive(text: str) -> None:
    from adapters.twitter.convert import parse_page
    page = {"data": [{"id": "5", "text": text, "author_id": "7"}],
            "includes": {"users": [{"id": "7", "username": "a", "name": "A"}]}}
    (ev,) = parse_page(page, CH).events
    assert to_plain(ev.text) == text


# --------------------------------------------------------------------- Matrix

mx_event = st.fixed_dictionaries({
    "type": maybe(st.sampled_from(["m.room.message", "m.room.redaction", "m.room.member",
                                   "m.reaction", "m.room.encrypted"])),
    "event_id": maybe(st.from_regex(r"\$[A-Za-z0-9]{1,8}", fullmatch=True)),
    "sender": maybe(st.sampled_from(["@alice:hs", "@bridgebot:hs", "@hb_x:hs"])),
    "origin_server_ts": json_values, "redacts": json_values, "unsigned": json_values,
    "content": maybe(st.fixed_dictionaries({
        "msgtype": maybe(st.sampled_from(["m.text", "m.notice", "m.emote", "m.image",
                                          "m.file", "m.video"])),
        "body": maybe(st.text(max_size=200) | hostile_html),
        "format": maybe(st.just("org.matrix.custom.html")),
        "formatted_body": maybe(hostile_html), "url": maybe(st.text(max_size=30)),
        "info": json_values, "m.relates_to": json_values, "m.new_content": json_values,
        "redacts": json_values, "filename": json_values})),
})


@FAST
@given(mx_event)
def test_matrix_event_parser_never_raises(event: dict[str, Any]) -> None:
    from adapters.matrix.convert import EditOf, parse_event
    out = parse_event(event, channel=CH, room_id="!r:hs", homeserver="https://hs",
                      display_name="Bridge")
    _check_text(out.event if isinstance(out, EditOf) else out)


@FAST
@given(words)
def test_matrix_words_survive(text: str) -> None:
    from adapters.matrix.convert import parse_event
    out = parse_event({"type": "m.room.message", "event_id": "$e", "sender": "@a:hs",
                       "origin_server_ts": 1, "content": {"msgtype": "m.text", "body": text}},
                      channel=CH, room_id="!r:hs", homeserver="https://hs")
    assert isinstance(out, Posted) and to_plain(out.text) == text


# ---------------------------------------------------------------------- email

_HEAD = ("Return-Path: <kmers-bounces@lists.example.org>\r\n"
         "List-Id: K-mers <kmers.lists.example.org>\r\n")
header_line = st.builds(
    lambda n, v: f"{n}: {v}\r\n",
    st.sampled_from(["From", "Subject", "Message-ID", "In-Reply-To", "References", "Date",
                     "Content-Type", "Content-Transfer-Encoding", "Reply-To",
                     "X-Original-From", "Auto-Submitted", "Precedence", "Archived-At",
                     "Content-Disposition", "MIME-Version"]),
    st.text(st.characters(blacklist_characters="\x00\r\n"), max_size=60)
    | st.sampled_from(["multipart/mixed; boundary=b", "text/html; charset=utf-8",
                       "text/plain; format=flowed; delsp=yes", "base64", "quoted-printable",
                       "=?utf-8?b?w6k=?=", "=?x-unknown?q?=FF?=", "<a@b>", "attachment; "
                       "filename*=utf-8''%C3%A9", "auto-replied", "bulk"]))


@FAST
@given(st.lists(header_line, max_size=8), st.text(max_size=300) | hostile_html)
def test_email_parser_never_falls_back(headers: list[str], body: str) -> None:
    from adapters.email.convert import Identity, ListSpec, parse_list_mail
    from bridge.contract.adapter import Unsupported
    spec = ListSpec(channel=CH, list_id="kmers.lists.example.org",
                    address="kmers@lists.example.org")
    me = Identity(address="bridge@b.example", domain="b.example", salt=b"s" * 16)
    raw = (_HEAD + "".join(headers) + "\r\n" + body).encode("utf-8", "surrogatepass")
    out = parse_list_mail(raw, spec, me)
    assert not (isinstance(out, Unsupported) and out.reason.startswith("unparseable")), out
    if not isinstance(out, Unsupported):
        _check_text(out.event)


@FAST
@given(words)
def test_email_words_survive(text: str) -> None:
    from adapters.email.convert import Identity, ListMail, ListSpec, parse_list_mail
    assume(text.split()[0].lower() not in {"confirm", "end", "help", "join", "leave",
                                           "remove", "set", "stop", "subscribe", "who",
                                           "unsubscribe", "lists", "info", "options",
                                           "password"})
    spec = ListSpec(channel=CH, list_id="kmers.lists.example.org",
                    address="kmers@lists.example.org")
    me = Identity(address="bridge@b.example", domain="b.example", salt=b"s" * 16)
    raw = (_HEAD + "From: Alice <a@x.org>\r\nSubject: hi\r\n\r\n" + text + "\r\n").encode()
    out = parse_list_mail(raw, spec, me)
    assert isinstance(out, ListMail), out
    assert to_plain(out.event.text) == text
