"""Favourites on Mastodon: the emulator serves them as Mastodon does (checked
against the OpenAPI spec, through Mastodon.py), and the bridge counts the
favourites of its copies from its notifications, once per catchup_interval."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from mastohelp import client
from test_masto_e2e import config, on_masto
from test_masto_emulator import AUTH, exchange, validate

from adapters.mastodon.emulator.server import MastodonEmulator
from adapters.mastodon.sandbox import MastodonSandbox
from adapters.sandbox import SandboxPlatform
from bridge.daemon.harness import eventually, running
from bridge.daemon.supervisor import Bridge


async def test_emulator_serves_favourites_like_mastodon(emulator: MastodonEmulator,
                                                         openapi: Any) -> None:
    emu = emulator
    status, _, own = await exchange(emu, "POST", "/api/v1/statuses", headers=AUTH,
                                    data={"status": "a copy #kmers"})
    assert status == 200
    alice = emu.member("alice")
    alice_api = client(emu, alice.token)
    faved = await asyncio.to_thread(alice_api.status_favourite, own["id"])
    assert faved["favourited"] is True and faved["favourites_count"] == 1
    await asyncio.to_thread(alice_api.status_favourite, own["id"])  # again: still one
    for method, path, pattern in [
            ("POST", f"/api/v1/statuses/{own['id']}/favourite", "/api/v1/statuses/{id}/favourite"),
            ("GET", "/api/v1/notifications?types[]=favourite", "/api/v1/notifications")]:
        code, headers, body = await exchange(
            emu, method, path, headers={"Authorization": f"Bearer {alice.token}"}
            if method == "POST" else AUTH)
        assert code == 200
        validate(openapi, method, path, code, headers, body, pattern)

    bridge_api = client(emu)
    [note] = await asyncio.to_thread(bridge_api.notifications, types=["favourite"])
    assert note["type"] == "favourite" and note["account"]["acct"] == "alice"
    assert str(note["status"]["id"]) == own["id"]
    assert await asyncio.to_thread(bridge_api.notifications, types=["mention"]) == []
    assert await asyncio.to_thread(bridge_api.notifications, exclude_types=["favourite"]) == []
    # Favouriting one's own status notifies nobody.
    await asyncio.to_thread(bridge_api.status_favourite, own["id"])
    assert len(await asyncio.to_thread(bridge_api.notifications)) == 1
    # Unfavouriting sends nothing, and the favourite's notification goes with it.
    undone = await asyncio.to_thread(alice_api.status_unfavourite, own["id"])
    assert undone["favourited"] is False and undone["favourites_count"] == 1  # the bridge's
    assert await asyncio.to_thread(bridge_api.notifications, types=["favourite"]) == []
    # Scopes: a token without write:favourites is refused, as by Mastodon.
    reader = emu.state.add_account("reader", token="read-only", scopes=("read",))
    code, _, _ = await exchange(emu, "POST", f"/api/v1/statuses/{own['id']}/favourite",
                                headers={"Authorization": f"Bearer {reader.token}"})
    assert code == 403


async def _counts(bridge: Bridge, post_id: str) -> dict[str, int]:
    got = await bridge.store.run(lambda tx: tx.reaction_counts([post_id]))
    return got.get(post_id, {})


async def test_favourites_of_copies_are_counted(masto: MastodonSandbox, lobby: SandboxPlatform,
                                                tmp_path: Path) -> None:
    emu = masto.emulator
    emu.member("nora", note="I prefer #nobridge")
    async with running(config(masto, tmp_path)) as bridge:
        await lobby.post_as_member("dora", "Q1: favourite this #kmers")

        async def copy() -> Any:
            got = await on_masto(masto)
            return got[0] if got else None
        status = await eventually(copy, timeout=60, what="the copy on Mastodon")
        post_id = (await bridge.store.run(
            lambda tx: tx.native_lookup("kmers/masto", status.native_id)))[0]

        async def reading() -> str | None:  # the first read starts from "now"
            return await bridge.store.run(lambda tx: tx.get_cursor("masto",
                                                                   "favourites:min_id"))
        await eventually(reading, timeout=60, what="the first read of favourites")
        for who in ("alice", "bob", "nora"):  # nora's profile says #nobridge
            member = emu.member(who)
            await asyncio.to_thread(client(emu, member.token).status_favourite,
                                    status.native_id)

        async def two() -> dict[str, int] | None:
            got = await _counts(bridge, post_id)
            return got if got.get("mastodon") == 2 else None
        await eventually(two, timeout=60, what="two favourites counted")
        # Mastodon says nothing on an unfavourite: the count stays.
        await asyncio.to_thread(client(emu, emu.member("bob").token).status_unfavourite,
                                status.native_id)
        await asyncio.to_thread(client(emu, emu.member("carol").token).status_favourite,
                                status.native_id)

        async def three() -> dict[str, int] | None:
            got = await _counts(bridge, post_id)
            return got if got.get("mastodon") == 3 else None
        assert await eventually(three, timeout=60, what="carol's favourite counted") == \
            {"mastodon": 3}
