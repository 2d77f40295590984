"""Found by tests/security/test_hostile_text.py (hypothesis): a thread split can start a
part with a live mention.

``bridge.outbound.render`` neutralises mentions on the rich tree (``neutralise``), then
``_split`` cuts the *plain* text into parts.  An e-mail-like run ``xxxx@admin`` is rightly
not a mention as a whole, but when the cut falls just before the ``@`` the next part
starts with ``@admin``, which Mastodon/X/Matrix read as a mention: a display name or a
post can make the bridge ping someone.  The same happens when a cut falls inside a URL
holding ``#@name`` (the fragment is plain text in the next part).  Fixed: every part
of a split or truncated text has the ``@`` a platform would read as a mention (not
after a word character, ``/``, ``.``, ``@``) defused with a word joiner.
"""

from __future__ import annotations

import re

from bridge.contract.adapter import Capabilities
from bridge.contract.model import Author, ChannelKey, NativeId, Post, PostId
from bridge.contract.textconv import from_plain
from bridge.outbound.render import Target, render


def test_no_part_starts_with_a_live_mention() -> None:
    post = Post(id=PostId("p"), community="k", origin_channel=ChannelKey("k/x"),
                origin_native_id=NativeId("1"), permalink="", text=from_plain(""),
                author=Author(platform="mastodon", handle="",
                              display_name="000000000000000000000000000000@admin"))
    caps = Capabilities(max_length=280, needs_hashtag=True)
    parts = render(post, Target(caps=caps, hashtag="kmers", max_length=30), "Mastodon")
    assert len(parts) > 1
    for part in parts:
        assert not re.search(r"(?<![\w@.\u2060])@\w", part.plain), [p.plain for p in parts]


def test_split_url_fragment_does_not_become_a_mention() -> None:
    post = Post(id=PostId("p"), community="k", origin_channel=ChannelKey("k/x"),
                origin_native_id=NativeId("1"), permalink="", author=Author(
                    platform="mastodon", handle="", display_name=""),
                text=from_plain('0<= efhpr"https:////.#@aimorttux'))
    caps = Capabilities(max_length=500, needs_hashtag=True)
    parts = render(post, Target(caps=caps, hashtag="kmers", max_length=30), "Mastodon")
    for part in parts:
        assert not re.search(r"(?<![\w@./\u2060])@\w", part.plain), [p.plain for p in parts]
