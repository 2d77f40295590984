"""``check --online`` for email channels, against the real Dovecot and the aiosmtpd list:
the folder examined read-only, the list tried as a recipient without sending."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aioimaplib
import pytest
from aiosmtpd.controller import Controller

from adapters.email import EmailFactory
from adapters.email.client import (
    decode_mailbox,
    imap_connect,
    imap_folders,
    imap_select,
    mailbox_arg,
)
from adapters.email.config import EmailAccount, EmailChannel, MailServer
from adapters.email.sandbox import EmailSandbox
from adapters.email.testserver import free_port
from bridge.contract.adapter import ChannelCheck, ChannelSpec
from bridge.contract.model import ChannelKey
from bridge.contract.services import Services

ME = "bridge@bridge.test"


def spec(name: str, direction: str = "both", **opts: Any) -> ChannelSpec:
    opts.setdefault("list", "kmers@lists.test")
    return ChannelSpec(key=ChannelKey(f"kmers/{name}"), community="kmers", hashtag="kmers",
                       direction=direction, options=EmailChannel(**opts))  # type: ignore[arg-type]


def account(sb: EmailSandbox, **over: Any) -> EmailAccount:
    return EmailAccount(**{**sb.account_config(), **over})


async def check(acc: EmailAccount, *specs: ChannelSpec) -> dict[ChannelKey, ChannelCheck]:
    return await EmailFactory().check_channels(acc, specs, None, Services())  # type: ignore[arg-type]


async def examined(sb: EmailSandbox) -> tuple[list[str], list[str]]:
    """INBOX as another client sees it now, read-only: the EXAMINE reply's lines
    and each message's flags."""
    client = await imap_connect(MailServer(**sb.account_config()["imap"]))
    try:
        resp = await client.examine("INBOX")
        client.protocol.state = aioimaplib.SELECTED
        fetched = await client.fetch("1:*", "(FLAGS)")
        flags = [bytes(x).decode() for x in fetched.lines[:-1]]
        return [bytes(x).decode() for x in resp.lines], flags
    finally:
        await client.logout()


async def folders(sb: EmailSandbox) -> list[str]:
    client = await imap_connect(MailServer(**sb.account_config()["imap"]))
    try:
        resp = await client.list('""', "*")
        # (\HasNoChildren) "." "Old lists"
        return sorted(bytes(x).decode().split('"."', 1)[1].strip().strip('"')
                      for x in resp.lines[:-1])
    finally:
        await client.logout()


async def test_reports_the_folder_and_the_list_read_only_and_sends_nothing(
        mail: EmailSandbox) -> None:
    """Counts and UIDNEXT from EXAMINE, the list's mail found by its List-Id; the
    messages keep \\Recent (EXAMINE, never SELECT) and stay unseen; no mail is sent."""
    await mail.post_as_member("Alice", "first")
    await mail.post_as_member("Bob", "second")
    before, posted = len(mail.dovecot.messages("reader")), len(mail.list.received)
    got = await check(account(mail), spec("mail"))
    c = got[ChannelKey("kmers/mail")]
    assert c.ok, c
    imap, smtp = mail.dovecot.imap_port, mail.list.port
    assert c.reads == (f"folder INBOX on 127.0.0.1:{imap} (examined read-only: 2 messages, "
                       "UIDNEXT 3): 2 mails from the list (List-Id kmers.lists.test), the "
                       "newest UID 2")
    assert c.writes == (f"posts to kmers@lists.test as {ME} via SMTP 127.0.0.1:{smtp} (the "
                        "recipient was accepted: 250 OK; nothing was sent)")
    assert c.warnings == () and c.error == ""
    lines, flags = await examined(mail)
    assert "2 RECENT" in lines, lines  # a SELECT would have taken \Recent away
    assert len(flags) == 2 and not any("\\Seen" in f for f in flags), flags
    assert len(mail.list.received) == posted  # RCPT TO, then RSET: no DATA
    assert len(mail.dovecot.messages("reader")) == before


