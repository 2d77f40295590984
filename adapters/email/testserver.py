"""Real mail servers for tests, the fault suite and ``hashbridge demo``.

* :class:`Dovecot`: a private Dovecot (IMAP with IDLE + LMTP) in the foreground on free
  127.0.0.1 ports, passwd-file users, one maildir per user.  Dovecot refuses to run as
  root, so when we are root the whole instance runs as ``nobody`` through ``setpriv``.
* :class:`PymapServer`: when Dovecot is not installed (a fresh machine, no root), the
  same thing from PyPI: pymap's maildir backend (IMAP4rev1 with IDLE and UIDPLUS) in a
  child process, mail delivered into the maildirs as a local MTA does.  The adapter
  talks to it over the same real IMAP as to Dovecot.  :func:`mail_server` picks one.
* :class:`MiniList`: an aiosmtpd server that plays a Mailman-like list.  Mail to the list
  address gets ``List-Id``, ``List-Post``, a ``[tag]`` subject prefix and a footer, and is
  delivered to every subscriber's mailbox over Dovecot's LMTP; mail to any other address
  of the mail domain is delivered to that user as is (a tiny MTA).

Nothing here is imported by the adapter itself.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import email
import email.policy
import logging
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formataddr, make_msgid, parseaddr
from pathlib import Path

log = logging.getLogger("hashbridge.adapter.email.testserver")

DOMAIN = "bridge.test"
LIST_DOMAIN = "lists.test"
FOOTER_RULE = "_______________________________________________"


def dovecot_binary() -> str | None:
    """Path of the dovecot binary, or None when it is not installed.

    ``HASHBRIDGE_DOVECOT`` overrides the search: a path, or ``none`` to act as if
    Dovecot were absent (how the tests play a fresh machine)."""
    forced = os.environ.get("HASHBRIDGE_DOVECOT")
    if forced is not None:
        return None if forced.lower() in ("", "none") else forced
    return shutil.which("dovecot") or (
        "/usr/sbin/dovecot" if os.path.exists("/usr/sbin/dovecot") else None)


def pymap_missing() -> str:
    """"" when pymap (and aiosmtpd for the list) can run here, else what to install."""
    import importlib.util

    missing = [m for m in ("pymap", "aiosmtpd") if importlib.util.find_spec(m) is None]
    if not missing:
        return ""
    return (f"{' and '.join(missing)} not installed (pip install 'hashbridge[demo]', "
            "or install Dovecot: apt-get install dovecot-imapd dovecot-lmtpd)")


def mail_server(workdir: Path, users: dict[str, str]) -> Dovecot | PymapServer:
    """Dovecot when it is installed, else pymap (raises RuntimeError saying what to
    install when neither can run)."""
    if dovecot_binary():
        return Dovecot(workdir, users)
    why = pymap_missing()
    if why:
        raise RuntimeError(f"no IMAP server: Dovecot is not installed and {why}")
    return PymapServer(workdir, users)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_PRIVATE_PREFIX = "hashbridge-dovecot-"


def _open_ancestors(path: Path) -> None:
    # pytest's tmp_path and mkdtemp are 0700: nobody could not even reach its config.
    for p in [path, *path.parents]:
        with contextlib.suppress(OSError):
            p.chmod(p.stat().st_mode | 0o001)


_CONF = """\
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{d}/mail/%n
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%n {d}/users
}}
userdb {{
  driver = static
  args = uid={user} gid={group} home={d}/mail/%n
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
protocol lmtp {{
  auth_username_format = %n
}}
"""


@dataclass
class Dovecot:
    """One private Dovecot.  ``users`` maps user name to password."""

    workdir: Path
    users: dict[str, str]
    imap_port: int = 0
    lmtp_port: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    kind = "Dovecot"

    def start(self, timeout: float = 10.0) -> None:
        binary = dovecot_binary()
        if binary is None:
            raise RuntimeError("dovecot is not installed (apt-get install dovecot-imapd "
                               "dovecot-lmtpd)")
        if os.geteuid() == 0 and not self.workdir.name.startswith(_PRIVATE_PREFIX):
            # Run as nobody from a private directory of its own right under /tmp: under
            # pytest's tmp_path its ancestors would need opening, and each new pytest
            # session closes /tmp/pytest-of-root to 0700 again, which cut a running
            # Dovecot off its sockets whenever two sessions overlapped.
            private = Path(tempfile.mkdtemp(prefix=_PRIVATE_PREFIX))
            atexit.register(shutil.rmtree, private, True)
            self.workdir = private
        d = self.workdir
        # base_dir holds only sockets and pids; a previous instance's leftovers (owned by
        # whoever ran it, possibly half-removed) make binds fail, so start it empty.
        shutil.rmtree(d / "run", ignore_errors=True)
        for sub in ("run", "state", "mail"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        # Keep the ports across restarts: a restarted server must be the same server.
        self.imap_port = self.imap_port or free_port()
        self.lmtp_port = self.lmtp_port or free_port()
        root = os.geteuid() == 0
        user, group = ("nobody", "nogroup") if root else (os.environ.get("USER", "nobody"),
                                                          _group_name())
        (d / "users").write_text("".join(f"{u}:{{PLAIN}}{p}::::\n"
                                         for u, p in self.users.items()))
        (d / "dovecot.conf").write_text(_CONF.format(
            d=d, user=user, group=group, imap_port=self.imap_port, lmtp_port=self.lmtp_port))
        cmd = [binary, "-F", "-c", str(d / "dovecot.conf")]
        if root:
            _open_ancestors(d)
            subprocess.run(["chown", "-R", "nobody:nogroup", str(d)], check=True)
            cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *cmd]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        # A greeting, not just an open port: it must be *this* Dovecot answering.
        while not (_greets(self.imap_port, b"* OK") and _greets(self.lmtp_port, b"220")):
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"dovecot exited {self.proc.returncode}: {err}"
                                   f"{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"dovecot not ready after {timeout}s{self.log_tail()}")
            time.sleep(0.01)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        # imap/lmtp workers that outlive the master would still accept on our ports and
        # hang up: a restarted server must not share them with its ghost.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None
        # Children (imap, lmtp workers) may hold the ports a moment longer.
        deadline = time.monotonic() + 5
        while (_port_open(self.imap_port) or _port_open(self.lmtp_port)) \
                and time.monotonic() < deadline:
            time.sleep(0.02)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self) -> str:
        p = self.workdir / "dovecot.log"
        return "\n" + p.read_text(errors="replace")[-2000:] if p.exists() else ""

    def maildir(self, user: str) -> Path:
        return self.workdir / "mail" / user

    def deliver(self, rcpt_users: list[str], raw: bytes, mail_from: str = "") -> None:
        """Deliver one message to local users over LMTP (real delivery: indexes, IDLE)."""
        # One transaction per recipient: LMTP answers DATA once per recipient, and
        # smtplib only reads the first answer.
        with smtplib.LMTP("127.0.0.1", self.lmtp_port, timeout=10) as lmtp:
            for user in rcpt_users:
                lmtp.sendmail(mail_from or f"postmaster@{DOMAIN}", [f"{user}@{DOMAIN}"], raw)

    def messages(self, user: str) -> list[EmailMessage]:
        """Every message in the user's INBOX (new and cur), oldest delivery first."""
        return _maildir_messages(self.maildir(user))


@dataclass
class PymapServer:
    """A private pymap IMAP server (maildir backend) on a free 127.0.0.1 port, in a
    child process of its own; the same surface as :class:`Dovecot`.  Delivery is an
    IMAP APPEND as the recipient (UIDs in delivery order, ``EXISTS`` to IDLE
    clients); :meth:`messages` reads the maildir as for Dovecot."""

    workdir: Path
    users: dict[str, str]
    imap_port: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    kind = "pymap"

    def start(self, timeout: float = 30.0) -> None:
        import sys

        from pysasl.hashing import BuiltinHash

        d = self.workdir
        d.mkdir(parents=True, exist_ok=True)
        # Few rounds: these are throwaway local passwords, and pymap hashes on each login.
        hasher = BuiltinHash(rounds=1000)
        (d / "pymap-etc-passwd").write_text("".join(f"{u}:x::::mail/{u}:\n"
                                                    for u in self.users))
        (d / "pymap-etc-shadow").write_text("".join(f"{u}:{hasher.hash(p)}:::::::\n"
                                                    for u, p in self.users.items()))
        (d / "pymap-etc-group").write_text("")
        for u in self.users:
            for sub in ("new", "cur", "tmp"):
                (self.maildir(u) / sub).mkdir(parents=True, exist_ok=True)
        self.imap_port = self.imap_port or free_port()
        log_file = (d / "pymap.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from pymap.main import main; main()",
             "--no-service", "admin", "--host", "127.0.0.1", "--port", str(self.imap_port),
             "--no-tls", "maildir", str(d)],
            stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_die_with_parent
            if threading.current_thread() is threading.main_thread() else None)
        log_file.close()
        deadline = time.monotonic() + timeout
        while not _greets(self.imap_port, b"* OK"):
            if self.proc.poll() is not None:
                raise RuntimeError(f"pymap exited {self.proc.returncode}:{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"pymap not ready after {timeout}s{self.log_tail()}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self) -> str:
        p = self.workdir / "pymap.log"
        return "\n" + p.read_text(errors="replace")[-2000:] if p.exists() else ""

    def maildir(self, user: str) -> Path:
        return self.workdir / "mail" / user

    def deliver(self, rcpt_users: list[str], raw: bytes, mail_from: str = "") -> None:
        """Deliver one message to each user by IMAP APPEND as that user (the server
        gives UIDs in delivery order, tells IDLE clients), with the ``Return-Path``
        and ``Delivered-To`` a local delivery agent adds (as Dovecot's LMTP does:
        the adapter checks the envelope sender)."""
        import imaplib

        sender = mail_from or f"postmaster@{DOMAIN}"
        for user in rcpt_users:
            if user not in self.users:
                raise smtplib.SMTPRecipientsRefused({f"{user}@{DOMAIN}": (550, b"no user")})
            head = f"Return-Path: <{sender}>\r\nDelivered-To: {user}@{DOMAIN}\r\n".encode()
            body = head + raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            try:
                with imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=10) as imap:
                    imap.login(user, self.users[user])
                    typ, data = imap.append("INBOX", "", None, body)
                    if typ != "OK":
                        raise OSError(f"APPEND refused: {data!r}")
                    imap.logout()
            except imaplib.IMAP4.error as exc:
                raise OSError(f"IMAP delivery to {user} failed: {exc}") from exc

    def messages(self, user: str) -> list[EmailMessage]:
        return _maildir_messages(self.maildir(user))


