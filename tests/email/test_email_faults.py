"""Failure mapping, corrections and digests against real servers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from mailhelp import CHANNEL, make_adapter, make_op, wait_until

from adapters.email.convert import msgid
from adapters.email.sandbox import EmailSandbox
from adapters.email.testserver import free_port
from bridge.contract.adapter import (
    AuthError,
    Health,
    PermanentError,
    SendDelete,
    SendEdit,
    TransientError,
)
from bridge.contract.model import DeliveryId, NativeId


class Answer:
    """An SMTP server that answers DATA with a fixed reply and counts attempts."""

    def __init__(self, reply: str) -> None:
        self.reply, self.attempts = reply, 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.attempts += 1
        return self.reply


def _auth(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and data.password == b"right"
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp_server() -> Iterator[Any]:
    started: list[Controller] = []

    def start(handler: Any, **kw: Any) -> int:
        port = free_port()
        ctl = Controller(handler, hostname="127.0.0.1", port=port, **kw)
        ctl.start()
        started.append(ctl)
        return port

    yield start
    for ctl in started:
        ctl.stop()


@pytest.mark.parametrize("reply,error", [
    ("451 4.3.0 try later", TransientError),
    ("421 4.7.0 too busy", TransientError),
    ("550 5.7.1 not a member", PermanentError),
    ("554 5.6.0 message rejected", PermanentError),
])
async def test_smtp_replies_map_to_error_kinds(mail: EmailSandbox, tmp_path: Path, running,
                                               smtp_server, reply: str, error: type) -> None:
    handler = Answer(reply)
    port = smtp_server(handler)
    adapter, ctx = make_adapter(mail, tmp_path / "d",
                                account={"smtp": {"host": "127.0.0.1", "port": port,
                                                  "security": "none"}})
    await running(adapter, ctx)
    with pytest.raises(error) as exc:
        await adapter.send(make_op("hello", key="k1"))
    assert reply.split()[0] in str(exc.value) and handler.attempts == 1  # exactly one attempt


async def test_smtp_down_is_transient(mail: EmailSandbox, tmp_path: Path, running) -> None:
    adapter, ctx = make_adapter(mail, tmp_path / "d", account={
        "smtp": {"host": "127.0.0.1", "port": free_port(), "security": "none",
                 "timeout": 3}})
    await running(adapter, ctx)
    with pytest.raises(TransientError):
        await adapter.send(make_op("hello", key="k1"))


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_smtp_auth(mail: EmailSandbox, tmp_path: Path, running, smtp_server,
                         caplog: pytest.LogCaptureFixture) -> None:
    handler = Answer("250 OK")
    port = smtp_server(handler, authenticator=_auth, auth_require_tls=False,
                       auth_required=True)
    acc = {"host": "127.0.0.1", "port": port, "security": "none", "username": "bridge"}
    bad, ctx = make_adapter(mail, tmp_path / "d1",
                            account={"smtp": {**acc, "password": "wrong-secret"}})
    await running(bad, ctx)
    with pytest.raises(AuthError):
        await bad.send(make_op("hello", key="k1"))
    good, ctx2 = make_adapter(mail, tmp_path / "d2", account={"smtp": {**acc,
                                                                      "password": "right"}})
    await running(good, ctx2)
    await good.send(make_op("hello", key="k2"))
    assert handler.attempts == 1
    assert "wrong-secret" not in caplog.text and "wrong-secret" not in repr(bad.account)


async def test_imap_bad_password_is_auth_error(mail: EmailSandbox, tmp_path: Path) -> None:
    cfg = mail.account_config()
    adapter, ctx = make_adapter(mail, tmp_path / "d",
                                account={"imap": {**cfg["imap"], "password": "nope"}})
    with pytest.raises(ExceptionGroup) as eg:
        await asyncio.wait_for(adapter.run(ctx), 10)
    assert eg.group_contains(AuthError)
    assert ctx.health in (Health.BAD_CREDENTIALS, Health.STOPPED)


async def test_corrections_mail_threads_to_the_original(mail: EmailSandbox, tmp_path: Path,
                                                        running) -> None:
    adapter, ctx = make_adapter(mail, tmp_path / "d", corrections="mail")
    await running(adapter, ctx)
    op = make_op("Meet at 5pm", key="orig")
    res = await adapter.send(op)
    edit = SendEdit(delivery_id=DeliveryId("e1"), idempotency_key="e1", channel=CHANNEL,
                    post=op.post, native_id=NativeId(res.native_id or ""),
                    rendered=op.rendered.__class__(text=op.rendered.text, plain="Meet at 6pm",
                                                   html="", markdown=""))
    delete = SendDelete(delivery_id=DeliveryId("x1"), idempotency_key="x1", channel=CHANNEL,
                        post=op.post, native_id=NativeId(res.native_id or ""))
    assert (await adapter.send(edit)).native_id is None
    await adapter.send(delete)
    msgs = mail.dovecot.messages("reader")
    assert len(msgs) == 3
    for m in msgs[1:]:
        assert msgid(m["In-Reply-To"]) == "orig@bridge.test"
        assert str(m["Subject"]).endswith("Re: Meet at 5pm")
    assert "It now reads:\n\nMeet at 6pm" in msgs[1].get_body(("plain",)).get_content()
    assert "deleted" in msgs[2].get_body(("plain",)).get_content()


async def test_corrections_ignore_sends_nothing(mail: EmailSandbox, tmp_path: Path,
                                                running) -> None:
    adapter, ctx = make_adapter(mail, tmp_path / "d")
    await running(adapter, ctx)
    op = make_op("x y", key="o")
    res = await adapter.send(op)
    await adapter.send(SendDelete(delivery_id=DeliveryId("x"), idempotency_key="x",
                                  channel=CHANNEL, post=op.post,
                                  native_id=NativeId(res.native_id or "")))
    assert len(mail.dovecot.messages("reader")) == 1
    caps = adapter.capabilities(CHANNEL)
    assert not caps.edit and not caps.delete and caps.reply


async def test_digest_survives_restart_and_is_sent_once(mail: EmailSandbox, tmp_path: Path,
                                                        running) -> None:
    hours = 2.5 / 3600  # a 2.5 s period
    adapter, ctx = make_adapter(mail, tmp_path / "d", digest_hours=hours)
    r = await running(adapter, ctx)
    a = await adapter.send(make_op("Topic one opener", key="a1"))
    b = await adapter.send(make_op("Another topic", key="b1", author="Bob"))
    c = await adapter.send(make_op("reply in topic one", key="c1", reply_to="x@m.test",
                                   parent_subject="Topic one opener", author="Carol"))
    assert a.native_id == b.native_id == c.native_id  # all map to the coming digest
    await r.stop()  # down before the period ends: the queue is on disk
    assert mail.dovecot.messages("reader") == []
    await asyncio.sleep(2.6)
    adapter2, _ = make_adapter(mail, tmp_path / "d", digest_hours=hours)
    await running(adapter2, ctx)
    await wait_until(lambda: len(mail.dovecot.messages("reader")) >= 1, 10)
    await asyncio.sleep(3)  # another period: nothing is sent twice
    [m] = mail.dovecot.messages("reader")
    assert msgid(m["Message-ID"]) == a.native_id
    body = m.get_body(("plain",)).get_content()
    assert body.index("== Topic one opener ==") < body.index("Carol (Mastodon):")
    assert "== Another topic ==" in body and "Bob (Mastodon):" in body
