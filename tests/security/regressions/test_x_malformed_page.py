"""Found by tests/security/test_hostile_adapters.py: the X converter raises on a page
whose fields have the wrong JSON type, against the converter contract (a value with a
reason, never an exception).

Where (adapters/twitter/convert.py): ``tweet_to_posted`` line 233 (``referenced_tweets``
not a list of objects), 238 (``note_tweet`` not an object), 254-255 (``attachments`` not
an object / ``media_keys`` not a list of strings); ``parse_page`` 272-273 (``includes``
not an object), 278 (``data`` not a list), 294 (``meta`` not an object).  The poller calls
``parse_page`` unguarded (adapters/twitter/inbound.py:156), so one such post in a search
page raises out of the poll loop; the page is fetched again after the restart, so inbound
from X stays wedged on it.  Fix idea: ``isinstance`` guards as in the Mastodon converter's
``_get``/``_items``, or a try/except per tweet that turns the tweet into ``Unsupported``.
"""

from __future__ import annotations

from typing import Any

import pytest

from adapters.twitter.convert import parse_page
from bridge.contract.model import ChannelKey
from bridge.contract.textconv import to_plain

GOOD = {"id": "6", "text": "a good post #kmers", "author_id": "7"}
USERS = {"users": [{"id": "7", "username": "alice", "name": "Alice"}]}


def _page(bad_tweet: dict[str, Any] | None = None, **page: Any) -> dict[str, Any]:
    data = [GOOD] + ([{"id": "5", "text": "odd", "author_id": "7", **bad_tweet}]
                     if bad_tweet else [])
    return {"data": data, "includes": USERS, **page}


@pytest.mark.parametrize("page", [
    _page({"attachments": [1]}), _page({"attachments": {"media_keys": 3}}),
    _page({"referenced_tweets": 1}), _page({"note_tweet": "x"}),
    _page(meta=[1]), {"data": [GOOD], "includes": [1]}, {"data": 5, "includes": USERS},
], ids=["attachments-list", "media_keys-int", "referenced-int", "note-str", "meta-list",
        "includes-list", "data-int"])
def test_malformed_page_keeps_the_good_post(page: dict[str, Any]) -> None:
    parsed = parse_page(page, ChannelKey("k/x"))
    # Without a usable includes.users no author can be named: the post is skipped
    # with a reason (never an exception that would stop the poller).
    if isinstance(page.get("data"), list) and isinstance(page.get("includes"), dict):
        assert [to_plain(e.text) for e in parsed.events if e.native_id == "6"] == [
            "a good post #kmers"]


def test_control_well_formed_page() -> None:
    parsed = parse_page(_page(), ChannelKey("k/x"))
    assert [e.native_id for e in parsed.events] == ["6"]
