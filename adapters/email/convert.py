"""Inbound half of the pure email converters: raw list mail -> canonical events.

No I/O, no clients.  :func:`parse_list_mail` never raises on any input: mail it must not
relay comes back as :class:`~bridge.contract.adapter.Unsupported` with the reason
(someone else's list, our own echo, a robot, administrivia).  The outbound half lives
in :mod:`adapters.email.compose`.

Privacy: a member's email address never leaves this module.  ``Author.handle`` is
``mail-`` plus a keyed hash of the address (stable per installation, so consent and
moderation can name the author, but not reversible by guessing addresses without the
installation's salt); the visible name is the display name only.  Addresses found in the
headers are also blanked out of the body text (quote attributions that survived).
"""

from __future__ import annotations

import email
import email.parser
import email.policy
import hashlib
import hmac
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from email.utils import getaddresses, parsedate_to_datetime

import quotequail
from mailparser_reply import EmailReplyParser

from bridge.contract.adapter import TooLarge, Unsupported, UnsupportedKind, check_size
from bridge.contract.model import Author, ChannelKey, NativeId, Posted
from bridge.contract.richtext import RichText
from bridge.contract.textconv import cap_html_depth, clean_text, from_html, from_plain

MAX_BODY_BYTES = 1024 * 1024
"""The longest text part a list mail's post is taken from (a post, not a
document: larger mail is rejected, with its reason, not converted)."""
MARKER_HEADER = "X-Hashbridge-Delivery"
"""Set on every mail we send; its presence on inbound mail means "our own echo"."""

# Mailman's administrivia words (mailman/rules/administrivia.py) plus Google's.
ADMIN_WORDS = frozenset({
    "confirm", "end", "help", "join", "leave", "remove", "set", "stop", "subscribe",
    "unsubscribe", "who", "lists", "info", "options", "password",
})
_ROBOT_LOCALPARTS = re.compile(
    r"^(mailer-daemon|postmaster|noreply|no-reply|.*-(bounces|owner|request|confirm|leave|join))"
    r"(\+.*)?$", re.I)
_FOOTER_RULE = re.compile(r"^_{30,}\s*$")
_GOOGLE_FOOTER = re.compile(r"^-- ?\s*$\n(?=You received this message because you are "
                            r"subscribed to the Google Groups)", re.M)
_GROUPSIO_FOOTER = re.compile(r"^-=-=-=-=-=-=-=-=-=-=-=-\s*$", re.M)
_EMAIL_RE = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")
_REPLY_PREFIX = re.compile(r"^\s*((re|aw|sv|fw|fwd|wg|antw|r)\s*(\[\d+\])?\s*:\s*)+", re.I)
_VIA = re.compile(r"^(?P<name>.*?)\s+via\s+(?P<list>[^\s].*)$", re.I)
LANGUAGES = ["en", "de", "fr", "it", "nl", "da", "sv", "pl", "ja"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ListSpec:
    """What identifies one channel's list and the bridge on it."""

    channel: ChannelKey
    list_id: str
    """The bare List-Id (``kmers.lists.example.org``), compared case-insensitively."""
    address: str
    """The list's posting address; its domain is the expected envelope-sender domain."""
    subject_tag: str = ""
    """The ``[tag]`` the list puts in subjects (without brackets); "" guesses any."""
    verify_sender: bool = True
    """Require ``Return-Path`` at the list's domain (a forged List-Id sent straight to
    the bridge's address does not have it)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    """The bridge's own mail identity: its address (the loop stamps it puts on its
    mail) and the salt for author handles.  ``domain`` is the right part of the ids it
    sends; it is not a test for our own mail (members may share it)."""

    address: str
    domain: str
    salt: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class MailPart:
    """An attachment's bytes; the adapter stores them and makes the Attachment."""

    filename: str
    media_type: str
    content: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ListMail:
    """A list post, ready to emit."""

    event: Posted
    subject: str
    """Subject without list tag and ``Re:`` prefixes."""
    references: tuple[str, ...]
    parts: tuple[MailPart, ...] = ()
    dropped_parts: tuple[str, ...] = ()
    """Attachments over the limit: ``"name (size)"``."""


