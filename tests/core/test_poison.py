"""One event costs only itself: the core half of the poison-pill fix.

* ``bridge.contract.adapter``'s guarded conversion turns whatever a converter raises into
  a :class:`~bridge.contract.model.Rejected` value (``CancelledError`` passes), runs a
  large payload in a worker thread and a small one inline;
* the relay records a rejection with its reason, relays the rest of its page
  and saves the page's cursor in the same transaction; an event on which the
  relay's own steps fail is undone alone (its page runs again without it) and
  recorded;
* the rejections show in ``hashbridge status`` (text and ``--json``), the
  admin page's data and ``/metrics``.

The store, relay and bridge are the real ones (SQLite in a temp dir).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from bridge.contract.adapter import (
    INLINE_MAX_BYTES,
    TooLarge,
    check_size,
    convert_guarded,
    read_guarded,
)
from bridge.contract.model import (
    Author,
    ChannelKey,
    InboundEvent,
    NativeId,
    Posted,
    Rejected,
    RejectKind,
)
from bridge.contract.textconv import from_plain
from bridge.daemon.harness import build_config, running, sandbox_channels
from bridge.inbound.relay import Relay
from bridge.store import StoreError, TransientStoreError
from bridge.store.sqlite import SqliteStore as Store

log = logging.getLogger("hashbridge.adapter.test.poison")
LOBBY = ChannelKey("kmers/sb_lobby")
GARDEN = ChannelKey("kmers/sb_garden")


def posted(nid: str, text: str = "hello", channel: ChannelKey = LOBBY) -> Posted:
    return Posted(channel=channel, native_id=NativeId(nid),
                  author=Author(platform="sandbox", handle=f"m{nid}", display_name="M"),
                  text=from_plain(f"{text} {nid}"))


# ------------------------------------------------------------------ the guard

def test_a_raising_converter_becomes_a_rejection_with_a_short_reason(
        caplog: pytest.LogCaptureFixture) -> None:
    def convert() -> Posted:
        raise ValueError("field 'content' is a list\x00 " + "x" * 500)

    with caplog.at_level(logging.DEBUG, logger=log.name):
        got = convert_guarded(convert, channel=LOBBY, native_id="42", logger=log)
    assert isinstance(got, Rejected)
    assert got.kind == RejectKind.UNREADABLE and got.native_id == "42"
    assert got.reason.startswith("unreadable: ValueError: field 'content' is a list")
    assert "\x00" not in got.reason and len(got.reason) < 260
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "not relayed" in warnings[0].getMessage()
    assert warnings[0].exc_info is None          # the traceback is for DEBUG only
    assert any(r.levelno == logging.DEBUG and r.exc_info for r in caplog.records)


def test_recursion_error_and_too_large_are_rejections() -> None:
    def deep(n: int) -> int:
        return deep(n + 1) + 1

    got = convert_guarded(lambda: deep(0), channel=LOBBY, native_id="$e", logger=log)
    assert isinstance(got, Rejected) and "RecursionError" in got.reason

    got = convert_guarded(lambda: check_size(812_345, 65_536, "Matrix events are at most"),
                          channel=LOBBY, native_id="$big", logger=log)
    assert isinstance(got, Rejected) and got.kind == RejectKind.TOO_LARGE
    assert got.reason == "too large: 812,345 bytes (Matrix events are at most 65,536)"
    assert convert_guarded(lambda: check_size(10, 10, "x"), channel=LOBBY, native_id="1",
                           logger=log) is None


async def test_cancellation_is_never_turned_into_a_rejection() -> None:
    def cancelled() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        convert_guarded(cancelled, channel=LOBBY, native_id="1", logger=log)
    with pytest.raises(asyncio.CancelledError):
        await read_guarded(cancelled, channel=LOBBY, native_id="1", logger=log)
    with pytest.raises(KeyboardInterrupt):
        convert_guarded(lambda: (_ for _ in ()).throw(KeyboardInterrupt), channel=LOBBY,
                        native_id="1", logger=log)


async def test_large_payloads_are_converted_in_a_thread_small_ones_inline() -> None:
    loop_thread = threading.get_ident()
    small = await read_guarded(threading.get_ident, channel=LOBBY, native_id="1",
                               logger=log, size=100)
    large = await read_guarded(threading.get_ident, channel=LOBBY, native_id="2",
                               logger=log, size=INLINE_MAX_BYTES + 1)
    assert small == loop_thread and large != loop_thread

    def boom() -> None:
        raise TooLarge(2, 1, "at most")

    got = await read_guarded(boom, channel=LOBBY, native_id="3", logger=log,
                             size=INLINE_MAX_BYTES * 4)
    assert isinstance(got, Rejected) and got.kind == RejectKind.TOO_LARGE


# ------------------------------------------------------------------ the relay

@pytest.fixture
async def relay(tmp_path: Path) -> Any:
    cfg = build_config(tmp_path, sandbox_channels(tmp_path, ["lobby", "garden"]))
    store = await Store.open(str(tmp_path / "db.sqlite"))
    try:
        yield Relay(cfg, store)
    finally:
        await store.close()


async def _state(relay: Relay) -> dict[str, Any]:
    def unit(tx: Any) -> dict[str, Any]:
        return {"origins": sorted(r[0] for r in tx.c.execute(
                    "SELECT native_id FROM native_ids WHERE role='origin'")),
                "deliveries": tx.c.execute("SELECT count(*) FROM deliveries").fetchone()[0],
                "rejections": tx.rejections(kinds=("unreadable", "too large", "relay error")),
                "cursor": tx.get_cursor("sb_lobby", "seq")}
    return await relay.store.run(unit)


async def test_a_rejected_event_costs_itself_the_page_and_cursor_go_through(
        relay: Relay) -> None:
    bad = Rejected(channel=LOBBY, native_id=NativeId("2"), reason="unreadable: X: y")
    page: list[InboundEvent] = [posted("1"), bad, posted("3")]
    result = await relay.ingest("sb_lobby", page, ("seq", "3"))
    assert result.accepted == 2
    assert result.counts[(LOBBY, "rejected", "unreadable")] == 1
    st = await _state(relay)
    assert st["origins"] == ["1", "3"] and st["deliveries"] == 2 and st["cursor"] == "3"
    assert [(r[0], r[1], r[2]) for r in st["rejections"]] == [(LOBBY, "2", "unreadable: X: y")]
    # Read again (a re-read page, the stream and catch-up both): recorded once.
    again = await relay.ingest("sb_lobby", [bad], ("seq", "3"))
    assert again.counts[(LOBBY, "rejected", "unreadable")] == 0
    assert len((await _state(relay))["rejections"]) == 1


async def test_an_event_the_relay_steps_fail_on_is_undone_alone(relay: Relay) -> None:
    """A well-typed event on which policy or persist raises (here: an adapter
    bug hands over text that is not RichText) costs itself: before, the whole
    page rolled back and the adapter read it again forever."""
    broken = Posted(channel=LOBBY, native_id=NativeId("2"),
                    author=Author(platform="sandbox", handle="x"),
                    text=None)  # type: ignore[arg-type]
    result = await relay.ingest("sb_lobby", [posted("1"), broken, posted("3")], ("seq", "3"))
    assert result.accepted == 2 and len(result.changed) == 2
    st = await _state(relay)
    assert st["origins"] == ["1", "3"] and st["deliveries"] == 2 and st["cursor"] == "3"
    [(ch, nid, reason, _)] = st["rejections"]
    assert (ch, nid) == (LOBBY, "2") and reason.startswith("relay error: AttributeError")


class _Full(sqlite3.OperationalError):
    sqlite_errorcode = 13   # SQLITE_FULL


@pytest.mark.parametrize("failure", [
    TransientStoreError("full", "database or disk is full"),
    # SQLite's own error, as a row fetched after the statement ran can still raise
    # it: the relay takes it for the event's, the store sees the disk behind it.
    _Full("database or disk is full"),
], ids=["mapped", "raw"])
async def test_a_store_failure_is_never_taken_for_the_event(relay: Relay,
                                                             failure: Exception) -> None:
    """Only the event's own failure is absorbed: the store failing under one
    event (a full disk) holds the whole page, which is saved whole once the
    store can write; the event is not recorded as rejected.  (The backend raises
    TransientStoreError from a statement that meets a full disk:
    tests/store/test_sqlite.py.)"""
    failures = [failure]

    def unit(tx: Any) -> Any:
        real = tx.insert_post

        def insert_post(*a: Any, **kw: Any) -> Any:
            if a[0].origin_native_id == "2" and failures:
                raise failures.pop()
            return real(*a, **kw)
        tx.insert_post = insert_post
        try:
            return relay.ingest_tx(tx, "sb_lobby", [posted("1"), posted("2")], ("seq", "2"))
        finally:
            del tx.insert_post

    result = await relay.store.run(unit)
    assert not failures and result.accepted == 2
    st = await _state(relay)
    assert st["origins"] == ["1", "2"] and st["cursor"] == "2" and st["rejections"] == []


async def test_a_statement_failing_for_the_event_costs_the_event_only(relay: Relay) -> None:
    """A store error that is not transient (a broken constraint, what the event's
    data made a statement do) is the event's failure: it is rejected and the page
    goes on; holding the page for it would retry it forever."""
    failures = [StoreError("IntegrityError: UNIQUE constraint failed: posts.id")]
    real_ingest_tx = relay.ingest_tx

    def ingest_tx(tx: Any, *args: Any) -> Any:
        real = tx.insert_post

        def insert_post(*a: Any, **kw: Any) -> Any:
            if a[0].origin_native_id == "2" and failures:
                raise failures.pop()
            return real(*a, **kw)
        tx.insert_post = insert_post
        try:
            return real_ingest_tx(tx, *args)
        finally:
            del tx.insert_post

    relay.ingest_tx = ingest_tx  # type: ignore[method-assign]
    result = await relay.ingest("sb_lobby", [posted("1"), posted("2"), posted("3")],
                                ("seq", "3"))
    assert not failures and result.accepted == 2
    st = await _state(relay)
    assert st["origins"] == ["1", "3"] and st["cursor"] == "3"
    [(_ch, nid, reason, _)] = st["rejections"]
    assert nid == "2" and reason.startswith("relay error: StoreError")


async def test_sandbox_poison_costs_itself_only(tmp_path: Path) -> None:
    """The sandbox adapter reads through the guard too: a message whose time
    cannot be a date (the network file written by something else) is rejected,
    the messages around it are relayed, the adapter spends no restart."""
    from adapters.sandbox import SandboxPlatform
    from bridge.contract.adapter import Health
    from bridge.daemon.harness import eventually

    lobby = SandboxPlatform(str(tmp_path / "networks"), "lobby")
    garden = SandboxPlatform(str(tmp_path / "networks"), "garden")
    await lobby.start()
    await garden.start()
    cfg = build_config(tmp_path, sandbox_channels(tmp_path, ["lobby", "garden"]))
    try:
        async with running(cfg) as bridge:
            await lobby.post_as_member("alice", "before the poison")
            bad = await lobby.post_as_member("mallory", "from the far future")
            lobby.net.db.execute("UPDATE messages SET created_at = 1e300 WHERE id = ?",
                                 (int(bad),))
            lobby.net.db.commit()
            await lobby.post_as_member("bob", "after the poison")

            async def arrived() -> list[str] | None:
                texts = [m.text for m in await garden.messages() if m.by_bridge]
                return texts if len(texts) >= 2 else None

            texts = await eventually(arrived, 20, "the good messages on the garden")
            rows = await bridge.store.run(lambda tx: tx.rejections(kinds=("unreadable",)))
            rt = bridge.accounts["sb_lobby"]
            assert rt.health == Health.CONNECTED and rt.restarts == []
    finally:
        await lobby.stop()
        await garden.stop()
    assert any("before the poison" in t for t in texts)
    assert any("after the poison" in t for t in texts)
    assert not any("far future" in t for t in texts)
    assert [(r[0], r[1]) for r in rows] == [(LOBBY, bad)]
    assert rows[0][2].startswith("unreadable: OverflowError") \
        or rows[0][2].startswith("unreadable: ValueError")


# ------------------------------------------------------------------ where it shows

async def test_rejections_show_in_metrics_status_and_admin_data(tmp_path: Path) -> None:
    cfg = build_config(tmp_path, sandbox_channels(tmp_path, ["lobby", "garden"]))
    toml = tmp_path / "bridge.toml"
    net = tmp_path / "networks"
    toml.write_text(f"""
