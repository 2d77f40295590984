"""Pure inbound conversions: X API v2 pages and posts into the canonical model.

No I/O and no client objects.  Input that cannot be mapped becomes an
:class:`~bridge.contract.adapter.Unsupported` value with a reason; nothing here
raises on bad payloads.  X's text rules and the digest text, the outbound half,
are in :mod:`adapters.twitter.compose`.
"""

from __future__ import annotations

import functools
import html
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bridge.contract.adapter import Unsupported, UnsupportedKind, check_size, convert_guarded
from bridge.contract.model import (
    LIKE,
    Attachment,
    Author,
    ChannelKey,
    NativeId,
    Poll,
    PollOption,
    Posted,
    QuotedPost,
    Reacted,
    Rejected,
)
from bridge.contract.richtext import (
    Block,
    Hashtag,
    Inline,
    LineBreak,
    Link,
    Mention,
    Paragraph,
    RichText,
)
from bridge.contract.richtext import Text as TextNode
from bridge.contract.textconv import drop_controls

MAX_POST_CHARS = 25_000
"""The longest post X accepts (Premium's long posts); a longer one is rejected unread."""
_MEDIA_TYPES = {"photo": "image/jpeg", "animated_gif": "video/mp4", "video": "video/mp4"}
# Language codes X uses for "no language" (undetermined, media only, hashtags only...).
log = logging.getLogger("hashbridge.adapter.twitter")
_NO_LANG = {"und", "zxx", "qme", "qht", "qam", "qst", "qct", "art"}


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedPage:
    events: tuple[Posted, ...]
    skipped: tuple[Unsupported, ...]
    newest_id: str | None
    """Highest post id seen on the page (skipped ones included): the next since_id."""
    edits: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """New post id -> the earlier ids of its edit chain, for posts that are
    edits (X gives an edit a new id; ``edit_history_tweet_ids`` links them)."""
    rejected: tuple[Rejected, ...] = ()
    """Posts that could not be read (malformed, too large): recorded, not relayed."""


def _parse_time(value: Any) -> datetime:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
    return datetime.now(UTC)


def _spans(text: str, entities: Mapping[str, Any], drop_status: str = ""
           ) -> list[tuple[int, int, Inline | None]]:
    spans: list[tuple[int, int, Inline | None]] = []
    for u in entities.get("urls") or []:
        if "media_key" in u:  # the pic.x.com link standing for an attachment
            spans.append((u["start"], u["end"], None))
            continue
        url = u.get("unwound_url") or u.get("expanded_url") or u.get("url", "")
        if drop_status and _status_id(str(url)) == drop_status:
            # the t.co link standing for the quoted post (relayed as the quote)
            spans.append((u["start"], u["end"], None))
            continue
        spans.append((u["start"], u["end"], Link(url)))
    for m in entities.get("mentions") or []:
        name = m.get("username", "")
        spans.append((m["start"], m["end"], Mention(name, url=f"https://x.com/{name}")))
    for h in entities.get("hashtags") or []:
        spans.append((h["start"], h["end"], Hashtag(h.get("tag", ""))))
    spans.sort(key=lambda s: s[0])
    out: list[tuple[int, int, Inline | None]] = []
    last = 0
    for s, e, node in spans:  # overlapping or out-of-range entities are ignored
        if isinstance(s, int) and isinstance(e, int) and last <= s < e <= len(text):
            out.append((s, e, node))
            last = e
    return out


def _text_inlines(raw: str) -> list[Inline]:
    raw = drop_controls(raw)
    if "\n" not in raw and "&" not in raw:  # most gaps between entities: one node
        return [TextNode(raw)] if raw else []
    out: list[Inline] = []
    for i, line in enumerate(drop_controls(html.unescape(raw)).split("\n")):
        if i:
            out.append(LineBreak())
        if line:
            out.append(TextNode(line))
    return out


_STATUS_URL = re.compile(r"^https?://(?:www\.|mobile\.)?(?:twitter|x)\.com/"
                         r"(?:[A-Za-z0-9_]+|i(?:/web)?)/status(?:es)?/(\d+)", re.I)


