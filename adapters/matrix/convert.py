"""Pure inbound conversions: Matrix events into the canonical model.

Inbound: raw event dicts (``Event.source`` from nio, or JSON from the wire) into
``Posted``/``Edited``/``Deleted``, or an ``Unsupported`` value with its reason
(``IGNORED``: well formed, not for relaying; ``MALFORMED``: not mappable).
Nothing here does I/O or raises on bad input.  The outbound half (a rendered
message into ``m.room.message`` content) is :mod:`adapters.matrix.compose`.
"""

from __future__ import annotations

import html as htmllib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from bridge.contract.adapter import Unsupported, UnsupportedKind
from bridge.contract.model import (
    Attachment,
    Author,
    ChannelKey,
    Deleted,
    Edited,
    NativeId,
    Poll,
    PollOption,
    Posted,
    Reacted,
)
from bridge.contract.richtext import (
    Block,
    Emphasis,
    Inline,
    Paragraph,
    Quote,
    RichText,
    Text,
)
from bridge.contract.textconv import clean_text, from_html, from_plain, to_plain

ORIGIN_KEY = "org.hashbridge.origin"
"""Custom content key on every event we send: loop prevention beyond the sender check."""
HTML_FORMAT = "org.matrix.custom.html"
MEDIA_MSGTYPES = {"m.image": "image/*", "m.file": "application/octet-stream",
                  "m.video": "video/*", "m.audio": "audio/*"}
TEXT_MSGTYPES = frozenset({"m.text", "m.emote"})
MAX_BODY_CHARS = 65536
"""A body beyond this is cut: no homeserver accepts events over 64 KiB anyway."""
COMMANDS = frozenset({"!join", "!leave"})
"""A whole message that is one of these is a consent command for the relay."""
_SPOILER = re.compile(r"""data-mx-spoiler(?:\s*=\s*(?:"([^"]*)"|'([^']*)'))?""")


@dataclass(frozen=True, slots=True)
class EditOf:
    """An edit, with the sender the original must have (checked with I/O later)."""

    event: Edited
    sender: str


Inbound = Posted | Deleted | Reacted | EditOf | Unsupported

MAX_REACTION_KEY = 64
"""Characters of a reaction's key kept (a key is an emoji, or any text a client sends)."""


def _ignored(reason: str) -> Unsupported:
    return Unsupported(reason=reason, kind=UnsupportedKind.IGNORED)


def _malformed(reason: str) -> Unsupported:
    return Unsupported(reason=reason, kind=UnsupportedKind.MALFORMED)


def permalink(room_id: str, event_id: str) -> str:
    return f"https://matrix.to/#/{quote(room_id, safe='!:')}/{quote(event_id, safe='$:')}"


def mxc_to_http(homeserver: str, mxc: str) -> str | None:
    """The authenticated-media download URL of an ``mxc://server/id`` URI."""
    m = re.fullmatch(r"mxc://([A-Za-z0-9.\-:\[\]]+)/([A-Za-z0-9_\-]+)", mxc)
    if not m:
        return None
    return f"{homeserver.rstrip('/')}/_matrix/client/v1/media/download/{m[1]}/{m[2]}"


def strip_reply_fallback(body: str) -> str:
    """Remove a legacy rich-reply fallback (leading ``> `` lines and the blank line after)."""
    lines = body.split("\n")
    if not lines or not lines[0].startswith("> "):
        return body
    i = 0
    while i < len(lines) and lines[i].startswith(">"):
        i += 1
    if i < len(lines) and lines[i] == "":
        i += 1
    return "\n".join(lines[i:])


def _text_of(content: dict[str, Any], is_reply: bool) -> RichText:
    body = content.get("body")
    body = body[:MAX_BODY_CHARS] if isinstance(body, str) else ""
    fmt_body = content.get("formatted_body")
    if content.get("format") == HTML_FORMAT and isinstance(fmt_body, str) and fmt_body.strip():
        # sanitise_html drops <mx-reply> with its content: the HTML reply fallback.
        rt = _detect_tags(from_html(fmt_body[:MAX_BODY_CHARS * 2]))
        if not rt.is_empty():
            return rt
    if is_reply:
        body = strip_reply_fallback(body)
    return from_plain(clean_text(body))


