"""Atom feeds, the iCal schedule and export downloads."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from xml.etree import ElementTree as ET

from aiohttp import web

from bridge.runtime.schedule import ChatEventConfig, first_after
from bridge.store import archive
from bridge.web.present import author_name, full_html, iso
from bridge.web.site import Busy, community_or_404, site_of

log = logging.getLogger("hashbridge.web")

ATOM = "http://www.w3.org/2005/Atom"


def _base(request: web.Request) -> str:
    return site_of(request).public_url or f"{request.scheme}://{request.host}"


_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
"""What XML 1.0 forbids even escaped (``&#1;`` is not well-formed either): C0
controls but tab/LF/CR, lone surrogates, U+FFFE and U+FFFF."""


def xml_text(value: str) -> str:
    """*value* without the characters XML 1.0 cannot carry at all."""
    return _NOT_XML.sub("", value)


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    """A child element whose text and attributes are all passed through
    :func:`xml_text`: every value in a feed comes from somewhere (a post, a
    display name, the config) that may hold characters XML cannot."""
    e = ET.SubElement(parent, f"{{{ATOM}}}{tag}", {k: xml_text(v) for k, v in attrs.items()})
    if text is not None:
        e.text = xml_text(text)
    return e


def atom(title: str, feed_url: str, page_url: str, feed_id: str,
         entries: list[tuple[Any, str]]) -> bytes:
    """An Atom document; *entries* are (post, network).  ElementTree escapes;
    :func:`xml_text` drops what cannot be escaped."""
    ET.register_namespace("", ATOM)
    feed = ET.Element(f"{{{ATOM}}}feed")
    _sub(feed, "title", title)
    _sub(feed, "id", feed_id)
    _sub(feed, "link", rel="self", href=feed_url)
    _sub(feed, "link", rel="alternate", href=page_url)
    updated = max((p.created_at for p, _ in entries), default=datetime.now(UTC))
    _sub(feed, "updated", iso(updated))
    for post, network in reversed(entries):
        e = _sub(feed, "entry")
        who = author_name(post.author)
        _sub(e, "title", f"{who} on {network}")
        _sub(e, "id", f"urn:hashbridge:post:{post.id}")
        _sub(e, "updated", iso(post.created_at))
        _sub(e, "published", iso(post.created_at))
        a = _sub(e, "author")
        _sub(a, "name", who)
        _sub(e, "link", rel="alternate", href=f"{page_url}#p-{post.id}")
        _sub(e, "content", full_html(post), type="html")
    body: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + body


def _atom_response(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/atom+xml", charset="utf-8")


async def community_feed(request: web.Request) -> web.StreamResponse:
    site = site_of(request)
    comm = community_or_404(request)
    cards = await site.bridge.store.run(lambda tx: archive.page(tx, comm.name, limit=50))
    base = _base(request)
    entries = [(v.post, site.network_of(v.post)) for v in cards if not v.post.is_notice]
    return _atom_response(atom(f"#{comm.settings.hashtag}", f"{base}/c/{comm.name}/feed.atom",
                               f"{base}/c/{comm.name}", f"urn:hashbridge:{comm.name}", entries))


async def event_feed(request: web.Request) -> web.StreamResponse:
    """The posts of the event's recent occurrences (newest five)."""
    site = site_of(request)
    comm = community_or_404(request)
    ev = site.event(comm, request.match_info["event"])
    if ev is None:
        raise web.HTTPNotFound(text="no such event")
    entries: list[tuple[Any, str]] = []
    for occ in site.past(ev, datetime.now(UTC))[:5][::-1]:
        t = await site.transcript(comm.name, occ)
        for q in t.questions:
            for p in ([q.post] if q.post else []) + list(q.answers):
                entries.append((p, site.network_of(p)))
        entries.extend((p, site.network_of(p)) for p in t.other)
    base = _base(request)
    return _atom_response(atom(ev.title, f"{base}/c/{comm.name}/events/{ev.id}/feed.atom",
                               f"{base}/c/{comm.name}/events",
                               f"urn:hashbridge:{comm.name}:event:{ev.id}",
                               sorted(entries, key=lambda e: (e[0].created_at, e[0].id))))


_NOT_ICAL = re.compile("[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]")


def ical_text(value: str) -> str:
    """*value* as an iCalendar TEXT may hold it: RFC 5545 forbids control
    characters but tab (a line break is escaped by icalendar)."""
    return _NOT_ICAL.sub("", value)


def calendar(community: str, hashtag: str, events: list[ChatEventConfig], page_url: str,
             now: datetime) -> bytes:
    """The schedule as iCalendar: one recurring VEVENT per chat event."""
    return calendar_of([(community, hashtag, events, page_url)], f"#{hashtag} chats", now)


def calendar_of(communities: list[tuple[str, str, list[ChatEventConfig], str]], name: str,
                now: datetime) -> bytes:
    """One iCalendar of the chat events of every (community, hashtag, events,
    page URL) given: what ``/events.ics`` serves for the whole instance."""
    import icalendar

    cal = icalendar.Calendar()
    cal.add("prodid", "-//hashbridge//chat events//EN")
    cal.add("version", "2.0")
    cal.add("x-wr-calname", ical_text(name))
    for community, hashtag, events, page_url in communities:
        for ev in events:
            vevent = _vevent(community, hashtag, ev, page_url, now)
            if vevent is not None:
                cal.add_component(vevent)
    with contextlib.suppress(Exception):  # older icalendar: floating TZID only
        cal.add_missing_timezones()
    return bytes(cal.to_ical())


def _vevent(community: str, hashtag: str, ev: ChatEventConfig, page_url: str,
            now: datetime) -> Any:
    import icalendar

    first = first_after(ev, now - timedelta(days=366 * 3))
    if first is None or first.start > now + timedelta(days=400):
        return None
    start = first.start.astimezone(ev.zone)
    vevent = icalendar.Event()
    vevent.add("uid", f"{ev.id}.{community}@hashbridge")
    vevent.add("summary", ical_text(ev.title))
    vevent.add("description", ical_text(
        (ev.description + "\n\n" if ev.description else "") + f"Follow live: {page_url}"))
    vevent.add("url", page_url)
    vevent.add("categories", [ical_text(f"#{hashtag}")])
    vevent.add("dtstart", start)
    vevent.add("duration", ev.duration)
    vevent.add("dtstamp", now)
    if ev.rrule:
        vevent.add("rrule", icalendar.vRecur.from_ical(ev.rrule.removeprefix("RRULE:")))
    else:
        assert ev.day is not None
        vevent.add("rrule", {"freq": "weekly", "byday": ev.day[:2].upper()})
    return vevent


async def ical(request: web.Request) -> web.StreamResponse:
    comm = community_or_404(request)
    base = _base(request)
    body = calendar(comm.name, comm.settings.hashtag, list(comm.settings.events),
                    f"{base}/c/{comm.name}", datetime.now(UTC))
    return web.Response(body=body, content_type="text/calendar", charset="utf-8",
                        headers={"Content-Disposition":
                                 f'inline; filename="{comm.name}-events.ics"'})


CALENDAR_FRESH = 300.0
"""Seconds ``/events.ics`` is served as built (its DTSTAMP that old at most)."""


async def ical_all(request: web.Request) -> web.StreamResponse:
    """``/events.ics``: every community's chat events in one calendar."""
    site = site_of(request)
    base = _base(request)
    # Calendar apps poll it; building it for many communities takes a while
    # (time zones, rules): the same body for a few minutes, or until the config
    # changes.
    cached = site.calendar_cache
    if cached is not None and cached[:2] == (id(site.config), base) \
            and time.monotonic() - cached[2] < CALENDAR_FRESH:
        body = cached[3]
    else:
        body = await asyncio.to_thread(
            calendar_of, [(c.name, c.settings.hashtag, list(c.settings.events),
                           f"{base}/c/{c.name}") for c in site.config.communities],
            "hashbridge chats", datetime.now(UTC))
        site.calendar_cache = (id(site.config), base, time.monotonic(), body)
    return web.Response(body=body, content_type="text/calendar", charset="utf-8",
                        headers={"Content-Disposition": 'inline; filename="events.ics"'})


CHUNK = 256 * 1024


def busy_answer(e: Busy, what: str, per_client: int) -> web.HTTPException:
    """429 when this client holds its own share already, 503 when all are taken."""
    if e.per_client:
        return web.HTTPTooManyRequests(
            text=f"429 you already have {per_client} {what} open; finish or close "
                 f"{'it' if per_client == 1 else 'one'} first", headers={"Retry-After": "30"})
    return web.HTTPServiceUnavailable(text=f"503 too many {what} at once; try again in a "
                                           "minute", headers={"Retry-After": "30"})


async def send(request: web.Request, resp: web.StreamResponse, data: bytes) -> bool:
    """Write *data*; False when the client is gone, or took none of it for
    ``send_timeout_seconds`` and was dropped: one that never reads must not
    hold its slot (and our temporary file) for ever."""
    timeout = site_of(request).limits.send_timeout_seconds
    try:
        async with asyncio.timeout(timeout):
            await resp.write(data)
        return True
    except ConnectionError:
        return False
    except TimeoutError:
        log.info("dropped a client of %s that read nothing for %.0f s",
                 request.path, timeout)
        if request.transport is not None:
            request.transport.abort()
        return False


async def export(request: web.Request) -> web.StreamResponse:
    """``/c/NAME/export.{jsonl,mbox,md,zip}[?event=ID[/OCCURRENCE]]``, streamed from
    a temporary file that is removed afterwards.

    Building an export holds one of ``max_exports`` slots; a client has at
    most ``max_exports_per_client`` exports in progress (built or being sent);
    sending holds no global slot and is bounded by ``send_timeout_seconds``.
    """
    site = site_of(request)
    comm = community_or_404(request)
    ext = request.match_info["fmt"]
    fmt = {"jsonl": "jsonl", "mbox": "mbox", "md": "markdown", "zip": "html"}.get(ext)
    if fmt is None:
        raise web.HTTPNotFound(text="formats: export.jsonl, export.mbox, export.md, export.zip")
    limits = site.limits
    try:
        async with site.downloads.take(site.client_key(request), patience=1.0):
            return await _export(request, comm.name, ext, fmt)
    except Busy as e:
        raise busy_answer(e, "exports", limits.max_exports_per_client) from None


async def _export(request: web.Request, community: str, ext: str,
                  fmt: str) -> web.StreamResponse:
    from bridge.web import export as exporter

    site = site_of(request)
    event = request.query.get("event") or None
    tmp = await asyncio.to_thread(tempfile.mkdtemp, prefix="hashbridge-export-")
    try:
        out = os.path.join(tmp, f"{community}.{ext}")
        async with site.exports.take(str(id(request))):  # building: the costly part
            try:
                await exporter.export(site.bridge.store, site.config, community, fmt, out,
                                      event=event, now=datetime.now(UTC))
            except exporter.ExportError as e:
                raise web.HTTPBadRequest(text=str(e)) from None
            if fmt == "html":
                await asyncio.to_thread(exporter.zip_dir, out, out + ".zip")
                out += ".zip"
        types = {"jsonl": "application/x-ndjson", "mbox": "application/mbox",
                 "markdown": "text/markdown; charset=utf-8", "html": "application/zip"}
        name = f"{community}{'-' + event.replace('/', '-') if event else ''}.{ext}"
        resp = web.StreamResponse(headers={
            "Content-Type": types[fmt],
            "Content-Disposition": f'attachment; filename="{_safe_name(name)}"'})
        await resp.prepare(request)
        f = await asyncio.to_thread(open, out, "rb")
        try:
            while chunk := await asyncio.to_thread(f.read, CHUNK):
                if not await send(request, resp, chunk):
                    return resp  # the connection is closed: nothing more to say
        finally:
            await asyncio.to_thread(f.close)
        await resp.write_eof()
        return resp
    finally:
        await asyncio.to_thread(shutil.rmtree, tmp, True)


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
