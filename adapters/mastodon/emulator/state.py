"""The data behind the Mastodon emulator: accounts, statuses, media, idempotency,
rate-limit windows and the streams' subscribers.

Shapes follow what a real Mastodon 4.6.4 sends (the Mastodon.py cassettes in
``shared/fixtures/mastodon``): the same keys, in the same order, with the same
types.  This module does no I/O; :mod:`adapters.mastodon.emulator.app` serves it.
"""

from __future__ import annotations

import asyncio
import html
import itertools
import json
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grapheme

# The snowflake layout Mastodon uses (ms since epoch << 16 | sequence) so ids
# sort by length then lexically, as clients are told to sort them.
_SEQ = itertools.count(1)


def snowflake(at: float | None = None) -> str:
    ms = int((at if at is not None else time.time()) * 1000)
    return str((ms << 16) | (next(_SEQ) & 0xFFFF))


def id_key(status_id: str) -> tuple[int, str]:
    """Mastodon ids are opaque strings: compare by length, then lexically."""
    return (len(status_id), status_id)


def covers(granted: tuple[str, ...], needed: str) -> bool:
    """Whether *granted* scopes include *needed*: itself or its parent (``write``
    covers ``write:statuses``), as Doorkeeper's scope check does in Mastodon."""
    return needed in granted or needed.split(":", 1)[0] in granted


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def iso_micro(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace(
        "+00:00", "Z")


@dataclass
class EmuAccount:
    id: str
    username: str
    token: str
    display_name: str = ""
    note: str = ""
    fields: list[tuple[str, str]] = field(default_factory=list)
    bot: bool = False
    locked: bool = False
    discoverable: bool | None = None
    indexable: bool = True
    noindex: bool = False
    created_at: float = field(default_factory=time.time)
    scopes: tuple[str, ...] = ("read", "write")
    """The OAuth scopes of the app the token was issued to (served by
    ``/api/v1/apps/verify_credentials`` since 4.3); the emulator grants the token
    all of them, and refuses a route whose scope they do not cover (403)."""
    domain: str = ""
    """A remote account's server (served as ``user@domain``); empty for a local one."""
    limited: bool = False
    """Limited (silenced) by the instance's moderators: served as ``limited: true``."""


@dataclass
class EmuMedia:
    id: str
    account_id: str
    mime: str
    data: bytes
    description: str | None
    processing: bool = False
    status_id: str | None = None
    url: str | None = None
    """Where the file is served when not by the emulator itself (a CDN, a test
    server): the status shows this URL."""


@dataclass
class EmuStatus:
    id: str
    account: EmuAccount
    text: str
    visibility: str
    spoiler_text: str = ""
    sensitive: bool = False
    in_reply_to_id: str | None = None
    in_reply_to_account_id: str | None = None
    language: str | None = "en"
    media_ids: list[str] = field(default_factory=list)
    created_at: float = field(default_factory=time.time)
    edited_at: float | None = None
    deleted: bool = False
    idempotency_key: str = ""
    application: str | None = None
    content_html: str | None = None
    """Served as ``content`` instead of the HTML rendered from ``text``: a post
    from another server, whose HTML is whatever that server sent."""
    wire_overrides: dict[str, Any] = field(default_factory=dict)
    """Fields served as given, over the rendered ones (a malformed remote post)."""


@dataclass
class Limits:
    """Real Mastodon values by default (``api/rate-limits.md``); tests shrink them."""

    overall: tuple[int, float] = (300, 300.0)
    deletes: tuple[int, float] = (30, 1800.0)
    media: tuple[int, float] = (30, 1800.0)


@dataclass
class Faults:
    """Knobs tests turn to make the emulator misbehave like a real server can."""

    storm_until: float = 0.0
    """Every API call answers 429 until this epoch time (a rate-limit storm)."""
    fail_500: int = 0
    """The next N API calls answer 500."""
    fail_500_path: str = ""
    """Only calls whose path starts with this count for ``fail_500`` ("" = all)."""
    delay: float = 0.0
    """Seconds added before every response (a slow server)."""
    streams_silent: bool = False
    """Open streams stop delivering events and heartbeats but stay connected."""


class RateWindows:
    """Fixed windows aligned to the period, as Rack::Attack counts them."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, int], int] = {}

    def hit(self, who: str, name: str, limit: int, period: float,
            now: float) -> tuple[int, int, float]:
        """Count one request; return (limit, remaining, reset epoch)."""
        window = int(now // period)
        key = (who, name, window)
        self._counts[key] = self._counts.get(key, 0) + 1
        return limit, limit - self._counts[key], (window + 1) * period


_TOKEN = re.compile(
    r"(?P<url>https?://[^\s<>\"]+[^\s<>\".,;:!?)\]'])"
    r"|(?<![\w/#@])#(?P<tag>\w+)"
    r"|(?<![\w/@])@(?P<user>[a-zA-Z0-9_]+)(?:@(?P<domain>[a-zA-Z0-9.-]+[a-zA-Z0-9]))?")
_URL_FOR_COUNT = re.compile(r"https?://[^\s<>\"]+[^\s<>\".,;:!?)\]']")
_REMOTE_MENTION = re.compile(r"(^|[^/\w])@([a-z0-9_]+)@[a-z0-9.\-]+[a-z0-9]+", re.IGNORECASE)


def status_length(text: str, spoiler: str, url_weight: int) -> int:
    """Mastodon's rule: graphemes; a URL weighs *url_weight*; a remote mention
    counts only its ``@user`` part; the content warning counts too."""
    countable = _URL_FOR_COUNT.sub("x" * url_weight, text)
    countable = _REMOTE_MENTION.sub(r"\1@\2", countable)
    length: int = grapheme.length(countable) + grapheme.length(spoiler)
    return length


class EmulatorState:
    """Everything the emulated instance knows."""

    def __init__(self, *, domain: str = "127.0.0.1", max_characters: int = 500,
                 characters_reserved_per_url: int = 23, max_media_attachments: int = 4,
                 heartbeat: float = 15.0, limits: Limits | None = None,
                 version: str = "4.6.4") -> None:
        self.base_url = f"http://{domain}"
        self.domain = domain
        self.files_url = ""
        """The host files are served from, like Mastodon's S3_ALIAS_HOST (empty: the
        instance itself); the instance thumbnail shows it."""
        self.max_characters = max_characters
        self.url_weight = characters_reserved_per_url
        self.max_media_attachments = max_media_attachments
        self.heartbeat = heartbeat
        self.limits = limits or Limits()
        self.version = version
        self.faults = Faults()
        self.windows = RateWindows()
        self.accounts: dict[str, EmuAccount] = {}
        self.statuses: dict[str, EmuStatus] = {}
        self.media: dict[str, EmuMedia] = {}
        self.idempotency: dict[tuple[str, str], tuple[str, float]] = {}
        self.subscribers: set[tuple[str | None, bool, asyncio.Queue[tuple[str, str]]]] = set()
        """(tag, local only, queue) of every open hashtag stream."""
        self.notifications: list[tuple[str, str, str]] = []
        """(notification id, account id notified, status id): mentions."""
        self.favourites: dict[str, dict[str, str]] = {}
        """Status id -> {account id who favourited it: its notification id}."""
        self.requests: list[tuple[str, str]] = []
        """(method, path) of every request, for tests that count calls."""
        self.rules: list[tuple[str, str]] | None = [
            ("Be kind to each other.", ""),
            ("No spam or advertising.", "Promotional posts are removed.")]
        """The instance's rules as (text, hint), served by ``/api/v1/instance/rules``
        and in ``/api/v2/instance``; tests replace them.  None: an instance older
        than 3.4, which has no rules route (404)."""

    def rules_json(self) -> list[dict[str, Any]]:
        """Rule entities as Mastodon serves them (``id`` a string; ``translations``
        since 4.4, empty when the admins wrote none)."""
        return [{"id": str(n), "text": text, "hint": hint, "translations": {}}
                for n, (text, hint) in enumerate(self.rules or [], 1)]

    # ------------------------------------------------------------ accounts
    def add_account(self, username: str, *, token: str | None = None,
                    **profile: Any) -> EmuAccount:
        domain = profile.get("domain", "")
        acc = EmuAccount(id=snowflake(), username=username,
                         token=token or f"token-{username}" + (f"@{domain}" if domain else ""),
                         **profile)
        self.accounts[acc.id] = acc
        return acc

    def by_token(self, token: str) -> EmuAccount | None:
        return next((a for a in self.accounts.values() if a.token == token), None)

    def by_username(self, username: str) -> EmuAccount | None:
        """The account ``user`` or ``user@domain`` names (this instance's own
        domain, or none, names a local account)."""
        name, _, domain = username.lstrip("@").partition("@")
        domain = "" if domain == self.domain else domain
        return next((a for a in self.accounts.values()
                     if a.username == name and a.domain == domain), None)

    # ------------------------------------------------------------ statuses
    def validate(self, text: str, spoiler: str, media_ids: list[str]) -> str | None:
        """The server's validation message, or None when the status is fine."""
        if not text.strip() and not media_ids:
            return "Validation failed: Text can't be blank"
        if status_length(text, spoiler, self.url_weight) > self.max_characters:
            return f"Validation failed: Text character limit of {self.max_characters} exceeded"
        if len(media_ids) > self.max_media_attachments:
            return "Validation failed: Media attachments limit exceeded"
        return None

    def create(self, account: EmuAccount, text: str, *, visibility: str = "public",
               spoiler_text: str = "", sensitive: bool = False,
               in_reply_to_id: str | None = None, media_ids: list[str] | None = None,
               language: str | None = "en", idempotency_key: str = "",
               application: str | None = "Web", content_html: str | None = None,
               wire_overrides: dict[str, Any] | None = None,
               at: float | None = None) -> EmuStatus:
        """*at*: when it was posted (Unix seconds; default now), for history a test
        sets up before the bridge starts: its id is that moment's snowflake."""
        parent = self.statuses.get(in_reply_to_id or "")
        st = EmuStatus(id=snowflake(at), account=account, text=text, visibility=visibility,
                       spoiler_text=spoiler_text, sensitive=sensitive or bool(spoiler_text),
                       in_reply_to_id=parent.id if parent else None,
                       in_reply_to_account_id=parent.account.id if parent else None,
                       language=language, media_ids=list(media_ids or []),
                       idempotency_key=idempotency_key, application=application,
                       content_html=content_html, wire_overrides=dict(wire_overrides or {}))
        if at is not None:
            st.created_at = at
        for mid in st.media_ids:
            self.media[mid].status_id = st.id
        self.statuses[st.id] = st
        if idempotency_key:
            self.idempotency[(account.id, idempotency_key)] = (st.id, time.time())
        for m in self.render_html(text)[1]:
            if m["id"] != account.id:
                self.notifications.append((snowflake(), m["id"], st.id))
        self._publish("update", st)
        return st

    def idempotent_hit(self, account: EmuAccount, key: str) -> EmuStatus | None:
        """Mastodon keeps an Idempotency-Key for one hour and answers with the first status."""
        found = self.idempotency.get((account.id, key))
        if found and time.time() - found[1] < 3600:
            return self.statuses.get(found[0])
        return None

    def edit(self, st: EmuStatus, text: str, *, spoiler_text: str | None = None,
             sensitive: bool | None = None, media_ids: list[str] | None = None,
             language: str | None = None) -> EmuStatus:
        st.text = text
        if spoiler_text is not None:
            st.spoiler_text = spoiler_text
        if sensitive is not None:
            st.sensitive = sensitive
        if media_ids is not None:
            st.media_ids = list(media_ids)
        if language:
            st.language = language
        st.edited_at = time.time()
        self._publish("status.update", st)
        return st

    def favourite(self, account: EmuAccount, st: EmuStatus) -> None:
        """*account* favourites *st*: once (again is a no-op, as on Mastodon); the
        author is notified (``favourite``) unless it is their own status."""
        faves = self.favourites.setdefault(st.id, {})
        if account.id in faves:
            return
        faves[account.id] = snowflake() if st.account.id != account.id else ""

    def unfavourite(self, account: EmuAccount, st: EmuStatus) -> None:
        """Mastodon sends nothing on an unfavourite, and its favourite notification
        goes with the favourite (``has_one :notification, dependent: :destroy``)."""
        self.favourites.get(st.id, {}).pop(account.id, None)

    def favourite_notes(self) -> list[tuple[str, str, str, str]]:
        """(notification id, account id notified, status id, who favourited) of
        every favourite notification."""
        return [(nid, self.statuses[sid].account.id, sid, who)
                for sid, faves in self.favourites.items() for who, nid in faves.items() if nid]

    def delete(self, st: EmuStatus) -> EmuStatus:
        st.deleted = True
        self._publish("delete", st)
        return st

    def visible(self, status_id: str) -> EmuStatus | None:
        st = self.statuses.get(status_id)
        return st if st and not st.deleted else None

    def can_see(self, st: EmuStatus, account: EmuAccount | None) -> bool:
        """Mastodon's rule for one status: public and unlisted for anyone;
        followers-only and direct for their author and the accounts they mention
        (the emulator keeps no follow graph)."""
        if st.visibility in ("public", "unlisted"):
            return True
        return account is not None and (st.account is account or any(
            m["id"] == account.id for m in self.render_html(st.text)[1]))

    def hashtag_timeline(self, tag: str, *, local: bool = False,
                         remote: bool = False) -> list[EmuStatus]:
        """Public, undeleted statuses carrying *tag*, newest first; *local*: only
        this instance's accounts', *remote*: only other servers'."""
        tag = tag.casefold()
        found = [s for s in self.statuses.values()
                 if not s.deleted and s.visibility == "public" and tag in self.tags_of(s)
                 and not (local and s.account.domain) and not (remote and not s.account.domain)]
        return sorted(found, key=lambda s: id_key(s.id), reverse=True)

    # ------------------------------------------------------------ streams
    def _publish(self, event: str, st: EmuStatus) -> None:
        if st.visibility != "public":
            return
        payload = st.id if event == "delete" else json.dumps(self.status_json(st))
        tags = self.tags_of(st)
        for tag, local_only, queue in list(self.subscribers):
            if (tag is None or tag in tags) and not (local_only and st.account.domain):
                queue.put_nowait((event, payload))

    # ------------------------------------------------------------ rendering
    def tags_of(self, st: EmuStatus) -> set[str]:
        return {m.group("tag").casefold() for m in _TOKEN.finditer(st.text) if m.group("tag")}

    def render_html(self, text: str) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
        """Plain status text into Mastodon's HTML, plus its mentions and tags arrays."""
        mentions: list[dict[str, Any]] = []
        tags: list[dict[str, Any]] = []

        def inline(chunk: str) -> str:
            out, pos = [], 0
            for m in _TOKEN.finditer(chunk):
                out.append(html.escape(chunk[pos:m.start()], quote=False))
                pos = m.end()
                if m.group("url"):
                    url = m.group("url")
                    scheme, _, rest = url.partition("://")
                    shown, tail = rest[:30], rest[30:]
                    out.append(
                        f'<a href="{html.escape(url)}" target="_blank" rel="nofollow noopener"'
                        f' translate="no"><span class="invisible">{scheme}://</span>'
                        f'<span class="{"ellipsis" if tail else ""}">{html.escape(shown)}</span>'
                        f'<span class="invisible">{html.escape(tail)}</span></a>')
                elif m.group("tag"):
                    tag = m.group("tag")
                    url = f"{self.base_url}/tags/{tag.casefold()}"
                    tags.append({"name": tag.casefold(), "url": url})
                    out.append(f'<a href="{url}" class="mention hashtag" rel="tag">'
                               f'#<span>{html.escape(tag)}</span></a>')
                else:
                    acc = None if m.group("domain") not in (None, self.domain) else \
                        self.by_username(m.group("user"))
                    if acc is None:
                        out.append(html.escape(m.group(0), quote=False))
                        continue
                    url = f"{self.base_url}/@{acc.username}"
                    mentions.append({"id": acc.id, "username": acc.username, "url": url,
                                     "acct": acc.username})
                    out.append(f'<span class="h-card" translate="no"><a href="{url}" '
                               f'class="u-url mention">@<span>{acc.username}</span></a></span>')
            out.append(html.escape(chunk[pos:], quote=False))
            return "".join(out).replace("'", "&#39;")

        paras = [p for p in text.strip().split("\n\n") if p.strip()]
        body = "".join("<p>" + "<br />".join(inline(line) for line in p.split("\n")) + "</p>"
                       for p in paras)
        return body, mentions, tags

    def account_json(self, acc: EmuAccount, *, credentials: bool = False) -> dict[str, Any]:
        url = f"https://{acc.domain}/@{acc.username}" if acc.domain else \
            f"{self.base_url}/@{acc.username}"
        count = sum(1 for s in self.statuses.values() if s.account is acc and not s.deleted)
        note_html = self.render_html(acc.note)[0] if acc.note else ""
        out: dict[str, Any] = {
            "id": acc.id, "username": acc.username,
            "acct": f"{acc.username}@{acc.domain}" if acc.domain else acc.username,
            "display_name": acc.display_name, "locked": acc.locked, "bot": acc.bot,
            "discoverable": acc.discoverable, "indexable": acc.indexable, "group": False,
            "created_at": iso(acc.created_at)[:10] + "T00:00:00.000Z", "note": note_html,
            "url": url, "uri": f"https://{acc.domain}/users/{acc.username}" if acc.domain
            else f"{self.base_url}/ap/users/{acc.id}",
            "avatar": f"{self.base_url}/avatars/original/missing.png",
            "avatar_static": f"{self.base_url}/avatars/original/missing.png",
            "avatar_description": "",
            "header": f"{self.base_url}/headers/original/missing.png",
            "header_static": f"{self.base_url}/headers/original/missing.png",
            "header_description": "", "followers_count": 0, "following_count": 0,
            "statuses_count": count, "last_status_at": None, "hide_collections": None,
            "show_media": True, "show_media_replies": True, "show_featured": True,
            "noindex": acc.noindex,
            "feature_approval": {"automatic": [], "manual": [], "current_user": "denied"},
            "emojis": [], "roles": [],
            "fields": [{"name": n, "value": html.escape(v), "verified_at": None}
                       for n, v in acc.fields],
        }
        if acc.domain:  # a remote account: no ``noindex``, ``roles`` null (the spec)
            del out["noindex"]
            out["roles"] = None
        if acc.limited:  # AccountSerializer: ``silenced`` as ``limited``, only when true
            out["limited"] = True
        if credentials:
            out["source"] = {
                "privacy": "public", "sensitive": False, "language": None, "note": acc.note,
                "fields": [{"name": n, "value": v, "verified_at": None} for n, v in acc.fields],
                "follow_requests_count": 0, "hide_collections": None,
                "discoverable": acc.discoverable, "indexable": acc.indexable,
                "attribution_domains": [], "quote_policy": "public"}
            out["role"] = {"id": "-99", "name": "", "permissions": "65536", "color": "",
                           "highlighted": False, "collection_limit": 10}
        return out

    def media_json(self, m: EmuMedia) -> dict[str, Any]:
        kind = m.mime.split("/")[0]
        kind = kind if kind in ("image", "video", "audio") else "unknown"
        kind = "gifv" if m.mime == "image/gif" else kind
        ext = m.mime.split("/")[-1]
        url = m.url or \
            f"{self.base_url}/system/media_attachments/files/{m.id}/original/{m.id}.{ext}"
        return {"id": m.id, "type": kind, "url": None if m.processing else url,
                "preview_url": f"{self.base_url}/system/media_attachments/files/{m.id}/small/"
                               f"{m.id}.jpg",
                "remote_url": None, "preview_remote_url": None, "text_url": None,
                "meta": {"original": {"width": 1, "height": 1, "size": "1x1", "aspect": 1.0}},
                "description": m.description, "blurhash": None}

    def status_json(self, st: EmuStatus, *, deleted_form: bool = False) -> dict[str, Any]:
        content, mentions, tags = self.render_html(st.text)
        url = f"{self.base_url}/@{st.account.username}/{st.id}"
        out: dict[str, Any] = {
            "id": st.id, "created_at": iso(st.created_at), "in_reply_to_id": st.in_reply_to_id,
            "in_reply_to_account_id": st.in_reply_to_account_id, "sensitive": st.sensitive,
            "spoiler_text": st.spoiler_text, "visibility": st.visibility,
            "language": st.language,
            "uri": f"{self.base_url}/ap/users/{st.account.id}/statuses/{st.id}", "url": url,
            "replies_count": 0, "reblogs_count": 0,
            "favourites_count": len(self.favourites.get(st.id, ())), "quotes_count": 0,
            "edited_at": iso(st.edited_at) if st.edited_at else None, "favourited": False,
            "reblogged": False, "muted": False, "bookmarked": False, "pinned": False,
        }
        # A deleted status comes back with its source ``text`` and without
        # ``content``: what the real server does (recorded), not what the spec says.
        if deleted_form:
            out["text"] = st.text
        else:
            out["content"] = content if st.content_html is None else st.content_html
        out.update({
            "filtered": [], "reblog": None,
            "application": {"name": st.application, "website": None} if st.application else None,
            "account": self.account_json(st.account),
            "media_attachments": [self.media_json(self.media[m]) for m in st.media_ids],
            "mentions": mentions, "tags": tags, "emojis": [], "tagged_collections": [],
            "quote": None, "card": None, "poll": None,
            "quote_approval": {"automatic": ["public"], "manual": [],
                               "current_user": "automatic"},
        })
        if out["application"] is None:
            del out["application"]
        out.update(st.wire_overrides)
        return out
