"""Converters on a timeline recorded from Synapse 1.163.2
(tests/fixtures/matrix/record_timeline.py wrote it)."""

from __future__ import annotations

import json
from pathlib import Path

from adapters.matrix import convert
from bridge.contract.adapter import Unsupported, UnsupportedKind
from bridge.contract.model import ChannelKey, Deleted, Posted
from bridge.contract.textconv import to_plain

FIXTURE = Path(__file__).parents[1] / "fixtures" / "matrix" / "synapse_timeline.json"


def test_recorded_timeline() -> None:
    data = json.loads(FIXTURE.read_text())
    out = [convert.parse_event(e, channel=ChannelKey("k/mx"), room_id=data["room_id"],
                               homeserver="https://hs.example", display_name="Alice Liddell")
           for e in data["events"]]
    post, fallback_reply, edit, thread, emote, notice, image, redacted, redaction = out
    first_id = data["events"][0]["event_id"]
    assert isinstance(post, Posted)
    assert to_plain(post.text) == "hello world #kmers https://example.org"
    assert post.text.hashtags() == {"kmers"}
    assert isinstance(fallback_reply, Posted) and fallback_reply.reply_to_native == first_id
    assert to_plain(fallback_reply.text) == "legacy fallback reply"
    assert isinstance(edit, convert.EditOf) and edit.event.native_id == first_id
    assert to_plain(edit.event.text) == "hello world, edited"
    assert isinstance(thread, Posted) and thread.reply_to_native == first_id
    assert isinstance(emote, Posted) and to_plain(emote.text) == "* Alice Liddell waves"
    assert isinstance(notice, Unsupported) and notice.kind is UnsupportedKind.IGNORED
    assert isinstance(image, Posted) and image.attachments[0].media_type == "image/png"
    assert image.attachments[0].url.startswith(
        "https://hs.example/_matrix/client/v1/media/download/test.local/")
    assert isinstance(redacted, Unsupported)  # content gone after redaction
    assert redacted.kind is UnsupportedKind.IGNORED
    assert isinstance(redaction, Deleted) and redaction.native_id == data["events"][7][
        "event_id"]
