"""Bluesky quote posts on a real PDS, through the real relay to a sandbox network:
the quoted post's author and words are read from its author's PDS; a quoted post
whose PDS does not answer within ``request_timeout`` is relayed as its link."""

from __future__ import annotations

from pathlib import Path

from test_bsky_e2e import _n, bridged, connected

from adapters.bluesky.sandbox import BlueskySandbox
from adapters.sandbox import SandboxPlatform
from bridge.daemon.harness import ChannelDef, build_config, eventually, running, sandbox_channels

SLOW_CID = "bafyreiazzv2mazmfng6eh2dxslbcjfilgtqs222dsw43rdc2x5u3ku2aga"


def config(box: BlueskySandbox, tmp: Path, request_timeout: float = 30.0) -> object:
    return build_config(tmp, [*sandbox_channels(tmp, ["lobby"]),
                              ChannelDef("bsky", "bluesky",
                                         box.account_config() | {
                                             "request_timeout": request_timeout},
                                         box.channel_config(), {})])


async def test_a_quote_post_carries_the_quoted_author_and_words(
        bsky: BlueskySandbox, lobby: SandboxPlatform, tmp_path: Path) -> None:
    async with running(config(bsky, tmp_path)) as bridge:  # type: ignore[arg-type]
        await connected(bridge)
        quoted = await bsky.post_as_member("bob", "the quoted words, untagged", tag=False)
        await bsky.post_as_member("alice", "#kmers so true", quote=quoted)
        await bsky.post_as_member("alice", "#kmers with a picture too", quote=quoted,
                                  images=((_PNG, "a dot"),))
        copies = await eventually(lambda: _n(bridged(lobby), 2), 60)
    texts = sorted(c.text for c in copies)
    for text in texts:
        assert "Quoting Bob on Bluesky:" in text and "Quoting a post" not in text
        assert "the quoted words, untagged" in text
        assert "https://bsky.app/profile/bob" in text and "/post/" in text
    assert any("so true" in t for t in texts) and any("with a picture too" in t for t in texts)


async def test_a_quoted_post_that_cannot_be_read_in_time_is_only_linked(
        bsky: BlueskySandbox, lobby: SandboxPlatform, tmp_path: Path,
        silent_server: int) -> None:
    # A did:web whose host accepts the connection and never answers: the
    # quoted post's identity (its DID document) is never read.
    did = f"did:web:127.0.0.1%3A{silent_server}"
    ref = {"uri": f"at://{did}/app.bsky.feed.post/3kslowslowsl2", "cid": SLOW_CID}
    cfg = config(bsky, tmp_path, request_timeout=3.0)
    async with running(cfg) as bridge:  # type: ignore[arg-type]
        await connected(bridge)
        await bsky.post_as_member("alice", "#kmers look at this", quote=ref)
        [copy] = await eventually(lambda: _n(bridged(lobby), 1), 60)
    assert "look at this" in copy.text
    assert "Quoting a post on Bluesky:" in copy.text
    assert f"https://bsky.app/profile/{did}/post/3kslowslowsl2" in copy.text


_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c6360f8cfc0f01f0005000201e2a52f6d0000000049454e44ae426082")
