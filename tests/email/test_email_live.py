"""The adapter against a real Dovecot and the aiosmtpd mini list, both directions."""

from __future__ import annotations

import asyncio
from pathlib import Path

from mailhelp import CHANNEL, make_adapter, make_op, wait_until

from adapters.email.convert import MARKER_HEADER, msgid, msgids
from adapters.email.sandbox import EmailSandbox
from bridge.contract.adapter import TransientError
from bridge.contract.model import Posted
from bridge.contract.textconv import to_plain


async def test_member_post_is_emitted_without_addresses(mail: EmailSandbox, tmp_path: Path,
                                                        running) -> None:
    adapter, ctx = make_adapter(mail, tmp_path / "data")
    await running(adapter, ctx)
    mid = await mail.post_as_member("Alice Liddell", "Hello list\n\nFirst post here.")
    [ev] = await ctx.wait_for(1, timeout=5)
    assert isinstance(ev, Posted)
    assert ev.native_id == mid and ev.channel == CHANNEL
    assert ev.author.display_name == "Alice Liddell"
    assert ev.author.handle.startswith("mail-")
    assert "Hello list" in to_plain(ev.text) and "First post here." in to_plain(ev.text)
    assert "unsubscribe" not in to_plain(ev.text)  # the list footer is gone
    assert "alice.liddell@" not in repr(ev)  # no address leaks, anywhere in the event
    validity, _, uid = ctx.cursors[adapter.cursor_name].partition(":")
    assert validity.isdigit() and int(uid) >= 1


async def test_bridge_post_reaches_list_and_echo_is_dropped(mail: EmailSandbox,
                                                            tmp_path: Path, running) -> None:
    adapter, ctx = make_adapter(mail, tmp_path / "data")
    r = await running(adapter, ctx)
    res = await adapter.send(make_op("Relayed from Mastodon #kmers", key="d1"))
    assert res.native_id == "d1@bridge.test"
    msgs = await mail.messages()
    [m] = [m for m in msgs if m.native_id == "d1@bridge.test"]
    assert m.by_bridge and "Relayed from Mastodon" in m.text
    raw = mail.dovecot.messages("reader")[-1]
    assert raw["From"].addresses[0].display_name == "Alice (Mastodon) via hashbridge"
    assert raw["From"].addresses[0].addr_spec == "bridge@bridge.test"
    assert raw["Reply-To"] == mail.list.address and raw[MARKER_HEADER]
    assert raw["Auto-Submitted"] is None
    assert raw.get_body(("html",)) is not None  # multipart text + HTML
    # The list echoes our post into the bridge's box: the cursor passes it, no event.
    await wait_until(lambda: ctx.cursors[adapter.cursor_name].endswith(":1"), 5)
    assert ctx.events == [] and not r.task.done()


async def test_reply_chain_of_five_is_one_thread(mail: EmailSandbox, tmp_path: Path,
                                                 running) -> None:
    adapter, ctx = make_adapter(mail, tmp_path / "data")
    await running(adapter, ctx)
    m1 = await mail.post_as_member("Alice", "Sourdough starters\n\nWho keeps one?")
    await ctx.wait_for(1)
    b2 = (await adapter.send(make_op("I do, since 2019", key="b2", author="Bob",
                                     reply_to=m1, parent_subject="Sourdough starters"))).native_id
    m3 = await mail.post_as_member("Carol", "What flour?", reply_to=b2)
    [_, e3] = await ctx.wait_for(2)
    assert e3.reply_to_native == b2  # a mail reply to a relayed post threads to it
    b4 = (await adapter.send(make_op("Rye, mostly", key="b4", author="Bob", platform="matrix",
                                     reply_to=m3))).native_id
    m5 = await mail.post_as_member("Alice", "Rye is great", reply_to=b4)
    events = await ctx.wait_for(3)
    assert events[2].reply_to_native == b4

    chain = [m1, b2, m3, b4, m5]
    by_id = {msgid(m["Message-ID"]): m for m in mail.dovecot.messages("reader")}
    assert set(chain) <= set(by_id)
    for i, mid in enumerate(chain[1:], start=1):
        m = by_id[mid]
        assert msgid(m["In-Reply-To"]) == chain[i - 1]
        assert msgids(m["References"]) == chain[:i]
        assert str(m["Subject"]).endswith("Re: Sourdough starters")


