"""The X emulator's world: users, posts, media, search and rate-limit windows.

No HTTP here: :mod:`adapters.twitter.emulator.app` serves this state over the X API
v2 wire format, and the sandbox drives members' posts through it directly.
Shapes follow the recorded tweepy cassettes and twarc pages in
``shared/fixtures/twitter`` (t.co wrapping, ``entities`` with code-point
offsets, ``note_tweet`` for long posts, ``errors`` for missing ones).
"""

from __future__ import annotations

import hashlib
import itertools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import twitter_text

WINDOW = 15 * 60
SNOWFLAKE_EPOCH_MS = 1288834974657
"""X's snowflake epoch (2010-11-04T01:42:54.657Z): ids count milliseconds from it."""
RECENT_SEARCH_DAYS = 7
"""How far back ``GET /2/tweets/search/recent`` reaches (``start_time`` "must be
within the last 7 days", X's OpenAPI spec)."""


def snowflake_time(tid: str) -> float:
    """When post *tid* was made (Unix seconds), read from its snowflake id."""
    return ((int(tid) >> 22) + SNOWFLAKE_EPOCH_MS) / 1000
"""X rate limits count per 15-minute window."""

# Per-user (OAuth1 user context) and per-app (Bearer) limits per window, from
# x-api/fundamentals/rate-limits.mdx; 0 means the auth kind is not accepted.
LIMITS: dict[str, tuple[int, int]] = {
    "create": (100, 0),
    "delete": (50, 0),
    "search": (300, 450),
    "lookup": (900, 450),
    "me": (75, 0),
    "timeline": (900, 1500),
    "upload": (500, 0),
    "usage": (0, 50),
}

_TAG = re.compile(r"(?<![\w&])[#＃](\w*[^\W\d]\w*)")
_MENTION = re.compile(r"(?<![\w@])@(\w{1,15})\b")
_TERM = re.compile(r'-?"[^"]*"|\S+')


@dataclass
class User:
    id: str
    username: str
    name: str
    created_at: datetime


@dataclass
class Media:
    media_key: str
    media_id: str
    media_type: str
    size: int
    alt_text: str = ""
    url: str = ""


@dataclass
class Tweet:
    id: str
    author_id: str
    text: str
    """Full text as displayed, URLs already wrapped as t.co links."""
    created_at: datetime
    urls: tuple[tuple[str, str], ...] = ()
    """(t.co url, expanded url) in order of appearance."""
    reply_to: str | None = None
    quote_of: str | None = None
    retweet_of: str | None = None
    conversation_id: str = ""
    media_keys: tuple[str, ...] = ()
    deleted: bool = False
    via_api: bool = False
    media_link: str = ""
    """The t.co link X appends to the text for attached media."""
    history: tuple[str, ...] = ()
    """Ids of this post's edit chain, oldest first (empty: never edited)."""
    superseded: bool = False
    """An older version of an edited post: still readable by id, not searched."""
    wire_overrides: dict[str, object] = field(default_factory=dict)
    """Fields served as given, over the rendered ones (a malformed post)."""
    poll: dict[str, object] | None = None
    """The attached poll as X serves it in ``includes.polls`` (all poll.fields)."""
    likes: int = 0
    """How many accounts liked it (``public_metrics.like_count``)."""


@dataclass
class Window:
    start: float
    used: int = 0


@dataclass
class Fault:
    """One scripted misbehaviour, consumed per matching request."""

    kind: str
    """``status`` (answer ``status``), ``slow`` (sleep ``delay`` then serve),
    ``rate_limit`` (a 429 storm until ``until``), ``usage_cap``."""
    route: str = ""
    """Only requests whose path starts with this (empty: all)."""
    method: str = ""
    """Only requests with this method (empty: all)."""
    count: int = 1
    status: int = 500
    delay: float = 0.0
    until: float = 0.0


def weighted_length(text: str) -> int:
    return int(twitter_text.parse_tweet(text).weightedLength)


