"""The community's archive, in formats it can take anywhere.

``jsonl``    one canonical post per line (what a re-import or analysis needs)
``mbox``     one message per post, threaded with Message-ID / In-Reply-To, for
             mail clients and list archives
``markdown`` a readable archive; with an event, the transcript by question
``html``     a static site (index, archive pages, one page per chat transcript)
             that can be hosted anywhere

Deleted and hidden posts are never exported (the store scrubs deleted content,
the queries skip both), and no email address is written: email authors get a
pseudonymous address, addresses in text are shortened (see
:mod:`bridge.web.present`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sys
import time
import zipfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.charset import QP, Charset
from email.generator import BytesGenerator
from email.header import Header
from email.message import Message
from email.utils import format_datetime, formataddr
from typing import Any, TextIO

from bridge.contract.model import Post
from bridge.contract.textconv import to_markdown
from bridge.features.chatevents import build_transcript
from bridge.features.schedule_text import plural
from bridge.runtime.config import CommunityConfig, Config
from bridge.runtime.schedule import ChatEventConfig, Occurrence, occurrences
from bridge.store import Store, archive
from bridge.web.present import (
    author_handle,
    author_name,
    full_text,
    iso,
    post_plain,
    pseudonymous_address,
    public_text,
)
from bridge.web.site import network_name

FORMATS = ("jsonl", "mbox", "markdown", "html")
BATCH = 500
ARCHIVE_PAGE = 500

Progress = Callable[[int, int], None]


class ExportError(Exception):
    """The request cannot be served (unknown community, event or format)."""


@dataclass(frozen=True)
class Scope:
    community: CommunityConfig
    windows: tuple[Occurrence, ...] | None
    """None: the whole archive; else only these event occurrences."""


def resolve(config: Config, community: str, event: str | None,
            now: datetime, first: datetime | None) -> Scope:
    comm = next((c for c in config.communities if c.name == community), None)
    if comm is None:
        names = ", ".join(c.name for c in config.communities)
        raise ExportError(f"no community {community!r} (configured: {names})")
    if event is None:
        return Scope(comm, None)
    ev_id, _, occ_key = event.partition("/")
    ev = next((e for e in comm.settings.events if e.id == ev_id), None)
    if ev is None:
        ids = ", ".join(e.id for e in comm.settings.events) or "none"
        raise ExportError(f"no chat event {ev_id!r} in {community} (events: {ids})")
    return Scope(comm, tuple(_occurrences(ev, occ_key, now, first)))


def _occurrences(ev: ChatEventConfig, key: str, now: datetime,
                 first: datetime | None) -> list[Occurrence]:
    if key:
        from bridge.runtime.schedule import occurrence_at

        occ = occurrence_at(ev, key)
        if occ is None:
            raise ExportError(f"event {ev.id} has no occurrence {key!r}")
        return [occ]
    start = (first or now) - timedelta(days=1)
    return [o for o in occurrences(ev, start, now) if o.start <= now]


# ---------------------------------------------------------------- writers

def post_record(post: Post, network: str, edited_at: float | None) -> dict[str, Any]:
    a = post.author
    return {
        "id": post.id, "community": post.community, "network": network,
        "channel": post.origin_channel, "native_id": post.origin_native_id,
        "permalink": post.permalink,
        "author": {"platform": a.platform, "handle": author_handle(a), "name": author_name(a),
                   "profile_url": a.profile_url if author_handle(a) else ""},
        "text": post_plain(post), "markdown": to_markdown(full_text(post)),
        "rich": json.loads(public_text(post.text).to_json()),
        "attachments": [{"url": x.url, "media_type": x.media_type, "alt_text": x.alt_text}
                        for x in post.attachments],
        "reply_to": post.reply_to, "content_warning": post.content_warning,
        "language": post.language, "created_at": iso(post.created_at),
        "edited_at": iso(edited_at) if edited_at else None, "is_notice": post.is_notice,
    }


def message_id(post_id: str, community: str) -> str:
    return f"<{post_id}@{community}.hashbridge.invalid>"


class MboxWriter:
    """Threads survive import: every reply names its parent in In-Reply-To and the
    whole chain in References, and keeps the root's subject.

    Written directly in the mboxo format :class:`mailbox.mbox` writes (a ``From``
    separator line, body lines starting with ``From `` quoted) rather than
    through it, and with the compat32 email API: ``mailbox.mbox.add`` and the
    modern header registry cost several milliseconds a message.
    """

    def __init__(self, path: str, community: CommunityConfig, name_of: Callable[[str], str]):
        self.file = open(path, "wb")  # noqa: SIM115 - closed by close()
        self.comm = community
        self.name_of = name_of
        self.subjects: dict[str, str] = {}
        self.refs: dict[str, list[str]] = {}

    def add(self, post: Post, edited_at: float | None) -> None:
        tag = f"[{self.comm.settings.hashtag}]"
        text = post_plain(post)
        parent = post.reply_to
        if parent and parent in self.subjects:
            root = self.subjects[parent]
            subject = root if root.startswith("Re: ") else f"Re: {root}"
            refs = [*self.refs.get(parent, []), message_id(parent, post.community)]
        else:
            first_line = (text.splitlines() or [""])[0].strip()
            subject = f"{tag} {first_line[:70] or '(no text)'}"
            refs = [message_id(parent, post.community)] if parent else []
            if parent:
                subject = f"Re: {subject}"
        self.subjects[post.id] = subject
        self.refs[post.id] = refs[-20:]
        network = self.name_of(post.origin_channel)
        body = text
        if post.content_warning:
            body = f"Content warning: {post.content_warning}\n\n{body}"
        for att in post.attachments:
            body += f"\n\n[{att.media_type}] {att.alt_text or att.filename}: {att.url}"
        if edited_at:
            body += f"\n\n(edited {iso(edited_at)})"
        msg = Message()
        msg.set_payload(body + "\n", _UTF8_QP)  # also sets the MIME headers
        # formataddr quotes and encodes the (remote, untrusted) display name.
        msg["From"] = formataddr((_one_line(f"{author_name(post.author)} ({network})"),
                                  pseudonymous_address(post.author)), charset="utf-8")
        msg["To"] = f"<{self.comm.name}@hashbridge.invalid>"
        msg["Subject"] = _header(subject)
        msg["Date"] = format_datetime(post.created_at.astimezone(UTC))
        msg["Message-ID"] = message_id(post.id, post.community)
        if parent:
            msg["In-Reply-To"] = message_id(parent, post.community)
            msg["References"] = " ".join(self.refs[post.id])
        msg["X-Hashbridge-Network"] = _header(network)
        if post.permalink:
            msg["X-Hashbridge-Permalink"] = _header(post.permalink)
        stamp = time.asctime(time.gmtime(post.created_at.timestamp()))
        self.file.write(f"From MAILER-DAEMON {stamp}\n".encode())
        BytesGenerator(self.file, mangle_from_=True).flatten(msg)
        self.file.write(b"\n")

    def close(self) -> None:
        self.file.close()


_UTF8_QP = Charset("utf-8")
_UTF8_QP.body_encoding = QP  # readable in any mail archive, unlike base64


def _one_line(value: str) -> str:
    return " ".join(value.split())


def _header(value: str) -> str:
    value = _one_line(value)
    return value if value.isascii() else Header(value, "utf-8").encode()


def markdown_post(post: Post, network: str, edited_at: float | None) -> str:
    when = post.created_at.astimezone(UTC).strftime("%H:%M UTC")
    link = f" ([original]({post.permalink}))" if post.permalink.startswith("http") else ""
    body = to_markdown(full_text(post)).strip() or "(no text)"
    if post.content_warning:
        body = f"*Content warning: {post.content_warning}*\n\n{body}"
    body = body.replace("\n", "\n  ")
    edited = " *(edited)*" if edited_at else ""
    return f"- **{author_name(post.author)}** ({network}, {when}){link}{edited}:\n  {body}\n"


# ---------------------------------------------------------------- driver

async def export(store: Store, config: Config, community: str, fmt: str, out: str, *,
                 event: str | None = None, now: datetime | None = None,
                 progress: Progress | None = None) -> int:
    """Write the export to *out* (a file; a directory for ``html``); return the
    number of posts written.  Raises :class:`ExportError`."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
    now = now or datetime.now(UTC)
    first = await store.run(lambda tx: archive.batch_after(tx, community, "", 1))
    scope = resolve(config, community, event, now, first[0][0].created_at if first else None)

    def name_of(channel: str) -> str:
        return network_name(config, channel)

    windows = scope.windows
    total = await store.run(lambda tx: sum(
        archive.count_visible(tx, community, o.start.timestamp(), o.end.timestamp())
        for o in windows) if windows is not None else archive.count_visible(tx, community))
    done = 0

    async def batches() -> AsyncIterator[list[tuple[Post, float | None]]]:
        nonlocal done
        spans: list[tuple[float | None, float | None]] = [
            (o.start.timestamp(), o.end.timestamp()) for o in windows] \
            if windows is not None else [(None, None)]
        for start, end in spans:
            after = ""
            while True:
                rows = await store.run(functools.partial(
                    archive.batch_after, community=community, after=after, limit=BATCH,
                    start=start, end=end))
                if not rows:
                    break
                after = rows[-1][0].id
                yield rows
                done += len(rows)
                if progress:
                    progress(done, total)

    if fmt == "html":
        from bridge.web.static_site import write_site

        await write_site(store, config, scope, out, now, batches(), name_of)
        return done
    if fmt == "markdown" and windows is not None:
        posts: list[Post] = []
        async for rows in batches():
            posts.extend(p for p, _ in rows)
        text = transcripts_markdown(scope, posts, name_of)
        await asyncio.to_thread(_write_text, out, text)
        return done
    if fmt == "mbox":
        writer = await asyncio.to_thread(MboxWriter, out, scope.community, name_of)
        try:
            async for rows in batches():
                await asyncio.to_thread(_add_all, writer, rows)
        finally:
            await asyncio.to_thread(writer.close)
        return done
    chunks: list[str] = []
    if fmt == "markdown":
        chunks.append(f"# #{scope.community.settings.hashtag} archive\n\nExported "
                      f"{iso(now)}. Deleted posts are not included.\n")
    day = ""
    async for rows in batches():
        for post, edited_at in rows:
            if post.is_notice and fmt == "markdown":
                continue
            if fmt == "jsonl":
                chunks.append(json.dumps(post_record(post, name_of(post.origin_channel),
                                                     edited_at), ensure_ascii=False) + "\n")
            else:
                d = post.created_at.astimezone(UTC).strftime("%Y-%m-%d")
                if d != day:
                    chunks.append(f"\n## {d}\n\n")
                    day = d
                chunks.append(markdown_post(post, name_of(post.origin_channel), edited_at))
    await asyncio.to_thread(_write_text, out, "".join(chunks))
    return done


