"""Media for outbound posts: fetch the attachments through the core's guarded
fetcher (:mod:`bridge.contract.media`: only from the origin platform's hosts, at most X's
5 MB per image), upload each through the v1.1 ``media/upload.json`` endpoint
tweepy 4.17 uses (tweepy's own ``API`` is synchronous, so the same multipart
request is sent on the adapter's session), then set its alt text.  One attempt
each; failures map to the core's kinds.

X's own media hosts, for posts *from* X: :data:`MEDIA_HOSTS`."""

from __future__ import annotations

import logging

import aiohttp
from oauthlib.oauth1 import Client as OAuthClient

from bridge.contract.adapter import AuthError, TransientError
from bridge.contract.media import Fetched, MediaBatch, MediaFetcher
from bridge.contract.model import Attachment

UPLOAD = "https://upload.twitter.com/1.1/media/upload.json"
METADATA = "https://upload.twitter.com/1.1/media/metadata/create.json"
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
MAX_IMAGE_BYTES = 5 * 2**20
MAX_ATTACHMENTS = 4
MEDIA_HOSTS = frozenset({"pbs.twimg.com", "video.twimg.com", "ton.twimg.com"})
"""Where X serves the media of posts (photos, video variants, DM/card media)."""


def _signed(keys: tuple[str, str, str, str], url: str) -> dict[str, str]:
    # Multipart and JSON bodies are not part of an OAuth 1.0a signature: only
    # the URL and the oauth_* parameters are signed (as tweepy does).
    _, headers, _ = OAuthClient(*keys).sign(url, "POST")
    return dict(headers)


def _check(status: int, what: str, body: str) -> None:
    if status == 401:
        raise AuthError(f"{what}: X refused the credentials")
    if status == 429 or status >= 500:
        raise TransientError(f"{what}: HTTP {status}")


async def fetch(fetcher: MediaFetcher, key: str, origin_channel: str,
                attachments: tuple[Attachment, ...], log: logging.Logger) -> MediaBatch:
    """The images X can take, fetched; the others are skipped (logged)."""
    wanted: list[Attachment] = []
    for att in attachments:
        if len(wanted) >= MAX_ATTACHMENTS:
            log.info("X takes %d images per post; the rest are left out", MAX_ATTACHMENTS)
            break
        if att.media_type not in IMAGE_TYPES:
            log.info("X media type %s not relayed", att.media_type)
            continue
        wanted.append(att)
    return await fetcher.fetch_all(key, origin_channel, wanted, max_bytes=MAX_IMAGE_BYTES)


async def upload(session: aiohttp.ClientSession, keys: tuple[str, str, str, str],
                 fetched: tuple[Fetched, ...], log: logging.Logger) -> list[str]:
    """Media ids of the uploaded images; one X refuses is left out (logged)."""
    ids: list[str] = []
    for got in fetched:
        att = got.attachment
        form = aiohttp.FormData()
        form.add_field("media", got.data, filename=att.filename or "image",
                       content_type=att.media_type)
        try:
            async with session.post(UPLOAD, data=form, headers=_signed(keys, UPLOAD)) as r:
                text = await r.text()
                _check(r.status, "media upload", text)
                if r.status != 200:
                    log.warning("X refused an image (%s): %s", r.status, text[:200])
                    continue
                media_id = str((await r.json())["media_id_string"])
            if att.alt_text:
                async with session.post(METADATA, json={"media_id": media_id, "alt_text": {
                        "text": att.alt_text[:1000]}}, headers=_signed(keys, METADATA)) as r:
                    _check(r.status, "alt text", await r.text())
        except (aiohttp.ClientError, TimeoutError, KeyError, ValueError) as e:
            raise TransientError(f"media upload failed: {type(e).__name__}: {e}") from e
        ids.append(media_id)
    return ids
