"""Outbound half of the pure email converters: a relayed post -> one list mail.

No I/O.  The rules come from how lists and mail clients treat relayed mail:

* ``From`` is the bridge's own address with the author in the display name
  ("Alice (Mastodon) via hashbridge"), so DMARC alignment holds; ``Reply-To`` is the list,
  so a member's "reply" goes to everyone; ``To`` is the list (Mailman's implicit_dest rule).
* ``Message-ID`` is ``<idempotency_key@our domain>``: a retry after a crash sends the same
  id, which archives and clients deduplicate, and which our inbound side recognises.
* No ``Auto-Submitted``: lists hold or drop auto-generated posts and members' vacation
  replies are the lesser evil; our marker header does the loop prevention.
* Lines that Mailman's administrivia rule would take for commands (``unsubscribe`` alone on
  a line) get a word joiner in front, invisible to readers, so the post is not held.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from adapters.email.convert import ADMIN_WORDS, MARKER_HEADER, strip_subject

MAX_REFERENCES = 20
_WJ = "\u2060"


@dataclass(frozen=True, slots=True, kw_only=True)
class Outgoing:
    """Everything one mail needs; built by the adapter from a SendOp."""

    key: str
    """The idempotency key: becomes the Message-ID's left part."""
    from_address: str
    domain: str
    list_address: str
    author: str
    network: str
    """Display name of the author's network (``Mastodon``)."""
    plain: str
    html: str = ""
    parent_id: str | None = None
    parent_references: tuple[str, ...] = ()
    parent_subject: str = ""
    subject: str = ""
    """Explicit subject (digests, corrections); "" derives one."""
    origin: str = ""
    """``platform:native id`` of the origin, for the marker header."""
    permalink: str = ""
    date: datetime | None = None


def message_id(key: str, domain: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._+-]", "-", key)
    return f"{safe}@{domain}"


def references_for(parent_id: str | None, parent_refs: tuple[str, ...]) -> tuple[str, ...]:
    """RFC 5322 §3.6.4: the parent's References plus the parent; trim the middle."""
    if not parent_id:
        return ()
    refs = [r for r in parent_refs if r != parent_id] + [parent_id]
    if len(refs) > MAX_REFERENCES:
        refs = refs[:1] + refs[-(MAX_REFERENCES - 1):]
    return tuple(refs)


def subject_for(out: Outgoing) -> str:
    if out.subject:
        return _defuse_line(out.subject)
    if out.parent_id:
        base = strip_subject(out.parent_subject) or "(no subject)"
        return f"Re: {base}"
    first = next((ln.strip() for ln in out.plain.split("\n") if ln.strip()), "")
    if len(first) > 70:
        cut = first[:70].rsplit(" ", 1)[0] or first[:70]
        first = cut + "…"
    return _defuse_line(first or f"A post from {out.author}")


def _defuse_line(line: str) -> str:
    words = line.split()
    if words and words[0].lower().strip(".:!") in ADMIN_WORDS:
        return _WJ + line
    return line


def defuse_administrivia(text: str) -> str:
    """Prefix lines that read as list commands with a word joiner (see module doc)."""
    return "\n".join(_defuse_line(ln) if len(ln.split()) <= 3 else ln
                     for ln in text.split("\n"))


def build_mail(out: Outgoing) -> EmailMessage:
    """The complete message, multipart text + HTML when HTML is given."""
    msg = EmailMessage()
    name = f"{out.author} ({out.network}) via hashbridge" if out.network else \
        f"{out.author} via hashbridge"
    local, _, dom = out.from_address.partition("@")
    msg["From"] = Address(display_name=name, username=local, domain=dom)
    msg["To"] = out.list_address
    msg["Reply-To"] = out.list_address
    msg["Subject"] = subject_for(out)
    msg["Message-ID"] = f"<{message_id(out.key, out.domain)}>"
    msg["Date"] = format_datetime(out.date) if out.date else ""
    if not out.date:
        del msg["Date"]
    refs = references_for(out.parent_id, out.parent_references)
    if out.parent_id:
        msg["In-Reply-To"] = f"<{out.parent_id}>"
        msg["References"] = " ".join(f"<{r}>" for r in refs)
    msg[MARKER_HEADER] = out.origin or out.key
    msg["X-Loop"] = out.from_address
    if out.permalink:
        msg["X-Hashbridge-Origin-Link"] = out.permalink
    msg.set_content(defuse_administrivia(out.plain) + "\n")
    if out.html:
        msg.add_alternative(out.html, subtype="html")
    return msg


def correction_text(*, author: str, network: str, deleted: bool, new_text: str = "") -> str:
    """The short mail sent for an edit or delete on a channel with ``corrections = "mail"``."""
    if deleted:
        return (f"{author} deleted this message on {network}. "
                "It cannot be unsent by email; please disregard it.")
    return f"{author} edited this message on {network}. It now reads:\n\n{new_text}"