def _status_id(url: str) -> str:
    m = _STATUS_URL.match(url)
    return m.group(1) if m else ""


def rich_text(text: str, entities: Mapping[str, Any] | None, *,
              drop_status: str = "") -> RichText:
    """X text plus its entities as canonical rich text (t.co links expanded;
    the link to the post *drop_status*, the quoted one, dropped).

    Entity offsets are code points into the text as served (X escapes ``&<>``
    as HTML entities), so spans are cut first and unescaped after."""
    inlines: list[Inline] = []
    pos = 0
    for s, e, node in _spans(text, entities or {}, drop_status):
        inlines.extend(_text_inlines(text[pos:s]))
        if node is not None:
            inlines.append(node)
        pos = e
    inlines.extend(_text_inlines(text[pos:]))
    blocks: list[Block] = []
    # blank lines separate paragraphs, as in textconv.from_plain
    para: list[Inline] = []
    breaks = 0
    for node in inlines:
        if isinstance(node, LineBreak):
            breaks += 1
            continue
        if breaks >= 2 and para:
            blocks.append(Paragraph(tuple(para)))
            para = []
        elif breaks == 1 and para:
            para.append(LineBreak())
        breaks = 0
        if isinstance(node, TextNode) and para and isinstance(para[-1], TextNode):
            para[-1] = TextNode(para[-1].text + node.text)
        else:
            para.append(node)
    # whitespace left before a dropped media link ends the post
    while para and isinstance(para[-1], TextNode) and not para[-1].text.strip():
        para.pop()
    if para and isinstance(para[-1], TextNode):
        para[-1] = TextNode(para[-1].text.rstrip())
    if para:
        blocks.append(Paragraph(tuple(para)))
    return RichText(tuple(blocks))


def _attachment(media: Mapping[str, Any]) -> Attachment | None:
    url = media.get("url") or media.get("preview_image_url") or ""
    if media.get("type") in ("video", "animated_gif"):
        best = [v for v in media.get("variants") or [] if v.get("content_type") == "video/mp4"]
        if best:
            url = max(best, key=lambda v: v.get("bit_rate", 0)).get("url", url)
    if not url:
        return None
    return Attachment(url=url, media_type=_MEDIA_TYPES.get(media.get("type", ""),
                                                          "application/octet-stream"),
                      alt_text=media.get("alt_text", "") or "")


def parse_poll(poll: Mapping[str, Any]) -> Poll | None:
    """An X poll object (``includes.polls``; poll.fields options, end_datetime,
    voting_status) as the canonical Poll."""
    raw = sorted((o for o in _as_list(poll.get("options")) if isinstance(o, Mapping)),
                 key=lambda o: o.get("position", 0) if isinstance(o.get("position"), int) else 0)
    options = tuple(PollOption(title=str(o.get("label", "")),
                               votes=o["votes"] if isinstance(o.get("votes"), int) else None)
                    for o in raw)
    if not options:
        return None
    end = poll.get("end_datetime")
    return Poll(options=options, ends_at=_parse_time(end) if isinstance(end, str) else None,
                closed=poll.get("voting_status") == "closed")


def _author(user: Mapping[str, Any]) -> Author:
    username = str(user.get("username", ""))
    bio = str(user.get("description", ""))
    return Author(platform="twitter", handle="@" + username,
                  display_name=str(user.get("name", "")),
                  profile_url=f"https://x.com/{username}",
                  account_id=str(user.get("id", "") or ""),
                  opted_out=bool(re.search(r"#nobridge\b", bio, re.I)),
                  reluctant="profile says #nobot" if re.search(r"#nobot\b", bio, re.I)
                  else "")


