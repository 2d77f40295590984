"""Attachments across platforms: where each account's media may come from, and the
guarded fetch a target adapter does before it uploads one.

An attachment on a relayed post points at its *origin* platform: a Mastodon instance
or its media host, X's ``pbs.twimg.com``, a Matrix homeserver's authenticated media, an
email list's saved parts.  The *target* adapter fetches it to upload it again, and the
URL came from a stranger's post, so every fetch goes through :mod:`bridge.contract.netguard`
with the origin's rules:

* each adapter registers, when it is created, a provider of its :class:`MediaSource`
  for the channels it serves, in the process-wide :class:`MediaSources` kept in
  :attr:`Services.media_sources <bridge.contract.services.Services.media_sources>`.  The
  provider is called at
  fetch time, so what the adapter learns while running (a Mastodon instance's media
  host, a Matrix token from a password login) counts;
* a target adapter holds a :class:`MediaFetcher` on the same registry and, on a create,
  calls :meth:`MediaFetcher.fetch_all` with its own size limit.  Media from the
  origin's hosts comes back as bytes; anything refused is left out, logged at warning
  (host and path only, never a query string or a header) and turned into a note such
  as ``[image not relayed: too large]`` that :func:`with_notes` adds to the text, so
  the post itself is never lost;
* a fetch that may work later (time-out, 5xx, connection refused) raises
  :class:`~bridge.contract.adapter.TransientError` so the worker tries the whole send again, at
  most :data:`TRANSIENT_TRIES` times per attachment; then the post goes without it.

Production configs never reach private or loopback addresses; an account whose
platform runs on one (the sandboxes, a homeserver on the LAN) opts in with
``allow_private_media_hosts = true`` (:class:`MediaAccountKeys`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import re
import stat
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote

from pydantic import Field, field_validator
from yarl import URL

from bridge.contract.adapter import Rendered, StrictModel, TransientError
from bridge.contract.model import Attachment
from bridge.contract.netguard import MediaRefused, fetch_media
from bridge.contract.richtext import Paragraph, RichText, Text
from bridge.contract.services import MediaSource, MediaSources
from bridge.contract.textconv import to_html, to_markdown

if TYPE_CHECKING:
    import aiohttp

TRANSIENT_TRIES = 3
"""Sends tried with an attachment whose host keeps failing before it is left out."""

DEFAULT_TIMEOUT = 30.0
"""Seconds for one attachment's whole fetch (DNS, redirects, body).  Below the
worker's ``send_timeout_seconds`` (60 s by default)."""

_HOST_ENTRY = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$")


class MediaAccountKeys(StrictModel):
    """Account keys every adapter whose posts carry media shares."""

    media_hosts: list[str] = Field(default_factory=list)
    """More hosts (``host`` or ``host:port``) this account's attachments may be fetched
    from, besides the ones the adapter knows (a Mastodon instance and the media host
    its ``/api/v2/instance`` shows, X's ``*.twimg.com``, the Matrix homeserver)."""
    allow_private_media_hosts: bool = False
    """Testing only (the sandboxes set it): let this account's media hosts resolve to
    private or loopback addresses.  Leave it false in production."""

    @field_validator("media_hosts")
    @classmethod
    def _hosts(cls, hosts: list[str]) -> list[str]:
        for h in hosts:
            if not _HOST_ENTRY.match(h):
                raise ValueError(f"{h!r} is not host or host:port (no scheme, no path)")
        return hosts


def host_entry(url: str) -> str:
    """The allow-list entry for a base URL: ``host``, or ``host:port`` when the URL
    names a port (``https://m.example`` -> ``m.example``)."""
    u = URL(url)
    host = (u.host or "").lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{u.explicit_port}" if u.explicit_port is not None else host


@dataclass(frozen=True, slots=True)
class Fetched:
    attachment: Attachment
    data: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class MediaBatch:
    fetched: tuple[Fetched, ...]
    notes: tuple[str, ...]
    """One ``[image not relayed: ...]`` per attachment left out."""


_WHY = {"policy": "not from the original platform", "size": "too large",
        "unavailable": "could not be fetched", "type": "not taken here",
        "count": "too many attachments"}


def note_for(att: Attachment, kind: str) -> str:
    major = att.media_type.split("/", 1)[0]
    noun = major if major in ("image", "video", "audio") else "attachment"
    return f"[{noun} not relayed: {_WHY.get(kind, _WHY['policy'])}]"


def safe_url(url: str) -> str:
    """Scheme, host, port and path only: what a log line may show of a URL."""
    try:
        u = URL(url)
        shown = str(u.with_user(None).with_query(None).with_fragment(None)) if u.host \
            else f"{u.scheme}:{u.path}"
    except (ValueError, TypeError):
        shown = "(not a URL)"
    return shown[:160]


