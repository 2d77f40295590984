"""Each community's first start, on every backend (``archive.first_starts``): what
hides the chats that ended before the bridge existed."""

from __future__ import annotations

from datetime import UTC, datetime

from bridge.contract.model import Author, ChannelKey, NativeId, Post, PostId
from bridge.contract.richtext import RichText
from bridge.store import Store, Tx
from bridge.store.archive import FIRST_START, first_starts, has_posts


def _post(pid: str, at: float, *, notice: bool = False) -> Post:
    return Post(id=PostId(pid), community="old", origin_channel=ChannelKey("old/a"),
                origin_native_id=NativeId(pid), permalink="",
                author=Author(platform="sandbox", handle="alice"), text=RichText.plain("hi"),
                created_at=datetime.fromtimestamp(at, UTC), is_notice=notice)


async def test_first_start_is_recorded_once_and_counts_from_older_posts(store: Store) -> None:
    await store.run(lambda tx: tx.insert_post(_post("P1", 5000.0), "h1"))
    got = await store.run(lambda tx: first_starts(tx, ["new", "old"], 9000.0))
    # A community with posts already (an upgrade, an import) counts from the earliest.
    assert got == {"new": 9000.0, "old": 5000.0}
    # Later starts, and another process starting at the same time, keep the first.
    assert await store.run(lambda tx: first_starts(tx, ["new", "old"], 9999.0)) == got
    assert await store.run(lambda tx: tx.state_get(*FIRST_START, "new")) == repr(9000.0)


async def test_has_posts_leaves_out_the_bridges_own_notices(store: Store) -> None:
    def add(tx: Tx) -> None:
        for i in range(6):  # more notices than the first look reads
            tx.insert_post(_post(f"N{i}", 100.0 + i, notice=True), f"n{i}")
        tx.insert_post(_post("P2", 200.0), "p2")

    await store.run(add)
    assert not await store.run(lambda tx: has_posts(tx, "old", 100.0, 150.0))
    assert await store.run(lambda tx: has_posts(tx, "old", 100.0, 250.0))
    assert not await store.run(lambda tx: has_posts(tx, "old", 201.0, 300.0))
