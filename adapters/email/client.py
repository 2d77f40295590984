"""Thin I/O shells around aioimaplib and aiosmtplib.

Everything here makes exactly one attempt; reconnects, backoff and retries are decided by
the adapter (inbound) and the core's delivery worker (outbound).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage

import aioimaplib
import aiosmtplib

from adapters.email.config import EmailAccount, MailServer
from bridge.contract.adapter import AuthError, PermanentError, TransientError

_FETCH_HEAD = re.compile(rb"^\d+ FETCH \(.*?UID (\d+)")
_UID_TAIL = re.compile(rb"UID (\d+)")
_LIST_LINE = re.compile(rb'^\((?P<flags>[^)]*)\) (?:"(?:[^"\\]|\\.)*"|NIL) (?P<name>.+)$',
                        re.I)
_LITERAL = re.compile(rb"\{\d+\}")


class ImapGone(ConnectionError):
    """The IMAP server closed the session (BYE, timeout or a failed command)."""


class ImapRefused(ImapGone):
    """The server answered a command with NO or BAD; ``text`` is its reply."""

    def __init__(self, command: str, text: str) -> None:
        super().__init__(f"{command} failed: {text}")
        self.command, self.text = command, text


@dataclass(frozen=True, slots=True)
class FolderState:
    """What SELECT or EXAMINE said of a folder."""

    validity: int
    exists: int
    uidnext: int | None
    """None when the server did not say (RFC 3501 makes it optional)."""


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


def mailbox_arg(name: str) -> str:
    """*name* as an IMAP mailbox argument: in modified UTF-7 (RFC 3501 5.1.3: servers
    without UTF8=ACCEPT refuse raw UTF-8) and quoted (a name with a space is otherwise
    two arguments)."""
    out: list[str] = []
    run: list[str] = []

    def shift() -> None:
        if run:
            b64 = base64.b64encode("".join(run).encode("utf-16-be")).decode("ascii")
            out.append("&" + b64.rstrip("=").replace("/", ",") + "-")
            run.clear()

    for ch in name:
        if " " <= ch <= "~":
            shift()
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    shift()
    return '"' + "".join(out).replace("\\", "\\\\").replace('"', '\\"') + '"'


def decode_mailbox(name: str) -> str:
    """A mailbox name as LIST gives it (modified UTF-7) in plain text."""
    def one(m: re.Match[str]) -> str:
        if not m[1]:
            return "&"
        b64 = m[1].replace(",", "/")
        try:
            return base64.b64decode(b64 + "=" * (-len(b64) % 4)).decode("utf-16-be")
        except (ValueError, UnicodeDecodeError):
            return m[0]
    return re.sub(r"&([A-Za-z0-9+,]*)-", one, name)


async def imap_select(client: aioimaplib.IMAP4, folder: str) -> int:
    """Select *folder*; return its UIDVALIDITY."""
    resp = await client.select(mailbox_arg(folder))
    if resp.result != "OK":
        raise ImapGone(f"SELECT {folder} failed: {resp.lines[-1:]!r}")
    return _folder_state(resp.lines).validity


async def imap_examine(client: aioimaplib.IMAP4, folder: str) -> FolderState:
    """Open *folder* read-only (EXAMINE: nothing read there changes a flag, not even
    \\Recent); SEARCH and FETCH work on it as after :func:`imap_select`."""
    resp = await client.examine(mailbox_arg(folder))
    if resp.result != "OK":
        raise ImapRefused(f"EXAMINE {folder}", _reply_text(resp.lines))
    # aioimaplib moves to the selected state on SELECT only, though RFC 3501 (6.3.2)
    # has EXAMINE select the folder just the same: without this it refuses SEARCH.
    client.protocol.state = aioimaplib.SELECTED
    return _folder_state(resp.lines)


async def imap_folders(client: aioimaplib.IMAP4) -> list[str]:
    """The names of the folders that can be selected (LIST, \\Noselect ones left out)."""
    resp = await client.list('""', "*")
    if resp.result != "OK":
        raise ImapRefused("LIST", _reply_text(resp.lines))
    names: list[str] = []
    lines = resp.lines
    for i, line in enumerate(lines[:-1]):
        if isinstance(line, bytearray):
            continue  # a literal: the name of the line before
        m = _LIST_LINE.match(bytes(line))
        if m is None or b"\\noselect" in m["flags"].lower():
            continue
        raw = m["name"]
        lit = _LITERAL.fullmatch(raw)
        if lit and i + 1 < len(lines) and isinstance(lines[i + 1], bytearray):
            raw = bytes(lines[i + 1])
        elif raw.startswith(b'"'):
            raw = re.sub(rb'\\(.)', rb"\1", raw[1:-1])
        names.append(decode_mailbox(raw.decode("utf-8", "replace")))
    return names


async def imap_search(client: aioimaplib.IMAP4, criteria: str) -> list[int]:
    """The UIDs of the selected folder's messages that match *criteria*."""
    resp = await client.uid_search(criteria, charset=None if criteria.isascii() else "utf-8")
    if resp.result != "OK":
        raise ImapRefused(f"SEARCH {criteria}", _reply_text(resp.lines))
    return sorted({int(x) for line in resp.lines[:-1] for x in bytes(line).split()
                   if x.isdigit()})