async def test_a_missing_folder_fails_naming_the_folders_there(mail: EmailSandbox) -> None:
    client = await imap_connect(MailServer(**mail.account_config()["imap"]))
    for name in ("Lists", "Archive", '"Old lists"'):
        assert (await client.create(name)).result == "OK"
    await client.logout()
    c = (await check(account(mail, folder="lists"), spec("mail")))[ChannelKey("kmers/mail")]
    assert not c.ok and c.reads == ""
    assert c.error == (f'IMAP 127.0.0.1:{mail.dovecot.imap_port}: folder "lists" does not '
                       'exist; the folders there are: INBOX, Archive, Lists, "Old lists". '
                       'Did you mean "Lists"? Set folder = "Lists" in the account'), c.error
    c = (await check(account(mail, folder="Zzz"), spec("mail")))[ChannelKey("kmers/mail")]
    assert "the folders there are: INBOX, Archive, Lists" in c.error
    assert "Did you mean" not in c.error
    assert "Set the account's folder to the one the list's mail is delivered to" in c.error
    assert await folders(mail) == ["Archive", "INBOX", "Lists", "Old lists"]  # none created


async def test_no_list_mail_yet_or_another_list_id_are_warnings(mail: EmailSandbox) -> None:
    c = (await check(account(mail), spec("mail")))[ChannelKey("kmers/mail")]
    assert c.ok and c.reads.endswith("(examined read-only: 0 messages, UIDNEXT 1): no list "
                                      "mail yet")
    assert c.warnings == ("INBOX is empty: no mail from kmers@lists.test has arrived yet; "
                          f"is {ME} subscribed to the list?",)

    direct = EmailMessage()
    direct["From"], direct["To"], direct["Subject"] = "a@members.test", ME, "hi"
    direct.set_content("not list mail\n")
    mail.dovecot.deliver(["bridge"], direct.as_bytes())
    c = (await check(account(mail), spec("mail")))[ChannelKey("kmers/mail")]
    assert c.ok and c.reads.endswith("1 message, UIDNEXT 2): no mail with List-Id "
                                      "kmers.lists.test")
    assert c.warnings == (f"none of the 1 message in INBOX is from or to kmers@lists.test: "
                          f"is {ME} subscribed to the list, and is its mail delivered to "
                          "INBOX (not filed into another folder)?",)

    await mail.post_as_member("Alice", "hello")
    c = (await check(account(mail), spec("mail", list_id="kmers.example.org")))[
        ChannelKey("kmers/mail")]
    assert c.ok and c.warnings == (
        "1 mail from or to kmers@lists.test in INBOX carries List-Id kmers.lists.test, not "
        "kmers.example.org: only mail with the channel's List-Id is relayed; set list_id = "
        '"kmers.lists.test" for this channel',)


async def test_a_refused_recipient_or_sender_fails_with_the_reply_per_channel(
        mail: EmailSandbox) -> None:
    """Each channel its own transaction in one session: a refused one does not spoil
    the next; nothing is sent."""
    mail.list.posters = {"alice@members.test"}
    got = await check(account(mail), spec("members", "out"), spec("typo", "out",
                      list="kmerz@lists.test"), spec("other", "out", list="x@members.test"))
    where = f"SMTP 127.0.0.1:{mail.list.port}"
    c = got[ChannelKey("kmers/members")]
    assert not c.ok and c.writes == "" and c.reads == ""
    assert c.error == (
        f"{where} refused kmers@lists.test as recipient of mail from {ME} (RCPT TO): 550 "
        "5.7.1 <kmers@lists.test>: Recipient address rejected: kmers@lists.test accepts "
        f"posts from its members only, not from <{ME}>. Fix: the list must accept posts "
        f"from {ME} (subscribe it, or add it to the list's allowed senders)"), c.error
    c = got[ChannelKey("kmers/typo")]
    assert not c.ok and c.error == (
        f"{where} refused kmerz@lists.test as recipient of mail from {ME} (RCPT TO): 550 "
        "5.1.1 <kmerz@lists.test>: Recipient address rejected: User unknown. Fix: "
        "kmerz@lists.test is not an address the server knows: set the channel's list to "
        "the list's posting address"), c.error
    assert got[ChannelKey("kmers/other")].ok  # after two refusals, in the same session
    assert mail.list.received == []

    mail.list.senders = {"someone@bridge.test"}
    c = (await check(account(mail), spec("mail", "out")))[ChannelKey("kmers/mail")]
    assert not c.ok and c.error == (
        f"{where} refused the bridge's address {ME} as sender (MAIL FROM): 553 5.7.1 "
        f"<{ME}>: Sender address rejected: not owned by user. Fix: the account's address "
        "must be one this server (no login) may send as (change address, or allow it on "
        "the server)"), c.error


