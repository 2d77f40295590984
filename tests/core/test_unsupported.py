"""Every adapter's converter says "not relayed" with the one shared value,
``bridge.contract.adapter.Unsupported``, and whether the payload was ignored on
purpose or could not be mapped."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from adapters.email.convert import Identity, ListSpec, parse_list_mail
from adapters.mastodon.convert import parse_status, parse_stream_event
from adapters.matrix.convert import parse_event
from adapters.twitter.convert import parse_page, tweet_to_posted
from bridge.contract.adapter import Unsupported, UnsupportedKind
from bridge.contract.model import ChannelKey

ROOT = Path(__file__).resolve().parents[2]
CH = ChannelKey("kmers:here")
MAIL_SPEC = ListSpec(channel=CH, list_id="kmers.lists.example", address="kmers@lists.example")
ME = Identity(address="bridge@bridge.example", domain="bridge.example", salt=b"s" * 16)
MX = {"room_id": "!r:hs", "homeserver": "https://hs"}
X_USER = {"id": "7", "username": "ann", "name": "Ann"}


def _mail(headers: str) -> bytes:
    return (headers + "From: Ann <ann@example.org>\r\nSubject: hi\r\n"
            "Message-ID: <m1@example.org>\r\n\r\nhello\r\n").encode()


CASES: list[tuple[str, Any, UnsupportedKind]] = [
    ("mastodon: not a status", lambda: parse_status({}, channel=CH),
     UnsupportedKind.MALFORMED),
    ("mastodon: a boost", lambda: parse_status(
        {"id": "1", "reblog": {"id": "2"}, "account": {"acct": "a"}}, channel=CH),
     UnsupportedKind.IGNORED),
    ("mastodon: broken stream JSON", lambda: parse_stream_event("update", "{", channel=CH),
     UnsupportedKind.MALFORMED),
    ("matrix: not an object", lambda: parse_event([], channel=CH, **MX),
     UnsupportedKind.MALFORMED),
    ("matrix: a notice", lambda: parse_event(
        {"type": "m.room.message", "event_id": "$e", "sender": "@a:hs",
         "content": {"msgtype": "m.notice", "body": "bot"}}, channel=CH, **MX),
     UnsupportedKind.IGNORED),
    ("twitter: no numeric id", lambda: tweet_to_posted({"id": "x"}, CH, users={}, media={}),
     UnsupportedKind.MALFORMED),
    ("twitter: a repost", lambda: tweet_to_posted(
        {"id": "5", "text": "RT", "author_id": "7",
         "referenced_tweets": [{"type": "retweeted", "id": "4"}]},
        CH, users={"7": X_USER}, media={}), UnsupportedKind.IGNORED),
    ("twitter: own post on a page", lambda: parse_page(
        {"data": [{"id": "5", "text": "hi", "author_id": "7"}],
         "includes": {"users": [X_USER]}}, CH, own_user_id="7").skipped[0],
     UnsupportedKind.IGNORED),
    ("email: another list", lambda: parse_list_mail(
        _mail("List-Id: <other.lists.example>\r\n"), MAIL_SPEC, ME), UnsupportedKind.IGNORED),
]


@pytest.mark.parametrize(("case", "convert", "kind"), CASES, ids=[c[0] for c in CASES])
def test_converters_return_the_shared_unsupported(case: str, convert: Any,
                                                  kind: UnsupportedKind) -> None:
    out = convert()
    assert isinstance(out, Unsupported), out
    assert out.kind is kind and out.reason


def test_no_adapter_defines_its_own_unsupported_type() -> None:
    own = []
    for path in (ROOT / "adapters").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.name in (
                    "Unsupported", "Ignored", "Skipped", "Skip"):
                own.append(f"{path.relative_to(ROOT)}: {node.name}")
    assert own == []