def msgid(value: object) -> str | None:
    """The first ``<id>`` in a header value, without brackets; None if there is none."""
    ids = msgids(value)
    return ids[0] if ids else None


def msgids(value: object) -> list[str]:
    text = str(value or "")
    found = re.findall(r"<([^<>\s]+)>", text)
    if not found and text.strip() and " " not in text.strip():
        found = [text.strip().strip("<>")]  # some clients drop the brackets
    return found


def list_id_of(raw: bytes) -> str:
    """The bare List-Id of a raw message ("" if none), from the headers alone."""
    try:
        head = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
        return msgid(str(head.get("List-Id", ""))) or ""
    except Exception:
        return ""


def author_handle(address: str, salt: bytes) -> str:
    digest = hmac.new(salt, address.strip().lower().encode(), hashlib.sha256).hexdigest()
    return f"mail-{digest[:12]}"


def parse_list_mail(raw: bytes, spec: ListSpec, me: Identity, *,
                    max_attachment_bytes: int = 8_000_000,
                    max_attachments: int = 4) -> ListMail | Unsupported:
    """Turn one raw message into a :class:`ListMail`, or say why not.  Never raises."""
    try:
        return _parse(raw, spec, me, max_attachment_bytes, max_attachments)
    except TooLarge as exc:
        native = msgid(_raw_header(raw, "Message-ID")) or _fallback_id(raw)
        return Unsupported(native_id=native, reason=f"too large: {exc}", error=exc,
                           kind=UnsupportedKind.MALFORMED)
    except Exception as exc:  # any input: a reason, never a crash
        first = exc
    if b"\0" in raw:
        # RFC 5322 forbids NUL; one in a MIME parameter makes policy.default raise and
        # would cost the whole post.  The id stays the one of the mail as received.
        try:
            res = _parse(raw.replace(b"\0", b""), spec, me, max_attachment_bytes,
                         max_attachments)
            if isinstance(res, Unsupported) or msgid(_raw_header(raw, "Message-ID")):
                return res
            return _with_id(res, _fallback_id(raw))
        except Exception as exc:
            first = exc
    native = msgid(_raw_header(raw, "Message-ID")) or _fallback_id(raw)
    return Unsupported(native_id=native, reason=f"unparseable: {first!r:.200}", error=first,
                       kind=UnsupportedKind.MALFORMED)


def _raw_header(raw: bytes, name: str) -> str:
    try:
        head = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
        return str(head.get(name, ""))
    except Exception:
        return ""


def _with_id(res: ListMail, native: str) -> ListMail:
    import dataclasses
    return dataclasses.replace(res, event=dataclasses.replace(res.event,
                                                              native_id=NativeId(native)))


def _fallback_id(raw: bytes) -> str:
    # Deterministic, so a re-fetch after a restart gives the same id (no duplicate).
    return f"{hashlib.sha256(raw).hexdigest()[:32]}@no-message-id.invalid"


def _header(msg: Message, name: str) -> str:
    try:
        value = msg.get(name)
    except Exception:  # a header the policy cannot even parse
        return ""
    return clean_text(str(value)) if value is not None else ""