async def test_the_smtp_conversation_ends_before_data(
        mail: EmailSandbox, smtp_answers: Callable[..., int]) -> None:
    """EHLO, then per channel MAIL FROM the bridge, RCPT TO its list and RSET; QUIT."""
    port = smtp_answers(rcpt="250 OK")
    acc = account(mail, smtp={"host": "127.0.0.1", "port": port, "security": "none"})
    got = await check(acc, spec("a", "out"), spec("b", list="other@lists.test"),
                      spec("c", "in"))
    assert all(c.ok for c in got.values()), got
    assert smtp_answers.heard[port].said == [  # type: ignore[attr-defined]
        "EHLO", f"MAIL FROM {ME}", "RCPT TO kmers@lists.test", "RSET",
        f"MAIL FROM {ME}", "RCPT TO other@lists.test", "RSET", "QUIT"]


async def test_a_temporary_refusal_is_a_warning(mail: EmailSandbox,
                                                smtp_answers: Callable[..., int]) -> None:
    port = smtp_answers(rcpt="450 4.2.0 <kmers@lists.test>: Recipient address rejected: "
                        "Greylisted, see https://postgrey.example")
    acc = account(mail, smtp={"host": "127.0.0.1", "port": port, "security": "none"})
    c = (await check(acc, spec("mail", "out")))[ChannelKey("kmers/mail")]
    assert c.ok and c.writes == (f"posts to kmers@lists.test as {ME} via SMTP "
                                 f"127.0.0.1:{port} (not confirmed)")
    assert c.warnings == (f"SMTP 127.0.0.1:{port} deferred RCPT TO with a temporary refusal: "
                          "450 4.2.0 <kmers@lists.test>: Recipient address rejected: "
                          "Greylisted, see https://postgrey.example; the bridge retries such "
                          "sends, but whether the list accepts them is not known: run the "
                          "check again later",)


async def test_each_direction_asks_only_its_own_server(mail: EmailSandbox) -> None:
    """A reading channel needs no SMTP, a writing one no folder."""
    closed = free_port()
    acc = account(mail, smtp={"host": "127.0.0.1", "port": closed, "security": "none",
                              "timeout": 2}, folder="Nope")
    got = await check(acc, spec("in", "in"), spec("out", "out"), spec("both"))
    assert not got[ChannelKey("kmers/in")].ok
    assert got[ChannelKey("kmers/in")].error.startswith(
        f'IMAP 127.0.0.1:{mail.dovecot.imap_port}: folder "Nope" does not exist')
    out = got[ChannelKey("kmers/out")]
    assert not out.ok and out.error.startswith(f"SMTP 127.0.0.1:{closed}: connect: ")
    both = got[ChannelKey("kmers/both")]
    assert both.error == got[ChannelKey("kmers/in")].error + "; " + out.error

    got = await check(account(mail, smtp={"host": "127.0.0.1", "port": closed,
                                          "security": "none"}), spec("in", "in"))
    assert got[ChannelKey("kmers/in")].ok and got[ChannelKey("kmers/in")].writes == ""
    got = await check(account(mail, folder="Nope"), spec("out", "out"))
    assert got[ChannelKey("kmers/out")].ok and got[ChannelKey("kmers/out")].reads == ""