def _detect_tags(rt: RichText) -> RichText:
    """Find hashtags, links and mentions in the text nodes of HTML, as ``from_plain``
    does for plain bodies: Matrix HTML carries no tag markup, and the relay's
    consent check (``#nobridge``) reads Hashtag inlines."""
    return RichText(tuple(_detect_block(b) for b in rt.blocks))


def _detect_block(b: Block) -> Block:
    if isinstance(b, Paragraph):
        return Paragraph(_detect_inlines(b.inlines))
    if isinstance(b, Quote):
        return Quote(tuple(_detect_block(x) for x in b.blocks))
    return b


def _detect_inlines(items: tuple[Inline, ...]) -> tuple[Inline, ...]:
    out: list[Inline] = []
    for i in items:
        if isinstance(i, Emphasis):
            out.append(Emphasis(_detect_inlines(i.children), i.strong))
        elif isinstance(i, Text) and ("#" in i.text or "@" in i.text or ":" in i.text):
            t = i.text
            lead, trail = t[:len(t) - len(t.lstrip())], t[len(t.rstrip()):]
            parsed = from_plain(t.strip())
            if len(parsed.blocks) == 1 and isinstance(parsed.blocks[0], Paragraph):
                out.extend([Text(lead)] if lead else [])
                out.extend(parsed.blocks[0].inlines)
                out.extend([Text(trail)] if trail else [])
            else:
                out.append(i)
        else:
            out.append(i)
    return tuple(out)


def _relation(content: dict[str, Any]) -> tuple[str, str, str]:
    """(rel_type, event_id, in_reply_to) from ``m.relates_to``, empty strings if absent."""
    rel = content.get("m.relates_to")
    if not isinstance(rel, dict):
        return "", "", ""
    rel_type = rel.get("rel_type") if isinstance(rel.get("rel_type"), str) else ""
    target = rel.get("event_id") if isinstance(rel.get("event_id"), str) else ""
    irt = rel.get("m.in_reply_to")
    reply = irt.get("event_id") if isinstance(irt, dict) else ""
    reply = reply if isinstance(reply, str) else ""
    if rel_type == "m.thread" and rel.get("is_falling_back", False) is True:
        # In a thread, a fallback in_reply_to only points at the latest event for old
        # clients; the real parent is the thread root.
        reply = ""
    return rel_type or "", target or "", reply


def _attachment(content: dict[str, Any], msgtype: str, homeserver: str,
                max_bytes: int) -> tuple[Attachment | None, str]:
    url = content.get("url")
    if not isinstance(url, str):
        return None, "media without url (encrypted file?)"
    http = mxc_to_http(homeserver, url)
    if http is None:
        return None, f"bad mxc uri {url[:80]!r}"
    raw_info = content.get("info")
    info: dict[str, Any] = raw_info if isinstance(raw_info, dict) else {}
    size = info.get("size")
    size = size if type(size) is int and size >= 0 else None
    if size is not None and size > max_bytes:
        return None, f"attachment of {size} bytes over the {max_bytes} limit"
    mime = info.get("mimetype") if isinstance(info.get("mimetype"), str) else ""
    name = content.get("filename") or content.get("body") or ""
    name = clean_text(name)[:255] if isinstance(name, str) else ""
    return Attachment(url=http, media_type=mime or MEDIA_MSGTYPES[msgtype], size=size,
                      filename=name, alt_text=name if msgtype == "m.image" else ""), ""


