"""Media for outbound posts: fetch the attachment, upload it through the v1.1
``media/upload.json`` endpoint tweepy 4.17 uses (tweepy's own ``API`` is
synchronous, so the same multipart request is sent on the adapter's session),
then set its alt text.  One attempt each; failures map to the core's kinds."""

from __future__ import annotations

import logging

import aiohttp
from oauthlib.oauth1 import Client as OAuthClient

from bridge.adapter import AuthError, TransientError
from bridge.model import Attachment

UPLOAD = "https://upload.twitter.com/1.1/media/upload.json"
METADATA = "https://upload.twitter.com/1.1/media/metadata/create.json"
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
MAX_IMAGE_BYTES = 5 * 2**20
MAX_ATTACHMENTS = 4


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


async def upload(session: aiohttp.ClientSession, keys: tuple[str, str, str, str],
                 attachments: tuple[Attachment, ...], log: logging.Logger) -> list[str]:
    """Media ids for the attachments X can take; the others are skipped (logged)."""
    ids: list[str] = []
    for att in attachments:
        if len(ids) >= MAX_ATTACHMENTS:
            log.info("X takes %d images per post; %s left out", MAX_ATTACHMENTS, att.url)
            break
        if att.media_type not in IMAGE_TYPES:
            log.info("X media type %s not relayed: %s", att.media_type, att.url)
            continue
        data = await _fetch(session, att, log)
        if data is None:
            continue
        form = aiohttp.FormData()
        form.add_field("media", data, filename=att.filename or "image",
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


async def _fetch(session: aiohttp.ClientSession, att: Attachment,
                 log: logging.Logger) -> bytes | None:
    if att.size and att.size > MAX_IMAGE_BYTES:
        log.info("image over X's 5 MB limit not relayed: %s", att.url)
        return None
    try:
        async with session.get(att.url, timeout=aiohttp.ClientTimeout(total=30)) as r:
            if r.status >= 500:
                raise TransientError(f"attachment host said {r.status}: {att.url}")
            if r.status != 200:
                log.info("attachment %s not fetched (HTTP %s); posting without it",
                         att.url, r.status)
                return None
            data = bytearray()
            # read() returns what has arrived, not n bytes: loop, stop past the limit
            while len(data) <= MAX_IMAGE_BYTES and (chunk := await r.content.read(2**16)):
                data += chunk
    except (aiohttp.ClientError, TimeoutError) as e:
        raise TransientError(f"attachment fetch failed: {e}") from e
    if len(data) > MAX_IMAGE_BYTES:
        log.info("image over X's 5 MB limit not relayed: %s", att.url)
        return None
    return bytes(data)
