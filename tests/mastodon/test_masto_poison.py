"""Poison pills from Mastodon: a post the bridge cannot read costs that post only.

The real relay (bridge.daemon.harness) between a sandbox network and the Mastodon
emulator; the emulator serves posts as another server could send them
(``content_html``: HTML as federated; ``wire_overrides``: malformed fields).
Counted on the lobby network and in the bridge's own records of rejections.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from adapters.mastodon.adapter import MAX_HTML_BYTES
from adapters.mastodon.sandbox import MastodonSandbox
from adapters.sandbox import SandboxPlatform
from bridge.contract.adapter import Health
from bridge.daemon.harness import ChannelDef, build_config, eventually, running, sandbox_channels

NESTED = "<p>" + "<b>" * 1000 + "deep nesting #kmers" + "</b>" * 1000 + "</p>"
"""Today's RecursionError in the HTML converter (about 7 KB)."""
BAD_MEDIA = {"media_attachments": [{"id": "9", "type": "image", "url": "http://[::1/x.png"}]}
"""A malformed attachment URL (an unclosed IPv6 literal): urlparse raises."""
BAD_ACCOUNT_URL = "http://[bad-host/@mallory"
HUGE = "<p>" + "word " * (MAX_HTML_BYTES // 5 + 10) + "#kmers</p>"


def config(box: MastodonSandbox, tmp: Path) -> Any:
    return build_config(tmp, [*sandbox_channels(tmp, ["lobby"]),
                              ChannelDef("masto", "mastodon", box.account_config(),
                                         box.channel_config())])


def poison(box: MastodonSandbox) -> dict[str, str]:
    """Post every kind of poison; return native id -> kind."""
    emu = box.emulator
    emu.member("mallory", display_name="Mallory")
    out = {emu.post("mallory", "nested #kmers", content_html=NESTED).id: "nested",
           emu.post("mallory", "bad media #kmers", wire_overrides=BAD_MEDIA).id: "unreadable",
           emu.post("mallory", "huge #kmers", content_html=HUGE).id: "too large"}
    account = {**emu.state.account_json(emu.member("mallory")), "url": BAD_ACCOUNT_URL,
               "acct": "mallory"}
    out[emu.post("mallory", "bad account #kmers", wire_overrides={"account": account}).id] = \
        "unreadable"
    return out


async def relayed(net: SandboxPlatform, *words: str) -> bool:
    texts = [m.text for m in await net.messages() if m.by_bridge]
    return all(any(w in t for t in texts) for w in words)


async def rejections(bridge: Any) -> dict[str, str]:
    rows = await bridge.store.run(lambda tx: tx.c.execute(
        "SELECT native_id, kind, reason FROM rejections").fetchall())
    return {nid: kind for nid, kind, _ in rows}


def check_poison(got: dict[str, str], sent: dict[str, str], texts: list[str]) -> None:
    for nid, kind in sent.items():
        if kind == "nested":
            # Once the converter flattens deep nesting the post is relayed, text
            # kept; before, it must at least have cost itself only.
            assert got.get(nid) == "unreadable" or any("deep nesting" in t for t in texts), nid
        else:
            assert got.get(nid) == kind, (nid, kind, got)


async def test_poison_on_the_stream_costs_itself_only(masto: MastodonSandbox,
                                                      lobby: SandboxPlatform,
                                                      tmp_path: Path) -> None:
    async with running(config(masto, tmp_path)) as bridge:
        rt = bridge.accounts["masto"]
        await eventually(lambda: _true(rt.health == Health.CONNECTED), 20, "connected")
        masto.emulator.post("alice", "before the poison #kmers")
        sent = poison(masto)
        masto.emulator.post("alice", "after the poison #kmers")
        await eventually(lambda: relayed(lobby, "before the poison", "after the poison"),
                         30, "the good posts on the lobby")
        got = await eventually(lambda: _all(rejections(bridge), always_rejected(sent)), 30,
                               "rejections")
        assert rt.health == Health.CONNECTED and rt.restarts == []
        texts = [m.text for m in await lobby.messages() if m.by_bridge]
        check_poison(got, sent, texts)
        metrics = bridge.metrics.prometheus()
    assert 'hashbridge_inbound_rejected_total{channel="kmers/masto",reason="unreadable"} 2' \
        in metrics or 'reason="unreadable"} 3' in metrics   # 3 while nesting raises
    assert 'reason="too large"} 1' in metrics


async def test_poison_in_a_catch_up_page_loses_no_good_post(masto: MastodonSandbox,
                                                            lobby: SandboxPlatform,
                                                            tmp_path: Path) -> None:
    """While the bridge is down, good posts and poison pile up on the tag; the
    catch-up reads them as one page: every good post is relayed, the poison is
    recorded, the cursor moves past it."""
    cfg = config(masto, tmp_path)
    async with running(cfg) as bridge:   # first start: the cursor is "now"
        await eventually(lambda: _true(bridge.accounts["masto"].health == Health.CONNECTED),
                         20, "connected")
    emu = masto.emulator
    emu.post("alice", "good one #kmers")
    sent = poison(masto)
    emu.post("bob", "good two #kmers")
    sent |= {emu.post("mallory", "more nesting #kmers", content_html=NESTED).id: "nested"}
    emu.post("carol", "good three #kmers")
    async with running(cfg) as bridge:
        rt = bridge.accounts["masto"]
        await eventually(lambda: relayed(lobby, "good one", "good two", "good three"), 30,
                         "every good post of the page")
        got = await eventually(lambda: _all(rejections(bridge), always_rejected(sent)), 30,
                               "rejections")
        assert rt.health == Health.CONNECTED and rt.restarts == []
        texts = [m.text for m in await lobby.messages() if m.by_bridge]
        check_poison(got, sent, texts)
        cursor = await bridge.store.run(lambda tx: tx.get_cursor("masto", "min_id:kmers/masto"))
    assert int(cursor) >= max(int(i) for i in sent)


async def _true(value: bool) -> bool:
    return value


def always_rejected(sent: dict[str, str]) -> int:
    """How many of *sent* no converter can read (nested HTML is read since the
    tree walks were bounded: relayed, not rejected)."""
    return sum(kind != "nested" for kind in sent.values())


async def _all(coro: Any, n: int) -> Any:
    got = await coro
    return got if len(got) >= n else None


async def test_a_stream_line_over_the_cap_is_rejected_by_its_id(masto: MastodonSandbox,
                                                                lobby: SandboxPlatform,
                                                                tmp_path: Path) -> None:
    """A stream event longer than any post can be (aiohttp's own 512 KiB line
    limit used to raise out of the stream): rejected from its head, by its id,
    once (the catch-up reads the same post again over REST), the stream goes on."""
    from adapters.mastodon.adapter import MAX_STREAM_LINE

    async with running(config(masto, tmp_path)) as bridge:
        rt = bridge.accounts["masto"]
        await eventually(lambda: _true(rt.health == Health.CONNECTED), 20, "connected")
        big = masto.emulator.post("mallory", "big #kmers",
                                  content_html="<p>" + "x" * MAX_STREAM_LINE + "</p>")
        masto.emulator.post("alice", "after the big one #kmers")
        await eventually(lambda: relayed(lobby, "after the big one"), 30, "the next post")
        await asyncio.sleep(2.5)   # a catch-up sweep (every 2 s here) reads it over REST too
        rows = await eventually(lambda: _all(bridge.store.run(lambda tx: tx.c.execute(
            "SELECT native_id, kind, reason FROM rejections").fetchall()), 1), 30, "rejection")
        assert rt.health == Health.CONNECTED and rt.restarts == []
    assert [(nid, kind) for nid, kind, _ in rows] == [(big.id, "too large")]


async def test_sse_lines_bounds_a_line_and_keeps_its_head() -> None:
    import aiohttp

    from adapters.mastodon.adapter import _sse_lines

    reader = aiohttp.StreamReader(_Protocol(), 2 ** 16, loop=asyncio.get_running_loop())
    long = b'data: {"id": "42", "content": "' + b"y" * 50_000 + b'"}\n'
    for chunk in (b"event: update\n", long[:1000], long[1000:30_000], long[30_000:],
                  b"\n", b"event: delete\ndata: 7\n\n"):
        reader.feed_data(chunk)
    reader.feed_eof()
    got = [(line, size) async for line, size in _sse_lines(reader, 10_000)]
    assert got[0] == (b"event: update\n", 0)
    head, size = got[1]
    assert size == len(long) and head == long[:4096] and b'"id": "42"' in head
    assert got[2:] == [(b"\n", 0), (b"event: delete\n", 0), (b"data: 7\n", 0), (b"\n", 0)]


class _Protocol:
    """The least a StreamReader needs from its protocol (flow control)."""

    _reading_paused = False

    def pause_reading(self, **kw: object) -> None:
        pass

    def resume_reading(self, **kw: object) -> None:
        pass