def parse_event(raw: Any, *, channel: ChannelKey, room_id: str, homeserver: str,
                display_name: str = "", max_media_bytes: int = 10 * 1024 * 1024) -> Inbound:
    """One timeline event into what the relay should hear about it."""
    if not isinstance(raw, dict):
        return _malformed("event is not an object")
    etype, event_id, sender = raw.get("type"), raw.get("event_id"), raw.get("sender")
    if not (isinstance(etype, str) and isinstance(event_id, str) and isinstance(sender, str)):
        return _malformed("event without type, event_id or sender")
    content = raw.get("content")
    if not isinstance(content, dict):
        return _malformed(f"{event_id}: content is not an object")
    if etype == "m.room.redaction":
        # Room v11 moved `redacts` into content; older rooms have it at the top level.
        target = content.get("redacts") or raw.get("redacts")
        if not isinstance(target, str):
            return _malformed(f"{event_id}: redaction without target")
        return Deleted(channel=channel, native_id=NativeId(target))
    if etype in POLL_START_TYPES:
        return _poll_start(raw, content, channel=channel, room_id=room_id,
                           display_name=display_name)
    if etype == "m.reaction":
        return _reaction(raw, content, channel, event_id, sender, display_name)
    if etype != "m.room.message":
        return _ignored(f"event type {etype}")
    if ORIGIN_KEY in content:
        return _ignored("relayed by a hashbridge")
    msgtype = content.get("msgtype")
    if not content or msgtype is None:
        return _ignored("redacted or empty message")
    if not isinstance(msgtype, str):
        return _malformed(f"{event_id}: msgtype is not a string")
    if msgtype == "m.notice":
        return _ignored("m.notice: automated messages are never relayed")
    rel_type, target, reply = _relation(content)
    if rel_type == "m.replace":
        new = content.get("m.new_content")
        if not isinstance(new, dict) or not target:
            return _malformed(f"{event_id}: edit without m.new_content or target")
        if not isinstance(new.get("msgtype"), str) or new["msgtype"] not in TEXT_MSGTYPES:
            return _ignored(f"edit to {str(new.get('msgtype'))[:40]!r}")
        text = _emote(_text_of(new, False), new, display_name or sender)
        return EditOf(Edited(channel=channel, native_id=NativeId(target), text=text,
                             edited_at=_ts(raw)), sender)
    if rel_type == "m.thread" and not reply:
        reply = target
    attachments: tuple[Attachment, ...] = ()
    if msgtype in TEXT_MSGTYPES:
        text = _emote(_text_of(content, bool(reply)), content, display_name or sender)
    elif msgtype in MEDIA_MSGTYPES:
        att, why = _attachment(content, msgtype, homeserver, max_media_bytes)
        body, fname = content.get("body"), content.get("filename")
        # A body next to a distinct filename is a caption; else the body is the name.
        caption = body if isinstance(fname, str) and isinstance(body, str) and body != fname \
            else ""
        text = from_plain(clean_text(caption[:MAX_BODY_CHARS]))
        if att is None:
            text = RichText((*text.blocks, Paragraph((Text(f"[attachment not relayed: {why}]"),))))
        else:
            attachments = (att,)
    else:
        return _malformed(f"{event_id}: msgtype {str(msgtype)[:40]!r}")
    if text.is_empty() and not attachments:
        return _ignored("empty message")
    plain = to_plain(text).strip().lower()
    command = plain if msgtype == "m.text" and plain in COMMANDS else ""
    return Posted(
        channel=channel, native_id=NativeId(event_id),
        author=Author(platform="matrix", handle=sender, display_name=clean_text(display_name),
                      profile_url=f"https://matrix.to/#/{quote(sender, safe='@:')}"),
        text=text, permalink=permalink(room_id, event_id), attachments=attachments,
        reply_to_native=NativeId(reply) if reply else None, created_at=_ts(raw),
        content_warning=_spoiler(content), command=command)


POLL_START_TYPES = ("m.poll.start", "org.matrix.msc3381.poll.start")
"""MSC3381 polls: the stable type and the unstable one clients still send."""


