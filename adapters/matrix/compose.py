"""Pure outbound composition for Matrix: a rendered message into ``m.room.message``
content (new messages, ``m.replace`` edits, media), kept under the event size limit,
and the deterministic transaction ids that make a retried send idempotent.

No I/O (the adapter's :mod:`~adapters.matrix.outbound` half sends); the inbound half
is :mod:`adapters.matrix.convert`.
"""

from __future__ import annotations

import hashlib
import html as htmllib
import json
from typing import Any

from adapters.matrix.convert import HTML_FORMAT, MAX_BODY_CHARS, ORIGIN_KEY
from bridge.contract.adapter import Rendered
from bridge.contract.model import Attachment
from bridge.contract.textconv import clean_text, sanitise_html

MAX_CONTENT_BYTES = 60000
"""Content JSON budget: the spec caps a whole event at 65536 bytes, and the server
adds sender, ids, signatures and hashes around the content."""


def txn_id(idempotency_key: str, suffix: str = "") -> str:
    """A transaction id derived only from the delivery: a retried send (even after a
    crash) reuses it, and the homeserver returns the first event instead of a copy."""
    return "hb" + hashlib.sha256(f"{idempotency_key}|{suffix}".encode()).hexdigest()[:40]


def _body(rendered: Rendered, msgtype: str) -> dict[str, Any]:
    body = clean_text(rendered.plain)[:MAX_BODY_CHARS]
    html = sanitise_html(rendered.html) if rendered.html else ""
    cw = clean_text(rendered.content_warning).strip()[:500]
    if cw:
        # Matrix has no content warning; a spoiler hides the text in clients that
        # support it, and the CW line warns in those that don't.
        body = f"CW: {cw}\n\n{body}"
        inner = html if html.strip() else htmllib.escape(rendered.plain)
        esc = htmllib.escape(cw, quote=True)
        html = (f"<p><strong>CW: {esc}</strong></p>"
                f'<span data-mx-spoiler="{esc}">{inner}</span>')
    content: dict[str, Any] = {"msgtype": msgtype, "body": body}
    if html.strip() and len(html) <= MAX_BODY_CHARS:
        content["format"] = HTML_FORMAT
        content["formatted_body"] = html
    return content


def message_content(rendered: Rendered, *, reply_to: str | None = None,
                    thread_root: str | None = None,
                    origin: dict[str, str] | None = None) -> dict[str, Any]:
    """``m.room.message`` content for a new message.

    ``m.mentions`` is always present and empty: a relayed message pings nobody,
    not on ``@room``, a display name in its text, or a mention it carries.
    """
    content = _body(rendered, "m.notice" if rendered.is_notice else "m.text")
    content["m.mentions"] = {}
    if thread_root:
        content["m.relates_to"] = {
            "rel_type": "m.thread", "event_id": thread_root,
            "is_falling_back": reply_to is None,
            "m.in_reply_to": {"event_id": reply_to or thread_root}}
    elif reply_to:
        content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
    content[ORIGIN_KEY] = dict(origin or {})
    return fit(content)


def _size(content: dict[str, Any]) -> int:
    return len(json.dumps(content, ensure_ascii=False).encode())


def fit(content: dict[str, Any]) -> dict[str, Any]:
    """Keep content under the event size limit: drop the HTML first (the body says the
    same), then cut the body, so an over-long message is never refused (413)."""
    if _size(content) <= MAX_CONTENT_BYTES:
        return content
    out = dict(content)
    for holder in (out, out.get("m.new_content")):
        if isinstance(holder, dict):
            holder.pop("format", None)
            holder.pop("formatted_body", None)
    while _size(out) > MAX_CONTENT_BYTES:
        over = _size(out) - MAX_CONTENT_BYTES
        for holder in (out, out.get("m.new_content")):
            if isinstance(holder, dict) and isinstance(holder.get("body"), str):
                b = holder["body"]
                holder["body"] = b[:max(0, len(b) - over // 2 - 16)] + "…"
    return out


def edit_content(rendered: Rendered, target: str, *, mentions: list[str] | None = None,
                 origin: dict[str, str] | None = None) -> dict[str, Any]:
    """An ``m.replace`` edit; the top level is the ``* ...`` fallback for old clients."""
    msgtype = "m.notice" if rendered.is_notice else "m.text"
    new = _body(rendered, msgtype)
    new["m.mentions"] = {"user_ids": list(mentions)} if mentions else {}
    content = {
        "msgtype": msgtype, "body": "* " + new["body"],
        "m.new_content": new, "m.mentions": {},
        "m.relates_to": {"rel_type": "m.replace", "event_id": target},
        ORIGIN_KEY: dict(origin or {}),
    }
    if "formatted_body" in new:
        content["format"] = HTML_FORMAT
        content["formatted_body"] = "* " + new["formatted_body"]
    return fit(content)


def media_content(att: Attachment, mxc: str, size: int, *,
                  origin: dict[str, str] | None = None) -> dict[str, Any]:
    mime = att.media_type or "application/octet-stream"
    msgtype = next((m for m, p in (("m.image", "image/"), ("m.video", "video/"),
                                   ("m.audio", "audio/")) if mime.startswith(p)), "m.file")
    name = clean_text(att.filename or att.alt_text or "attachment")[:255]
    content: dict[str, Any] = {"msgtype": msgtype, "body": name, "url": mxc,
                               "info": {"mimetype": mime, "size": size}, "m.mentions": {}}
    if att.alt_text and att.alt_text != name:
        content["filename"], content["body"] = name, clean_text(att.alt_text)[:4000]
    content[ORIGIN_KEY] = dict(origin or {})
    return content
