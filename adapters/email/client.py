"""Thin I/O shells around aioimaplib and aiosmtplib.

Everything here makes exactly one attempt; reconnects, backoff and retries are decided by
the adapter (inbound) and the core's delivery worker (outbound).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from email.message import EmailMessage

import aioimaplib
import aiosmtplib

from adapters.email.config import EmailAccount, MailServer
from bridge.contract.adapter import AuthError, PermanentError, TransientError

_FETCH_HEAD = re.compile(rb"^\d+ FETCH \(.*?UID (\d+)")
_UID_TAIL = re.compile(rb"UID (\d+)")


class ImapGone(ConnectionError):
    """The IMAP server closed the session (BYE, timeout or a failed command)."""


async def imap_connect(server: MailServer) -> aioimaplib.IMAP4:
    """Connect and log in; AuthError when the credentials are refused."""
    if server.security == "tls":
        client: aioimaplib.IMAP4 = aioimaplib.IMAP4_SSL(
            host=server.host, port=server.port, timeout=server.timeout,
            ssl_context=ssl.create_default_context())
    else:
        client = aioimaplib.IMAP4(host=server.host, port=server.port, timeout=server.timeout)
    protocol = client.protocol

    def lost(exc: Exception | None) -> None:
        # Without this, a connection dropped during IDLE goes unnoticed until the IDLE
        # timeout (minutes): wake the waiter with a BYE of our own.
        protocol.idle_queue.put_nowait([b"BYE connection lost"])

    protocol.conn_lost_cb = lost
    await client.wait_hello_from_server()
    if server.security == "starttls":
        # aioimaplib has no STARTTLS; refusing beats sending the password in clear.
        raise PermanentError("IMAP STARTTLS is not supported by aioimaplib: use "
                             "security = \"tls\" (port 993)")
    resp = await client.login(server.username, server.password.get_secret_value())
    if resp.result != "OK":
        text = b" ".join(bytes(x) for x in resp.lines).decode(errors="replace")
        if "AUTHENTICATIONFAILED" in text.upper() or "AUTHORIZATIONFAILED" in text.upper():
            raise AuthError(f"IMAP login refused for {server.username}: {text[:200]}")
        raise ImapGone(f"IMAP login failed: {text[:200]}")
    return client


async def imap_select(client: aioimaplib.IMAP4, folder: str) -> int:
    """Select *folder*; return its UIDVALIDITY."""
    resp = await client.select(folder)
    if resp.result != "OK":
        raise ImapGone(f"SELECT {folder} failed: {resp.lines[-1:]!r}")
    for line in resp.lines:
        m = re.search(rb"UIDVALIDITY (\d+)", bytes(line))
        if m:
            return int(m.group(1))
    raise ImapGone("server sent no UIDVALIDITY")


async def imap_uids_after(client: aioimaplib.IMAP4, last_uid: int) -> tuple[list[int], bool]:
    """UIDs above *last_uid*, and whether the server announced new mail (``EXISTS``) in
    the same response: that news is consumed here and IDLE would not repeat it."""
    resp = await client.uid_search(f"UID {last_uid + 1}:*")
    if resp.result != "OK":
        raise ImapGone(f"UID SEARCH failed: {resp.lines[-1:]!r}")
    uids: list[int] = []
    news = False
    for line in resp.lines[:-1]:
        words = bytes(line).split()
        if words[-1:] == [b"EXISTS"]:
            news = True
            continue
        uids.extend(int(x) for x in words if x.isdigit())
    # "n:*" always matches the newest message, even when its UID is below n.
    return sorted(u for u in set(uids) if u > last_uid), news


async def imap_fetch(client: aioimaplib.IMAP4, uids: list[int]) -> dict[int, bytes]:
    """Raw messages by UID, without setting \\Seen (other readers of the box)."""
    resp = await client.uid("fetch", ",".join(map(str, uids)), "(UID BODY.PEEK[])")
    if resp.result != "OK":
        raise ImapGone(f"UID FETCH failed: {resp.lines[-1:]!r}")
    out: dict[int, bytes] = {}
    lines = resp.lines
    for i, line in enumerate(lines):
        if isinstance(line, bytearray) and i > 0:
            head = bytes(lines[i - 1])
            m = _FETCH_HEAD.match(head) or (
                _UID_TAIL.search(bytes(lines[i + 1])) if i + 1 < len(lines) else None)
            if m:
                out[int(m.group(1))] = bytes(line)
    return out


async def imap_has_message_id(server: MailServer, folder: str, mid: str) -> bool:
    """True if *folder* holds a message with Message-ID ``<mid>`` (a short extra session:
    the main one is busy IDLEing)."""
    client = await imap_connect(server)
    try:
        await imap_select(client, folder)  # aioimaplib only searches after SELECT
        safe = mid.replace("\\", "").replace('"', "")
        resp = await client.uid_search(f'HEADER Message-ID "<{safe}>"', charset=None)
        if resp.result != "OK":
            raise ImapGone(f"SEARCH failed: {resp.lines[-1:]!r}")
        return any(bytes(x).strip() for x in resp.lines[:-1])
    finally:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await client.logout()


async def _wait_push(client: aioimaplib.IMAP4, seconds: float) -> object:
    """wait_server_push in slices: aioimaplib's wait_for can swallow a cancellation
    (Python 3.11), and a swallowed one must not keep us here for the whole IDLE."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise TimeoutError
        try:
            return await client.wait_server_push(timeout=min(left, 2.0))
        except TimeoutError:
            continue