async def test_each_step_is_bounded_by_the_accounts_timeouts(
        mail: EmailSandbox, smtp_answers: Callable[..., int],
        stalling_proxy: Callable[..., Any]) -> None:
    """A server that stops answering mid-way: the step it stopped at is named, within
    the account's timeout, not the check's."""
    port = smtp_answers(rcpt=None)  # never answers RCPT TO
    imap = await stalling_proxy(mail.dovecot.imap_port, b" EXAMINE ")
    acc = account(mail, smtp={"host": "127.0.0.1", "port": port, "security": "none",
                              "timeout": 1},
                  imap={**mail.account_config()["imap"], "port": imap, "timeout": 1})
    async with asyncio.timeout(10):
        got = await check(acc, spec("mail"))
    c = got[ChannelKey("kmers/mail")]
    assert not c.ok
    assert c.error == (f"IMAP 127.0.0.1:{imap}: EXAMINE INBOX: no answer within 1s; "
                       f"SMTP 127.0.0.1:{port}: RCPT TO: no answer within 1s"), c.error


async def test_hashbridge_check_online_prints_each_channel(mail: EmailSandbox,
                                                           tmp_path: Path) -> None:
    """The whole command: what each channel reads and writes, a refused list FAILED and
    exit 1."""
    await mail.post_as_member("Alice", "hello")
    mail.list.posters = {"alice@members.test"}
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"""
[bridge]
data_dir = "data"

[accounts.mail]
platform = "email"
address = "{ME}"
imap = {{ host = "127.0.0.1", port = {mail.dovecot.imap_port}, username = "bridge", \
password = "pw-bridge", security = "none" }}
smtp = {{ host = "127.0.0.1", port = {mail.list.port}, security = "none" }}

[[communities]]
name = "kmers"
hashtag = "kmers"

[accounts.s]
platform = "sandbox"
dir = "nets"

[[communities.channels]]
account = "mail"
list = "kmers@lists.test"

[[communities.channels]]
account = "s"
network = "lobby"
""")
    cfg.chmod(0o600)
    res = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "bridge.cli", "check", "-c", str(cfg),
                         "--online", "--timeout", "20"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, env=dict(os.environ))
    out = res.stdout
    assert res.returncode == 1, out + res.stderr
    assert re.search(
        r"  kmers/mail: will read and write kmers@lists\.test\n"
        r"    reads: folder INBOX on 127\.0\.0\.1:\d+ \(examined read-only: 1 message, "
        r"UIDNEXT 2\): 1 mail from the list \(List-Id kmers\.lists\.test\), the newest UID 1\n"
        r"    FAILED: SMTP 127\.0\.0\.1:\d+ refused kmers@lists\.test as recipient of mail "
        r"from bridge@bridge\.test \(RCPT TO\): 550 5\.7\.1 ", out), out
    assert "online check: 1 account FAILED" in out
    assert len(mail.list.received) == 1  # Alice's post only

    mail.list.posters = None
    res = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "bridge.cli", "check", "-c", str(cfg),
                         "--online"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "    writes: posts to kmers@lists.test as bridge@bridge.test via SMTP " \
           in res.stdout
    assert "every account logged in, every channel checked usable" in res.stdout


# ------------------------------------------------------------------ servers that misbehave
class _Answers:
    """An SMTP server whose RCPT TO reply is fixed (None: never answered); ``said``
    is the conversation as it heard it."""

    def __init__(self, rcpt: str | None) -> None:
        self.rcpt = rcpt
        self.said: list[str] = []

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        self.said.append("EHLO")
        session.host_name = hostname
        return responses

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        self.said.append(f"MAIL FROM {address}")
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        self.said.append(f"RCPT TO {address}")
        if self.rcpt is None:
            await asyncio.sleep(3600)
        if (self.rcpt or "250").startswith("250"):
            envelope.rcpt_tos.append(address)
        return self.rcpt or "250 OK"

    async def handle_RSET(self, server: Any, session: Any, envelope: Any) -> str:
        self.said.append("RSET")
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.said.append("DATA")
        return "250 OK"

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        self.said.append("QUIT")
        return "221 Bye"