def _add_all(writer: MboxWriter, rows: list[tuple[Post, float | None]]) -> None:
    for post, edited_at in rows:
        writer.add(post, edited_at)


def transcripts_markdown(scope: Scope, posts: list[Post], name_of: Callable[[str], str]) -> str:
    assert scope.windows is not None
    out = [f"# #{scope.community.settings.hashtag} chat transcripts\n"]

    def network(p: Post) -> str:
        return name_of(p.origin_channel)

    for occ in scope.windows:
        t = build_transcript(occ, posts, network)
        out.append(f"\n## {occ.event.title}, {occ.local_start():%Y-%m-%d %H:%M %Z}\n")
        out.append(f"\n{plural(len(t.questions), 'question')}, "
                   f"{plural(t.answer_count, 'answer')}, {plural(t.people, 'person')}.\n")
        for net, people in t.participants.items():
            out.append(f"\n- {net}: {plural(t.counts[net], 'post')} by {', '.join(people)}")
        out.append("\n")
        for q in t.questions:
            out.append(f"\n### Q{q.number}\n\n")
            if q.post:
                out.append(markdown_post(q.post, network(q.post), None))
            out.append(f"\n#### {plural(len(q.answers), 'answer')}\n\n")
            out.extend(markdown_post(a, network(a), None) for a in q.answers)
        if t.other:
            out.append("\n### Other posts\n\n")
            out.extend(markdown_post(p, network(p), None) for p in t.other)
    return "".join(out)


def _write_text(path: str, text: str) -> None:
    if path == "-":
        sys.stdout.write(text)
        return
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def zip_dir(directory: str, zip_path: str) -> None:
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as z:
        for root, _dirs, files in os.walk(directory):
            for name in files:
                full = os.path.join(root, name)
                z.write(full, os.path.relpath(full, directory))


class ProgressBar:
    """A one-line bar on a terminal; silent when *stream* is not one."""

    def __init__(self, stream: TextIO = sys.stderr, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self.enabled = stream.isatty()

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        frac = min(1.0, done / total)
        bar = "#" * int(frac * self.width)
        self.stream.write(f"\rexporting [{bar:<{self.width}}] {frac:4.0%} {done}/{total}")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()

