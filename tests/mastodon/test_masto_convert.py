"""The pure converters, fed with every recorded real status and SSE event."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mastohelp import recorded_statuses, sse_events

from adapters.mastodon.compose import (
    addressed,
    edit_params,
    neutralise,
    reply_visibility,
    status_params,
)
from adapters.mastodon.convert import (
    opt_out_reasons,
    parse_edit,
    parse_instance,
    parse_status,
    parse_stream_event,
    status_length,
)
from bridge.contract.adapter import Rendered, SendCreate, SendEdit, Unsupported
from bridge.contract.model import (
    Author,
    ChannelKey,
    Deleted,
    DeliveryId,
    Edited,
    NativeId,
    Post,
    PostId,
)
from bridge.contract.richtext import Hashtag, Link, Mention, iter_inlines
from bridge.contract.textconv import NEUTRAL_AT, to_plain

CH = ChannelKey("kmers/masto")
STATUSES = recorded_statuses()


def test_recordings_hold_enough_material() -> None:
    assert len(STATUSES) >= 90
    assert {e for e, _ in sse_events()} >= {"update", "status.update", "delete"}


@pytest.mark.parametrize("status", STATUSES, ids=lambda s: str(s["id"]))
def test_every_recorded_status_converts(status: dict[str, Any]) -> None:
    ev = parse_status(status, channel=CH, bridge_acct="mastodonpy_test")
    if status.get("reblog"):
        assert isinstance(ev, Unsupported)
        return
    assert not isinstance(ev, Unsupported), ev
    assert ev.native_id == status["id"]
    assert ev.public == (status["visibility"] == "public")
    assert ev.author.handle.startswith("@") and "@" in ev.author.handle[1:]
    assert ev.reply_to_native == status["in_reply_to_id"]
    assert ev.content_warning == status["spoiler_text"]
    if status.get("content"):
        plain = to_plain(ev.text)
        assert plain.strip(), status["content"]
        assert "<" not in plain and "&#39;" not in plain
        assert "invisible" not in plain
    for att, raw in zip(ev.attachments, status["media_attachments"], strict=True):
        assert att.url == raw["url"] and att.alt_text == (raw["description"] or "")


@pytest.mark.parametrize(("event", "data"), sse_events(), ids=lambda x: str(x)[:20])
def test_every_recorded_stream_event_converts(event: str, data: str) -> None:
    ev = parse_stream_event(event, data, channel=CH)
    match event:
        case "update":
            assert not isinstance(ev, Unsupported) and ev.native_id == json.loads(data)["id"]
        case "status.update":
            assert isinstance(ev, Edited | Deleted) and ev.native_id == json.loads(data)["id"]
        case "delete":
            assert isinstance(ev, Deleted) and ev.native_id == data.strip()
        case _:
            assert isinstance(ev, Unsupported)


def test_hostile_payloads_become_values() -> None:
    for junk in ({}, {"id": "1"}, {"id": "1", "account": "x"}, []):
        assert isinstance(parse_status(junk, channel=CH), Unsupported)  # type: ignore[arg-type]
    assert isinstance(parse_stream_event("update", "{not json", channel=CH), Unsupported)
    assert isinstance(parse_stream_event("delete", "", channel=CH), Unsupported)
    assert isinstance(parse_stream_event("notification", "{}", channel=CH), Unsupported)
    ev = parse_status({"id": "9", "account": {"acct": "x"}, "content": "<script>alert(1)</script>"
                       "<p>ok <a href=\"javascript:alert(1)\">x</a></p>"}, channel=CH)
    assert not isinstance(ev, Unsupported) and "alert" not in to_plain(ev.text)


def _status(**over: Any) -> dict[str, Any]:
    base = dict(STATUSES[0])
    base.update(over)
    return base


def _account(**over: Any) -> dict[str, Any]:
    acc = {"id": "1", "username": "alice", "acct": "alice@example.social", "display_name":
           "Alice", "locked": False, "bot": False, "discoverable": True, "indexable": True,
           "noindex": False, "note": "<p>hi</p>", "url": "https://example.social/@alice",
           "fields": []}
    acc.update(over)
    return acc


def test_html_structure_is_kept() -> None:
    html = ('<p>Hi <span class="h-card"><a href="https://x.example/@bob" class="u-url mention">'
            '@<span>bob</span></a></span> see <a href="https://example.org/long/path" '
            'rel="nofollow noopener" target="_blank"><span class="invisible">https://</span>'
            '<span class="ellipsis">example.org/lo</span><span class="invisible">ng/path</span>'
            '</a> <a href="https://x.example/tags/kmers" class="mention hashtag" rel="tag">'
            '#<span>kmers</span></a></p><p>line<br />two &amp; more</p>')
    ev = parse_status(_status(content=html, account=_account()), channel=CH)
    assert not isinstance(ev, Unsupported)
    inl = list(iter_inlines(ev.text))
    assert any(isinstance(i, Mention) and i.handle.startswith("bob") for i in inl)
    assert any(isinstance(i, Link) and i.url == "https://example.org/long/path" for i in inl)
    assert any(isinstance(i, Hashtag) and i.tag == "kmers" for i in inl)
    assert "two & more" in to_plain(ev.text) and len(ev.text.blocks) == 2


# ---------------------------------------------------------------- consent, one test per rule

@pytest.mark.parametrize(("profile", "reason"), [
    ({"note": "<p>no thanks #NoBot</p>"}, "profile says #nobot"),
    ({"note": '<p>no <a href="https://x/tags/nobot" class="mention hashtag" rel="tag">'
              '#<span>nobot</span></a></p>'}, "profile says #nobot"),
    ({"note": "<p>#nobridge please</p>"}, "profile says #nobridge"),
    ({"display_name": "Carol #nobridge"}, "profile says #nobridge"),
    ({"fields": [{"name": "bots", "value": "#nobot"}]}, "profile says #nobot"),
    ({"discoverable": False}, "discoverable: false"),
    ({"indexable": False}, "indexable: false"),
    ({"noindex": True}, "noindex: true"),
    ({"locked": True}, "locked account"),
])
def test_author_opt_out_rules(profile: dict[str, Any], reason: str) -> None:
    acc = _account(**profile)
    assert reason in opt_out_reasons(acc)
    ev = parse_status(_status(account=acc), channel=CH)
    assert not isinstance(ev, Unsupported)
    if "nobridge" in reason:  # final
        assert ev.author.opted_out and not ev.author.reluctant
    else:  # yields to an explicit !join
        assert not ev.author.opted_out and reason in ev.author.reluctant


def test_willing_author_and_unset_discoverable_are_relayed() -> None:
    for acc in (_account(), _account(discoverable=None)):
        ev = parse_status(_status(account=acc), channel=CH)
        assert not isinstance(ev, Unsupported) and not ev.author.opted_out
        assert not ev.author.reluctant


@pytest.mark.parametrize("visibility", ["unlisted", "private", "direct"])
def test_non_public_posts_are_marked(visibility: str) -> None:
    ev = parse_status(_status(account=_account(), visibility=visibility), channel=CH)
    assert not isinstance(ev, Unsupported) and ev.public is False


def test_post_with_nobridge_is_not_relayed_and_an_edit_adding_it_deletes() -> None:
    tagged = ('<p>private thought <a href="https://x/tags/nobridge" class="mention hashtag">'
              '#<span>nobridge</span></a></p>')
    assert isinstance(parse_status(_status(account=_account(), content=tagged, tags=[]),
                                   channel=CH), Unsupported)
    ev = parse_edit(_status(account=_account(), content=tagged), channel=CH)
    assert isinstance(ev, Deleted)


def test_commands_need_a_mention_of_the_bridge() -> None:
    html = ('<p><span class="h-card"><a href="https://b.example/@kmbridge" '
            'class="u-url mention">@<span>kmbridge</span></a></span> !join</p>')
    mention = [{"id": "5", "username": "kmbridge", "acct": "kmbridge", "url": "u"}]
    ev = parse_status(_status(account=_account(note="#nobot"), content=html, mentions=mention),
                      channel=CH, bridge_acct="kmbridge")
    assert not isinstance(ev, Unsupported) and ev.command == "!join"
    ev = parse_status(_status(account=_account(), content="<p>!leave</p>", mentions=[]),
                      channel=CH, bridge_acct="kmbridge")
    assert not isinstance(ev, Unsupported) and ev.command == ""


# ---------------------------------------------------------------- outbound

def _post() -> Post:
    return Post(id=PostId("01J"), community="kmers", origin_channel=ChannelKey("kmers/mx"),
                origin_native_id=NativeId("$e"), permalink="",
                author=Author(platform="matrix", handle="@a:m.org"), text=None,  # type: ignore[arg-type]
                language="fr")


def _rendered(plain: str, cw: str = "") -> Rendered:
    return Rendered(text=None, plain=plain, html="", markdown="", content_warning=cw)  # type: ignore[arg-type]


def test_status_params_map_every_field() -> None:
    op = SendCreate(delivery_id=DeliveryId("d1"), idempotency_key="d1:0", channel=CH,
                    post=_post(), rendered=_rendered("hello @bob #kmers", "spoilers"),
                    reply_to=NativeId("123"))
    p = status_params(op, visibility="unlisted")
    assert p == {"status": f"hello {NEUTRAL_AT}bob #kmers", "visibility": "unlisted",
                 "idempotency_key": "d1:0", "in_reply_to_id": "123",
                 "spoiler_text": "spoilers", "sensitive": True, "language": "fr"}
    e = edit_params(SendEdit(delivery_id=DeliveryId("d2"), idempotency_key="d2", channel=CH,
                             post=_post(), native_id=NativeId("9"), rendered=_rendered("x")))
    assert e == {"id": "9", "status": "x", "spoiler_text": ""}


def test_content_warning_counts_toward_the_limit() -> None:
    text = "word " * 100  # 500 characters
    op = SendCreate(delivery_id=DeliveryId("d"), idempotency_key="d", channel=CH, post=_post(),
                    rendered=_rendered(text.strip(), "a long content warning"))
    p = status_params(op, visibility="public", max_characters=500)
    assert status_length(p["status"], 23, p["spoiler_text"]) <= 500
    assert p["status"].endswith("…") and p["status"].startswith("word word")
    short = status_params(op, visibility="public", max_characters=5000)
    assert short["status"] == text.strip()


def test_neutralise_leaves_emails_and_urls_alone() -> None:
    assert neutralise("mail a@b.org or https://x.org/@me, ping @carol") == \
        f"mail a@b.org or https://x.org/@me, ping {NEUTRAL_AT}carol"
    assert neutralise(f"{NEUTRAL_AT}done") == f"{NEUTRAL_AT}done"


def test_status_length_rules() -> None:
    assert status_length("a" * 10) == 10
    assert status_length("see https://example.org/" + "x" * 100) == 4 + 23
    assert status_length("see https://example.org/x", url_weight=40) == 44
    assert status_length("hi @bob@very.long.example.social") == len("hi @bob")
    assert status_length("👨‍👩‍👧 é", spoiler="cw") == 3 + 2


def test_instance_limits_from_recording_and_defaults() -> None:
    from mastohelp import recorded_bodies

    lim = parse_instance(recorded_bodies("GET", "/api/v2/instance")[0])
    assert (lim.max_characters, lim.url_weight, lim.max_media_attachments) == (500, 23, 4)
    assert "image/png" in lim.media_types and lim.version == "4.6.4"
    odd = parse_instance({"configuration": {"statuses": {"max_characters": 5000}}})
    assert odd.max_characters == 5000 and odd.url_weight == 23


def test_idempotency_window_is_one_hour() -> None:
    from adapters.mastodon.emulator.state import EmulatorState

    st = EmulatorState()
    acc = st.add_account("kmbridge")
    first = st.create(acc, "one", idempotency_key="k")
    assert st.idempotent_hit(acc, "k") is first
    sid, _ = st.idempotency[(acc.id, "k")]
    st.idempotency[(acc.id, "k")] = (sid, 0.0)  # stored more than an hour ago
    assert st.idempotent_hit(acc, "k") is None
    assert st.idempotent_hit(st.add_account("other"), "k") is None  # keys are per account


def test_reply_visibility_never_widens_the_parent() -> None:
    assert reply_visibility("public", "public") == "public"
    assert reply_visibility("public", "unlisted") == "unlisted"
    assert reply_visibility("unlisted", "public") == "unlisted"
    assert reply_visibility("public", "private") == "private"
    assert reply_visibility("unlisted", "direct") == "direct"
    assert reply_visibility("public", "") == "private"  # unknown: followers-only


def test_an_addressed_reply_mentions_once_and_fits() -> None:
    assert addressed("hi there", "alice") == "@alice hi there"
    assert addressed("@alice hi", "alice") == "@alice hi"
    long = " ".join(["word"] * 200)
    out = addressed(long, "alice@remote.example", max_characters=100)
    assert out.startswith("@alice@remote.example word") and out.endswith("…")
    assert status_length(out) <= 100
