"""The store contract: what every backend must do, through the ``Store``/``Tx``
protocols only (no SQL, no backend class).  Parametrised by ``conftest.BACKENDS``."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import UTC, datetime

import pytest
from storehelp import Backend

from bridge.contract.model import (
    Attachment,
    Author,
    ChannelKey,
    NativeId,
    Op,
    Poll,
    PollOption,
    Post,
    PostId,
    QuotedPost,
    derived_delivery_id,
)
from bridge.contract.richtext import RichText
from bridge.store import NEW_POST, SchemaError, Store, StoreError, Tx
from bridge.store.adapter_state import StoredAccountState
from bridge.store.archive import hide_everywhere, page


def _post(pid: str = "P1", *, community: str = "k", channel: str = "k/a", at: float = 1000.0,
          text: str = "hi", handle: str = "alice", reply_to: str | None = None) -> Post:
    return Post(id=PostId(pid), community=community, origin_channel=ChannelKey(channel),
                origin_native_id=NativeId(pid.lower()), permalink=f"https://a/{pid}",
                author=Author(platform="sandbox", handle=handle, account_id=f"id-{handle}"),
                text=RichText.plain(text), created_at=datetime.fromtimestamp(at, UTC),
                reply_to=PostId(reply_to) if reply_to else None,
                attachments=(Attachment(url="https://a/x.png", media_type="image/png",
                                        alt_text="a cat"),))


# ------------------------------------------------------------------ posts

async def test_posts_round_trip_edit_delete_hide(store: Store) -> None:
    await store.run(lambda tx: tx.insert_post(_post(), "h1"))
    got = await store.run(lambda tx: tx.get_post("P1"))
    assert got == _post()
    assert await store.run(lambda tx: tx.post_state("P1")) == NEW_POST
    assert await store.run(lambda tx: tx.get_post("nope")) is None

    await store.run(lambda tx: tx.update_post("P1", RichText.plain("edited"), "h2", "cw", None,
                                              2000.0))
    got = await store.run(lambda tx: tx.get_post("P1"))
    assert got is not None and got.text == RichText.plain("edited")
    assert got.content_warning == "cw" and got.attachments == _post().attachments
    assert (await store.run(lambda tx: tx.post_state("P1")))[0] == 2000.0

    await store.run(lambda tx: tx.set_hidden("P1", True))
    assert (await store.run(lambda tx: tx.post_state("P1")))[2] is True
    await store.run(lambda tx: tx.set_hidden("P1", False))
    await store.run(lambda tx: tx.mark_post_deleted("P1"))
    got = await store.run(lambda tx: tx.get_post("P1"))
    assert got is not None and got.text == RichText() and got.attachments == ()
    assert (await store.run(lambda tx: tx.post_state("P1")))[1] is not None


async def test_a_posts_poll_and_quote_round_trip(store: Store) -> None:
    poll = Poll(options=(PollOption(title="Tea"), PollOption(title="Coffee ☕", votes=3)),
                ends_at=datetime(2026, 12, 10, 18, 0, tzinfo=UTC), multiple=True, voters=3)
    quote = QuotedPost(url="https://m.example/@bob/1", network="Mastodon",
                       author=Author(platform="mastodon", handle="@bob@m.example",
                                     display_name="Bob", profile_url="https://m.example/@bob"),
                       text=RichText.plain("the quoted words"))
    with_extras = dataclasses.replace(_post("PQ"), poll=poll, quote=quote)
    link_only = dataclasses.replace(_post("PL", at=1001.0),
                                    quote=QuotedPost(url="https://x.com/i/1", network="X"))
    await store.run(lambda tx: (tx.insert_post(with_extras, "h"), tx.insert_post(link_only, "")))
    # read back through a query (not the post cache the insert fills)
    got = {p.id: p for p in await store.run(lambda tx: tx.recent_posts("k", 9))}
    assert got["PQ"] == with_extras and got["PQ"].poll == poll and got["PQ"].quote == quote
    assert got["PL"].quote == QuotedPost(url="https://x.com/i/1", network="X")
    assert got["PL"].poll is None
    await store.run(lambda tx: tx.update_post("PQ", RichText.plain("edited"), "h2", "", None,
                                              2000.0))
    edited = await store.run(lambda tx: tx.get_post("PQ"))
    assert edited is not None and edited.poll == poll and edited.quote == quote
    await store.run(lambda tx: tx.update_post("PQ", RichText.plain("edited"), "h2", "", None,
                                              2001.0, extras=(None, quote.link_only())))
    got = {p.id: p for p in await store.run(lambda tx: tx.recent_posts("k", 9))}
    assert got["PQ"].poll is None and got["PQ"].quote == quote.link_only()
    await store.run(lambda tx: tx.mark_post_deleted("PQ"))
    gone = await store.run(lambda tx: tx.get_post("PQ"))
    assert gone is not None and gone.poll is None and gone.quote is None


async def test_recent_posts_and_duplicates(store: Store) -> None:
    def fill(tx: Tx) -> None:
        for i in range(5):
            tx.insert_post(_post(f"P{i}", at=1000.0 + i), f"h{i}")
        tx.insert_post(_post("Q", community="other"), "h0")
    await store.run(fill)
    recent = await store.run(lambda tx: tx.recent_posts("k", 3))
    assert [p.id for p in recent] == ["P2", "P3", "P4"]
    await store.run(lambda tx: tx.mark_post_deleted("P4"))
    assert [p.id for p in await store.run(lambda tx: tx.recent_posts("k", 3))] == \
        ["P1", "P2", "P3"]
    assert len(await store.run(lambda tx: tx.recent_posts("k", 9, include_deleted=True))) == 5

    dup = await store.run(lambda tx: tx.find_duplicate("k", "h1", {"sandbox:id-alice"}, 0.0,
                                                       "k/b"))
    assert dup == "P1"
    for since, not_channel, ids in ((1002.0, "k/b", {"sandbox:id-alice"}),
                                    (0.0, "k/a", {"sandbox:id-alice"}),
                                    (0.0, "k/b", {"sandbox:id-bob"})):
        assert await store.run(lambda tx, s=since, n=not_channel, i=ids: tx.find_duplicate(
            "k", "h1", i, s, n)) is None, (since, not_channel, ids)


# ------------------------------------------------------------------ id map

async def test_id_map(store: Store) -> None:
    def fill(tx: Tx) -> None:
        tx.insert_post(_post(), "")
        tx.add_native("k/a", "p1", "P1", "origin", permalink="https://a/P1")
        tx.add_native("k/b", "b-2", "P1", "copy", part=1)
        tx.add_native("k/b", "b-1", "P1", "copy", part=0, subject="s", permalink="https://b/1")
        tx.add_native("k/b", "b-1x", "P1", "alias", part=0)
        tx.add_native("k/b", "b-1", "OTHER", "copy")  # an id is mapped once
    await store.run(fill)
    assert await store.run(lambda tx: tx.native_lookup("k/b", "b-1")) == ("P1", "copy")
    assert await store.run(lambda tx: tx.native_lookup("k/a", "b-1")) is None
    copies = await store.run(lambda tx: tx.copies("P1", "k/b"))
    assert [(c.native_id, c.role, c.part, c.subject, c.permalink) for c in copies] == \
        [("b-1", "copy", 0, "s", "https://b/1"), ("b-2", "copy", 1, "", "")]
    assert [c.role for c in await store.run(lambda tx: tx.copies("P1", "k/a"))] == ["origin"]
    many = await store.run(lambda tx: tx.copies_many(["P1", "P1", "P9"], "k/b"))
    assert set(many) == {"P1", "P9"} and many["P9"] == [] and many["P1"] == copies
    assert await store.run(lambda tx: tx.aliases("P1", "k/b", 0)) == ["b-1x"]
    every = await store.run(lambda tx: tx.all_copies("P1"))
    assert [(ch, c.native_id) for ch, c in every] == \
        [("k/a", "p1"), ("k/b", "b-1"), ("k/b", "b-1x"), ("k/b", "b-2")]

    # An edit made the copy one part shorter: part 1 is no longer a part, its id still known.
    await store.run(lambda tx: tx.retire_part("P1", "k/b", 1))
    assert [c.native_id for c in await store.run(lambda tx: tx.copies("P1", "k/b"))] == ["b-1"]
    assert await store.run(lambda tx: tx.native_lookup("k/b", "b-2")) == ("P1", "alias")
    assert await store.run(lambda tx: tx.aliases("P1", "k/b", 0)) == ["b-1x"]


# ------------------------------------------------------------------ outbox

async def test_outbox_keeps_queue_order_per_channel(store: Store) -> None:
    await store.run(lambda tx: tx.insert_post(_post(), ""))
    ids = await store.run(lambda tx: [tx.enqueue("P1", ch, Op.CREATE)
                                      for ch in ("k/b", "k/c", "k/b", "k/b", "k/c")])
    b = await store.run(lambda tx: tx.pending("k/b", 10))
    assert [r.id for r in b] == [ids[0], ids[2], ids[3]]
    assert [r.seq for r in b] == sorted(r.seq for r in b)
    assert all(r.state == "pending" and r.op is Op.CREATE and r.attempts == 0 for r in b)
    assert [r.id for r in await store.run(lambda tx: tx.pending("k/b", 2))] == ids[0:3:2]
    assert await store.run(lambda tx: tx.queue_depths()) == \
        {"k/b": {"pending": 3}, "k/c": {"pending": 2}}


async def test_delivery_states(store: Store) -> None:
    await store.run(lambda tx: tx.insert_post(_post(), ""))
    a, b, c = await store.run(lambda tx: tx.enqueue_many("P1", ["k/b", "k/c", "k/d"],
                                                         Op.CREATE))
    d = await store.run(lambda tx: tx.delivery(a))
    assert d is not None and d.channel == "k/b" and d.post_id == "P1"
    # a split post: part 0 recorded, then the last part with the delivery done
    await store.run(lambda tx: tx.record_sent(d, 0, "b-0", final=False))
    assert (await store.run(lambda tx: tx.delivery(a))).parts_done == 1  # type: ignore[union-attr]
    await store.run(lambda tx: tx.record_sent(d, 1, "b-1", subject="s", extra_ids=["b-1x"],
                                              final=True))
    done = await store.run(lambda tx: tx.delivery(a))
    assert done is not None and (done.state, done.parts_done, done.attempts) == ("sent", 2, 1)
    assert [x.native_id for x in await store.run(lambda tx: tx.copies("P1", "k/b"))] == \
        ["b-0", "b-1"]
    assert await store.run(lambda tx: tx.native_lookup("k/b", "b-1x")) == ("P1", "alias")
    assert await store.run(lambda tx: tx.create_state("P1", "k/b")) == "sent"
    assert await store.run(lambda tx: tx.create_state("P1", "k/z")) is None

    await store.run(lambda tx: tx.defer(b, time.time() + 60, "503 " + "x" * 5000))
    row = await store.run(lambda tx: tx.delivery(b))
    assert row is not None and row.attempts == 1 and len(row.last_error) == 2000
    await store.run(lambda tx: tx.retry_now("k/c"))
    assert (await store.run(lambda tx: tx.delivery(b))).next_at == 0  # type: ignore[union-attr]

    await store.run(lambda tx: tx.finish(c, "dead", "422 rejected"))
    assert await store.run(lambda tx: tx.delivery_state(c)) == "dead"
    assert [r.id for r in await store.run(lambda tx: tx.dead())] == [c]
    assert await store.run(lambda tx: tx.count_deliveries("dead")) == 1
    assert await store.run(lambda tx: tx.requeue_dead("k/other")) == 0
    assert await store.run(lambda tx: tx.requeue_dead(None, c)) == 1
    assert await store.run(lambda tx: tx.delivery_state(c)) == "pending"
    assert await store.run(lambda tx: tx.delivery_state("nope")) is None


async def test_held_and_superseded_edits(store: Store) -> None:
    await store.run(lambda tx: tx.insert_post(_post(), ""))
    create = await store.run(lambda tx: tx.enqueue("P1", "k/b", Op.CREATE))
    e1 = await store.run(lambda tx: tx.enqueue("P1", "k/b", Op.EDIT))
    later = time.time() + 600
    tried = await store.run(lambda tx: tx.enqueue("P1", "k/b", Op.CREATE))
    await store.run(lambda tx: tx.defer(tried, 0.0, "tried once"))
    # Fresh creates and edits are held; a delivery tried before is not.
    await store.run(lambda tx: tx.hold([e1, tried], later))
    assert [r.id for r in await store.run(lambda tx: tx.pending("k/b", 10))] == [create, tried]
    held = await store.run(lambda tx: tx.next_held("k/b"))
    assert held is not None and held.id == e1
    await store.run(lambda tx: tx.hold([create], later - 1))
    assert [r.id for r in await store.run(lambda tx: tx.pending("k/b", 10))] == [tried]
    held = await store.run(lambda tx: tx.next_held("k/b"))
    assert held is not None and held.id == create
    # Released: due now, back in queue order.
    assert await store.run(lambda tx: tx.release_held(["P1"])) == 2
    assert [r.id for r in await store.run(lambda tx: tx.pending("k/b", 10))] == \
        [create, e1, tried]
    assert await store.run(lambda tx: tx.release_held(["P1"])) == 0
    await store.run(lambda tx: tx.hold([create, e1], later))
    assert await store.run(lambda tx: tx.held_until("P1")) == pytest.approx(later)
    e2 = await store.run(lambda tx: tx.enqueue("P1", "k/b", Op.EDIT))
    assert await store.run(lambda tx: tx.supersede_edits("P1", ["k/b"])) == 2
    assert await store.run(lambda tx: tx.delivery_state(e2)) == "skipped"
    assert await store.run(lambda tx: tx.supersede_edits("P1", [])) == 0
    # Discarded: the held ones are never sent; the rest are untouched.
    assert await store.run(lambda tx: tx.discard_held(["P1"], "discarded")) == 1
    row = await store.run(lambda tx: tx.delivery(create))
    assert row is not None and (row.state, row.last_error) == ("skipped", "discarded")
    assert await store.run(lambda tx: tx.delivery_state(tried)) == "pending"


async def test_derived_delivery_ids_repeat_per_origin_and_never_collide(store: Store) -> None:
    await store.run(lambda tx: tx.insert_post(_post(), ""))
    first = await store.run(lambda tx: tx.enqueue_many(
        "P1", ["k/b", "k/c"], Op.CREATE, source="k/a\x1ep1", at=1.5))
    assert first[0] == derived_delivery_id("k/a\x1ep1", "k/b", "create", 1.5)
    assert len(set(first)) == 2
    # the message read again cannot reuse the id: a fresh one, never dropped
    again = await store.run(lambda tx: tx.enqueue_many(
        "P1", ["k/b", "k/d"], Op.CREATE, source="k/a\x1ep1", at=1.5))
    assert again[0] not in first and again[1] == derived_delivery_id(
        "k/a\x1ep1", "k/d", "create", 1.5)
    assert [r.id for r in await store.run(lambda tx: tx.pending("k/b", 10))] == \
        [first[0], again[0]]


# ------------------------------------------------------------------ transactions

async def test_cursor_commits_with_its_events_or_not_at_all(store: Store) -> None:
    def page(tx: Tx, fail: bool) -> None:
        tx.insert_post(_post("P1" if not fail else "P2"), "")
        tx.enqueue("P1", "k/b", Op.CREATE)
        tx.set_cursor("acct", "since", "2" if fail else "1")
        if fail:
            raise RuntimeError("the relay failed after writing")

    await store.run(lambda tx: page(tx, False))
    with pytest.raises(RuntimeError):
        await store.run(lambda tx: page(tx, True))
    assert await store.run(lambda tx: tx.get_cursor("acct", "since")) == "1"
    assert await store.run(lambda tx: tx.get_post("P2")) is None
    assert await store.run(lambda tx: tx.count_deliveries("pending")) == 1
    assert await store.run(lambda tx: tx.get_cursor("other", "since")) is None


async def test_one_failing_unit_does_not_hurt_its_neighbours(store: Store) -> None:
    def bad(tx: Tx) -> None:
        tx.insert_post(_post("P9"), "")
        tx.set_consent("sandbox", "carol", "out")
        assert tx.consent("sandbox", "carol") == "out"
        raise ValueError("boom")

    results = await asyncio.gather(
        *(store.run(lambda tx, i=i: tx.insert_post(_post(f"P{i}"), "")) for i in range(4)),
        store.run(bad),
        *(store.run(lambda tx, i=i: tx.insert_post(_post(f"P{i}"), "")) for i in range(4, 8)),
        return_exceptions=True)
    assert isinstance(results[4], ValueError)
    assert all(r is None for i, r in enumerate(results) if i != 4)
    got = await store.run(lambda tx: [tx.get_post(f"P{i}") is not None for i in range(10)])
    assert got == [True] * 8 + [False, False]
    # nothing of the failed unit is seen, cached or not
    assert await store.run(lambda tx: tx.consent("sandbox", "carol")) is None


async def test_chat_event_markers_are_cursors(store: Store) -> None:
    """Chat events mark an announcement done with a cursor of their own account."""
    marker = "kmers/weekly/2026-12-07/start"
    assert await store.run(lambda tx: tx.get_cursor("~events", marker)) is None
    await store.run(lambda tx: tx.set_cursor("~events", marker, "1"))
    await store.run(lambda tx: tx.set_cursor("~events", marker, "2"))
    assert await store.run(lambda tx: tx.get_cursor("~events", marker)) == "2"


# ------------------------------------------------------------------ people

async def test_consent_blocks_and_links(store: Store) -> None:
    assert await store.run(lambda tx: tx.consent("sandbox", "Alice")) is None
    await store.run(lambda tx: tx.set_consent("sandbox", "Alice", "in"))
    assert await store.run(lambda tx: tx.consent("sandbox", "ALICE")) == "in"
    await store.run(lambda tx: tx.set_consent("sandbox", "alice", "out"))
    assert [c[:3] for c in await store.run(lambda tx: tx.consents())] == \
        [("sandbox", "alice", "out")]

    await store.run(lambda tx: tx.block("sandbox", "Bob", "spam"))
    await store.run(lambda tx: tx.block("sandbox", "eve", "abuse"))
    assert await store.run(lambda tx: tx.is_blocked("sandbox", "BOB"))
    assert [b[:3] for b in await store.run(lambda tx: tx.blocks())][-1] == \
        ("sandbox", "bob", "spam")
    assert await store.run(lambda tx: tx.unblock("sandbox", "bob"))
    assert not await store.run(lambda tx: tx.unblock("sandbox", "bob"))
    assert not await store.run(lambda tx: tx.is_blocked("sandbox", "bob"))

    await store.run(lambda tx: tx.link_identities("x:1", "m:a"))
    await store.run(lambda tx: tx.link_identities("m:a", "e:z"))
    assert await store.run(lambda tx: tx.linked_identities("x:1")) == {"x:1", "m:a", "e:z"}
    await store.run(lambda tx: tx.add_link_claim("C0DE", "x:1", "X", "mastodon", "a",
                                                 time.time() + 60))
    assert await store.run(lambda tx: tx.link_claim("C0DE")) == ("x:1", "X", "mastodon", "a")
    await store.run(lambda tx: tx.add_link_claim("OLD", "e:z", "E", "x", "b", time.time() - 1))
    assert await store.run(lambda tx: tx.link_claim("OLD")) is None
    await store.run(lambda tx: tx.drop_link_claim("C0DE"))
    assert await store.run(lambda tx: tx.link_claim("C0DE")) is None
    assert await store.run(lambda tx: tx.unlink_identity("m:a")) == 2
    assert await store.run(lambda tx: tx.linked_identities("x:1")) == {"x:1"}
    assert await store.run(lambda tx: tx.identity_links()) == []


async def test_rejections_are_recorded_once_per_unreadable_event(store: Store) -> None:
    assert await store.run(lambda tx: tx.reject("k/a", "n1", "policy says no"))
    assert await store.run(lambda tx: tx.reject("k/a", "n1", "policy says no"))
    assert await store.run(lambda tx: tx.reject("k/a", "n2", "bad json", "unreadable"))
    assert not await store.run(lambda tx: tx.reject("k/a", "n2", "bad json", "unreadable"))
    assert await store.run(lambda tx: tx.reject("k/b", "n3", "huge", "too large"))
    newest = await store.run(lambda tx: tx.rejections())
    assert [r[1] for r in newest] == ["n3", "n2", "n1", "n1"]
    assert [r[1] for r in await store.run(lambda tx: tx.rejections(
        kinds=("unreadable", "too large")))] == ["n3", "n2"]
    counts = await store.run(lambda tx: tx.rejection_counts())
    assert [c[:3] for c in counts] == [("k/a", "policy", 2), ("k/a", "unreadable", 1),
                                       ("k/b", "too large", 1)]
    await store.run(lambda tx: tx.reject("k/b", "n4", "blocked"))
    refusals = await store.run(lambda tx: tx.policy_refusal_counts())
    assert [r[:3] for r in refusals] == [("k/a", "policy says no", 2), ("k/b", "blocked", 1)]


async def test_health(store: Store) -> None:
    await store.run(lambda tx: tx.set_health("b", "x", "connected", ""))
    await store.run(lambda tx: tx.set_health("a", "mastodon", "disconnected", "503"))
    await store.run(lambda tx: tx.set_health("b", "x", "stopped", "bye"))
    assert [h[:4] for h in await store.run(lambda tx: tx.health())] == \
        [("a", "mastodon", "disconnected", "503"), ("b", "x", "stopped", "bye")]


# ------------------------------------------------------------------ the archive

async def test_archive_shows_visible_posts_in_order(store: Store) -> None:
    def fill(tx: Tx) -> None:
        for i in range(6):
            tx.insert_post(_post(f"P{i}", at=1000.0 + i // 2,
                                 channel="k/a" if i % 2 else "k/b",
                                 reply_to="P0" if i == 5 else None), "")
        tx.insert_post(_post("Q", community="other"), "")
        tx.add_native("k/c", "c5", "P5", "copy", permalink="https://c/5")
    await store.run(fill)
    await store.run(lambda tx: tx.mark_post_deleted("P2"))
    assert await store.run(lambda tx: hide_everywhere(tx, "P3", ("k/a", "k/b", "k/c"))) == \
        ["k/b", "k/c"]
    assert await store.run(lambda tx: hide_everywhere(tx, "P3", ("k/a", "k/b"))) == []
    with pytest.raises(KeyError):
        await store.run(lambda tx: hide_everywhere(tx, "nope", ()))
    visible = ["P0", "P1", "P4", "P5"]
    assert [p.id for p in await store.run(lambda tx: tx.visible_page("k", 10))] == visible
    assert [p.id for p in await store.run(lambda tx: tx.visible_page("k", 2))] == visible[2:]
    assert [p.id for p in await store.run(lambda tx: tx.visible_page("k", 2, "P4"))] == \
        visible[:2]
    assert [p.id for p in await store.run(lambda tx: tx.visible_page("k", 9, None,
                                                                     ("k/a",)))] == ["P1", "P5"]
    assert await store.run(lambda tx: tx.visible_post("P3")) is None
    assert await store.run(lambda tx: tx.visible_post("P2")) is None
    assert [p.id for p in await store.run(lambda tx: tx.visible_between("k", 1000.0, 1002.0))
            ] == ["P0", "P1"]
    assert await store.run(lambda tx: tx.count_visible("k")) == 4
    assert await store.run(lambda tx: tx.count_visible("k", 1002.0, 1003.0)) == 2
    walked: list[str] = []
    after = ""
    while batch := await store.run(lambda tx, a=after: tx.visible_after("k", a, 3)):
        walked += [p.id for p, _ in batch]
        after = batch[-1][0].id
    assert walked == visible
    assert await store.run(lambda tx: tx.post_community("Q")) == "other"
    assert [p.id for p in await store.run(lambda tx: tx.hidden_posts("k"))] == ["P3"]
    views = await store.run(lambda tx: page(tx, "k"))
    last = views[-1]
    assert last.parent is not None and last.parent.id == "P0"
    assert last.copies == (("k/c", "https://c/5"),)


# ------------------------------------------------------------------ adapter state

async def test_adapter_state_per_account_and_namespace_in_order(store: Store) -> None:
    await store.run(lambda tx: tx.state_put("mail", "threads", "b", "1"))
    await store.run(lambda tx: tx.state_put("mail", "threads", "a", "2"))
    await store.run(lambda tx: tx.state_put("mail", "threads", "b", "3"))  # keeps its place
    assert await store.run(lambda tx: tx.state_items("mail", "threads")) == \
        [("b", "3"), ("a", "2")]
    assert await store.run(lambda tx: tx.state_add("mail", "threads", "a", "x")) is False
    assert await store.run(lambda tx: tx.state_add("mail", "threads", "c", "4")) is True
    assert await store.run(lambda tx: tx.state_get("mail", "threads", "a")) == "2"
    assert await store.run(lambda tx: tx.state_get("mail", "other", "a")) is None
    assert await store.run(lambda tx: tx.state_get("mail2", "threads", "a")) is None
    assert await store.run(lambda tx: tx.state_delete("mail", "threads", ["a", "zz"])) == 1
    assert [k for k, _ in await store.run(lambda tx: tx.state_items("mail", "threads"))] == \
        ["b", "c"]

    ctx_state = StoredAccountState(store, "mail2")
    assert await ctx_state.put_many("q", [("1", "a"), ("2", "b")]) == 2
    assert await ctx_state.put_many("q", [("2", "B"), ("3", "c")], only_new=True) == 1
    assert await ctx_state.items("q") == [("1", "a"), ("2", "b"), ("3", "c")]
    assert await ctx_state.add("q", "1", "z") is False
    assert await ctx_state.delete("q", ["1", "3"]) == 2
    assert await ctx_state.get("q", "2") == "b"
    assert await store.run(lambda tx: tx.state_items("mail", "q")) == []


# ------------------------------------------------------------------ schema and errors

async def test_migrations_are_idempotent_and_keep_data(backend: Backend) -> None:
    store = await backend.open()
    await store.run(lambda tx: tx.insert_post(_post(), ""))
    await store.run(lambda tx: tx.state_put("mail", "meta", "salt", "00"))
    await store.close()
    version = backend.schema_version()
    for _ in range(2):
        store = await backend.open()
        try:
            assert await store.run(lambda tx: tx.get_post("P1")) == _post()
            assert await store.run(lambda tx: tx.state_get("mail", "meta", "salt")) == "00"
        finally:
            await store.close()
        assert backend.schema_version() == version


async def test_a_newer_schema_is_refused(backend: Backend) -> None:
    await (await backend.open()).close()
    backend.mark_newer_schema()
    with pytest.raises(SchemaError, match="newer"):
        await backend.open()


async def test_a_failing_statement_raises_the_cores_error(store: Store) -> None:
    """A constraint broken inside a unit: the unit itself sees a StoreError (not the
    driver's exception), so does its caller, and the unit leaves nothing behind."""
    seen: list[BaseException] = []

    def twice(tx: Tx) -> None:
        tx.insert_post(_post("P7"), "")
        try:
            tx.insert_post(_post("P7"), "")
        except Exception as e:
            seen.append(e)
            raise

    with pytest.raises(StoreError) as caught:
        await store.run(twice)
    assert type(caught.value) is StoreError  # not transient: the unit's own fault
    assert len(seen) == 1 and isinstance(seen[0], StoreError)
    assert await store.run(lambda tx: tx.get_post("P7")) is None


async def test_a_held_lock_is_waited_out_not_failed(store: Store, backend: Backend) -> None:
    """Another writer holding the lock: the write is held (``storage`` says so) and
    goes through once the lock is released; the caller never sees an error."""
    await store.run(lambda tx: tx.insert_post(_post(), ""))
    with backend.hold_write_lock():
        fut = asyncio.ensure_future(store.run(lambda tx: tx.set_cursor("a", "c", "1")))
        deadline = time.monotonic() + 30
        while store.storage.ok and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        assert store.storage.state == "locked" and not fut.done()
    await asyncio.wait_for(fut, 30)
    assert store.storage.ok
    assert await store.run(lambda tx: tx.get_cursor("a", "c")) == "1"
