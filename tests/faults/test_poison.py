"""Fault suite: poison pills on every platform, against a real ``hashbridge run``.

A post the bridge cannot read (HTML nested a thousand deep, malformed fields,
a post over its platform's size) must cost that post only: it is recorded as a
rejection with its reason (``hashbridge status``), the posts around it reach
every other network, the adapter stays connected and spends no restart.  Twice:

* live: poison, then a good post, on each network while the bridge runs;
* catch-up: while the bridge is down, good posts and poison pile up on each
  network and are read back as one page (a Mastodon timeline page, an X search
  page, a Matrix sync, an IMAP fetch batch): every good post is relayed.

Counted on the platforms (the copies) and through ``hashbridge status --json``.
HTML nested deep raises in today's converters; once they flatten it the post
may be relayed instead: it then must be relayed or rejected, never lost
silently, never costing another post.  The other poison is rejected always.
Matrix appservice mode has its own case (Synapse with the registration loaded).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from scaffold import (
    ALL,
    ROOT,
    start_boxes,
    start_bridge,
    stop_bridge,
    wait_complete,
    wait_connected,
    write_config,
)

from adapters.matrix.sandbox import NESTED
from bridge.contract.sandbox import PlatformSandbox


async def poison(boxes: dict[str, PlatformSandbox], net: str, tag: str) -> dict[str, str]:
    """Post the poison of *net* (its sandbox knows what it is); native ids -> ``always``
    (must be rejected) or ``either`` (rejected, or relayed once converters handle it)."""
    return {nid: str(kind) for nid, kind in
            (await boxes[net].post_poison("mallory", tag)).items()}


def records(db: Path) -> tuple[dict[str, str], set[str], list[tuple[str, str]]]:
    """(rejected native id -> kind, native ids the bridge relayed, health rows)."""
    conn = sqlite3.connect(db)
    try:
        rejected = {nid: kind for nid, kind in conn.execute(
            "SELECT native_id, kind FROM rejections WHERE kind != 'policy'")}
        relayed = {r[0] for r in conn.execute(
            "SELECT native_id FROM native_ids WHERE role='origin'")}
        health = conn.execute("SELECT account, state FROM health").fetchall()
    finally:
        conn.close()
    return rejected, relayed, health


async def wait_recorded(db: Path, sent: dict[str, str], timeout: float) -> dict[str, str]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        rejected, relayed, _ = await asyncio.to_thread(records, db)
        missing = [n for n, how in sent.items()
                   if n not in rejected and not (how == "either" and n in relayed)]
        if not missing:
            return rejected
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"poison neither rejected nor relayed: {missing}")
        await asyncio.sleep(0.5)


def status_json(cfg: Path) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "bridge.cli", "status", "-c", str(cfg),
                          "--json"], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    return json.loads(out.stdout)  # type: ignore[no-any-return]


async def test_poison_costs_itself_only_on_every_platform(tmp_path: Path) -> None:
    boxes = await start_boxes(tmp_path, ALL)
    cfg, log, db = tmp_path / "bridge.toml", tmp_path / "bridge.log", \
        tmp_path / "data" / "hashbridge.sqlite"
    write_config(cfg, boxes, tmp_path / "data", {}, {})
    names = list(boxes)
    origin: dict[int, tuple[str, str]] = {}
    sent: dict[str, str] = {}
    always_on: set[str] = set()   # networks whose poison must be rejected (once per phase)
    proc = start_bridge(cfg, log)
    try:
        await wait_connected(db, set(names), 90)
        # ---- live: poison, then a good post, on every network
        for net in names:
            got = await poison(boxes, net, f"live-{net}")
            sent |= got
            if "always" in got.values():
                always_on.add(net)
            i = len(origin)
            origin[i] = (net, await boxes[net].post_as_member("alice", f"[f{i:04d}] after "
                                                                          f"poison on {net}"))
        await wait_complete(boxes, origin, set(), 180, set())
        await wait_recorded(db, sent, 60)
        # ---- catch-up: the same piled up while the bridge was down, read as pages
        proc.send_signal(signal.SIGTERM)
        # waited for in a thread: the sandboxes on this loop must keep answering while
        # the bridge shuts down (a blocking wait starved them and timed out under load)
        await asyncio.to_thread(proc.wait, 90)
        for net in names:
            i = len(origin)
            origin[i] = (net, await boxes[net].post_as_member("bob", f"[f{i:04d}] before "
                                                                        f"poison on {net}"))
            sent |= await poison(boxes, net, f"page-{net}")
            i = len(origin)
            origin[i] = (net, await boxes[net].post_as_member("carol", f"[f{i:04d}] after "
                                                                          f"poison on {net}"))
        proc = start_bridge(cfg, log)
        await wait_complete(boxes, origin, set(), 180, set())
        rejected = await wait_recorded(db, sent, 60)
        await wait_connected(db, set(names), 30)
        _, _, health = await asyncio.to_thread(records, db)
    finally:
        await stop_bridge(proc, 20)
        for box in boxes.values():
            await box.stop()
    text = log.read_text()
    # No adapter crashed on a poison: none spent a restart.
    assert "adapter crashed" not in text and "restart budget" not in text, text[-3000:]
    assert {a: s for a, s in health} == {n: "connected" for n in names}
    always = {n for n, how in sent.items() if how == "always"}
    assert always <= set(rejected)
    status = await asyncio.to_thread(status_json, cfg)
    counted: dict[str, int] = {}
    for c in status["rejected"]["counts"]:
        if c["kind"] != "policy":
            counted[c["channel"]] = counted.get(c["channel"], 0) + c["count"]
    assert sum(counted.values()) == len(rejected)
    for net in {origin_net for origin_net in names if origin_net in always_on}:
        assert counted.get(f"kmers/{net}", 0) >= 2, (net, counted)   # once per phase
    reasons = {r["native_id"]: r["reason"] for r in status["rejected"]["recent"]}
    for nid in always:
        assert nid in reasons and reasons[nid].split(":")[0] in ("unreadable", "too large")


async def test_poison_in_appservice_transactions_costs_itself_only(tmp_path: Path) -> None:
    """Matrix appservice mode: Synapse pushes transactions to a real ``hashbridge
    run``.  A transaction holding poison among good events is acknowledged (a
    500 would make Synapse resend it forever), its good events reach the lobby,
    the poison is recorded; the same after downtime, when Synapse resends what
    piled up.  Poison that Synapse itself would refuse (an event over 65,536
    bytes, fields of the wrong type) is pushed by the test as a homeserver
    could."""
    import aiohttp

    sys.path.insert(0, str(ROOT / "tests" / "matrix"))
    from mxhelp import make_room, need_synapse, start_server

    from adapters.matrix.convert import HTML_FORMAT
    from adapters.sandbox import SandboxPlatform

    need_synapse()
    (tmp_path / "synapse").mkdir()
    hs = await asyncio.to_thread(start_server, tmp_path / "synapse", relaxed=True)
    lobby = SandboxPlatform(str(tmp_path / "networks"), "lobby")
    await lobby.start()
    acct = hs.appservice_account(sync_timeout_ms=2000)
    room = await make_room(hs)
    await asyncio.to_thread(hs.server.request, "POST",
                            f"/_matrix/client/v3/rooms/{room.room_id}/invite",
                            room.alice.access_token, {"user_id": acct.user_id})
    cfg, log, db = tmp_path / "bridge.toml", tmp_path / "bridge.log", \
        tmp_path / "data" / "hashbridge.sqlite"
    matrix = {k: v for k, v in acct.model_dump().items()
              if k in ("homeserver", "user_id", "mode", "as_token", "hs_token", "as_listen",
                       "as_url", "sync_timeout_ms")}
    cfg.write_text("\n".join([
        "[bridge]", f'data_dir = "{tmp_path / "data"}"', 'log_level = "warning"', "",
        "[accounts.lobby]", 'platform = "sandbox"', f'dir = "{tmp_path / "networks"}"', "",
        "[accounts.mx]", 'platform = "matrix"',
        *(f"{k} = {json.dumps(v)}" for k, v in matrix.items()), "",
        "[[communities]]", 'name = "kmers"', 'hashtag = "kmers"',
        "author_rate_per_minute = 100000", "duplicate_window = 0", "",
        "[[communities.channels]]", 'account = "lobby"', 'network = "lobby"', "",
        "[[communities.channels]]", 'account = "mx"', f'room = "{room.room_id}"', ""]))
    cfg.chmod(0o600)
    sent: dict[str, str] = {}

    async def say(text: str) -> str:
        r = await room.alice.room_send(room.room_id, "m.room.message",
                                       {"msgtype": "m.text", "body": text})
        return str(r.event_id)

    async def nested(tag: str) -> None:
        r = await room.alice.room_send(room.room_id, "m.room.message", {
            "msgtype": "m.text", "body": f"{tag} deep", "format": HTML_FORMAT,
            "formatted_body": NESTED})
        sent[str(r.event_id)] = "either"

    async def on_lobby(*words: str) -> None:
        deadline = asyncio.get_running_loop().time() + 120
        while True:
            texts = [m.text for m in await lobby.messages() if m.by_bridge]
            if all(any(w in t for t in texts) for w in words):
                return
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"not on the lobby: {words}; have {texts}")
            await asyncio.sleep(0.5)

    proc = start_bridge(cfg, log)
    try:
        await wait_connected(db, {"lobby", "mx"}, 90)
        # ---- live: Synapse's own transactions, poison among good events
        await say("live good one")
        await nested("live")
        await say("live good two")
        # ---- a transaction only a homeserver could send: too large, malformed
        now = int(time.time() * 1000)

        def ev(eid: str, content: Any) -> dict[str, Any]:
            return {"type": "m.room.message", "room_id": room.room_id, "event_id": eid,
                    "sender": room.alice.user_id, "origin_server_ts": now,
                    "content": content}

        txn = [ev("$pushed-good", {"msgtype": "m.text", "body": "pushed good"}),
               ev("$pushed-huge", {"msgtype": "m.text", "body": "x" * 70_000}),
               ev("$pushed-nested", {"msgtype": "m.text", "body": "n", "format": HTML_FORMAT,
                                     "formatted_body": NESTED})]
        sent |= {"$pushed-huge": "always", "$pushed-nested": "either"}
        async with aiohttp.ClientSession() as http:
            r = await http.put(f"http://{acct.as_listen}/_matrix/app/v1/transactions/poison-1",
                               json={"events": txn},
                               headers={"Authorization": f"Bearer {acct.hs_token}"})
            assert r.status == 200, await r.text()
        await on_lobby("live good one", "live good two", "pushed good")
        await wait_recorded(db, sent, 60)
        # ---- downtime: Synapse keeps the transactions and resends them
        proc.send_signal(signal.SIGTERM)
        # waited for in a thread: the sandboxes on this loop must keep answering while
        # the bridge shuts down (a blocking wait starved them and timed out under load)
        await asyncio.to_thread(proc.wait, 90)
        await say("page good one")
        await nested("page")
        await say("page good two")
        proc = start_bridge(cfg, log)
        await on_lobby("page good one", "page good two")
        rejected = await wait_recorded(db, sent, 60)
        await wait_connected(db, {"lobby", "mx"}, 30)
    finally:
        await stop_bridge(proc, 20)
        await room.alice.close()
        await room.bob.close()
        await lobby.stop()
        await asyncio.to_thread(hs.server.stop)
        hs.forwarder.close()
    text = log.read_text()
    assert "adapter crashed" not in text and "not persisted" not in text, text[-3000:]
    assert rejected.get("$pushed-huge") == "too large"