def _parse(raw: bytes, spec: ListSpec, me: Identity, max_bytes: int,
           max_n: int) -> ListMail | Unsupported:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    native = msgid(_header(msg, "Message-ID")) or _fallback_id(raw)

    def skip(reason: str) -> Unsupported:
        return Unsupported(native_id=native, reason=reason, kind=UnsupportedKind.IGNORED)

    list_id = msgid(_header(msg, "List-Id")) or ""
    if list_id.lower() != spec.list_id.lower():
        return skip(f"List-Id {list_id or 'missing'!r} is not {spec.list_id!r}")
    # Our own mail carries our stamps (the marker header, X-Loop with our exact
    # address) unless the list strips them; the adapter then knows it by its exact
    # Message-ID (its send journal).  Never by the id's domain: members may share it.
    if _header(msg, MARKER_HEADER) \
            or me.address.lower() in (a.lower() for a in _addresses(_header(msg, "X-Loop"))):
        return skip("our own mail")
    if spec.verify_sender:
        rp = _addresses(_header(msg, "Return-Path"))
        list_domain = spec.address.rsplit("@", 1)[-1].lower()
        if not rp or not rp[0].lower().endswith("@" + list_domain):
            return skip(f"envelope sender {rp[0] if rp else 'missing'!r} is not the list's")
    robot = _robot_reason(msg)
    if robot:
        return skip(robot)

    from_name, from_addr = _first(_header(msg, "From"))
    name, addr = _unmunge(msg, from_name, from_addr, spec)
    if addr.lower() == me.address.lower():
        return skip("our own address")
    subject = strip_subject(_header(msg, "Subject"), spec.subject_tag)

    text, kind = _body_text(msg)
    check_size(len(text.encode("utf-8", "surrogatepass")), MAX_BODY_BYTES,
               "a list mail's text is taken up to")
    addrs = _header_addresses(msg)
    if kind == "html":
        rich = from_html(_redact(_strip_html_quotes(text), addrs))
    else:
        rich = from_plain(_redact(strip_quotes(strip_footer(text)), addrs))
    if _is_administrivia(subject, _rich_plain(rich)):
        return skip("list administrivia (a command to the list robot)")

    parts, dropped = _attachments(msg, max_bytes, max_n)
    if rich.is_empty() and not parts:
        return skip("empty after removing quotes, footer and signature")

    refs = tuple(msgids(_header(msg, "References")))
    reply_to = msgid(_header(msg, "In-Reply-To")) or (refs[-1] if refs else None)
    handle = author_handle(addr or name or native, me.salt)
    event = Posted(
        channel=spec.channel,
        native_id=NativeId(native),
        author=Author(platform="email", handle=handle, display_name=_display_name(name)),
        text=rich,
        permalink=_archive_link(msg),
        reply_to_native=NativeId(reply_to) if reply_to and reply_to != native else None,
        created_at=_date(msg),
    )
    return ListMail(event=event, subject=subject, references=refs, parts=parts,
                    dropped_parts=dropped)


def _addresses(value: str) -> list[str]:
    return [a for _, a in getaddresses([value]) if a]


def _first(value: str) -> tuple[str, str]:
    pairs = getaddresses([value])
    return (clean_text(pairs[0][0]).strip(), pairs[0][1]) if pairs else ("", "")


def _header_addresses(msg: Message) -> list[str]:
    out: list[str] = []
    for h in ("From", "Reply-To", "Cc", "Sender", "X-Original-From", "To"):
        out.extend(_addresses(_header(msg, h)))
    return out


def _robot_reason(msg: Message) -> str:
    auto = _header(msg, "Auto-Submitted").strip().lower()
    if auto and auto != "no":
        return f"Auto-Submitted: {auto}"
    ctype = msg.get_content_type()
    if ctype == "multipart/report" or _header(msg, "X-Failed-Recipients"):
        return "delivery status notification"
    if _header(msg, "Precedence").strip().lower() in ("junk", "bulk", "auto_reply"):
        return f"Precedence: {_header(msg, 'Precedence').strip().lower()}"
    if any(_header(msg, h) for h in ("X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress")
           if h != "X-Auto-Response-Suppress" or "oof" in _header(msg, h).lower()):
        return "auto-reply header"
    _, addr = _first(_header(msg, "From"))
    if _ROBOT_LOCALPARTS.match(addr.split("@")[0]):
        return f"sent by a robot address ({addr.split('@')[0]})"
    return ""