@pytest.fixture
def smtp_answers() -> Any:
    """``smtp_answers(rcpt=...)`` starts an :class:`_Answers` server; its port, and
    ``smtp_answers.heard[port]`` the handler."""
    started: list[Controller] = []

    def start(*, rcpt: str | None) -> int:
        port = free_port()
        handler = _Answers(rcpt)
        ctl = Controller(handler, hostname="127.0.0.1", port=port)
        ctl.start()
        started.append(ctl)
        heard[port] = handler
        return port

    heard: dict[int, _Answers] = {}
    start.heard = heard  # type: ignore[attr-defined]

    yield start
    for ctl in started:
        ctl.stop()


@pytest.fixture
async def stalling_proxy() -> AsyncIterator[Callable[..., Any]]:
    """A TCP proxy that swallows, and never forwards, the first client line holding
    *marker* and everything after it: the server seems to hang at that command."""
    servers: list[asyncio.Server] = []
    tasks: set[asyncio.Task[None]] = set()

    async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter,
                   marker: bytes | None) -> None:
        with contextlib.suppress(OSError):
            while line := await r.readline():
                if marker is not None and marker in line:
                    await asyncio.sleep(3600)
                w.write(line)
                await w.drain()
        w.close()

    async def start(port: int, marker: bytes) -> int:
        async def handle(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
            sr, sw = await asyncio.open_connection("127.0.0.1", port)
            for t in (pipe(cr, sw, marker), pipe(sr, cw, None)):
                task = asyncio.create_task(t)
                tasks.add(task)
                task.add_done_callback(tasks.discard)

        srv = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(srv)
        return int(srv.sockets[0].getsockname()[1])

    yield start
    for t in list(tasks):
        t.cancel()
    for srv in servers:
        srv.close()


async def test_a_folder_with_a_space_or_accents_is_opened(mail: EmailSandbox) -> None:
    """The folder is sent quoted and in modified UTF-7 (RFC 3501 5.1.3): unquoted, "Old
    lists" was two arguments and SELECT/EXAMINE failed; raw UTF-8 is refused by servers
    without UTF8=ACCEPT."""
    client = await imap_connect(MailServer(**mail.account_config()["imap"]))
    for name in ('"Old lists"', '"Listes caf&AOk-"'):
        assert (await client.create(name)).result == "OK"
    try:
        assert await imap_select(client, "Listes café") > 0
        assert "Listes café" in await imap_folders(client)
    finally:
        await client.logout()
    for folder in ("Old lists", "Listes café"):
        c = (await check(account(mail, folder=folder), spec("mail")))[ChannelKey("kmers/mail")]
        assert c.error == "" and c.reads.startswith(f"folder {folder} on "), c
    c = (await check(account(mail, folder="Listes cafe"), spec("mail")))[ChannelKey("kmers/mail")]
    assert '"Listes café"' in c.error, c.error  # named as the reader wrote it


@pytest.mark.parametrize(("name", "wire"), [
    ("INBOX", '"INBOX"'), ("Old lists", '"Old lists"'), ("Listes café", '"Listes caf&AOk-"'),
    ("a&b", '"a&-b"'), ("日本語", '"&ZeVnLIqe-"'), ('say "hi"', '"say \\"hi\\""')])
def test_mailbox_names_on_the_wire(name: str, wire: str) -> None:
    assert mailbox_arg(name) == wire
    assert decode_mailbox(wire[1:-1].replace('\\"', '"')) == name