def _ts(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


@dataclass
class XState:
    clock: Callable[[], float] = time.time
    read_cap: int = 10_000_000
    """Posts readable per month before the usage-cap 429 (``UsageCapExceeded``)."""
    users: dict[str, User] = field(default_factory=dict)
    tweets: dict[str, Tweet] = field(default_factory=dict)
    media: dict[str, Media] = field(default_factory=dict)
    windows: dict[tuple[str, str], Window] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    reads: int = 0
    """Posts read (returned) this billing cycle: ``project_usage``."""
    reads_by_day: dict[str, int] = field(default_factory=dict)
    """Posts read per UTC day (``YYYY-MM-DD``): ``daily_project_usage``."""
    cap_reset_day: int = 1
    """The day of the month the project's read cap resets (``cap_reset_day``)."""
    project_id: str = "1369785403853424"
    client_app_id: str = "26794301"
    """The id of the developer app the credentials belong to."""
    not_enrolled: set[str] = field(default_factory=set)
    """Rate-limit buckets (``search``, ``usage``...) the app's access level does not
    include: X answers them 403 ``client-not-enrolled``."""
    posts_created: int = 0
    limits: dict[str, tuple[int, int]] = field(default_factory=lambda: dict(LIMITS))
    """Per-instance copy of :data:`LIMITS` (the demo sandbox polls faster)."""
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _last_id: int = 0

    # ------------------------------------------------------------ identities
    def _next_id(self, at: float | None = None) -> str:
        """X's snowflake: milliseconds since X's epoch << 22, plus a sequence, so an
        id tells its post's time (:func:`snowflake_time`) as on X.  Increasing,
        except for a post dated back (*at*: history a test sets up)."""
        ms = int((self.clock() if at is None else at) * 1000) - SNOWFLAKE_EPOCH_MS
        tid = (ms << 22) | (next(self._ids) & 0x3FFFFF)
        if at is None:
            tid = max(tid, self._last_id + 1)
            self._last_id = tid
        return str(tid)

    def user(self, username: str, name: str = "") -> User:
        for u in self.users.values():
            if u.username.lower() == username.lower():
                return u
        u = User(id=self._next_id(), username=username, name=name or username.title(),
                 created_at=datetime.fromtimestamp(self.clock(), UTC))
        self.users[u.id] = u
        return u

    def by_username(self, username: str) -> User | None:
        return next((u for u in self.users.values()
                     if u.username.lower() == username.lower()), None)

    # ------------------------------------------------------------ posting
    def _wrap_urls(self, text: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        out, urls, pos = [], [], 0
        for ent in twitter_text.extract_urls_with_indices(text):
            s, e = ent["indices"]
            url = ent["url"]
            full = url if "://" in url else "https://" + url
            tco = "https://t.co/" + hashlib.sha1(full.encode()).hexdigest()[:10]
            out.append(text[pos:s] + tco)
            urls.append((tco, full))
            pos = e
        out.append(text[pos:])
        return "".join(out), tuple(urls)

    def create(self, author: User, text: str, *, reply_to: str | None = None,
               quote_of: str | None = None, retweet_of: str | None = None,
               media_ids: tuple[str, ...] = (), via_api: bool = False,
               poll: dict[str, object] | None = None, at: float | None = None) -> Tweet:
        """A post; *poll*: X's poll object (``options`` with ``position``,
        ``label``, ``votes``; ``end_datetime``, ``voting_status``,
        ``duration_minutes``), served under ``includes.polls`` with an id of its own;
        *at*: when it was posted (default now), for history set up by a test."""
        quoted = self.tweets.get(quote_of or "")
        if quoted is not None:
            # X puts the quoted post's address at the end of the text (a t.co link)
            qauthor = self.users[quoted.author_id].username
            text = f"{text} https://twitter.com/{qauthor}/status/{quoted.id}".lstrip()
        shown, urls = self._wrap_urls(text)
        parent = self.tweets.get(reply_to) if reply_to else None
        tid = self._next_id(at)
        keys = tuple(m.media_key for mid in media_ids if (m := self.media.get(mid)))
        media_link = ""
        if keys:  # X appends a link to the photo page and marks it with the media key
            media_link = "https://t.co/m" + hashlib.sha1(tid.encode()).hexdigest()[:9]
            shown = f"{shown} {media_link}".lstrip()
            urls = (*urls, (media_link, f"https://x.com/{author.username}/status/{tid}/photo/1"))
        t = Tweet(id=tid, author_id=author.id, text=shown, urls=urls,
                  created_at=datetime.fromtimestamp(self.clock() if at is None else at, UTC),
                  reply_to=reply_to, quote_of=quote_of, retweet_of=retweet_of, media_keys=keys,
                  conversation_id=parent.conversation_id if parent else tid, via_api=via_api,
                  media_link=media_link,
                  poll={**poll, "id": str(int(tid) + 7)} if poll is not None else None)
        self.tweets[tid] = t
        return t

    def edit(self, tid: str, text: str) -> Tweet:
        """X's edit: a new post id carrying the chain in ``edit_history_tweet_ids``."""
        old = self.tweets[tid]
        new = self.create(self.users[old.author_id], text, reply_to=old.reply_to,
                          quote_of=old.quote_of)
        chain = (*(old.history or (old.id,)), new.id)
        for i in chain:
            self.tweets[i].history = chain
        old.superseded = True
        new.conversation_id = old.conversation_id
        return new

    def mentions(self, t: Tweet) -> list[str]:
        return [m.lower() for m in _MENTION.findall(t.text)]

    def summoned(self, parent: Tweet, bot: User) -> bool:
        """X's 2026 rule: a programmatic reply needs the parent's author to have
        mentioned or quoted the replier (or the parent to be the replier's own)."""
        if parent.author_id == bot.id or bot.username.lower() in self.mentions(parent):
            return True
        quoted = self.tweets.get(parent.quote_of or "")
        return bool(quoted and quoted.author_id == bot.id)

    def is_duplicate(self, author: User, text: str) -> bool:
        shown, _ = self._wrap_urls(text)
        return any(t.author_id == author.id and not t.deleted and t.text == shown
                   for t in self.tweets.values())

    # ------------------------------------------------------------ search
    def matches(self, t: Tweet, query: str) -> bool:
        text = t.text.lower()
        tags = {m.lower() for m in _TAG.findall(t.text)}
        author = self.users[t.author_id].username.lower()
        for raw in _TERM.findall(query):
            neg = raw.startswith("-")
            term = raw[1:] if neg else raw
            low = term.lower()
            if low in ("or", "and"):
                continue
            if low.startswith("is:"):
                kind = low[3:]
                hit = {"retweet": t.retweet_of is not None, "reply": t.reply_to is not None,
                       "quote": t.quote_of is not None}.get(kind, False)
            elif low.startswith("from:"):
                hit = author == low[5:].lstrip("@")
            elif low.startswith("#"):
                hit = low[1:] in tags
            elif low.startswith("@"):
                hit = low[1:] in self.mentions(t)
            else:
                hit = low.strip('"') in text
            if hit == neg:
                return False
        return True

    def search(self, query: str, since_id: str | None, until_id: str | None,
               start_time: str | None = None) -> list[Tweet]:
        """Matching live posts, newest first (X's order)."""
        start = (datetime.fromisoformat(start_time.replace("Z", "+00:00"))
                 if start_time else None)
        found = [t for t in self.tweets.values()
                 if not t.deleted and not t.superseded and self.matches(t, query)
                 and (since_id is None or int(t.id) > int(since_id))
                 and (until_id is None or int(t.id) < int(until_id))
                 and (start is None or t.created_at >= start)]
        return sorted(found, key=lambda t: int(t.id), reverse=True)

    def count_reads(self, n: int) -> None:
        """*n* posts returned to the client: billed reads, today's and the cycle's."""
        self.reads += n
        day = datetime.fromtimestamp(self.clock(), UTC).strftime("%Y-%m-%d")
        self.reads_by_day[day] = self.reads_by_day.get(day, 0) + n

    # ------------------------------------------------------------ limits
    def take(self, bucket: str, principal: str, app: bool) -> tuple[bool, int, int, int]:
        """Count one request; ``(allowed, limit, remaining, reset_epoch)``."""
        limit = self.limits[bucket][1 if app else 0]
        now = self.clock()
        w = self.windows.get((bucket, principal))
        if w is None or now >= w.start + WINDOW:
            w = self.windows[(bucket, principal)] = Window(start=now)
        reset = int(w.start + WINDOW)
        if w.used >= limit:
            return False, limit, 0, reset
        w.used += 1
        return True, limit, limit - w.used, reset

    def take_fault(self, path: str, method: str = "GET") -> Fault | None:
        now = self.clock()
        for f in list(self.faults):
            if (f.route and not path.startswith(f.route)) or (f.method and f.method != method):
                continue
            if f.kind == "rate_limit":
                if now >= f.until:
                    self.faults.remove(f)
                    continue
                return f
            f.count -= 1
            if f.count <= 0:
                self.faults.remove(f)
            return f
        return None

    # ------------------------------------------------------------ rendering
    def entities(self, text: str, urls: tuple[tuple[str, str], ...],
                 media: tuple[str, str] = ("", "")) -> dict[str, object]:
        ents: dict[str, object] = {}
        tags = [{"start": m.start(), "end": m.end(), "tag": m.group(1)}
                for m in _TAG.finditer(text)]
        ments = []
        for m in _MENTION.finditer(text):
            u = self.by_username(m.group(1))
            ment: dict[str, object] = {"start": m.start(), "end": m.end(),
                                       "username": m.group(1)}
            if u:
                ment["id"] = u.id
            ments.append(ment)
        links = []
        for tco, full in urls:
            s = text.find(tco)
            if s >= 0:
                display = full.split("://", 1)[-1]
                link: dict[str, object] = {
                    "start": s, "end": s + len(tco), "url": tco, "expanded_url": full,
                    "display_url": display[:26] + ("…" if len(display) > 26 else "")}
                if tco == media[0]:
                    link["media_key"] = media[1]
                    link["display_url"] = "pic.x.com/" + tco.rsplit("/", 1)[-1]
                links.append(link)
        for k, v in (("hashtags", tags), ("mentions", ments), ("urls", links)):
            if v:
                ents[k] = v
        return ents

    def short_text(self, t: Tweet) -> str:
        """What ``text`` holds: long posts are cut to 280 weighted characters and
        the rest is in ``note_tweet`` (the X data dictionary)."""
        if weighted_length(t.text) <= 280:
            return t.text
        r = twitter_text.parse_tweet(t.text)
        return t.text[: r.validRangeEnd - 1] + "…"

    def tweet_json(self, t: Tweet, fields: set[str]) -> dict[str, object]:
        text = self.short_text(t)
        out: dict[str, object] = {"id": t.id, "text": text,
                                  "edit_history_tweet_ids": list(t.history or (t.id,))}
        refs = [{"type": k, "id": v} for k, v in (("replied_to", t.reply_to),
                                                    ("quoted", t.quote_of),
                                                    ("retweeted", t.retweet_of)) if v]
        parent = self.tweets.get(t.reply_to or "")
        optional: dict[str, object] = {
            "author_id": t.author_id,
            "created_at": _ts(t.created_at),
            "conversation_id": t.conversation_id,
            "lang": "en",
            "possibly_sensitive": False,
            "reply_settings": "everyone",
            "edit_controls": {"edits_remaining": 5, "is_edit_eligible": False,
                              "editable_until": _ts(t.created_at)},
            # Both the names the live API returns (retweet_count) and the
            # ones the 2.167 spec requires (repost_count).
            "public_metrics": {"retweet_count": 0, "repost_count": 0, "reply_count": 0,
                               "like_count": t.likes, "quote_count": 0,
                               "bookmark_count": 0, "impression_count": 0},
        }
        if refs:
            optional["referenced_tweets"] = refs
        if parent:
            optional["in_reply_to_user_id"] = parent.author_id
        media = (t.media_link, t.media_keys[0] if t.media_keys else "")
        ents = self.entities(text, t.urls, media)
        if ents:
            optional["entities"] = ents
        attachments: dict[str, object] = {}
        if t.media_keys:
            attachments["media_keys"] = list(t.media_keys)
        if t.poll is not None:
            attachments["poll_ids"] = [t.poll["id"]]
        if attachments:
            optional["attachments"] = attachments
        if text != t.text:
            note = {"text": t.text, "entities": self.entities(t.text, t.urls, media)}
            optional["note_tweet"] = note
            optional["note_post"] = note
        for k, v in optional.items():
            if k in fields:
                out[k] = v
        out.update(t.wire_overrides)
        return out

    def user_json(self, u: User, fields: set[str]) -> dict[str, object]:
        out: dict[str, object] = {"id": u.id, "name": u.name, "username": u.username}
        posts = sum(1 for t in self.tweets.values() if t.author_id == u.id)
        optional: dict[str, object] = {
            "created_at": _ts(u.created_at), "protected": False, "verified": False,
            "description": "", "profile_image_url":
                f"https://pbs.twimg.com/profile_images/{u.id}/normal.jpg",
            "public_metrics": {"followers_count": 0, "following_count": 0,
                               "tweet_count": posts, "post_count": posts,
                               "listed_count": 0, "like_count": 0, "media_count": 0},
        }
        out.update({k: v for k, v in optional.items() if k in fields})
        return out

    def media_json(self, m: Media, fields: set[str]) -> dict[str, object]:
        kind = "photo" if m.media_type.startswith("image/") else "video"
        if m.media_type == "image/gif":
            kind = "animated_gif"
        out: dict[str, object] = {"media_key": m.media_key, "type": kind}
        optional: dict[str, object] = {"url": m.url, "alt_text": m.alt_text,
                                       "width": 1, "height": 1}
        out.update({k: v for k, v in optional.items() if k in fields and v != ""})
        return out
