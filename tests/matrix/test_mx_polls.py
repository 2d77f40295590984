"""MSC3381 polls read from a real Synapse (the stable ``m.poll.start`` and the
unstable ``org.matrix.msc3381.poll.start`` clients still send), and polls and
quotes sent into a room as text with a real ``<blockquote>``, never a native poll."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from mxhelp import Hs, Room, bot_account, eventually, room_events, start_adapter

from bridge.contract.adapter import SendCreate
from bridge.contract.model import (
    Author,
    ChannelKey,
    NativeId,
    Poll,
    PollOption,
    Post,
    Posted,
    QuotedPost,
    new_delivery_id,
    new_post_id,
)
from bridge.contract.richtext import RichText
from bridge.contract.textconv import to_plain
from bridge.outbound.render import Target, render

STABLE = {
    "m.poll": {"kind": "m.disclosed", "max_selections": 1,
               "question": {"m.text": [{"body": "Tea or coffee?"}]},
               "answers": [{"m.id": "tea", "m.text": [{"body": "Tea"}]},
                           {"m.id": "coffee", "m.text": [{"body": "Coffee"}]}]},
    "m.text": [{"body": "Tea or coffee?\n1. Tea\n2. Coffee"}],
}
UNSTABLE = {
    "org.matrix.msc3381.poll.start": {
        "kind": "org.matrix.msc3381.poll.undisclosed", "max_selections": 2,
        "question": {"org.matrix.msc1767.text": "Which days?"},
        "answers": [{"id": "1", "org.matrix.msc1767.text": "Monday"},
                    {"id": "2", "org.matrix.msc1767.text": "Friday"}]},
    "org.matrix.msc1767.text": "Which days?\n1. Monday\n2. Friday",
    "body": "Which days?\n1. Monday\n2. Friday",
}


async def test_both_poll_event_types_are_read_once_each(synapse: Hs, room: Room,
                                                       tmp_path: Path) -> None:
    run = await start_adapter(bot_account(synapse), room.room_id, tmp_path)
    try:
        a = await room.alice.room_send(room.room_id, "m.poll.start", STABLE)
        b = await room.bob.room_send(room.room_id, "org.matrix.msc3381.poll.start", UNSTABLE)
        evs = await run.ctx.wait_for(2, 60)
        polls = {e.native_id: e for e in evs if isinstance(e, Posted)}
        stable, unstable = polls[a.event_id], polls[b.event_id]
        assert stable.poll is not None and unstable.poll is not None
        assert to_plain(stable.text) == "Tea or coffee?"  # the fallback is not doubled
        assert [o.title for o in stable.poll.options] == ["Tea", "Coffee"]
        assert not stable.poll.multiple
        assert to_plain(unstable.text) == "Which days?"
        assert [o.title for o in unstable.poll.options] == ["Monday", "Friday"]
        assert unstable.poll.multiple
        assert stable.author.handle == "@alice:test.local"
    finally:
        await run.stop()


async def test_a_poll_and_a_quote_go_into_a_room_as_text_with_a_blockquote(
        synapse: Hs, room: Room, tmp_path: Path) -> None:
    run = await start_adapter(bot_account(synapse), room.room_id, tmp_path)
    try:
        p = Post(id=new_post_id(), community="kmers", origin_channel=ChannelKey("kmers/masto"),
                 origin_native_id=NativeId("77"), permalink="https://masto.example/@carol/77",
                 author=Author(platform="mastodon", handle="@carol@masto.example",
                               display_name="Carol"),
                 text=RichText.plain("vote please"),
                 poll=Poll(options=(PollOption(title="Yes"), PollOption(title="No")),
                           ends_at=datetime(2026, 12, 10, 18, 0, tzinfo=UTC)),
                 quote=QuotedPost(url="https://bsky.app/profile/dan.test/post/3k",
                                  network="Bluesky",
                                  author=Author(platform="bluesky", handle="dan.test",
                                                display_name="Dan"),
                                  text=RichText.plain("the quoted words")))
        key = ChannelKey("kmers/mx")
        [rendered] = render(p, Target(caps=run.adapter.capabilities(key), hashtag="kmers"),
                            "Mastodon")
        d = new_delivery_id()
        await run.adapter.send(SendCreate(delivery_id=d, idempotency_key=f"{d}.0", channel=key,
                                          post=p, rendered=rendered))
        bot = synapse.user("bridgebot")

        async def copy() -> dict | None:  # type: ignore[type-arg]
            evs = await room_events(synapse, room.room_id, bot.access_token,
                                    types=("m.room.message", "m.poll.start",
                                           "org.matrix.msc3381.poll.start"))
            return next((e for e in evs if e["sender"] == bot.user_id), None)

        ev = await eventually(copy, 60)
        assert ev["type"] == "m.room.message"  # never a native poll
        html = ev["content"]["formatted_body"]
        assert "<blockquote><p>Quoting Dan on Bluesky:</p><p>the quoted words</p>" in html
        assert "Poll: 1) Yes 2) No — ends 10 Dec 18:00 UTC; vote on" in ev["content"]["body"]
    finally:
        await run.stop()