def quoted_post(qid: str, tweets: Mapping[str, Mapping[str, Any]],
                users: Mapping[str, Mapping[str, Any]]) -> QuotedPost:
    """The quoted post from ``includes.tweets`` (expansion referenced_tweets.id,
    its author by referenced_tweets.id.author_id); only its link when it is
    not there (deleted, protected, not expanded)."""
    q = tweets.get(qid)
    user = users.get(str(q.get("author_id", ""))) if q else None
    if q is None or user is None or not isinstance(q.get("text"), str):
        return QuotedPost(url=f"https://x.com/i/status/{qid}", network="X")
    note = q.get("note_tweet") or {}
    text = note.get("text") if isinstance(note, Mapping) and note.get("text") else q["text"]
    ents = note.get("entities") if isinstance(note, Mapping) and note.get("text") \
        else q.get("entities")
    author = _author(user)
    return QuotedPost(url=f"https://x.com/{user.get('username', '')}/status/{qid}", network="X",
                      author=author, text=rich_text(str(text), ents or {}))


def tweet_to_posted(tweet: Mapping[str, Any], channel: ChannelKey, *,
                    users: Mapping[str, Mapping[str, Any]],
                    media: Mapping[str, Mapping[str, Any]],
                    polls: Mapping[str, Mapping[str, Any]] | None = None,
                    tweets: Mapping[str, Mapping[str, Any]] | None = None
                    ) -> Posted | Unsupported:
    tid = str(tweet.get("id", ""))
    if not tid.isdigit():
        return Unsupported(native_id=tid, reason="post without a numeric id",
                           kind=UnsupportedKind.MALFORMED)
    refs = {r.get("type"): str(r.get("id")) for r in tweet.get("referenced_tweets") or []
            if isinstance(r, Mapping)}
    if "retweeted" in refs:
        return Unsupported(native_id=tid, reason="repost (its original is the post to relay)",
                           kind=UnsupportedKind.IGNORED)
    note = tweet.get("note_tweet") or tweet.get("note_post") or {}
    text = note.get("text") or tweet.get("text")
    if not isinstance(text, str):
        return Unsupported(native_id=tid, reason="post without text",
                           kind=UnsupportedKind.MALFORMED)
    entities = note.get("entities") if note.get("text") else tweet.get("entities")
    user = users.get(str(tweet.get("author_id", "")))
    if user is None:
        return Unsupported(native_id=tid, reason="author not in includes.users "
                           "(request expansions=author_id)", kind=UnsupportedKind.MALFORMED)
    username = str(user.get("username", ""))
    author = _author(user)
    keys = (tweet.get("attachments") or {}).get("media_keys") or []
    atts = tuple(a for k in keys if (m := media.get(k)) and (a := _attachment(m)))
    poll = None
    for pid in _as_list((tweet.get("attachments") or {}).get("poll_ids")):
        if (raw := (polls or {}).get(str(pid))) is not None:
            poll = parse_poll(raw)
    qid = refs.get("quoted", "")
    quote = quoted_post(qid, tweets or {}, users) if qid.isdigit() else None
    lang = str(tweet.get("lang", ""))
    return Posted(channel=channel, native_id=NativeId(tid), author=author,
                  text=rich_text(text, entities or {}, drop_status=qid),
                  poll=poll, quote=quote,
                  permalink=f"https://x.com/{username}/status/{tid}", attachments=atts,
                  reply_to_native=NativeId(refs["replied_to"]) if "replied_to" in refs else None,
                  language="" if lang in _NO_LANG else lang,
                  created_at=_parse_time(tweet.get("created_at")))


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def parse_page(page: Mapping[str, Any], channel: ChannelKey, *,
               own_user_id: str | None = None) -> ParsedPage:
    """A search/lookup/timeline page into Posted events, oldest first."""
    data = page.get("data") or []
    if isinstance(data, Mapping):
        data = [data]
    data = _as_list(data)
    inc = page.get("includes")
    inc = inc if isinstance(inc, Mapping) else {}
    users = {str(u.get("id")): u for u in _as_list(inc.get("users")) if isinstance(u, Mapping)}
    media = {str(m.get("media_key")): m for m in _as_list(inc.get("media"))
             if isinstance(m, Mapping)}
    polls = {str(p.get("id")): p for p in _as_list(inc.get("polls")) if isinstance(p, Mapping)}
    tweets = {str(t.get("id")): t for t in _as_list(inc.get("tweets")) if isinstance(t, Mapping)}
    events: list[Posted] = []
    skipped: list[Unsupported] = []
    rejected: list[Rejected] = []
    edits: dict[str, tuple[str, ...]] = {}
    newest: int | None = None
    for tw in data:
        if not isinstance(tw, Mapping):
            skipped.append(Unsupported(native_id="", reason="post is not an object",
                                       kind=UnsupportedKind.MALFORMED))
            continue
        tid = str(tw.get("id", ""))
        if tid.isdigit():
            newest = max(newest or 0, int(tid))
        if own_user_id and str(tw.get("author_id")) == own_user_id:
            skipped.append(Unsupported(native_id=tid, reason="the bridge's own post",
                                       kind=UnsupportedKind.IGNORED))
            continue
        # Whatever a post makes the conversion raise costs that post, never the poller.
        out = convert_guarded(functools.partial(_read_tweet, tw, channel, users, media, polls,
                                                tweets),
                              channel=channel, native_id=tid or "?", logger=log)
        if isinstance(out, Rejected):
            rejected.append(out)
        elif isinstance(out, Unsupported):
            skipped.append(out)
        else:
            events.append(out)
        chain = tw.get("edit_history_tweet_ids") or []
        if isinstance(chain, list) and len(chain) > 1 and str(chain[0]) != tid:
            edits[tid] = tuple(str(i) for i in chain if str(i) != tid)
    events.sort(key=lambda e: int(e.native_id) if e.native_id.isdigit() else 0)
    meta = page.get("meta")
    meta_newest = str(meta.get("newest_id", "")) if isinstance(meta, Mapping) else ""
    if meta_newest.isdigit():
        newest = max(newest or 0, int(meta_newest))
    return ParsedPage(events=tuple(events), skipped=tuple(skipped),
                      newest_id=str(newest) if newest else None, edits=edits,
                      rejected=tuple(rejected))