def _unmunge(msg: Message, name: str, addr: str, spec: ListSpec) -> tuple[str, str]:
    """Undo DMARC From-munging: ``"Alice via Kmers" <list@...>`` -> Alice + her address."""
    if addr.lower() != spec.address.lower():
        return name, addr
    m = _VIA.match(name)
    real_name = m.group("name").strip().strip("'\"") if m else ""
    for h in ("X-Original-From", "Reply-To", "Cc"):
        for n, a in getaddresses([_header(msg, h)]):
            if a and a.lower() != spec.address.lower():
                return real_name or clean_text(n), a
    return real_name, ""


def strip_subject(subject: str, tag: str = "") -> str:
    """Subject without ``[tag]`` list prefixes and ``Re:``/``Fwd:`` chains."""
    s = " ".join(subject.split())
    for _ in range(4):  # "Re: [kmers] Re: [kmers] x"
        s = _REPLY_PREFIX.sub("", s)
        s = re.sub(rf"^\[{re.escape(tag)}\]\s*" if tag else r"^\[[^\]]{1,40}\]\s*", "", s,
                   flags=re.I)
    return s.strip()


def _decode(part: Message) -> str:
    """A text part's content, surviving wrong or unknown charset declarations."""
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else str(payload or "").encode()
    declared = (part.get_content_charset() or "us-ascii").lower()
    # A label of ASCII/Latin-1 on valid non-ASCII UTF-8 is the classic mislabelling.
    if declared in ("us-ascii", "ascii", "iso-8859-1", "latin-1", "latin1", "windows-1252"):
        try:
            text = data.decode("utf-8")
            if not text.isascii():
                return text
        except UnicodeDecodeError:
            pass
    try:
        return data.decode(declared)
    except (LookupError, UnicodeDecodeError):
        pass
    try:
        from charset_normalizer import from_bytes
        best = from_bytes(data).best()
        if best is not None:
            return str(best)
    except Exception:
        pass
    return data.decode("utf-8", errors="replace")


def unflow(text: str, delsp: bool) -> str:
    """RFC 3676 format=flowed: join soft-broken lines (space before the break)."""
    out: list[str] = []
    buf = ""
    for line in text.split("\n"):
        if line.startswith(" "):
            line = line[1:]  # space-stuffing
        if line.endswith(" ") and line.rstrip() != "--":
            buf += line[:-1] if delsp else line
            continue
        out.append(buf + line)
        buf = ""
    if buf:
        out.append(buf)
    return "\n".join(out)


def _body_text(msg: EmailMessage | Message) -> tuple[str, str]:
    """The best body as (text, "plain"|"html"); ("", "plain") when there is none."""
    body: Message | None = None
    if isinstance(msg, EmailMessage):
        try:
            body = msg.get_body(preferencelist=("plain", "html"))
        except Exception:
            body = None
    if body is None:
        for part in msg.walk():
            if part.get_content_maintype() == "text" and not part.is_multipart():
                body = part
                break
    if body is None:
        return "", "plain"
    text = clean_text(_decode(body))
    if body.get_content_subtype() == "html":
        return text, "html"
    if str(body.get_param("format", "")).lower() == "flowed":
        text = unflow(text, str(body.get_param("delsp", "")).lower() == "yes")
    return text, "plain"


def strip_footer(text: str) -> str:
    """Remove a Mailman (``____`` rule), Google Groups or groups.io footer at the end."""
    lines = text.rstrip().split("\n")
    for i in range(len(lines) - 1, max(-1, len(lines) - 12), -1):
        if _FOOTER_RULE.match(lines[i]):
            return "\n".join(lines[:i]).rstrip()
    # (each pattern only where its literal is: a "^" pattern is tried at
    # every position of a long text)
    for pat, literal in ((_GOOGLE_FOOTER, "You received this message because"),
                         (_GROUPSIO_FOOTER, "-=-=-=-=-=-=-=-=-=-=-=-")):
        if literal not in text:
            continue
        starts = [m.start() for m in pat.finditer(text)]
        if starts:
            return text[:starts[-1]].rstrip()
    return text.rstrip()


