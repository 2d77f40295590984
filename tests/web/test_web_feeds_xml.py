"""Feeds stay well-formed whatever a member writes (issue 12, item 10).

XML 1.0 cannot carry some characters at all, escaped or not (C0 controls but
tab/LF/CR, U+FFFE, U+FFFF, lone surrogates): a post or a display name holding
one must not make the whole feed unreadable for every subscriber.  Checked
with a real XML parser, through the real server, and as a property over
arbitrary text.
"""

from __future__ import annotations

from datetime import UTC, datetime
from xml.etree import ElementTree as ET

import aiohttp
from hypothesis import given, settings
from hypothesis import strategies as st
from webhelp import Live

from bridge.contract.model import Author, ChannelKey, NativeId, Post, Posted, PostId
from bridge.contract.richtext import RichText
from bridge.web.feeds import ATOM, atom, calendar, xml_text

NS = {"a": ATOM}
HOSTILE = "\uffff\ufffe\x00\x01\x08\x0b\x0c\x1b"


def _xml_char(c: str) -> bool:
    """XML 1.0's Char production, written out independently of the code under test."""
    o = ord(c)
    return (o in (0x9, 0xA, 0xD) or 0x20 <= o <= 0xD7FF or 0xE000 <= o <= 0xFFFD
            or 0x10000 <= o <= 0x10FFFF)


async def test_hostile_post_and_name_keep_the_atom_feed_parseable(live: Live) -> None:
    ev = Posted(channel=ChannelKey("kmers/sb_porch"), native_id=NativeId("hostile-1"),
                author=Author(platform="sandbox", handle="mallory",
                              display_name=f"Mal{HOSTILE}lory"),
                text=RichText.plain(f"bad{HOSTILE} bytes, good words"))
    await live.bridge.ingest("sb_porch", [ev], None)
    await live.nets["lobby"].post_as_member("alice", "an ordinary post after it")
    await live.settle()
    async with aiohttp.ClientSession() as s, s.get(f"{live.url}/c/kmers/feed.atom") as r:
        assert r.status == 200
        body = await r.read()
    root = ET.fromstring(body)  # raises on a character XML forbids
    entries = root.findall("a:entry", NS)
    # Nothing lost but the characters: both posts are there, the words intact.
    assert len(entries) == 2
    names = [e.findtext("a:author/a:name", namespaces=NS) or "" for e in entries]
    assert any(n.startswith("Mal") and n.endswith("lory") for n in names), names
    contents = " ".join(e.findtext("a:content", namespaces=NS) or "" for e in entries)
    assert "bad bytes, good words" in contents
    assert "an ordinary post after it" in contents


def _post(name: str, text: str) -> Post:
    return Post(id=PostId("p1"), community="kmers", origin_channel=ChannelKey("kmers/x"),
                origin_native_id=NativeId("n1"), permalink="https://example.org/p/1",
                author=Author(platform="sandbox", handle="h", display_name=name),
                text=RichText.plain(text), created_at=datetime(2026, 1, 2, tzinfo=UTC))


@settings(max_examples=300, deadline=None)
@given(name=st.text(), text=st.text(), title=st.text(), network=st.text())
def test_atom_is_well_formed_for_any_text(name: str, text: str, title: str,
                                          network: str) -> None:
    body = atom(title, "https://h.example/feed.atom", "https://h.example/c/k",
                "urn:hashbridge:k", [(_post(name, text), network)])
    root = ET.fromstring(body)
    # (an XML parser reads a raw CR as a line feed)
    newlines = xml_text(title).replace("\r\n", "\n").replace("\r", "\n")
    assert root.findtext("a:title", namespaces=NS) == newlines
    entry = root.find("a:entry", NS)
    assert entry is not None
    # What a reader sees is the value minus exactly the characters XML forbids.
    shown = entry.findtext("a:author/a:name", namespaces=NS) or ""
    assert all(_xml_char(c) for c in shown)


@given(st.text(st.characters(blacklist_categories=())))
def test_xml_text_removes_exactly_the_forbidden_characters(value: str) -> None:
    assert xml_text(value) == "".join(c for c in value if _xml_char(c))


def test_calendar_text_holds_no_control_characters() -> None:
    from bridge.runtime.schedule import ChatEventConfig

    ev = ChatEventConfig.model_validate({
        "id": "weekly", "title": f"Chat\x7f{HOSTILE}time", "description": "line\x00one\r\ntwo",
        "day": "monday", "time": "18:00", "timezone": "UTC", "duration_minutes": 60})
    body = calendar("kmers", "kmers", [ev], "https://h.example/c/kmers",
                    datetime(2026, 1, 2, tzinfo=UTC)).decode()
    import icalendar

    cal = icalendar.Calendar.from_ical(body)
    vevent = next(c for c in cal.walk("VEVENT"))
    assert str(vevent["summary"]) == "Chat\uffff\ufffetime"  # only the controls go
    assert str(vevent["description"]).startswith("lineone\ntwo")
    for line in body.split("\r\n"):
        assert not any(c in line for c in "\x00\x01\x08\x0b\x0c\x1b\x7f\r\n"), repr(line)