class MediaFetcher:
    """A target adapter's way to fetch the attachments of the posts it sends."""

    def __init__(self, sources: MediaSources, logger: logging.Logger, *,
                 timeout: float = DEFAULT_TIMEOUT,
                 http: Callable[[], aiohttp.ClientSession | None] = lambda: None) -> None:
        self.sources = sources
        self.log = logger
        self.timeout = timeout
        self._http = http
        self._failures: OrderedDict[tuple[str, str], int] = OrderedDict()

    async def fetch(self, origin_channel: str, att: Attachment, *,
                    max_bytes: int) -> Fetched:
        """The attachment's bytes, from where its origin account allows; else
        :class:`~bridge.contract.netguard.MediaRefused`."""
        source = self.sources.source_for(origin_channel)
        if source is None:
            raise MediaRefused(f"no account here serves {origin_channel}, so no media "
                               "host is known for it")
        if att.url.lower().startswith("file:"):
            if not source.file_root:
                raise MediaRefused("scheme 'file' is not http(s)")
            data = await asyncio.to_thread(_read_file, att.url, source.file_root, max_bytes)
            return Fetched(att, data, att.media_type)
        got = await fetch_media(self._http(), att.url, allowed_hosts=source.hosts,
                                max_bytes=max_bytes, timeout=self.timeout,
                                allow_private=source.allow_private,
                                headers=source.headers_for(att.url))
        return Fetched(att, got.data, got.content_type)

    async def fetch_all(self, key: str, origin_channel: str,
                        attachments: Sequence[Attachment], *,
                        max_bytes: Callable[[Attachment], int] | int) -> MediaBatch:
        """Fetch each attachment of one send (*key*: its idempotency key)."""
        fetched: list[Fetched] = []
        notes: list[str] = []
        for att in attachments:
            limit = max_bytes(att) if callable(max_bytes) else max_bytes
            try:
                fetched.append(await self.fetch(origin_channel, att, max_bytes=limit))
            except MediaRefused as e:
                if e.transient and self._count_failure(key, att.url) < TRANSIENT_TRIES:
                    raise TransientError(f"attachment {safe_url(att.url)}: {e.reason}") from e
                self.log.warning("attachment %s of delivery %s not relayed: %s",
                                 safe_url(att.url), key, e.reason)
                notes.append(note_for(att, e.kind))
        return MediaBatch(tuple(fetched), tuple(notes))

    def _count_failure(self, key: str, url: str) -> int:
        n = self._failures.pop((key, url), 0) + 1
        self._failures[(key, url)] = n
        while len(self._failures) > 1000:
            self._failures.popitem(last=False)
        return n


def _read_file(url: str, root: str, max_bytes: int) -> bytes:
    u = URL(url)
    if u.host not in (None, "", "localhost"):
        raise MediaRefused("file URL names a host")
    real = os.path.realpath(unquote(u.path))
    base = os.path.realpath(root)
    if os.path.commonpath([real, base]) != base:
        raise MediaRefused("file is outside the account's attachment directory")
    try:
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as e:
        raise MediaRefused(f"attachment file: {e.strerror}", kind="unavailable") from e
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise MediaRefused("attachment is not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(max_bytes + 1)
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise MediaRefused(f"media is over the {max_bytes} byte limit", kind="size")
    return data


SHORT_NOTE = "[media not relayed]"


def with_notes(rendered: Rendered, notes: Sequence[str], *,
               fits: Callable[[str], bool] | None = None) -> Rendered:
    """*rendered* with *notes* as a last paragraph, if they fit the target (*fits*
    judges the plain text); a shorter note if only that fits; else unchanged."""
    if not notes:
        return rendered
    for line in (" ".join(notes), SHORT_NOTE):
        plain = f"{rendered.plain}\n\n{line}" if rendered.plain.strip() else line
        if fits is None or fits(plain):
            break
    else:
        return rendered
    text = RichText((*rendered.text.blocks, Paragraph((Text(line),))))
    return dataclasses.replace(
        rendered, text=text, plain=plain,
        html=to_html(text) if rendered.html else "",
        markdown=to_markdown(text) if rendered.markdown else "")


__all__ = [
    "DEFAULT_TIMEOUT", "TRANSIENT_TRIES", "Fetched", "MediaAccountKeys", "MediaBatch",
    "MediaFetcher", "MediaSource", "MediaSources", "host_entry", "note_for", "safe_url",
    "with_notes",
]
