"""``hashbridge check --online`` for email channels: what each one will read and write,
asked of the account's own IMAP and SMTP servers, read-only.

Reads: the account's folder is opened with EXAMINE (never SELECT: no flag changes, not
even ``\\Recent``), and searched for the channel's list mail.  A folder that does not
exist is a failure that names the folders that do.

Writes: one SMTP session as the adapter opens it (TLS and login alike), then per
channel ``MAIL FROM`` the bridge's address, ``RCPT TO`` the list and ``RSET``: no
``DATA``, so nothing is sent.  A refused sender or recipient is a failure with the
server's reply and what to fix.

Every step is bounded by the account's ``imap.timeout`` or ``smtp.timeout`` and a step
that gets no answer says which one it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import re
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

import aioimaplib
import aiosmtplib

from adapters.email.client import (
    FolderState,
    ImapRefused,
    imap_connect,
    imap_examine,
    imap_folders,
    imap_header,
    imap_search,
    smtp_client,
    smtp_login,
)
from adapters.email.config import EmailAccount, EmailChannel, MailServer
from adapters.email.convert import msgid
from bridge.contract.adapter import AdapterError, ChannelCheck, ChannelSpec
from bridge.contract.model import ChannelKey

T = TypeVar("T")

SAMPLE = 20
"""How many of the newest mails to or from a list address are read for their List-Id
when none carries the configured one."""
MAX_NAMED_FOLDERS = 30
_BAD_ADDRESS = re.compile(r"\s*5\.1\.\d{1,3}\b")


class _Failed(Exception):
    """A step failed for a reason that is not the server's refusal of the command."""


@dataclass(frozen=True, slots=True)
class _Half:
    """The reading or the writing half of one channel's check."""

    ok: bool
    text: str = ""
    warnings: tuple[str, ...] = ()
    error: str = ""


async def check_channels(account: EmailAccount, channels: tuple[ChannelSpec, ...]
                         ) -> dict[ChannelKey, ChannelCheck]:
    readers = tuple(c for c in channels if c.direction != "out")
    writers = tuple(c for c in channels if c.direction != "in")
    both = (asyncio.ensure_future(_check_reads(account, readers)),
            asyncio.ensure_future(_check_writes(account, writers)))
    try:
        reads, writes = await asyncio.gather(*both)
    finally:
        for task in both:  # one failed unexpectedly: the other is not left running
            task.cancel()
    out: dict[ChannelKey, ChannelCheck] = {}
    for c in channels:
        r, w = reads.get(c.key), writes.get(c.key)
        halves = [h for h in (r, w) if h is not None]
        out[c.key] = ChannelCheck(
            ok=all(h.ok for h in halves), reads=r.text if r else "",
            writes=w.text if w else "", warnings=tuple(x for h in halves for x in h.warnings),
            error="; ".join(h.error for h in halves if h.error))
    return out


async def _bounded(where: str, step: str, server: MailServer, aw: Awaitable[T]) -> T:
    """*aw* within the server's timeout; a timeout or a lost connection becomes
    :class:`_Failed` naming *where* and *step*.  The server's refusals (an SMTP reply
    code, an IMAP NO or BAD) pass through for the caller to explain."""
    try:
        async with asyncio.timeout(server.timeout):
            return await aw
    except (aiosmtplib.SMTPResponseException, ImapRefused):
        raise
    except TimeoutError as exc:
        raise _Failed(f"{where}: {step}: no answer within {server.timeout:g}s") from exc
    except (OSError, aioimaplib.AioImapException, aiosmtplib.SMTPException,
            AdapterError) as exc:
        raise _Failed(f"{where}: {step}: {str(exc) or type(exc).__name__}") from exc


def _opts(spec: ChannelSpec) -> EmailChannel:
    assert isinstance(spec.options, EmailChannel)
    return spec.options


def _quoted(value: str) -> str:
    """*value* as an IMAP quoted string (no quote, backslash or line break inside)."""
    return '"' + "".join(ch for ch in value if ch not in '"\\\r\n') + '"'


# ------------------------------------------------------------------ reads (IMAP)
async def _check_reads(account: EmailAccount, specs: tuple[ChannelSpec, ...]
                       ) -> dict[ChannelKey, _Half]:
    if not specs:
        return {}
    srv = account.imap
    where = f"IMAP {srv.host}:{srv.port}"
    try:
        client = await _bounded(where, "connect and log in", srv, imap_connect(srv))
    except (_Failed, ImapRefused) as exc:
        return {c.key: _Half(ok=False, error=_said(where, exc)) for c in specs}
    try:
        return await _read_folder(account, client, specs, where)
    finally:
        try:
            async with asyncio.timeout(min(srv.timeout, 2)):
                await client.logout()
        except Exception:
            # A server that stopped answering: hang up rather than leave it open.
            with contextlib.suppress(Exception):
                client.protocol.transport.close()


