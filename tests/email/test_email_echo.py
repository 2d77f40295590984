"""Which list mail is the bridge's own: known by the exact Message-IDs it sent, never
by their domain (a member on the bridge's own mail domain is a member), against the
real Dovecot and the mini list."""

from __future__ import annotations

import email.policy
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path

from mailhelp import CHANNEL, make_adapter, make_op, wait_until

from adapters.email.sandbox import EmailSandbox
from adapters.email.store import EmailStore
from adapters.email.testserver import LIST_DOMAIN
from bridge.contract.adapter import SendEdit, TransientError
from bridge.contract.model import DeliveryId, NativeId, Posted
from bridge.contract.testing import MemoryAccountState
from bridge.contract.textconv import to_plain

THUNDERBIRD_ID = "0b6e1f2a-3c4d-4e5f-8a9b-1c2d3e4f5a6b@bridge.test"
APPLE_MAIL_ID = "8C1E4F2A-7B3D-4E9F-A1B2-C3D4E5F6A7B8@bridge.test"


def _member_mail(sb: EmailSandbox, *, sender: str, message_id: str, body: str) -> bytes:
    """A post as the member's own client writes it (its Message-ID on its domain)."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = sb.list.address
    msg["Subject"] = "A1 from the office"
    msg["Message-ID"] = f"<{message_id}>"
    msg["Date"] = formatdate()
    msg.set_content(body)
    return msg.as_bytes(policy=email.policy.SMTP)


async def test_member_on_the_bridges_domain_is_relayed(mail: EmailSandbox, tmp_path: Path,
                                                       running) -> None:
    adapter, ctx = make_adapter(mail, tmp_path / "data")
    assert adapter.account.message_domain == "bridge.test"
    await running(adapter, ctx)
    mail.list.distribute(_member_mail(mail, sender="Carol <carol@bridge.test>",
                                      message_id=THUNDERBIRD_ID, body="A1: sourdough"))
    mail.list.distribute(_member_mail(mail, sender="Dan <dan@bridge.test>",
                                      message_id=APPLE_MAIL_ID, body="A1: rye"))
    events = await ctx.wait_for(2, timeout=5)
    assert [e.native_id for e in events] == [THUNDERBIRD_ID, APPLE_MAIL_ID]
    assert all(isinstance(e, Posted) for e in events)
    assert "A1: sourdough" in to_plain(events[0].text)  # type: ignore[union-attr]


async def _barrier(mail: EmailSandbox, ctx, n: int) -> list[str]:
    """A member's post after everything else: once it is read, so is all before it
    (UID order).  Returns the ids of every event so far."""
    mid = await mail.post_as_member("Alice", f"barrier {n}")
    await ctx.wait_for(n, timeout=10)
    ids = [str(e.native_id) for e in ctx.events]
    assert ids[-1] == mid
    return ids


async def test_own_copies_are_known_by_id_when_the_list_strips_our_stamps(
        mail: EmailSandbox, tmp_path: Path, running) -> None:
    # A list that drops X- headers and rewrites From: the echo looks like any
    # member's mail but for its Message-ID.  Corrections are echoed too.
    mail.list.scrub = True
    adapter, ctx = make_adapter(mail, tmp_path / "data", corrections="mail")
    await running(adapter, ctx)
    op = make_op("Relayed from Mastodon #kmers", key="d1")
    res = await adapter.send(op)
    await adapter.send(SendEdit(
        delivery_id=DeliveryId("e1"), idempotency_key="e1", channel=CHANNEL, post=op.post,
        native_id=NativeId(res.native_id or ""),
        rendered=op.rendered.__class__(text=op.rendered.text, plain="now edited", html="",
                                       markdown="")))
    echo = mail.dovecot.messages("bridge")[-1]
    assert echo["X-Hashbridge-Delivery"] is None and echo["X-Loop"] is None
    assert echo["From"].addresses[0].addr_spec == mail.list.address
    ids = await _barrier(mail, ctx, 1)
    assert "d1@bridge.test" not in ids and "e1@bridge.test" not in ids and len(ids) == 1


async def test_own_copy_read_after_a_restart_is_not_relayed(mail: EmailSandbox,
                                                            tmp_path: Path, running) -> None:
    mail.list.scrub = True
    adapter, ctx = make_adapter(mail, tmp_path / "data")
    r = await running(adapter, ctx)
    mail.list.subscribers = ["reader"]  # the echo to the bridge comes later
    await adapter.send(make_op("sent before the restart", key="before"))
    await r.stop()
    mail.list.subscribers = ["bridge", "reader"]
    [copy] = [m for m in mail.dovecot.messages("reader")
              if "before@bridge.test" in str(m["Message-ID"])]
    again, _ = make_adapter(mail, tmp_path / "data")
    r2 = await running(again, ctx)  # the same account state, a new adapter
    # Delivered as the list delivers (its envelope sender), after the restart.
    del copy["Return-Path"]
    mail.dovecot.deliver(["bridge"], copy.as_bytes(policy=email.policy.SMTP),
                         mail_from=f"{mail.list.name}-bounces@{LIST_DOMAIN}")
    ids = await _barrier(mail, ctx, 1)
    assert len(ids) == 1 and not r2.task.done()


async def test_own_copy_of_a_retried_send_is_not_relayed(mail: EmailSandbox, tmp_path: Path,
                                                         running) -> None:
    mail.list.scrub = True
    adapter, ctx = make_adapter(mail, tmp_path / "data")
    await running(adapter, ctx)
    op = make_op("second time lucky", key="k-retry")
    mail.list.stop()  # the first attempt fails
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
    await wait_until(lambda: any("k-retry@bridge.test" in str(m["Message-ID"])
                                 for m in mail.dovecot.messages("bridge")))
    ids = await _barrier(mail, ctx, 1)
    assert len(ids) == 1


async def test_digest_echo_is_not_relayed(mail: EmailSandbox, tmp_path: Path,
                                          running) -> None:
    mail.list.scrub = True
    adapter, ctx = make_adapter(mail, tmp_path / "data", digest_hours=1.0 / 3600)
    await running(adapter, ctx)
    await adapter.send(make_op("into the digest", key="g1"))
    await wait_until(lambda: any("digest" in str(m["Subject"])
                                 for m in mail.dovecot.messages("bridge")), 10)
    ids = await _barrier(mail, ctx, 1)
    assert len(ids) == 1


async def test_a_copy_an_earlier_version_sent_is_known_by_its_exact_id() -> None:
    # Before the send journal, only the attempt key was kept: its id was key@domain.
    state = MemoryAccountState()
    store = EmailStore(state)
    assert await store.attempt("d-41", 1.0) is False
    assert await store.sent_by_us("d-41@bridge.test", "bridge.test")
    assert not await store.sent_by_us("d-41@members.test", "bridge.test")
    assert not await store.sent_by_us(THUNDERBIRD_ID, "bridge.test")
    await store.sending(THUNDERBIRD_ID.replace("0b6e", "ffff"))
    assert not await store.sent_by_us(THUNDERBIRD_ID, "bridge.test")