def _mx_text(value: Any) -> str:
    """An MSC1767 text: a plain string (unstable ``org.matrix.msc1767.text``) or
    a list of representations (stable ``m.text``: the plain one wanted)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        plain = [str(r["body"]) for r in value if isinstance(r, dict)
                 and isinstance(r.get("body"), str) and r.get("mimetype", "text/plain")
                 == "text/plain"]
        return plain[0] if plain else ""
    return ""


def _poll_text(node: Any) -> str:
    if not isinstance(node, dict):
        return ""
    body = node.get("body")
    return clean_text(_mx_text(node.get("m.text")) or _mx_text(node.get(
        "org.matrix.msc1767.text")) or (body if isinstance(body, str) else ""))


def _poll_start(raw: dict[str, Any], content: dict[str, Any], *, channel: ChannelKey,
                room_id: str, display_name: str) -> Inbound:
    """An MSC3381 poll: its question as the post's words and its answers as the
    poll (not the text fallback, which lists the answers again).  Matrix polls
    have no end time: they end when their sender sends ``m.poll.end``."""
    event_id, sender = raw["event_id"], raw["sender"]
    body = content.get("m.poll") if "m.poll" in content \
        else content.get("org.matrix.msc3381.poll.start")
    if not isinstance(body, dict):
        return _malformed(f"{event_id}: poll without m.poll")
    if ORIGIN_KEY in content:
        return _ignored("relayed by a hashbridge")
    answers = body.get("answers")
    options = tuple(PollOption(title=t[:MAX_BODY_CHARS])
                    for a in (answers if isinstance(answers, list) else [])[:MAX_POLL_ANSWERS]
                    if (t := _poll_text(a)))
    if not options:
        return _malformed(f"{event_id}: poll without answers")
    question = _poll_text(body.get("question"))[:MAX_BODY_CHARS]
    most = body.get("max_selections")
    return Posted(
        channel=channel, native_id=NativeId(event_id),
        author=Author(platform="matrix", handle=sender, display_name=clean_text(display_name),
                      profile_url=f"https://matrix.to/#/{quote(sender, safe='@:')}"),
        text=from_plain(question), permalink=permalink(room_id, event_id), created_at=_ts(raw),
        poll=Poll(options=options, multiple=type(most) is int and most > 1))


MAX_POLL_ANSWERS = 20
"""MSC3381 allows at most 20 answers."""
def _reaction(raw: dict[str, Any], content: dict[str, Any], channel: ChannelKey,
              event_id: str, sender: str, display_name: str) -> Reacted | Unsupported:
    """An ``m.reaction`` (an ``m.annotation`` of another event, with its key)."""
    rel = content.get("m.relates_to")
    if not isinstance(rel, dict) or rel.get("rel_type") != "m.annotation":
        return _ignored("reaction without an annotation")
    target, key = rel.get("event_id"), rel.get("key")
    if not isinstance(target, str) or not isinstance(key, str) or not clean_text(key).strip():
        return _malformed(f"{event_id}: annotation without its event or key")
    reactor = Author(platform="matrix", handle=sender, display_name=clean_text(display_name),
                     profile_url=f"https://matrix.to/#/{quote(sender, safe='@:')}")
    return Reacted(channel=channel, native_id=NativeId(target), reactor=reactor,
                   key=clean_text(key)[:MAX_REACTION_KEY], reaction_id=event_id)


def _spoiler(content: dict[str, Any]) -> str:
    """A spoiler in the HTML is the closest Matrix has to a content warning."""
    html = content.get("formatted_body")
    if not isinstance(html, str) or "data-mx-spoiler" not in html:
        return ""
    m = _SPOILER.search(html[:MAX_BODY_CHARS])
    reason = clean_text(htmllib.unescape(m[1] or m[2] or "")).strip()[:500] if m else ""
    return reason or "spoiler"


def _emote(text: RichText, content: dict[str, Any], name: str) -> RichText:
    if content.get("msgtype") != "m.emote":
        return text
    return text.with_prefix([Text(f"* {clean_text(name)} ")])


def _ts(raw: dict[str, Any]) -> datetime:
    ts = raw.get("origin_server_ts")
    if isinstance(ts, int) and 0 < ts < 10**14:
        return datetime.fromtimestamp(ts / 1000, UTC)
    return datetime.now(UTC)
