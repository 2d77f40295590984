"""The email platform's sandbox: a real IMAP server (Dovecot, or pymap from PyPI when
Dovecot is not installed) plus the aiosmtpd mini list.

The list ``kmers@lists.test`` has two subscribers: ``bridge`` (the bridge's mailbox) and
``reader`` (a member whose maildir is "the platform as people see it": :meth:`messages`
reads it).  Members post by handing mail to the list, as their mail client would.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from adapters.email.convert import MARKER_HEADER, msgid, strip_footer, strip_subject
from adapters.email.testserver import (
    DOMAIN,
    MiniList,
    dovecot_binary,
    mail_server,
    pymap_missing,
)
from bridge.contract.sandbox import (
    Endpoint,
    FailureAnswer,
    Fault,
    PoisonKind,
    SandboxFeatures,
    SandboxMessage,
)

log = logging.getLogger("hashbridge.adapter.email.sandbox")


class EmailSandbox:
    platform = "email"
    # Mail cannot be edited or unsent; list mail carries no bot commands.
    features = SandboxFeatures(member_edits=False, member_deletes=False)

    def __init__(self, workdir: str | Path, *, list_name: str = "kmers",
                 munge_from: bool = False) -> None:
        self.workdir = Path(workdir)
        self.dovecot = mail_server(self.workdir / "dovecot",
                                   {"bridge": "pw-bridge", "reader": "pw-reader"})
        self.list = MiniList(self.dovecot, name=list_name, munge_from=munge_from)

    @property
    def kind(self) -> str:
        """What the demo's summary calls it."""
        return f"real IMAP server ({self.dovecot.kind}) + SMTP list (aiosmtpd)"

    @staticmethod
    def available() -> str:
        """"" when the sandbox can run here, else the reason it cannot and what to install."""
        import importlib.util

        if importlib.util.find_spec("aiosmtpd") is None:
            return "aiosmtpd is not installed (pip install 'hashbridge[demo]')"
        if dovecot_binary():
            return ""
        why = pymap_missing()
        return f"Dovecot is not installed and {why}" if why else ""

    async def start(self) -> None:
        await asyncio.to_thread(self.dovecot.start)
        await asyncio.to_thread(self.list.start)

    async def stop(self) -> None:
        t = time.monotonic()
        await asyncio.to_thread(self.list.stop)
        t2 = time.monotonic()
        await asyncio.to_thread(self.dovecot.stop)
        log.debug("stopped: list %.2fs, dovecot %.2fs", t2 - t, time.monotonic() - t2)

    def account_config(self) -> dict[str, Any]:
        return {
            "address": f"bridge@{DOMAIN}",
            "imap": {"host": "127.0.0.1", "port": self.dovecot.imap_port,
                     "username": "bridge", "password": "pw-bridge", "security": "none"},
            "smtp": {"host": "127.0.0.1", "port": self.list.port, "security": "none"},
            "idle_seconds": 60,
        }

    def channel_config(self) -> dict[str, Any]:
        return {"list": self.list.address, "subject_tag": self.list.name}

    async def post_as_member(self, author: str, text: str,
                             reply_to: str | None = None, *, at: float | None = None) -> str:
        """*at*: posted then, in the past (its INTERNALDATE in the bridge's box)."""
        slug = re.sub(r"[^a-z0-9]+", ".", author.lower()).strip(".") or "member"
        subject = next((ln for ln in text.split("\n") if ln.strip()), "post")[:60]
        refs = None
        if reply_to:
            parent = await self._find(reply_to)
            subject = "Re: " + (strip_subject(str(parent["Subject"]), self.list.name)
                                if parent else subject)
            if parent is not None:
                chain = str(parent.get("References", "")).split()
                refs = " ".join([*chain, f"<{reply_to}>"])
        mid = await asyncio.to_thread(
            self.list.post, sender=f"{author} <{slug}@members.test>", subject=subject,
            body=text + "\n", in_reply_to=f"<{reply_to}>" if reply_to else None,
            references=refs, at=at)
        return mid.strip("<>")

    async def edit_as_member(self, native_id: str, text: str) -> None:
        raise NotImplementedError("mail cannot be edited once sent")

    async def delete_as_member(self, native_id: str) -> None:
        raise NotImplementedError("mail cannot be deleted once sent")

    async def post_with_media(self, author: str, text: str, data: bytes, media_type: str,
                              alt_text: str) -> str:
        raise NotImplementedError("a mail attachment carries a file name, no alt text")

    async def post_poll_as_member(self, author: str, text: str, options: list[str]) -> str:
        raise NotImplementedError("mail has neither polls nor quote posts")

    async def post_quote_as_member(self, author: str, text: str, quoted: str) -> str:
        raise NotImplementedError("mail has neither polls nor quote posts")

    async def command_as_member(self, author: str, command: str) -> str:
        raise NotImplementedError("the email adapter reads no bot commands")

    async def post_poison(self, author: str, tag: str) -> dict[str, PoisonKind]:
        """A mail far over the adapter's size limit.  (HTML nested deep is lost before any
        converter today: quotequail's lxml stops at depth 256 and the mail reads as
        empty; not poison that can be counted.)"""
        big = await asyncio.to_thread(self.list.post, sender=f"{author} <m@members.test>",
                                      subject=f"{tag} big", body="word " * 230_000)
        return {big.strip("<>"): PoisonKind.ALWAYS}

    # ------------------------------------------------------------ faults
    def endpoints(self) -> list[Endpoint]:
        return [Endpoint(name="imap", port=self.dovecot.imap_port, protocol="imap"),
                Endpoint(name="smtp", port=self.list.port, protocol="smtp")]

    def account_config_via(self, ports: Mapping[str, int], timeout: float) -> dict[str, Any]:
        cfg = self.account_config()
        imap = {**cfg["imap"], "timeout": timeout}
        smtp = {**cfg["smtp"], "timeout": timeout}
        if "imap" in ports:
            imap["port"] = ports["imap"]
        if "smtp" in ports:
            smtp["port"] = ports["smtp"]
        return cfg | {"imap": imap, "smtp": smtp, "idle_seconds": max(1, int(timeout))}

    def failure(self, endpoint: str, fault: Fault, n: int, until: float
                ) -> FailureAnswer | None:
        if endpoint == "smtp":
            if fault == "ratelimit":  # Postfix's anvil (smtpd_client_message_rate_limit)
                return FailureAnswer(smtp_reply="450 4.7.1 Error: too much mail from 127.0.0.1")
            return FailureAnswer(smtp_reply="451 4.3.0 Error: queue file write error")
        if fault == "ratelimit":
            return None  # IMAP has no rate-limit answer
        return FailureAnswer(imap_bye="* BYE Server shutting down.")

    def unthrottle(self) -> None:
        pass  # the mini list and Dovecot limit nothing

    async def _find(self, native_id: str) -> Any:
        for m in await asyncio.to_thread(self.dovecot.messages, "reader"):
            if msgid(m.get("Message-ID")) == native_id:
                return m
        return None

    async def messages(self) -> list[SandboxMessage]:
        out = []
        for m in await asyncio.to_thread(self.dovecot.messages, "reader"):
            body = m.get_body(preferencelist=("plain",))
            text = strip_footer(body.get_content()) if body is not None else ""
            mine = m.get(MARKER_HEADER) is not None
            mid = msgid(m.get("Message-ID")) or ""
            out.append(SandboxMessage(
                native_id=mid, author=_name(m), text=text.strip(), by_bridge=mine,
                reply_to=msgid(m.get("In-Reply-To")),
                key=mid.split("@")[0] if mine else ""))
        return out


def _name(m: Any) -> str:
    # Shown in demo listings next to other networks' names: no addresses there either.
    try:
        addr = m["From"].addresses[0]
        return str(addr.display_name or addr.username)
    except (AttributeError, IndexError, TypeError):
        return "member"