async def _read_folder(account: EmailAccount, client: aioimaplib.IMAP4,
                       specs: tuple[ChannelSpec, ...], where: str) -> dict[ChannelKey, _Half]:
    srv, folder = account.imap, account.folder
    try:
        state = await _bounded(where, f"EXAMINE {folder}", srv, imap_examine(client, folder))
    except (_Failed, ImapRefused) as exc:
        why = await _examine_failed(client, srv, folder, where, exc)
        return {c.key: _Half(ok=False, error=why) for c in specs}
    out: dict[ChannelKey, _Half] = {}
    for spec in specs:
        try:
            out[spec.key] = await _read_list(account, client, state, spec, where)
        except (_Failed, ImapRefused) as exc:
            # The session is gone or refuses to search: the rest cannot be asked either.
            for c in specs:
                out.setdefault(c.key, _Half(ok=False, error=_said(where, exc)))
            break
    return out


async def _examine_failed(client: aioimaplib.IMAP4, srv: MailServer, folder: str,
                          where: str, exc: Exception) -> str:
    """Why *folder* cannot be read: missing (with the folders there are), or the
    server's own refusal."""
    if not isinstance(exc, ImapRefused):
        return str(exc)
    try:
        folders = await _bounded(where, "LIST", srv, imap_folders(client))
    except (_Failed, ImapRefused) as exc2:
        return f"{where}: {exc} (and the folders could not be listed: {exc2})"
    if any(f == folder or (f.upper() == "INBOX" == folder.upper()) for f in folders):
        return f"{where}: {exc} (the folder is there, but {srv.username} cannot open it)"
    return f"{where}: {_missing_folder(folder, folders)}"


def _said(where: str, exc: Exception) -> str:
    """A failure as printed: a server's refusal gets the server's name in front."""
    return f"{where}: {exc}" if isinstance(exc, ImapRefused) else str(exc)


def _missing_folder(folder: str, folders: list[str]) -> str:
    def name(f: str) -> str:
        return f'"{f}"' if not f.isalnum() else f
    folders = sorted(folders, key=lambda f: (f.upper() != "INBOX", f.lower()))
    shown = ", ".join(name(f) for f in folders[:MAX_NAMED_FOLDERS])
    if len(folders) > MAX_NAMED_FOLDERS:
        shown += f" and {len(folders) - MAX_NAMED_FOLDERS} more"
    text = (f'folder "{folder}" does not exist; the folders there are: {shown or "none"}.')
    lower = {f.lower(): f for f in folders}
    close = difflib.get_close_matches(folder.lower(), list(lower), n=1, cutoff=0.6)
    if close:
        return (f'{text} Did you mean "{lower[close[0]]}"? Set folder = '
                f'"{lower[close[0]]}" in the account')
    return (f"{text} Set the account's folder to the one the list's mail is delivered "
            "to")


async def _read_list(account: EmailAccount, client: aioimaplib.IMAP4, state: FolderState,
                     spec: ChannelSpec, where: str) -> _Half:
    srv, folder = account.imap, account.folder
    o = _opts(spec)
    list_id = o.effective_list_id
    uidnext = f", UIDNEXT {state.uidnext}" if state.uidnext is not None else ""
    head = (f"folder {folder} on {srv.host}:{srv.port} (examined read-only: "
            f"{_n(state.exists, 'message')}{uidnext})")
    if state.exists == 0:
        return _Half(ok=True, text=f"{head}: no list mail yet", warnings=(
            f"{folder} is empty: no mail from {o.list} has arrived yet; is "
            f"{account.address} subscribed to the list?",))
    relayed = await _bounded(where, "SEARCH List-Id", srv, imap_search(
        client, f"HEADER List-Id {_quoted(list_id)}"))
    if relayed:
        return _Half(ok=True, text=f"{head}: {_n(len(relayed), 'mail')} from the list "
                     f"(List-Id {list_id}), the newest UID {relayed[-1]}")
    addr = _quoted(o.list)
    near = await _bounded(where, "SEARCH From/To/Cc", srv, imap_search(
        client, f"OR OR FROM {addr} TO {addr} CC {addr}"))
    text = f"{head}: no mail with List-Id {list_id}"
    if not near:
        return _Half(ok=True, text=text, warnings=(
            f"none of the {_n(state.exists, 'message')} in {folder} is from or to "
            f"{o.list}: is {account.address} subscribed to the list, and is its mail "
            f"delivered to {folder} (not filed into another folder)?",))
    ids = await _bounded(where, "FETCH List-Id", srv,
                         imap_header(client, near[-SAMPLE:], "List-Id"))
    seen = sorted({_bare(v) for v in ids.values() if _bare(v)})
    many = _n(len(near), "mail")
    if seen:
        return _Half(ok=True, text=text, warnings=(
            f"{many} from or to {o.list} in {folder} "
            f"{'carries' if len(near) == 1 else 'carry'} List-Id "
            f"{', '.join(seen)}, not {list_id}: only mail with the channel's List-Id is "
            f'relayed; set list_id = "{seen[0]}" for this channel',))
    return _Half(ok=True, text=text, warnings=(
        f"{many} from or to {o.list} in {folder}, none with a List-Id header: only list "
        f"mail (List-Id {list_id}) is relayed; is {o.list} the list's posting address?",))