REPLY_PARSER_CHARS = 8192
"""The reply parser (mailparser_reply: some 70 regex passes, ~1 s of CPU for a
1 MB body) reads at most this much; a longer text goes through
:func:`_strip_quotes_long`, linear and cheap."""
_QUOTED_LINE = re.compile(r"^[^\S\n]*>[^\n]*(?:\n|\Z)", re.M)
_TAIL_END = re.compile(r"^(?:-- ?|_{30,}|-{3,}[^\S\n]*Original Message[^\S\n]*-{3,}"
                       r"|On[^\S\n][^\n]{1,300}[^\S\n]wrote:)[^\S\n]*$", re.M | re.I)


def strip_quotes(text: str) -> str:
    """The new part of a plain-text reply: quotes, attributions and signature removed."""
    if len(text) > REPLY_PARSER_CHARS:
        return _strip_quotes_long(text)
    try:
        parsed = EmailReplyParser(languages=LANGUAGES).read(text=text)
        latest = parsed.replies[0].body if parsed.replies else text
    except Exception:
        latest = text
    if not latest.strip():
        latest = text  # a message that is all quote: keep it rather than lose it
    # Leftover quoted lines (interleaved replies keep the answers, drop the quotes).
    kept = [ln for ln in latest.split("\n") if not ln.lstrip().startswith(">")]
    out = "\n".join(kept).strip()
    return out or latest.strip()


def _strip_quotes_long(text: str) -> str:
    """:func:`strip_quotes` for a text longer than :data:`REPLY_PARSER_CHARS`,
    in time linear in its length: the quoted (``>``) lines go first, then the
    reply parser reads the first :data:`REPLY_PARSER_CHARS` (cut at a line
    end, or a space when the line is longer).  Where it finds the end of what
    the member wrote (an attribution, a signature), the text ends there, as
    :func:`strip_quotes` would end it; otherwise the rest is kept as written,
    up to the first signature delimiter (``-- ``), ``____`` rule,
    ``Original Message`` line or ``On … wrote:`` line.  Nothing the member
    wrote above those is dropped; a mail that is all quote is kept whole."""
    kept = _QUOTED_LINE.sub("", text) if ">" in text else text
    if not kept.strip():
        return text.strip()
    cut = len(kept)
    if cut > REPLY_PARSER_CHARS:
        cut = kept.rfind("\n", 0, REPLY_PARSER_CHARS)
        if cut < REPLY_PARSER_CHARS // 2:
            cut = kept.rfind(" ", 0, REPLY_PARSER_CHARS)
        if cut < REPLY_PARSER_CHARS // 2:
            cut = REPLY_PARSER_CHARS
    head, tail = kept[:cut], kept[cut:]
    try:
        parsed = EmailReplyParser(languages=LANGUAGES).read(text=head)
        first = parsed.replies[0] if parsed.replies else None
        if first is not None and (len(parsed.replies) > 1 or first.signatures):
            latest = str(first.body).strip()
            if latest:
                return latest
    except Exception:
        pass
    end = _TAIL_END.search(tail)
    return (head + (tail[:end.start()] if end else tail)).strip()


QUOTE_PARSER_DEPTH = 100
"""quotequail's parser (libxml2) silently drops what nests deeper than 256
elements: deeper tags are dropped before it reads the mail (the text stays)."""


QUOTE_PARSER_CHARS = 65536
"""quotequail reads at most this much of an HTML body (1 MB cost it ~150 ms):
where it finds a quote in that head, what follows is quote too; where it
finds none, the rest is kept as written (nothing the member wrote is lost)."""