def _read_tweet(tw: Mapping[str, Any], channel: ChannelKey,
                users: Mapping[str, Mapping[str, Any]],
                media: Mapping[str, Mapping[str, Any]],
                polls: Mapping[str, Mapping[str, Any]] | None = None,
                tweets: Mapping[str, Mapping[str, Any]] | None = None) -> Posted | Unsupported:
    note = tw.get("note_tweet") or tw.get("note_post")
    text = note.get("text") if isinstance(note, Mapping) else None
    text = text if isinstance(text, str) else tw.get("text")
    if isinstance(text, str):
        check_size(len(text), MAX_POST_CHARS, "X posts are at most", unit="characters")
    return tweet_to_posted(tw, channel, users=users, media=media, polls=polls, tweets=tweets)


def missing_ids(page: Mapping[str, Any]) -> set[str]:
    """Ids a lookup page reports as gone (deleted or never existed)."""
    out = set()
    for err in page.get("errors") or []:
        if isinstance(err, Mapping) and str(err.get("type", "")).endswith("resource-not-found"):
            out.add(str(err.get("resource_id") or err.get("value") or ""))
    return out - {""}


def like_counts(page: Mapping[str, Any], channel: ChannelKey) -> list[Reacted]:
    """The ``like_count`` (``public_metrics``) of each post of a lookup page with
    any likes, as an aggregate reaction (X does not say who liked for free)."""
    out = []
    for post in page.get("data") or ():
        if not isinstance(post, Mapping):
            continue
        metrics = post.get("public_metrics")
        n = metrics.get("like_count") if isinstance(metrics, Mapping) else None
        if isinstance(n, int) and not isinstance(n, bool) and n > 0 and post.get("id"):
            out.append(Reacted(channel=channel, native_id=NativeId(str(post["id"])),
                               reactor=Author(platform="twitter", handle=""), key=LIKE,
                               total=n))
    return out