async def imap_header(client: aioimaplib.IMAP4, uids: list[int], name: str
                      ) -> dict[int, str]:
    """One header of each message by UID, without setting \\Seen."""
    resp = await client.uid("fetch", ",".join(map(str, uids)),
                            f"(UID BODY.PEEK[HEADER.FIELDS ({name.upper()})])")
    if resp.result != "OK":
        raise ImapRefused("UID FETCH", _reply_text(resp.lines))
    out: dict[int, str] = {}
    lines = resp.lines
    for i, line in enumerate(lines):
        if isinstance(line, bytearray) and i > 0:
            m = _FETCH_HEAD.match(bytes(lines[i - 1])) or (
                _UID_TAIL.search(bytes(lines[i + 1])) if i + 1 < len(lines) else None)
            if m:
                value = bytes(line).decode("utf-8", "replace").partition(":")[2]
                out[int(m.group(1))] = " ".join(value.split())
    return out


def _folder_state(lines: list[bytes | bytearray]) -> FolderState:
    validity = exists = uidnext = None
    for line in lines:
        b = bytes(line)
        if m := re.search(rb"UIDVALIDITY (\d+)", b):
            validity = int(m.group(1))
        elif m := re.search(rb"UIDNEXT (\d+)", b):
            uidnext = int(m.group(1))
        elif m := re.fullmatch(rb"(\d+) EXISTS", b.strip()):
            exists = int(m.group(1))
    if validity is None:
        raise ImapGone("server sent no UIDVALIDITY")
    return FolderState(validity=validity, exists=exists or 0, uidnext=uidnext)


def _reply_text(lines: list[bytes | bytearray]) -> str:
    text = bytes(lines[-1]).decode("utf-8", "replace") if lines else ""
    return text[:300] or "no reason given"


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


_INTERNALDATE = re.compile(rb'INTERNALDATE "([^"]+)"')
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def imap_date(at: float) -> str:
    """*at* as an IMAP ``date`` (``7-Dec-2026``, English month names whatever the
    locale), in UTC."""
    t = time.gmtime(at)
    return f"{t.tm_mday}-{_MONTHS[t.tm_mon - 1]}-{t.tm_year}"


async def imap_internaldates(client: aioimaplib.IMAP4, uids: list[int]) -> dict[int, float]:
    """When each message reached the box (its INTERNALDATE, Unix seconds), by UID."""
    resp = await client.uid("fetch", ",".join(map(str, uids)), "(UID INTERNALDATE)")
    if resp.result != "OK":
        raise ImapGone(f"UID FETCH INTERNALDATE failed: {resp.lines[-1:]!r}")
    out: dict[int, float] = {}
    for line in resp.lines[:-1]:
        raw = bytes(line)
        uid, date = _UID_TAIL.search(raw), _INTERNALDATE.search(raw)
        if uid and date and (at := _parse_internaldate(date.group(1).decode())) is not None:
            out[int(uid.group(1))] = at
    return out


def _parse_internaldate(text: str) -> float | None:
    """``" 7-Dec-2026 16:00:00 +0100"`` (RFC 3501 date-time) to Unix seconds."""
    try:
        day, mon, year = text.split()[0].split("-")
        clock, zone = text.split()[1:3]
        hh, mm, ss = (int(x) for x in clock.split(":"))
        offset = (int(zone[1:3]) * 3600 + int(zone[3:5]) * 60) * (-1 if zone[0] == "-" else 1)
        t = datetime(int(year), _MONTHS.index(mon.title()) + 1, int(day), hh, mm, ss,
                     tzinfo=UTC)
    except (ValueError, IndexError):
        return None
    return t.timestamp() - offset


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


def smtp_client(server: MailServer) -> aiosmtplib.SMTP:
    """An SMTP client for *server*, not connected yet: entering it connects (implicit TLS,
    or STARTTLS after EHLO, as ``security`` says), each command bounded by its timeout."""
    return aiosmtplib.SMTP(
        hostname=server.host, port=server.port, timeout=server.timeout,
        use_tls=server.security == "tls",
        start_tls=server.security == "starttls")


async def smtp_login(client: aiosmtplib.SMTP, server: MailServer) -> None:
    """Log in when the account has a username (a relay on localhost may need none)."""
    if server.username:
        await client.login(server.username, server.password.get_secret_value())


async def smtp_send(server: MailServer, account: EmailAccount, msg: EmailMessage,
                    recipients: list[str]) -> None:
    """Submit one message; exactly one attempt, failures mapped to the core's three kinds."""
    client = smtp_client(server)
    try:
        async with client:
            await smtp_login(client, server)
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