def _die_with_parent() -> None:
    """Linux: SIGTERM the server when the process that started it dies."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _maildir_messages(root: Path) -> list[EmailMessage]:
    """Every message in a maildir INBOX (new and cur), oldest delivery first."""
    files: list[Path] = []
    for sub in ("new", "cur"):
        if (root / sub).is_dir():
            files.extend((root / sub).iterdir())
    files.sort(key=_delivery_order)
    out = []
    for f in files:
        try:
            data = f.read_bytes()
        except FileNotFoundError:  # moved from new/ to cur/ while we listed
            continue
        msg = email.message_from_bytes(data, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        out.append(msg)
    return out


def _delivery_order(p: Path) -> tuple[int, int, str]:
    # Dovecot names files "<secs>.M<usecs>P<pid>...": compare numbers, not strings.
    m = re.match(r"(\d+)\.M(\d+)P", p.name)
    return (int(m.group(1)), int(m.group(2)), p.name) if m else (int(p.stat().st_mtime), 0,
                                                                 p.name)


def _group_name() -> str:
    import grp
    return grp.getgrgid(os.getegid()).gr_name


def _greets(port: int, prefix: bytes) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            return s.recv(64).startswith(prefix)
    except OSError:
        return False


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class MiniList:
    """A Mailman-like list in front of :class:`Dovecot` (see module docstring).

    ``munge_from`` rewrites ``From`` to "Name via <list>" like Mailman's DMARC
    mitigation; ``scrub`` is a list that drops every ``X-`` header (our marker and
    X-Loop among them) and rewrites ``From`` to itself without keeping the poster's
    address anywhere, as some hosted groups do; ``received`` keeps every raw message
    the list accepted, as sent.  Recipients at the list domain other than the list's
    own addresses (``name@``, ``name-...@``) are refused as unknown, as an MTA does.
    """

    dovecot: Dovecot | PymapServer
    name: str = "kmers"
    subscribers: list[str] = field(default_factory=lambda: ["bridge", "reader"])
    munge_from: bool = False
    scrub: bool = False
    port: int = 0
    posters: set[str] | None = None
    """The envelope senders the list takes posts from (members-only, refused at RCPT
    TO as a list behind an MTA's access rules does); None: anyone's."""
    senders: set[str] | None = None
    """The envelope senders this server accepts at all (a submission server that lets
    a login send only as its own addresses, refused at MAIL FROM); None: any."""
    received: list[bytes] = field(default_factory=list)
    _controller: object | None = field(default=None, repr=False)
    _queue: list[tuple[str, bytes]] = field(default_factory=list, repr=False)
    _queue_lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _stopping: threading.Event = field(default_factory=threading.Event, repr=False)
    _retrier: threading.Thread | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"{self.name}@{LIST_DOMAIN}"

    @property
    def list_id(self) -> str:
        return f"{self.name}.{LIST_DOMAIN}"

    def start(self) -> None:
        from aiosmtpd.controller import Controller
        self.port = self.port or free_port()
        ctl = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)
        ctl.start()
        self._controller = ctl
        self._stopping.clear()
        self._retrier = threading.Thread(target=self._retry_loop, daemon=True,
                                         name="minilist-retry")
        self._retrier.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()  # type: ignore[attr-defined]
            self._controller = None
        self._stopping.set()
        if self._retrier is not None:
            self._retrier.join(5)
            self._retrier = None

    def distribute(self, raw: bytes, at: float | None = None) -> bytes:
        """Turn a post into the list's copy and deliver it; return the copy.  *at*:
        the copy reached the mailboxes then (their INTERNALDATE), in the past: history
        a test sets up before the bridge starts (put there by IMAP APPEND)."""
        self.received.append(raw)
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        out = decorate(msg, name=self.name, address=self.address, list_id=self.list_id,
                       munge_from=self.munge_from, scrub=self.scrub)
        data = out.as_bytes(policy=email.policy.SMTP)
        if at is not None:
            for user in self.subscribers:
                head = (f"Return-Path: <{self.name}-bounces@{LIST_DOMAIN}>\r\n"
                        f"Delivered-To: {user}@{DOMAIN}\r\n").encode()
                _append_dated(self.dovecot.imap_port, user, self.dovecot.users[user],
                              head + data, at)
            return data
        # Like a real list: once accepted, a post reaches every subscriber.  A member
        # whose mailbox is unreachable now is queued and retried, in order.
        with self._queue_lock:
            for user in self.subscribers:
                self._queue.append((user, data))
        self.flush()
        return data

    def flush(self) -> bool:
        """Deliver queued copies in order; True when the queue is empty."""
        with self._queue_lock:
            while self._queue:
                user, data = self._queue[0]
                try:
                    self.dovecot.deliver([user], data,
                                         mail_from=f"{self.name}-bounces@{LIST_DOMAIN}")
                except (OSError, smtplib.SMTPException) as exc:
                    log.info("list delivery to %s deferred: %s", user, exc)
                    return False
                self._queue.pop(0)
            return True

    def _retry_loop(self) -> None:
        while not self._stopping.wait(0.2):
            self.flush()

    def post(self, *, sender: str, subject: str, body: str, in_reply_to: str | None = None,
             references: str | None = None, html: str | None = None,
             extra_headers: dict[str, str] | None = None, at: float | None = None) -> str:
        """A member posts to the list (as their mail client would); return its
        Message-ID.  *at*: posted (and delivered) then, in the past."""
        msg = EmailMessage()
        msg["From"] = sender
        msg["To"] = self.address
        msg["Subject"] = subject
        mid = make_msgid(domain="members.test")
        msg["Message-ID"] = mid
        msg["Date"] = email.utils.formatdate(at, localtime=False)
        if in_reply_to:
            msg["In-Reply-To"] = in_reply_to
            msg["References"] = references or in_reply_to
        for k, v in (extra_headers or {}).items():
            msg[k] = v
        msg.set_content(body)
        if html is not None:
            msg.add_alternative(html, subtype="html")
        self.distribute(msg.as_bytes(policy=email.policy.SMTP), at)
        return mid


def _append_dated(port: int, user: str, password: str, raw: bytes, at: float) -> None:
    """Put *raw* in *user*'s INBOX with INTERNALDATE *at* (IMAP APPEND's date)."""
    import imaplib

    body = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    with imaplib.IMAP4("127.0.0.1", port, timeout=10) as imap:
        imap.login(user, password)
        typ, data = imap.append("INBOX", "", imaplib.Time2Internaldate(at), body)
        if typ != "OK":
            raise OSError(f"APPEND refused: {data!r}")
        imap.logout()


def decorate(msg: EmailMessage, *, name: str, address: str, list_id: str,
             munge_from: bool = False, scrub: bool = False) -> EmailMessage:
    """What Mailman does to a post on its way out (headers, prefix, footer)."""
    poster = str(msg["From"])
    footer = (f"\n{FOOTER_RULE}\n{name} mailing list -- {address}\n"
              f"To unsubscribe send an email to {name}-leave@{LIST_DOMAIN}\n")
    subject = str(msg.get("Subject", ""))
    if f"[{name}]" not in subject:
        subject = f"[{name}] {subject}"
    if msg.is_multipart():
        # Mailman wraps a multipart post and adds the footer as its own part.
        out = EmailMessage()
        for k, v in msg.items():
            if k.lower() not in ("content-type", "content-transfer-encoding", "mime-version"):
                out[k] = v
        out.make_mixed()
        inner = EmailMessage()
        inner.set_payload(msg.get_payload())
        inner["Content-Type"] = msg["Content-Type"]
        out.attach(inner)
        foot = EmailMessage()
        foot.set_content(footer)
        out.attach(foot)
    else:
        out = msg
        body = msg.get_content() if msg.get_content_type() == "text/plain" else None
        if isinstance(body, str):
            # Keep format=flowed when the poster used it.
            params = {k: str(msg.get_param(k)) for k in ("format", "delsp")
                      if msg.get_param(k)}
            out.set_content(body.rstrip("\n") + "\n" + footer, params=params or None)
    for h in ("List-Id", "List-Post", "List-Unsubscribe", "Precedence"):
        del out[h]
    del out["Subject"]
    out["Subject"] = subject
    out["List-Id"] = f"{name.capitalize()} list <{list_id}>"
    out["List-Post"] = f"<mailto:{address}>"
    out["List-Unsubscribe"] = f"<mailto:{name}-leave@{LIST_DOMAIN}>"
    out["Precedence"] = "list"
    if munge_from:
        real_name, real_addr = parseaddr(str(msg["From"]))
        del out["From"]
        out["From"] = formataddr((f"{real_name or real_addr} via {name.capitalize()}", address))
        out["Reply-To"] = formataddr((real_name, real_addr))
    if scrub:
        for h in {k for k in out if k.lower().startswith("x-")}:
            del out[h]
        real_name, _ = parseaddr(poster)
        del out["From"]
        del out["Reply-To"]
        out["From"] = formataddr((f"'{real_name or 'A member'}' via {name.capitalize()}",
                                  address))
        out["Reply-To"] = address
    return out


class _Handler:
    def __init__(self, lst: MiniList) -> None:
        self.lst = lst

    async def handle_MAIL(self, server: object, session: object, envelope: object,
                          address: str, mail_options: list[str]) -> str:
        allowed = self.lst.senders
        if allowed is not None and address.lower() not in {a.lower() for a in allowed}:
            return f"553 5.7.1 <{address}>: Sender address rejected: not owned by user"
        envelope.mail_from = address  # type: ignore[attr-defined]
        envelope.mail_options.extend(mail_options)  # type: ignore[attr-defined]
        return "250 OK"

    async def handle_RCPT(self, server: object, session: object, envelope: object,
                          address: str, rcpt_options: list[str]) -> str:
        rcpt = address.lower()
        local, _, domain = rcpt.rpartition("@")
        if domain == LIST_DOMAIN and local != self.lst.name \
                and not local.startswith(self.lst.name + "-"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        sender = str(envelope.mail_from or "").lower()  # type: ignore[attr-defined]
        posters = self.lst.posters
        if rcpt == self.lst.address and posters is not None \
                and sender not in {p.lower() for p in posters}:
            return (f"550 5.7.1 <{address}>: Recipient address rejected: {self.lst.address}"
                    f" accepts posts from its members only, not from <{sender}>")
        envelope.rcpt_tos.append(address)  # type: ignore[attr-defined]
        envelope.rcpt_options.extend(rcpt_options)  # type: ignore[attr-defined]
        return "250 OK"

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        rcpts = [r.lower() for r in envelope.rcpt_tos]  # type: ignore[attr-defined]
        raw = envelope.original_content or envelope.content  # type: ignore[attr-defined]
        try:
            if self.lst.address in rcpts:
                await asyncio.to_thread(self.lst.distribute, raw)
            local = [r.split("@")[0] for r in rcpts if r.endswith("@" + DOMAIN)]
            if local:
                await asyncio.to_thread(self.lst.dovecot.deliver, local, raw)
        except (OSError, smtplib.SMTPException) as exc:
            log.warning("list delivery failed: %s", exc)
            return "451 4.3.0 delivery to the mail store failed, try again"
        return "250 OK"
