"""What the process hands every adapter factory, typed: no string keys to misspell.

:class:`Services` is built once per process (by the supervisor, or a test harness) and
given to every :meth:`~bridge.contract.adapter.AdapterFactory.create`; an adapter keeps
what it needs from it.  Today it carries the media-source registry each adapter adds
itself to (see :mod:`bridge.contract.media`) and the web view's address once it
listens.  A new process-wide helper is a new typed field here, so mypy catches a
misspelt or mistyped use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from yarl import URL


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaSource:
    """Where one account's attachments may be fetched from."""

    hosts: frozenset[str] = frozenset()
    """Allow-list entries (see :func:`bridge.contract.netguard.check_url`)."""
    allow_private: bool = False
    auth_origin: str = ""
    """``scheme://host[:port]`` that gets :attr:`auth_headers` (and no other)."""
    auth_headers: Mapping[str, str] = field(default_factory=dict)
    file_root: str = ""
    """A local directory whose files are this account's attachments (``file://``)."""

    def headers_for(self, url: str) -> dict[str, str]:
        if not self.auth_origin or not self.auth_headers:
            return {}
        try:
            same = URL(url).origin() == URL(self.auth_origin).origin()
        except ValueError:
            return {}
        return dict(self.auth_headers) if same else {}


class MediaSources:
    """Channel key -> the media source of the account serving it."""

    def __init__(self) -> None:
        self._by_channel: dict[str, Callable[[], MediaSource]] = {}

    def register(self, channels: Iterable[str], provider: Callable[[], MediaSource]) -> None:
        for key in channels:
            self._by_channel[str(key)] = provider

    def source_for(self, channel: str) -> MediaSource | None:
        provider = self._by_channel.get(str(channel))
        return provider() if provider is not None else None


@dataclass(slots=True, kw_only=True, eq=False)
class Services:
    """Process-wide helpers every adapter factory receives."""

    media_sources: MediaSources = field(default_factory=MediaSources)
    """Channel key -> where the attachments of posts read there may be fetched from:
    each adapter registers its channels when created; a target adapter's
    :class:`~bridge.contract.media.MediaFetcher` reads it."""
    web_url: str = ""
    """The web view's address (``http://host:port``) once it listens; empty before,
    and when the process serves no web view.  Set by :func:`bridge.web.serve_web`."""


__all__ = ["MediaSource", "MediaSources", "Services"]