def _strip_html_quotes(html: str) -> str:
    html = cap_html_depth(html, QUOTE_PARSER_DEPTH)
    head, tail = html, ""
    if len(html) > QUOTE_PARSER_CHARS:
        cut = html.rfind("<", QUOTE_PARSER_CHARS // 2, QUOTE_PARSER_CHARS)
        cut = cut if cut > 0 else QUOTE_PARSER_CHARS
        head, tail = html[:cut], html[cut:]
    try:
        parts = quotequail.quote_html(head)
    except Exception:
        return html
    shown = [part for visible, part in parts if visible]
    if not shown:
        return html
    if len(shown) < len(parts):  # a quote starts in the head: the rest is quote
        return "".join(shown)
    return html if tail else "".join(shown)


def _rich_plain(rich: RichText) -> str:
    from bridge.contract.textconv import to_plain
    return to_plain(rich)


def _redact(text: str, addresses: Iterable[str]) -> str:
    wanted = {a.lower() for a in addresses if a}
    if text.isascii():  # (re.I also folds some non-ASCII letters onto ASCII ones)
        low = text.lower()
        wanted = {a for a in wanted if a in low}
    if wanted:  # one pass, longest first (an address may end another)
        text = re.compile("|".join(re.escape(a) for a in sorted(wanted, key=len, reverse=True)),
                          re.I).sub("[address removed]", text)
    return text


def _display_name(name: str) -> str:
    # Some clients put the bare address in the display name: that hides nothing.
    return "" if _EMAIL_RE.search(name) else name


def _is_administrivia(subject: str, body: str) -> bool:
    """Mailman's rule, simplified: a short mail whose subject or one of its first lines
    is a bare list command (``unsubscribe``, ``help``, ``join me``)."""
    lines = [ln for ln in body.split("\n") if ln.strip()]
    if len(lines) > 5:
        return False
    for line in [subject, *lines]:
        words = line.lower().split()
        if words and words[0].strip(".:!") in ADMIN_WORDS and len(words) <= 2:
            return True
    return False


def _attachments(msg: Message, max_bytes: int,
                 max_n: int) -> tuple[tuple[MailPart, ...], tuple[str, ...]]:
    parts: list[MailPart] = []
    dropped: list[str] = []
    if not isinstance(msg, EmailMessage):
        return (), ()
    for part in _leaves(msg) if msg.is_multipart() else ():
        try:
            name = clean_text(part.get_filename() or "attachment")
            data = part.get_payload(decode=True)
            if not isinstance(data, bytes):
                continue
            if len(data) > max_bytes or len(parts) >= max_n:
                dropped.append(f"{name} ({len(data) / 1e6:.1f} MB)")
                continue
            parts.append(MailPart(filename=name, media_type=part.get_content_type(),
                                  content=data))
        except Exception as exc:
            dropped.append(f"undecodable part ({exc.__class__.__name__})")
    return tuple(parts), tuple(dropped)


_SIGNATURES = frozenset({"application/pgp-signature", "application/pkcs7-signature",
                         "application/x-pkcs7-signature"})


def _leaves(msg: Message) -> Iterator[Message]:
    """The attachment-like leaves at any depth (a list that decorates a post
    wraps its parts in another multipart), not inside a forwarded message;
    text parts only when sent as attachments (the rest is body, alternative
    or the list's footer).  Iterative: the nesting depth is the sender's."""
    stack = [iter(msg.get_payload() if msg.is_multipart() else ())]
    while stack:
        for part in stack[-1]:
            if not isinstance(part, Message) or part.get_content_type() == "message/rfc822":
                continue
            if part.is_multipart():
                # Not into an HTML body's alternatives or its inline images (logos
                # in signatures); into a list's wrapper or a signed message's content.
                if part.get_content_subtype() not in ("alternative", "related"):
                    stack.append(iter(part.get_payload()))
                    break
            elif part.get_content_type() in _SIGNATURES:
                continue
            elif part.get_content_maintype() != "text" \
                    or part.get_content_disposition() == "attachment":
                yield part
        else:
            stack.pop()


def _archive_link(msg: Message) -> str:
    link = msgid(_header(msg, "Archived-At"))
    return link if link and link.startswith(("http://", "https://")) else ""


def _date(msg: Message) -> datetime:
    try:
        d = parsedate_to_datetime(_header(msg, "Date"))
        return d if d.tzinfo else d.replace(tzinfo=UTC)
    except (TypeError, ValueError, IndexError):
        return datetime.now(UTC)