async def imap_idle(client: aioimaplib.IMAP4, seconds: float, timeout: float = 30.0) -> bool:
    """One IDLE round of at most *seconds*; True when the server announced news.

    The server must acknowledge the IDLE, and close it after our DONE, within
    *timeout* seconds: a connection that went silent (a dead NAT mapping, a hung
    server) raises :class:`ImapGone` after at most *seconds* + *timeout*."""
    try:
        async with asyncio.timeout(timeout):
            idle = await client.idle_start(timeout=seconds + timeout + 30)
    except TimeoutError as exc:
        raise ImapGone("the server did not acknowledge IDLE") from exc
    news = False
    try:
        push = await _wait_push(client, seconds)
        if isinstance(push, list):
            text = b" ".join(bytes(x) for x in push)
            if b"BYE" in text:
                raise ImapGone(f"server said {text[:120]!r}")
            news = b"EXISTS" in text or b"RECENT" in text
        elif push == aioimaplib.STOP_WAIT_SERVER_PUSH:
            news = True
    except TimeoutError:
        pass
    finally:
        if client.has_pending_idle():
            client.idle_done()
    try:
        async with asyncio.timeout(timeout):
            await idle
    except TimeoutError as exc:
        raise ImapGone("IDLE was not closed by the server") from exc
    return news


async def smtp_send(server: MailServer, account: EmailAccount, msg: EmailMessage,
                    recipients: list[str]) -> None:
    """Submit one message; exactly one attempt, failures mapped to the core's three kinds."""
    client = aiosmtplib.SMTP(
        hostname=server.host, port=server.port, timeout=server.timeout,
        use_tls=server.security == "tls",
        start_tls=server.security == "starttls")
    try:
        async with client:
            if server.username:
                await client.login(server.username, server.password.get_secret_value())
            errors, _ = await client.send_message(msg, sender=account.address,
                                                  recipients=recipients)
            if errors:  # some recipients refused, none of ours may be
                code, text = next(iter(errors.values()))
                raise _map_code(code, text)
    except aiosmtplib.SMTPAuthenticationError as exc:
        raise AuthError(f"SMTP login refused: {exc.code} {exc.message[:200]}") from exc
    except aiosmtplib.SMTPRecipientsRefused as exc:
        first = exc.recipients[0]
        raise _map_code(first.code, first.message) from exc
    except aiosmtplib.SMTPResponseException as exc:
        raise _map_code(exc.code, exc.message) from exc
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        raise TransientError(f"SMTP connection failed: {exc.__class__.__name__}: {exc}") \
            from exc


def _map_code(code: int, text: str) -> Exception:
    msg = f"SMTP {code} {text[:300]}"
    if code in (530, 534, 535):
        return AuthError(msg)
    if 400 <= code < 500:
        return TransientError(msg, retry_after=60 if code == 421 else None)
    return PermanentError(msg)
