"""Pure converters: Matrix events in, event content out; hostile input never crashes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mxhelp import rendered

from adapters.matrix import compose, convert
from bridge.contract.adapter import Unsupported, UnsupportedKind
from bridge.contract.model import ChannelKey, Deleted, Posted
from bridge.contract.textconv import to_plain

CH = ChannelKey("kmers/mx")
HS = "https://hs.example"


def ev(content: Any, *, etype: str = "m.room.message", sender: str = "@alice:hs.example",
       event_id: str = "$e1", **extra: Any) -> dict[str, Any]:
    return {"type": etype, "event_id": event_id, "sender": sender,
            "origin_server_ts": 1_700_000_000_000, "content": content, **extra}


def parse(raw: Any, **kw: Any) -> Any:
    return convert.parse_event(raw, channel=CH, room_id="!r:hs.example", homeserver=HS, **kw)


def test_text_with_html_is_posted() -> None:
    r = parse(ev({"msgtype": "m.text", "body": "hi **you**", "format": "org.matrix.custom.html",
                  "formatted_body": "hi <strong>you</strong>"}), display_name="Alice")
    assert isinstance(r, Posted)
    assert to_plain(r.text) == "hi you" and r.author.display_name == "Alice"
    assert r.created_at.year == 2023 and r.reply_to_native is None


def test_notice_is_never_relayed() -> None:
    notice = parse(ev({"msgtype": "m.notice", "body": "bot"}))
    assert isinstance(notice, Unsupported) and notice.kind is UnsupportedKind.IGNORED


def test_our_own_relayed_event_is_ignored() -> None:
    c = compose.message_content(rendered("x"), origin={"post": "p"})
    ignored = parse(ev(c))
    assert isinstance(ignored, Unsupported) and ignored.kind is UnsupportedKind.IGNORED


def test_emote_gets_actor_prefix() -> None:
    r = parse(ev({"msgtype": "m.emote", "body": "waves"}), display_name="Alice")
    assert isinstance(r, Posted) and to_plain(r.text) == "* Alice waves"


def test_reply_strips_legacy_fallback_in_body_and_html() -> None:
    rel = {"m.in_reply_to": {"event_id": "$parent"}}
    plain = parse(ev({"msgtype": "m.text", "body": "> <@bob:x> original\n> more\n\nmy answer",
                      "m.relates_to": rel}))
    html = parse(ev({"msgtype": "m.text", "body": "> x\n\nmy answer",
                     "format": "org.matrix.custom.html",
                     "formatted_body": "<mx-reply><blockquote><a href='https://matrix.to/#/$p'>"
                                       "In reply to</a> original</blockquote></mx-reply>my answer",
                     "m.relates_to": rel}))
    for r in (plain, html):
        assert isinstance(r, Posted) and r.reply_to_native == "$parent"
        assert to_plain(r.text) == "my answer"


def test_thread_reply_targets_root_when_falling_back() -> None:
    r = parse(ev({"msgtype": "m.text", "body": "in thread", "m.relates_to": {
        "rel_type": "m.thread", "event_id": "$root", "is_falling_back": True,
        "m.in_reply_to": {"event_id": "$latest"}}}))
    assert isinstance(r, Posted) and r.reply_to_native == "$root"
    r2 = parse(ev({"msgtype": "m.text", "body": "in thread", "m.relates_to": {
        "rel_type": "m.thread", "event_id": "$root", "is_falling_back": False,
        "m.in_reply_to": {"event_id": "$sibling"}}}))
    assert isinstance(r2, Posted) and r2.reply_to_native == "$sibling"


def test_edit_uses_new_content_and_carries_sender() -> None:
    r = parse(ev({"msgtype": "m.text", "body": "* fixed",
                  "m.new_content": {"msgtype": "m.text", "body": "fixed"},
                  "m.relates_to": {"rel_type": "m.replace", "event_id": "$orig"}}))
    assert isinstance(r, convert.EditOf) and r.event.native_id == "$orig"
    assert to_plain(r.event.text) == "fixed" and r.sender == "@alice:hs.example"
    bad = parse(ev({"msgtype": "m.text", "body": "* x",
                    "m.relates_to": {"rel_type": "m.replace", "event_id": "$orig"}}))
    assert isinstance(bad, Unsupported) and bad.kind is UnsupportedKind.MALFORMED


@pytest.mark.parametrize("where", ["content", "top"])
def test_redaction_both_room_versions(where: str) -> None:
    raw = ev({"redacts": "$x"} if where == "content" else {}, etype="m.room.redaction",
             **({"redacts": "$x"} if where == "top" else {}))
    r = parse(raw)
    assert isinstance(r, Deleted) and r.native_id == "$x"


def test_image_becomes_attachment_and_size_limit_applies() -> None:
    c = {"msgtype": "m.image", "body": "cat.png", "url": "mxc://hs.example/AbC123",
         "info": {"mimetype": "image/png", "size": 2048}}
    r = parse(ev(c))
    assert isinstance(r, Posted) and len(r.attachments) == 1
    a = r.attachments[0]
    assert a.url == f"{HS}/_matrix/client/v1/media/download/hs.example/AbC123"
    assert a.media_type == "image/png" and a.size == 2048 and a.filename == "cat.png"
    big = parse(ev(c), max_media_bytes=1000)
    assert isinstance(big, Posted) and not big.attachments
    assert "not relayed" in to_plain(big.text)
    evil = parse(ev({**c, "url": "mxc://hs/../../etc/passwd"}))
    assert isinstance(evil, Posted) and not evil.attachments


def test_file_with_caption() -> None:
    r = parse(ev({"msgtype": "m.file", "body": "the report", "filename": "r.pdf",
                  "url": "mxc://hs.example/f1", "info": {"mimetype": "application/pdf"}}))
    assert isinstance(r, Posted) and to_plain(r.text) == "the report"
    assert r.attachments[0].filename == "r.pdf"


@pytest.mark.parametrize("raw", [
    None, 42, "x", [], {}, {"type": "m.room.message"},
    ev(None), ev([]), ev({}), ev({"msgtype": 5, "body": "x"}), ev({"msgtype": "m.text"}),
    ev({"msgtype": "m.text", "body": 7, "formatted_body": ["x"], "format": 3}),
    ev({"msgtype": "m.text", "body": "x", "m.relates_to": "bad"}),
    ev({"msgtype": "m.text", "body": "x", "m.relates_to": {"m.in_reply_to": "bad"}}),
    ev({"msgtype": "m.image", "body": "x", "url": 5, "info": "bad"}),
    ev({"redacts": 5}, etype="m.room.redaction"),
    ev({"msgtype": "m.text", "body": "x"}, origin_server_ts="yesterday"),
    ev({"msgtype": "m.text", "body": "x"}, origin_server_ts=-1),
])
def test_malformed_events_are_values_not_exceptions(raw: Any) -> None:
    r = parse(raw)
    assert isinstance(r, (Posted, Unsupported, Deleted))


def test_hostile_html_is_sanitised_on_the_way_in() -> None:
    r = parse(ev({"msgtype": "m.text", "body": "x", "format": "org.matrix.custom.html",
                  "formatted_body": "<script>alert(1)</script><img src=x onerror=alert(2)>"
                                    "<a href='javascript:alert(3)'>click</a> ok\u202e\u200b"}))
    assert isinstance(r, Posted)
    text = to_plain(r.text)
    assert "alert" not in text and "javascript" not in text
    assert "\u202e" not in text and "\u200b" not in text and "click" in text


def test_64k_body_is_bounded() -> None:
    r = parse(ev({"msgtype": "m.text", "body": "a" * 200_000}))
    assert isinstance(r, Posted) and len(to_plain(r.text)) <= convert.MAX_BODY_CHARS


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=50),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(
                        st.sampled_from(["type", "event_id", "sender", "content", "msgtype",
                                         "body", "formatted_body", "format", "m.relates_to",
                                         "m.new_content", "rel_type", "m.in_reply_to",
                                         "url", "info", "redacts", "origin_server_ts"]),
                        c, max_size=6), max_leaves=25))
def test_fuzzed_events_never_raise(raw: Any) -> None:
    parse(raw)
    if isinstance(raw, dict):
        parse({"type": "m.room.message", "event_id": "$f", "sender": "@f:x", "content": raw})


# ---------------------------------------------------------------- outbound

def test_content_always_has_empty_mentions_and_no_room_ping() -> None:
    c = compose.message_content(rendered("hey @room and @alice:hs.example"))
    assert c["m.mentions"] == {}
    assert c["msgtype"] == "m.text" and "@room" in c["body"]


def test_a_mention_in_the_rendered_text_pings_nobody() -> None:
    from bridge.contract.adapter import Rendered
    from bridge.contract.richtext import Mention, Paragraph, RichText, Text

    rt = RichText((Paragraph((Mention("alice:hs.example"), Text(" and "),
                              Mention("eve:evil.example"))),))
    r = Rendered(text=rt, plain="@alice:hs.example and @eve:evil.example", html="", markdown="")
    assert compose.message_content(r)["m.mentions"] == {}


def test_outbound_html_is_sanitised_and_notice_type() -> None:
    c = compose.message_content(rendered("x", html="<p>ok<script>bad()</script>"
                                                   "<img src=x onerror=y></p>", notice=True))
    assert c["msgtype"] == "m.notice" and "script" not in c["formatted_body"]
    assert "onerror" not in c["formatted_body"] and "ok" in c["formatted_body"]


def test_reply_and_thread_relations() -> None:
    r = compose.message_content(rendered("x"), reply_to="$p")
    assert r["m.relates_to"] == {"m.in_reply_to": {"event_id": "$p"}}
    t = compose.message_content(rendered("x"), reply_to="$p", thread_root="$root")
    assert t["m.relates_to"] == {"rel_type": "m.thread", "event_id": "$root",
                                 "is_falling_back": False, "m.in_reply_to": {"event_id": "$p"}}


def test_edit_content_shape() -> None:
    c = compose.edit_content(rendered("new text"), "$orig")
    assert c["body"] == "* new text" and c["m.new_content"]["body"] == "new text"
    assert c["m.relates_to"] == {"rel_type": "m.replace", "event_id": "$orig"}
    assert c["m.new_content"]["m.mentions"] == {} and c["m.mentions"] == {}


def test_outbound_controls_stripped_and_size_bounded() -> None:
    c = compose.message_content(rendered("a\u202eb\u200bc" + "x" * 70_000))
    assert "\u202e" not in c["body"] and len(c["body"]) <= convert.MAX_BODY_CHARS
    assert "formatted_body" not in c or len(c["formatted_body"]) <= convert.MAX_BODY_CHARS


def test_txn_ids_are_deterministic_and_distinct() -> None:
    assert compose.txn_id("d1:0") == compose.txn_id("d1:0")
    assert compose.txn_id("d1:0") != compose.txn_id("d1:1")
    assert compose.txn_id("d1:0") != compose.txn_id("d1:0", "redact")


def test_huge_content_fits_the_event_limit() -> None:
    import json

    big = "🙂<b>x</b> " * 20000
    for c in (compose.message_content(rendered(big)), compose.edit_content(rendered(big), "$o")):
        assert len(json.dumps(c, ensure_ascii=False).encode()) <= compose.MAX_CONTENT_BYTES
        assert c["body"].endswith("…") and "formatted_body" not in c
    small = compose.message_content(rendered("short"))
    assert "formatted_body" in small


def test_content_warning_becomes_a_spoiler() -> None:
    from dataclasses import replace

    r = replace(rendered("spoiled <ending>"), content_warning='plot "twist"')
    c = compose.message_content(r)
    assert c["body"].startswith('CW: plot "twist"\n\n')
    assert 'data-mx-spoiler="plot &quot;twist&quot;"' in c["formatted_body"]
    assert "&lt;ending&gt;" in c["formatted_body"] and "<ending>" not in c["formatted_body"]
    e = compose.edit_content(r, "$o")
    assert "data-mx-spoiler" in e["m.new_content"]["formatted_body"]


def test_hashtags_in_html_are_seen_so_nobridge_is_honoured() -> None:
    r = parse(ev({"msgtype": "m.text", "body": "**wow** #nobridge",
                  "format": "org.matrix.custom.html",
                  "formatted_body": "<strong>wow</strong> #nobridge <em>see #kmers</em>"}))
    assert isinstance(r, Posted)
    assert r.text.hashtags() == {"nobridge", "kmers"}
    assert to_plain(r.text) == "wow #nobridge see #kmers"


def test_inbound_spoiler_is_a_content_warning_and_commands_are_parsed() -> None:
    r = parse(ev({"msgtype": "m.text", "body": "x", "format": "org.matrix.custom.html",
                  "formatted_body": 'ending: <span data-mx-spoiler="film &amp; plot">'
                                    "he dies</span>"}))
    assert isinstance(r, Posted) and r.content_warning == "film & plot" and not r.command
    bare = parse(ev({"msgtype": "m.text", "body": "x", "format": "org.matrix.custom.html",
                     "formatted_body": "<span data-mx-spoiler>boo</span>"}))
    assert isinstance(bare, Posted) and bare.content_warning == "spoiler"
    for body, cmd in (("!leave", "!leave"), ("  !JOIN ", "!join"), ("!leave now", "")):
        c = parse(ev({"msgtype": "m.text", "body": body}))
        assert isinstance(c, Posted) and c.command == cmd