[bridge]
data_dir = "{tmp_path / 'data'}"

[accounts.sb_lobby]
platform = "sandbox"
dir = "{net}"

[accounts.sb_garden]
platform = "sandbox"
dir = "{net}"

[[communities]]
name = "kmers"
hashtag = "kmers"

[[communities.channels]]
account = "sb_lobby"
network = "lobby"

[[communities.channels]]
account = "sb_garden"
network = "garden"
""")
    async with running(cfg) as bridge:
        await bridge.ingest("sb_lobby", [
            posted("1"),
            Rejected(channel=LOBBY, native_id=NativeId("2"),
                     reason="too large: 812,345 bytes (Matrix events are at most 65,536)",
                     kind=RejectKind.TOO_LARGE),
            posted("3", channel=GARDEN),
            Rejected(channel=GARDEN, native_id=NativeId("4"), reason="unreadable: E: f")],
            None)
        text = bridge.metrics.prometheus()
        counts = await bridge.store.run(lambda tx: tx.rejection_counts())
    assert f'hashbridge_inbound_rejected_total{{channel="{LOBBY}",reason="too large"}} 1' \
        in text
    assert f'hashbridge_inbound_rejected_total{{channel="{GARDEN}",reason="unreadable"}} 1' \
        in text
    # accepted posts are counted on their own channel, not the page's first
    assert f'hashbridge_posts_in_total{{channel="{GARDEN}"}} 1' in text
    assert {(c, k, n) for c, k, n, _ in counts} == {(LOBBY, "too large", 1),
                                                   (GARDEN, "unreadable", 1)}
    cli = [sys.executable, "-m", "bridge.cli", "status", "-c", str(toml)]
    out = await asyncio.to_thread(_run, [*cli, "--json"])
    got = json.loads(out)["rejected"]
    assert {(c["channel"], c["kind"], c["count"]) for c in got["counts"]} == {
        (LOBBY, "too large", 1), (GARDEN, "unreadable", 1)}
    assert {(r["native_id"], r["reason"]) for r in got["recent"]} == {
        ("2", "too large: 812,345 bytes (Matrix events are at most 65,536)"),
        ("4", "unreadable: E: f")}
    out = await asyncio.to_thread(_run, cli)
    assert "inbound events rejected" in out and "812,345 bytes" in out


def _run(cmd: list[str]) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


async def test_lone_surrogates_and_noncharacters_are_dropped_not_the_post(
        relay: Relay) -> None:
    """A JSON payload may carry a lone surrogate escape (``"\\ud83d"``: an emoji cut
    in half) in a post or a name; SQLite cannot store it and an XML feed cannot
    show it.  The character goes, the post is relayed."""
    from bridge.contract.textconv import from_html, to_plain
    texts = {"1": from_plain("half an emoji \ud83d here \uffff #kmers"),
             "2": from_html("<p>half \udc00 <b>bold\ud800</b></p>")}
    page: list[InboundEvent] = [
        Posted(channel=LOBBY, native_id=NativeId(nid),
               author=Author(platform="sandbox", handle="eve\ud800",
                             display_name="Eve \udfff\ufffe"), text=text)
        for nid, text in texts.items()]
    result = await relay.ingest("sb_lobby", page, ("seq", "2"))
    assert result.accepted == 2
    st = await _state(relay)
    assert st["origins"] == ["1", "2"] and st["rejections"] == []
    assert to_plain(page[0].text) == "half an emoji  here  #kmers"
    assert page[0].author.name == "Eve" and page[0].author.handle == "eve"


def test_x_text_loses_control_characters_and_lone_surrogates() -> None:
    from adapters.twitter.convert import rich_text
    from bridge.contract.textconv import to_plain
    rt = rich_text("esc\x1b[31m red \ud83d cut\tok\nline two #kmers",
                   {"hashtags": [{"start": 33, "end": 39, "tag": "kmers"}]})
    assert to_plain(rt) == "esc[31m red  cut\tok\nline two #kmers"
