"""The per-origin media policy (bridge.contract.media) against a real local aiohttp server:
which account's hosts an attachment may come from, notes for what is left out,
transient failures retried a bounded number of times, email's saved files."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pydantic import ValidationError

from bridge.contract.adapter import Rendered, TransientError
from bridge.contract.media import (
    TRANSIENT_TRIES,
    MediaAccountKeys,
    MediaFetcher,
    MediaSource,
    MediaSources,
    with_notes,
)
from bridge.contract.model import Attachment
from bridge.contract.netguard import MediaRefused
from bridge.contract.richtext import RichText
from bridge.contract.textconv import from_plain, to_html, to_markdown, to_plain

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
seen: list[tuple[str, str | None]] = []


async def _png(request: web.Request) -> web.Response:
    seen.append((request.path, request.headers.get("Authorization")))
    return web.Response(body=PNG, content_type="image/png")


async def _flaky(request: web.Request) -> web.Response:
    seen.append((request.path, None))
    return web.Response(status=503)


async def _hop(request: web.Request) -> web.Response:
    return web.Response(status=302, headers={"Location": request.query["to"]})


@pytest.fixture
async def server() -> AsyncIterator[str]:
    app = web.Application()
    app.add_routes([web.get("/a.png", _png), web.get("/flaky.png", _flaky),
                    web.get("/hop", _hop)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    seen.clear()
    yield f"127.0.0.1:{port}"
    await runner.cleanup()


def fetcher(**sources: MediaSource) -> MediaFetcher:
    reg = MediaSources()
    for channel, src in sources.items():
        reg.register([channel.replace("_", "/")], lambda src=src: src)
    return MediaFetcher(reg, logging.getLogger("test.media"), timeout=5.0)


def png(url: str, **kw: Any) -> Attachment:
    return Attachment(url=url, media_type="image/png", **kw)


async def test_media_from_the_origin_accounts_hosts_only(server: str) -> None:
    f = fetcher(k_masto=MediaSource(hosts=frozenset({server}), allow_private=True),
                k_x=MediaSource(hosts=frozenset({"pbs.twimg.com"}), allow_private=True))
    url = f"http://{server}/a.png"
    ok = await f.fetch_all("d1:0", "k/masto", [png(url)], max_bytes=10_000)
    assert [g.data for g in ok.fetched] == [PNG] and ok.notes == ()
    # The same URL in a post from X: not one of X's hosts, nothing is requested.
    refused = await f.fetch_all("d2:0", "k/x", [png(url)], max_bytes=10_000)
    assert refused.fetched == () and refused.notes == ("[image not relayed: not from the "
                                                       "original platform]",)
    # A channel no account serves here has no hosts at all.
    unknown = await f.fetch_all("d3:0", "k/elsewhere", [png(url)], max_bytes=10_000)
    assert unknown.notes and unknown.fetched == ()
    assert [p for p, _ in seen] == ["/a.png"]


async def test_private_address_needs_the_accounts_opt_in(server: str) -> None:
    f = fetcher(k_prod=MediaSource(hosts=frozenset({server})))
    with pytest.raises(MediaRefused, match="loopback") as e:
        await f.fetch("k/prod", png(f"http://{server}/a.png"), max_bytes=10_000)
    assert e.value.kind == "policy" and seen == []


async def test_size_and_redirect_refusals_become_notes(server: str,
                                                       caplog: pytest.LogCaptureFixture
                                                       ) -> None:
    f = fetcher(k_m=MediaSource(hosts=frozenset({server}), allow_private=True))
    away = "http://127.0.0.2:9/x.png"
    atts = [png(f"http://{server}/a.png"), png(f"http://{server}/hop?to={away}&token=s3cret"),
            Attachment(url=f"http://{server}/a.png", media_type="video/mp4")]
    with caplog.at_level(logging.WARNING, "test.media"):
        batch = await f.fetch_all("d1:0", "k/m", atts,
                                  max_bytes=lambda a: 100 if a.media_type == "video/mp4"
                                  else 10_000)
    assert [g.attachment for g in batch.fetched] == atts[:1]
    assert batch.notes == ("[image not relayed: not from the original platform]",
                           "[video not relayed: too large]")
    logged = caplog.text
    assert "not one of this platform's media hosts" in logged and "byte limit" in logged
    assert "s3cret" not in logged  # query strings never reach the log


async def test_transient_failures_retry_the_send_then_give_up(server: str) -> None:
    f = fetcher(k_m=MediaSource(hosts=frozenset({server}), allow_private=True))
    atts = [png(f"http://{server}/flaky.png")]
    for _ in range(TRANSIENT_TRIES - 1):
        with pytest.raises(TransientError, match="HTTP 503"):
            await f.fetch_all("d1:0", "k/m", atts, max_bytes=10_000)
    batch = await f.fetch_all("d1:0", "k/m", atts, max_bytes=10_000)
    assert batch.notes == ("[image not relayed: could not be fetched]",)
    assert len(seen) == TRANSIENT_TRIES
    # Another delivery of the same media starts its own count.
    with pytest.raises(TransientError):
        await f.fetch_all("d2:0", "k/m", atts, max_bytes=10_000)


async def test_auth_headers_go_to_the_auth_origin_only(server: str) -> None:
    other = server.replace("127.0.0.1", "localhost")
    src = MediaSource(hosts=frozenset({server, other}), allow_private=True,
                      auth_origin=f"http://{server}",
                      auth_headers={"Authorization": "Bearer MX-TOKEN"})
    f = fetcher(k_mx=src)
    await f.fetch("k/mx", png(f"http://{server}/a.png"), max_bytes=10_000)
    await f.fetch("k/mx", png(f"http://{other}/a.png"), max_bytes=10_000)
    await f.fetch("k/mx", png(f"http://{server}/hop?to=http://{other}/a.png"),
                  max_bytes=10_000)
    assert seen == [("/a.png", "Bearer MX-TOKEN"), ("/a.png", None), ("/a.png", None)]
    assert src.headers_for("https://" + server + "/a.png") == {}  # another scheme


async def test_saved_files_are_read_from_the_accounts_directory_only(tmp_path: Path) -> None:
    root = tmp_path / "email-attachments"
    root.mkdir()
    (root / "abc").write_bytes(PNG)
    (tmp_path / "secret").write_bytes(b"not an attachment")
    os.symlink(tmp_path / "secret", root / "link")
    f = fetcher(k_mail=MediaSource(file_root=str(root)), k_masto=MediaSource())
    got = await f.fetch("k/mail", png(f"file://{root}/abc"), max_bytes=10_000)
    assert got.data == PNG
    for url, why in [(f"file://{root}/../secret", "outside"),
                     (f"file://{root}/link", "outside"),
                     (f"file://{root}/missing", "No such file"),
                     (f"file://{root}", "regular file"),
                     ("file://evil.example/etc/passwd", "names a host")]:
        with pytest.raises(MediaRefused, match=why):
            await f.fetch("k/mail", png(url), max_bytes=10_000)
    with pytest.raises(MediaRefused, match="byte limit") as e:
        await f.fetch("k/mail", png(f"file://{root}/abc"), max_bytes=100)
    assert e.value.kind == "size"
    # Only the email account's posts may point at files: a Mastodon post cannot.
    with pytest.raises(MediaRefused, match="scheme"):
        await f.fetch("k/masto", png(f"file://{root}/abc"), max_bytes=10_000)


def rendered(text: str) -> Rendered:
    rt = from_plain(text)
    return Rendered(text=rt, plain=to_plain(rt), html=to_html(rt), markdown=to_markdown(rt))


def test_notes_are_added_when_they_fit() -> None:
    r = rendered("Alice (Mastodon): look")
    notes = ["[image not relayed: too large]", "[video not relayed: too large]"]
    full = with_notes(r, notes)
    assert full.plain == "Alice (Mastodon): look\n\n" + " ".join(notes)
    assert "[video not relayed: too large]" in full.html and "too large" in full.markdown
    assert to_plain(full.text).endswith(notes[-1])
    short = with_notes(r, notes, fits=lambda t: len(t) <= 50)
    assert short.plain == "Alice (Mastodon): look\n\n[media not relayed]"
    assert with_notes(r, notes, fits=lambda t: len(t) <= 30) == r
    only = with_notes(Rendered(text=RichText(), plain=""), notes[:1])
    assert only.plain == notes[0] and only.html == ""  # no format the target did not use


def test_one_registry_per_process_through_services() -> None:
    """Adapters created with one ``Services`` register their channels in its one
    registry, where a target adapter's fetcher looks up the origin."""
    from adapters.mastodon import MastodonFactory
    from adapters.mastodon.config import MastodonAccount, MastodonChannel
    from adapters.matrix import MatrixFactory
    from adapters.matrix.config import MatrixAccount, MatrixChannel
    from bridge.contract.adapter import ChannelSpec
    from bridge.contract.model import ChannelKey
    from bridge.contract.services import Services

    masto, room = ChannelKey("kmers/masto"), ChannelKey("kmers/room")
    services = Services()
    MastodonFactory().create(
        MastodonAccount(base_url="https://m.example", access_token="t"),
        (ChannelSpec(key=masto, community="kmers", hashtag="kmers", direction="both",
                     options=MastodonChannel(hashtag="kmers")),), services)
    MatrixFactory().create(
        MatrixAccount(homeserver="https://hs.example", user_id="@bot:hs.example",
                      access_token="t"),
        (ChannelSpec(key=room, community="kmers", hashtag="kmers", direction="both",
                     options=MatrixChannel(room="#kmers:hs.example")),), services)
    from_masto = services.media_sources.source_for(masto)
    from_room = services.media_sources.source_for(room)
    assert from_masto is not None and "m.example" in from_masto.hosts
    assert from_room is not None and from_room.auth_origin == "https://hs.example"
    assert Services().media_sources.source_for(masto) is None  # one registry per process


def test_media_host_keys_are_validated() -> None:
    assert MediaAccountKeys(media_hosts=["files.example", "cdn.example:8443",
                                         "[2001:db8::1]:443"]).media_hosts
    for bad in ["https://files.example", "files.example/path", "user@files.example", ""]:
        with pytest.raises(ValidationError):
            MediaAccountKeys(media_hosts=[bad])
    assert MediaAccountKeys().allow_private_media_hosts is False