async def test_idle_is_reissued_and_still_delivers(mail: EmailSandbox, tmp_path: Path,
                                                   running) -> None:
    adapter, ctx = make_adapter(mail, tmp_path / "data", account={"idle_seconds": 0.5})
    await running(adapter, ctx)
    await asyncio.sleep(2.2)  # several IDLE rounds, each closed with DONE and re-issued
    await mail.post_as_member("Alice", "after idles")
    await ctx.wait_for(1, timeout=5)
    assert "Alice" in ctx.events[0].author.display_name


async def test_imap_restart_mid_burst_loses_and_duplicates_nothing(
        mail: EmailSandbox, tmp_path: Path, running) -> None:
    adapter, ctx = make_adapter(mail, tmp_path / "data")
    await running(adapter, ctx)
    ids = [await mail.post_as_member("Alice", f"burst {i}") for i in range(5)]
    await asyncio.to_thread(mail.dovecot.stop)
    await asyncio.sleep(0.3)
    await asyncio.to_thread(mail.dovecot.start)
    ids += [await mail.post_as_member("Bob", f"burst {i}") for i in range(5, 12)]
    events = await ctx.wait_for(12, timeout=30)
    await asyncio.sleep(1.0)
    assert [e.native_id for e in ctx.events] == ids  # in order, once each
    assert len(events) == 12


async def test_adapter_restart_mid_burst_loses_and_duplicates_nothing(
        mail: EmailSandbox, tmp_path: Path, running) -> None:
    adapter, ctx = make_adapter(mail, tmp_path / "data")
    r = await running(adapter, ctx)
    ids = []
    for i in range(12):
        ids.append(await mail.post_as_member("Alice", f"burst {i}"))
        if i == 4:
            await r.stop()   # the relay goes down mid-burst...
        if i == 8:
            await r.start()  # ...and comes back with its cursor
    await ctx.wait_for(12, timeout=20)
    await asyncio.sleep(1.0)
    assert [e.native_id for e in ctx.events] == ids


async def test_changed_uidvalidity_resyncs_without_flood(mail: EmailSandbox, tmp_path: Path,
                                                         running) -> None:
    for i in range(3):
        await mail.post_as_member("Alice", f"old {i}")
    adapter, ctx = make_adapter(mail, tmp_path / "data")
    ctx.cursors[adapter.cursor_name] = "12345:0"  # a cursor from a renumbered folder
    await running(adapter, ctx)
    await wait_until(lambda: not ctx.cursors[adapter.cursor_name].startswith("12345:"), 5)
    assert ctx.cursors[adapter.cursor_name].endswith(":3")
    new = await mail.post_as_member("Bob", "new one")
    await ctx.wait_for(1)
    await asyncio.sleep(0.8)
    assert [e.native_id for e in ctx.events] == [new]


async def test_first_start_does_not_relay_history(mail: EmailSandbox, tmp_path: Path,
                                                  running) -> None:
    await mail.post_as_member("Alice", "before the bridge existed")
    adapter, ctx = make_adapter(mail, tmp_path / "data")
    await running(adapter, ctx)
    new = await mail.post_as_member("Alice", "after")
    await ctx.wait_for(1)
    assert [e.native_id for e in ctx.events] == [new]


async def test_retry_after_a_lost_250_does_not_send_twice(mail: EmailSandbox,
                                                          tmp_path: Path, running) -> None:
    adapter, ctx = make_adapter(mail, tmp_path / "data")
    await running(adapter, ctx)
    op = make_op("once only", key="k-dup")
    first = await adapter.send(op)
    # The core never saw that result (killed after the server's 250) and retries.
    again = await adapter.send(op)
    assert again.native_id == first.native_id
    assert [m.native_id for m in await mail.messages()].count("k-dup@bridge.test") == 1


async def test_retry_after_a_refused_attempt_does_send(mail: EmailSandbox, tmp_path: Path,
                                                       running) -> None:
    adapter, ctx = make_adapter(mail, tmp_path / "data")
    await running(adapter, ctx)
    op = make_op("second time lucky", key="k-retry")
    mail.list.stop()  # the list server is down: the first attempt fails
    try:
        await adapter.send(op)
        raise AssertionError("send should have failed")
    except TransientError:
        pass
    mail.list.start()
    adapter.account = adapter.account.model_copy(update={"smtp": adapter.account.smtp
                                                         .model_copy(update={
                                                             "port": mail.list.port})})
    await adapter.send(op)
    assert [m.native_id for m in await mail.messages()].count("k-retry@bridge.test") == 1
