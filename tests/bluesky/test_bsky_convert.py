"""The pure conversions: firehose records of every shape the adapter reads into
the canonical model, and the canonical text into post records."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from bskyhelp import DID, PDS, facet, images, post, spans, strong, tagged, uri

from adapters.bluesky import compose
from adapters.bluesky.convert import (
    Profile,
    author_of,
    parse_post,
    parse_profile,
    parse_update,
    record_tags,
)
from bridge.contract.adapter import Unsupported
from bridge.contract.model import ChannelKey, Deleted, Edited, Posted
from bridge.contract.richtext import Hashtag, Link, Mention, Paragraph
from bridge.contract.textconv import to_plain

CH = ChannelKey("kmers/1")
ALICE = author_of(DID, "alice.test", Profile(display_name="Alice"))
WHEN = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)


def read(record: dict, **kw: object) -> Posted:
    ev = parse_post(record, uri=uri(), channel=CH, author=ALICE, pds=PDS, **kw)  # type: ignore[arg-type]
    assert isinstance(ev, Posted), ev
    return ev


def inlines(ev: Posted | Edited) -> list[object]:
    return [i for b in ev.text.blocks if isinstance(b, Paragraph) for i in b.inlines]


# ---------------------------------------------------------------- inbound shapes

def test_text_with_tag_and_link_facets_at_utf8_byte_offsets() -> None:
    text = "café ☕ #KMers then 🎉 https://example.com/a?b=1 ok"
    rec = post(text, facets=[facet(*spans(text, "#KMers"), tag="KMers"),
                             facet(*spans(text, "https://example.com/a?b=1"),
                                   link="https://example.com/a?b=1")])
    ev = read(rec)
    got = inlines(ev)
    assert Hashtag("KMers") in got
    assert Link("https://example.com/a?b=1") in got
    assert to_plain(ev.text) == text
    assert ev.native_id == uri() and ev.author.account_id == DID
    assert ev.permalink == "https://bsky.app/profile/alice.test/post/3kabcdefghij2"
    assert ev.author.handle == "@alice.test" and ev.author.name == "Alice"
    assert ev.created_at == datetime(2026, 12, 7, 5, 36, 53, 828000, tzinfo=UTC)


def test_link_facet_with_shortened_label_keeps_the_full_uri() -> None:
    text = "read example.com/long… now"
    rec = post(text, facets=[facet(*spans(text, "example.com/long…"),
                                   link="https://example.com/long/path")])
    assert Link("https://example.com/long/path", "example.com/long…") in inlines(read(rec))


def test_mention_facet_becomes_a_mention_of_the_did() -> None:
    text = "hi @bob.test #kmers"
    rec = post(text, facets=[facet(*spans(text, "@bob.test"), mention="did:plc:bob"),
                             facet(*spans(text, "#kmers"), tag="kmers")])
    m = [i for i in inlines(read(rec)) if isinstance(i, Mention)]
    assert m == [Mention("bob.test", url="https://bsky.app/profile/did:plc:bob")]


def test_tags_field_and_facets_match_case_insensitively() -> None:
    assert record_tags(post("no visible tag", tags=["KMERS"])) == {"kmers"}
    assert record_tags(tagged("x #KmErS", "KmErS")) == {"kmers"}
    assert record_tags(post("#kmers typed but no facet")) == set()


def test_paragraphs_and_line_breaks() -> None:
    ev = read(post("one\ntwo\n\nthree"))
    assert len(ev.text.blocks) == 2
    assert to_plain(ev.text) == "one\ntwo\n\nthree"


def test_reply_keeps_its_parent() -> None:
    root, parent = uri("3kroot0000002"), uri("3kparent00002")
    ev = read(tagged("yes #kmers") | {"reply": {"root": strong(root), "parent": strong(parent)}})
    assert ev.reply_to_native == parent


def test_quote_embed_links_the_quoted_post() -> None:
    quoted = uri("3kquoted00002", did="did:plc:carol")
    ev = read(tagged("look #kmers") | {"embed": {"$type": "app.bsky.embed.record",
                                                 "record": strong(quoted)}})
    # the quote is the post's quote (its words read by the adapter), not a link in its words
    assert ev.quote is not None and ev.quote.author is None
    assert ev.quote.url == "https://bsky.app/profile/did:plc:carol/post/3kquoted00002"
    assert to_plain(ev.text) == "look #kmers"


def test_images_with_alt_text_are_blobs_on_the_authors_pds() -> None:
    ev = read(tagged("pics #kmers") | {"embed": images("a red dot", "")})
    assert len(ev.attachments) == 2
    a = ev.attachments[0]
    assert a.url.startswith(f"{PDS}/xrpc/com.atproto.sync.getBlob?did={DID}&cid=bafkrei")
    assert a.alt_text == "a red dot" and a.media_type == "image/png" and a.size == 70
    assert ev.attachments[1].alt_text == ""


def test_external_link_card_adds_its_link_once() -> None:
    card = {"$type": "app.bsky.embed.external", "external": {
        "uri": "https://example.org/story", "title": "A story", "description": "d"}}
    ev = read(tagged("news #kmers") | {"embed": card})
    assert Link("https://example.org/story", "A story") in inlines(ev)
    text = "news https://example.org/story #kmers"
    rec = post(text, facets=[facet(*spans(text, "https://example.org/story"),
                                   link="https://example.org/story"),
                             facet(*spans(text, "#kmers"), tag="kmers")], embed=card)
    assert to_plain(read(rec).text).count("example.org/story") == 1


def test_record_with_media_has_both_the_quote_and_the_images() -> None:
    quoted = uri("3kquoted00002")
    ev = read(tagged("both #kmers") | {"embed": {
        "$type": "app.bsky.embed.recordWithMedia", "record": {"record": strong(quoted)},
        "media": images("alt")}})
    assert [a.alt_text for a in ev.attachments] == ["alt"]
    assert ev.quote is not None and ev.quote.url.endswith("/post/3kquoted00002")


def test_self_labels_become_a_content_warning() -> None:
    labels = {"$type": "com.atproto.label.defs#selfLabels", "values": [{"val": "nudity"}]}
    assert read(tagged("x #kmers") | {"labels": labels}).content_warning == "nudity"


def test_update_is_an_edit_with_the_commit_time() -> None:
    ev = parse_update(tagged("new text #kmers"), uri=uri(), channel=CH, pds=PDS, edited_at=WHEN)
    assert isinstance(ev, Edited) and ev.edited_at == WHEN
    assert "new text" in to_plain(ev.text)


def test_update_adding_nobridge_withdraws_the_post() -> None:
    ev = parse_update(tagged("gone #nobridge", "nobridge"), uri=uri(), channel=CH, pds=PDS,
                      edited_at=WHEN)
    assert ev == Deleted(channel=CH, native_id=uri())


def test_post_with_nobridge_or_nobot_tag_is_not_relayed() -> None:
    for tag in ("nobridge", "NoBot"):
        rec = post(f"x #kmers #{tag}", tags=["kmers", tag])
        ev = parse_post(rec, uri=uri(), channel=CH, author=ALICE)
        assert isinstance(ev, Unsupported)


def test_command_counts_only_when_addressed_to_the_bridge() -> None:
    rec = post("!join please", tags=["kmers"])
    assert read(rec).command == ""
    assert read(rec, addressed=True).command == "!join"


def test_profile_consent_signals() -> None:
    assert parse_profile({"description": "hello #NoBridge"}).opted_out
    soft = parse_profile({"description": "hi #nobot"})
    assert not soft.opted_out and "#nobot" in soft.reluctant
    hidden = parse_profile({"labels": {"$type": "com.atproto.label.defs#selfLabels",
                                       "values": [{"val": "!no-unauthenticated"}]}})
    assert "!no-unauthenticated" in hidden.reluctant
    assert parse_profile(None) == Profile()
    a = author_of(DID, "", parse_profile({"description": "#nobridge"}))
    assert a.opted_out and a.handle == "@" + DID and a.identity == f"bluesky:{DID}"


def test_facets_with_bad_offsets_are_ignored_not_fatal() -> None:
    text = "é #kmers"
    bad = [facet(-1, 3, tag="x"), facet(5, 2, tag="x"), facet(0, 999, tag="x"),
           facet(1, 3, tag="mid-char"),  # byte 1 is inside "é"
           {"index": {"byteStart": "0", "byteEnd": 2}, "features": []}, "junk",
           facet(*spans(text, "#kmers"), tag="kmers"), facet(3, 8, tag="overlap")]
    ev = read(post(text, facets=bad))
    assert to_plain(ev.text) == text
    assert [i for i in inlines(ev) if isinstance(i, Hashtag)] == [Hashtag("kmers")]


# ---------------------------------------------------------------- outbound

def test_compose_facets_at_utf8_offsets_tags_and_links_never_mentions() -> None:
    text = "Dora (lobby): café 🎉 #kmers, see https://example.com/x. @carol.bsky.social #2024"
    rec = compose.post_record(text, created_at=WHEN, key="k.0")
    body = rec["text"]
    raw = body.encode()
    got = {(raw[f["index"]["byteStart"]:f["index"]["byteEnd"]].decode(),
            f["features"][0]["$type"].rsplit("#", 1)[1]) for f in rec["facets"]}
    assert got == {("#kmers", "tag"), ("https://example.com/x", "link")}
    assert all(f["features"][0]["$type"] != "app.bsky.richtext.facet#mention"
               for f in rec["facets"])
    assert "@\u2060carol" in body  # defused for any client that detects mentions
    assert rec[compose.KEY_FIELD] == "k.0" and rec["createdAt"] == "2026-12-07T06:00:00.000Z"


def test_post_length_counts_graphemes_and_bytes() -> None:
    assert compose.post_length("a" * 300) == 300
    assert compose.post_length("👨‍👩‍👧‍👦" * 10) == max(10, -(-len("👨‍👩‍👧‍👦".encode()) * 10 // 10))
    assert compose.post_length("é" * 300) == 300  # 600 bytes is under 3,000
    family = "👨‍👩‍👧‍👦" * 150  # 150 graphemes, 3,750 bytes: over Bluesky's byte cap
    assert compose.post_length(family) > compose.MAX_GRAPHEMES


def test_rkey_is_a_stable_valid_tid_per_key() -> None:
    a = compose.rkey_for("d1.0", WHEN)
    assert a == compose.rkey_for("d1.0", WHEN)
    assert a != compose.rkey_for("d1.1", WHEN)
    assert re.fullmatch(r"[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}", a)


def test_content_warning_fits_in_front() -> None:
    text = compose.with_warning("word " * 100, "spoilers")
    assert text.startswith("CW: spoilers\n\n") and compose.post_length(text) <= 300


@pytest.mark.parametrize("text", ["#1234 no", "(#kmers)", "a#kmers", "#kmers!!"])
def test_tag_detection_follows_bluesky(text: str) -> None:
    tags = [f["features"][0].get("tag") for f in compose.facets(text)]
    expected = {"#1234 no": [], "(#kmers)": [], "a#kmers": [], "#kmers!!": ["kmers"]}[text]
    assert tags == expected