def _bare(value: str) -> str:
    """The bare id of a List-Id header value ("Kmers <kmers.lists.example>")."""
    return msgid(value) or ""


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


# ------------------------------------------------------------------ writes (SMTP)
async def _check_writes(account: EmailAccount, specs: tuple[ChannelSpec, ...]
                        ) -> dict[ChannelKey, _Half]:
    if not specs:
        return {}
    srv = account.smtp
    where = f"SMTP {srv.host}:{srv.port}"
    client = smtp_client(srv)
    out: dict[ChannelKey, _Half] = {}
    try:
        await _smtp_open(client, srv, where)
        for i, spec in enumerate(specs):
            out[spec.key] = await _try_recipient(account, client, spec, where)
            try:  # end the transaction: the next channel's, or QUIT, starts clean
                await _bounded(where, "RSET", srv, client.rset())
            except aiosmtplib.SMTPResponseException as exc:
                if i + 1 < len(specs):
                    raise _Failed(f"{where}: RSET refused: {exc.code} {exc.message}") \
                        from exc
            except _Failed:
                if i + 1 < len(specs):
                    raise
    except _Failed as exc:
        for c in specs:
            out.setdefault(c.key, _Half(ok=False, error=str(exc)))
    finally:
        with contextlib.suppress(Exception):
            if client.is_connected:
                async with asyncio.timeout(min(srv.timeout, 2)):
                    await client.quit()
        client.close()
    return out


async def _smtp_open(client: aiosmtplib.SMTP, srv: MailServer, where: str) -> None:
    """Connect, EHLO (STARTTLS with it when so configured) and log in, as
    :func:`~adapters.email.client.smtp_send` does; :class:`_Failed` saying which step."""
    step = "connect"
    try:
        await _bounded(where, step, srv, client.connect())
        if client.last_ehlo_response is None:  # STARTTLS already said EHLO
            step = "EHLO"
            await _bounded(where, step, srv, client.ehlo())
    except aiosmtplib.SMTPResponseException as exc:
        raise _Failed(f"{where}: {step} refused: {exc.code} {exc.message}") from exc
    try:
        await _bounded(where, "login", srv, smtp_login(client, srv))
    except aiosmtplib.SMTPResponseException as exc:
        raise _Failed(f"{where}: login as {srv.username} refused: {exc.code} "
                      f"{exc.message}: check smtp.username and smtp.password") from exc


async def _try_recipient(account: EmailAccount, client: aiosmtplib.SMTP, spec: ChannelSpec,
                         where: str) -> _Half:
    """MAIL FROM and RCPT TO: whether *spec*'s list would be accepted.  No DATA."""
    srv, me, lst = account.smtp, account.address, _opts(spec).list
    try:
        await _bounded(where, "MAIL FROM", srv, client.mail(me))
    except aiosmtplib.SMTPResponseException as exc:
        if 400 <= exc.code < 500:
            return _deferred(where, "MAIL FROM", me, lst, exc)
        login = f"the login {srv.username}" if srv.username else "this server (no login)"
        return _Half(ok=False, error=(
            f"{where} refused the bridge's address {me} as sender (MAIL FROM): "
            f"{exc.code} {exc.message}. Fix: the account's address must be one {login} "
            "may send as (change address, or allow it on the server)"))
    try:
        ok = await _bounded(where, "RCPT TO", srv, client.rcpt(lst))
    except aiosmtplib.SMTPResponseException as exc:
        if 400 <= exc.code < 500:
            return _deferred(where, "RCPT TO", me, lst, exc)
        if _BAD_ADDRESS.match(exc.message):  # RFC 3463 5.1.x: no such mailbox
            fix = (f"{lst} is not an address the server knows: set the channel's list to "
                   "the list's posting address")
        else:
            fix = (f"the list must accept posts from {me} (subscribe it, or add it to the "
                   "list's allowed senders)")
        return _Half(ok=False, error=(
            f"{where} refused {lst} as recipient of mail from {me} (RCPT TO): "
            f"{exc.code} {exc.message}. Fix: {fix}"))
    return _Half(ok=True, text=(
        f"posts to {lst} as {me} via {where} (the recipient was accepted: {ok.code} "
        f"{ok.message}; nothing was sent)"))


def _deferred(where: str, step: str, me: str, lst: str,
              exc: aiosmtplib.SMTPResponseException) -> _Half:
    return _Half(ok=True, text=f"posts to {lst} as {me} via {where} (not confirmed)",
                 warnings=(f"{where} deferred {step} with a temporary refusal: {exc.code} "
                           f"{exc.message}; the bridge retries such sends, but whether the "
                           "list accepts them is not known: run the check again later",))
