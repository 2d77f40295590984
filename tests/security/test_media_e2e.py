"""Issue #8 end to end: the real relay (bridge.daemon.harness) carries posts with media between
the platforms' local stand-ins, and what arrived is read on the target platforms.

For each origin (Mastodon, X, Matrix) a post carries media (a) on its platform's own
hosts: relayed with the media; (b) on a loopback or private address in production
config: refused, the post still arrives with a note; (c) behind a redirect to another
host: refused; (d) with a body over the target's limit: cut off, refused with a note.

The media servers are aiohttp on 127.0.0.1 (and 127.0.0.2, a second loopback host that
a redirect may point at).  ``hosts`` maps test names to addresses through the real
resolver path (``socket.getaddrinfo``), so a production-mode fetch sees the name
resolve to a private address and refuses it before connecting.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from adapters.mastodon.emulator.state import EmuMedia, snowflake
from adapters.mastodon.sandbox import MastodonSandbox
from adapters.twitter.emulator.state import Media
from adapters.twitter.sandbox import TwitterSandbox
from bridge.contract import netguard
from bridge.daemon.harness import ChannelDef, build_config, eventually, quiescent, running

PNG_A = b"\x89PNG\r\n\x1a\n" + b"A" * 3000        # served by the origin platform itself
PNG_B = b"\x89PNG\r\n\x1a\n" + b"B" * 5000        # served by its media host (CDN)
BIG = 64 * 2**20                                   # over every target's limit (X 5 MB,
                                                   # Matrix 10 MB, Mastodon 16 MB)
NOT_FROM = "[image not relayed: not from the original platform]"
TOO_LARGE = "[image not relayed: too large]"


# ---------------------------------------------------------------- media server

@dataclass
class MediaServer:
    port: int = 0
    other_port: int = 0
    """The same server on 127.0.0.2: a redirect target that would answer."""
    hits: list[tuple[str, str]] = field(default_factory=list)
    big_sent: int = 0

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def app(self) -> web.Application:
        async def ok(request: web.Request) -> web.Response:
            self.hits.append((request.host, request.path))
            return web.Response(body=PNG_B, content_type="image/png")

        async def hop(request: web.Request) -> web.Response:
            self.hits.append((request.host, request.path))
            return web.Response(status=302, headers={
                "Location": f"http://127.0.0.2:{self.other_port}/ok.png"})

        async def big(request: web.Request) -> web.StreamResponse:
            self.hits.append((request.host, request.path))
            resp = web.StreamResponse(headers={"Content-Type": "image/png"})
            resp.enable_chunked_encoding()  # no Content-Length: counted while streaming
            await resp.prepare(request)
            chunk = b"\0" * 2**16
            try:
                while self.big_sent < BIG:
                    await resp.write(chunk)
                    self.big_sent += len(chunk)
            except (ConnectionError, aiohttp.ClientConnectionResetError):
                pass
            return resp

        app = web.Application()
        app.add_routes([web.get("/ok.png", ok), web.get("/hop.png", hop),
                        web.get("/big.png", big)])
        return app


@pytest.fixture
async def media() -> AsyncIterator[MediaServer]:
    srv = MediaServer()
    runner = web.AppRunner(srv.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    srv.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    other = web.TCPSite(runner, "127.0.0.2", 0)
    await other.start()
    srv.other_port = other._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield srv
    await runner.cleanup()


@pytest.fixture
def hosts(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A hosts file for this test: name -> address, seen by every resolver in the
    process (netguard's, aiohttp's, requests')."""
    table: dict[str, str] = {}
    real = socket.getaddrinfo

    def lookup(host: Any, port: Any, *args: Any, **kw: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name in table:
            return real(table[name], port, *args, **kw)
        return real(host, port, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    return table


def public(monkeypatch: pytest.MonkeyPatch, address: str = "127.0.0.1") -> None:
    """Production mode needs a public address and a test machine has none: *address*
    stands in for one (every other address keeps the real check)."""
    real = netguard.address_refusal
    monkeypatch.setattr(netguard, "address_refusal",
                        lambda ip: "" if str(ip) == address else real(ip))


# ---------------------------------------------------------------- platforms

@pytest.fixture
async def masto(tmp_path: Path) -> AsyncIterator[MastodonSandbox]:
    box = MastodonSandbox(str(tmp_path / "masto"), heartbeat=0.5)
    await box.start()
    yield box
    await box.stop()


@pytest.fixture
async def x(tmp_path: Path) -> AsyncIterator[TwitterSandbox]:
    box = TwitterSandbox(str(tmp_path / "x"))
    await box.start()
    yield box
    await box.stop()


async def reading(bridge: Any, account: str, prefix: str) -> None:
    """Wait until *account* has read its channel once (its cursor is stored): a post
    made before that is history, which the adapters do not relay."""
    def cursors(tx: Any) -> list[str]:
        rows = tx.c.execute("SELECT name FROM cursors WHERE account=?", (account,))
        return [r[0] for r in rows.fetchall()]

    async def found() -> bool:
        return any(n.startswith(prefix) for n in await bridge.store.run(cursors))

    await eventually(found)
    if prefix == "since:":
        await asyncio.sleep(1.1)  # X's first search starts at this second


def x_posts(box: TwitterSandbox) -> list[Any]:
    st = box.emulator.state
    return [t for t in st.tweets.values() if t.author_id == box.bot.id and not t.deleted]


def x_media_sizes(box: TwitterSandbox, tweet: Any) -> list[int]:
    st = box.emulator.state
    return [m.size for k in tweet.media_keys for m in st.media.values() if m.media_key == k]


def masto_copies(box: MastodonSandbox) -> list[Any]:
    return box.emulator.bridge_statuses()


def masto_media(box: MastodonSandbox, status: Any) -> list[bytes]:
    return [box.emulator.state.media[m].data for m in status.media_ids]


def masto_post_with_media(box: MastodonSandbox, text: str, *media: EmuMedia) -> None:
    st = box.emulator.state
    for m in media:
        st.media[m.id] = m
    box.emulator.post("alice", text, media_ids=[m.id for m in media])


def emu_media(box: MastodonSandbox, data: bytes = b"", url: str | None = None) -> EmuMedia:
    alice = box.emulator.member("alice", display_name="Alice")
    return EmuMedia(id=snowflake(), account_id=alice.id, mime="image/png", data=data,
                    description="a picture", url=url)


# ---------------------------------------------------------------- Mastodon origin

async def test_mastodon_media_relayed_from_its_hosts_only(
        masto: MastodonSandbox, x: TwitterSandbox, media: MediaServer,
        tmp_path: Path) -> None:
    # The instance serves files from a media host (its S3_ALIAS_HOST), as its
    # /api/v2/instance thumbnail shows: the adapter learns that host from there.
    masto.emulator.state.files_url = f"http://127.0.0.1:{media.port}"
    cfg = build_config(tmp_path, [
        ChannelDef("masto", "mastodon", masto.account_config(), masto.channel_config()),
        ChannelDef("x", "twitter", x.account_config(), x.channel_config(),
                   {"direction": "out"})])
    async with running(cfg) as bridge:
        await reading(bridge, "masto", "min_id:")
        masto_post_with_media(masto, "look #kmers",
                              emu_media(masto, PNG_A),                       # (a) instance
                              emu_media(masto, url=media.url("/ok.png")),    # (a) media host
                              emu_media(masto, url=media.url("/hop.png")),   # (c)
                              emu_media(masto, url=media.url("/big.png")))   # (d)
        [tweet] = await eventually(lambda: asyncio.sleep(0, x_posts(x)))
        await quiescent(bridge)
    assert sorted(x_media_sizes(x, tweet)) == [len(PNG_A), len(PNG_B)]
    assert NOT_FROM in tweet.text and TOO_LARGE in tweet.text and "Alice" in tweet.text
    # The redirect target was never asked; the oversize body was cut off early.
    assert not any(h.startswith("127.0.0.2") for h, _ in media.hits)
    assert 5 * 2**20 <= media.big_sent < BIG


async def test_mastodon_media_on_private_addresses_refused_in_production(
        masto: MastodonSandbox, x: TwitterSandbox, media: MediaServer, tmp_path: Path,
        hosts: dict[str, str]) -> None:
    # Production config (no opt-in): the instance's own files are on 127.0.0.1, and
    # its media host's name resolves to a private address.
    hosts["files.masto.example"] = "10.20.30.40"
    masto.emulator.state.files_url = f"http://files.masto.example:{media.port}"
    account = {**masto.account_config(), "allow_private_media_hosts": False}
    cfg = build_config(tmp_path, [
        ChannelDef("masto", "mastodon", account, masto.channel_config()),
        ChannelDef("x", "twitter", x.account_config(), x.channel_config(),
                   {"direction": "out"})])
    async with running(cfg) as bridge:
        await reading(bridge, "masto", "min_id:")
        masto_post_with_media(
            masto, "internal #kmers", emu_media(masto, PNG_A),
            emu_media(masto, url=f"http://files.masto.example:{media.port}/ok.png"))
        [tweet] = await eventually(lambda: asyncio.sleep(0, x_posts(x)))
        await quiescent(bridge)
    assert x_media_sizes(x, tweet) == []
    assert tweet.text.count(NOT_FROM) == 2 and "internal" in tweet.text
    assert media.hits == []  # nothing was fetched at all


# ---------------------------------------------------------------- X origin

async def test_x_media_in_production_mode(
        masto: MastodonSandbox, x: TwitterSandbox, media: MediaServer, tmp_path: Path,
        hosts: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    # Production config, with 127.0.0.1 standing in for a public address: a public
    # media name of this account is fetched; X's own pbs.twimg.com resolving to a
    # private address is refused; so are a redirect elsewhere and an oversize body.
    public(monkeypatch)
    hosts["media.x.example"] = "127.0.0.1"
    hosts["pbs.twimg.com"] = "10.20.30.40"
    account = {**x.account_config(), "allow_private_media_hosts": False,
               "media_hosts": [f"media.x.example:{media.port}"]}
    st = x.emulator.state
    urls = [f"http://media.x.example:{media.port}/ok.png",      # (a)
            "https://pbs.twimg.com/media/internal.png",           # (b)
            f"http://media.x.example:{media.port}/hop.png",     # (c)
            f"http://media.x.example:{media.port}/big.png"]     # (d)
    ids = []
    for url in urls:
        mid = st._next_id()
        st.media[mid] = Media(media_key="3_" + mid, media_id=mid, media_type="image/png",
                              size=0, url=url)
        ids.append(mid)
    cfg = build_config(tmp_path, [
        ChannelDef("x", "twitter", account, x.channel_config()),
        ChannelDef("masto", "mastodon", masto.account_config(), masto.channel_config(),
                   {"direction": "out"})])
    async with running(cfg) as bridge:
        await reading(bridge, "x", "since:")
        st.create(st.user("xavier"), "from X #kmers", media_ids=tuple(ids))
        [copy] = await eventually(lambda: asyncio.sleep(0, masto_copies(masto)))
        await quiescent(bridge)
    assert masto_media(masto, copy) == [PNG_B]
    assert copy.text.count(NOT_FROM) == 2 and TOO_LARGE in copy.text
    assert "from X" in copy.text
    assert not any(h.startswith("127.0.0.2") for h, _ in media.hits)
    assert 16 * 2**20 <= media.big_sent < BIG  # Mastodon's limit is the instance's 16 MB


# ---------------------------------------------------------------- Matrix origin

@pytest.fixture(scope="module")
def synapse_ok() -> None:
    from adapters.matrix.testserver import synapse_python

    if synapse_python() is None:
        pytest.skip("Synapse not installed (.venv-synapse)")


async def test_matrix_media_needs_the_homeserver_and_its_token(
        synapse_ok: None, masto: MastodonSandbox, x: TwitterSandbox, tmp_path: Path) -> None:
    from adapters.matrix.sandbox import MatrixSandbox

    mx = MatrixSandbox(str(tmp_path / "mx"))
    await mx.start()
    try:
        alice = await mx._member("alice")
        big = b"\x89PNG\r\n\x1a\n" + b"\0" * (6 * 2**20)   # under Mastodon's, over X's limit

        async def image(data: bytes, name: str, size: int | None = None) -> None:
            up = await upload(mx, alice.access_token, data, name)
            await mx._send(alice.access_token, {
                "msgtype": "m.image", "body": name, "url": up,
                "info": {"mimetype": "image/png", "size": size or len(data)}})

        def cfg(work: Path, **mx_account: Any) -> Any:
            return build_config(work, [
                ChannelDef("mx", "matrix", {**mx.account_config(), **mx_account},
                           mx.channel_config()),
                ChannelDef("masto", "mastodon", masto.account_config(),
                           masto.channel_config(), {"direction": "out"}),
                ChannelDef("x", "twitter", x.account_config(), x.channel_config(),
                           {"direction": "out"})])

        # (a) sandbox opt-in: authenticated media from the homeserver, with the token.
        async with running(cfg(tmp_path / "a", catchup_window=0)) as bridge:
            await asyncio.sleep(1.0)   # the first sync sets the cursor
            await image(PNG_A, "a.png")
            await eventually(lambda: asyncio.sleep(0, masto_copies(masto)))
            await eventually(lambda: asyncio.sleep(0, x_posts(x)))
            await quiescent(bridge)
            # (d) over X's 5 MB: X gets a note, Mastodon (16 MB) the image.  The event
            # claims a small size (any client can): the body itself is cut off.
            await image(big, "big.png", size=len(PNG_A))
            await eventually(lambda: asyncio.sleep(0, len(masto_copies(masto)) == 2))
            await eventually(lambda: asyncio.sleep(0, len(x_posts(x)) == 2))
            await quiescent(bridge)
        first, second = masto_copies(masto)
        assert masto_media(masto, first) == [PNG_A] and masto_media(masto, second) == [big]
        t1, t2 = sorted(x_posts(x), key=lambda t: int(t.id))
        assert x_media_sizes(x, t1) == [len(PNG_A)] and NOT_FROM not in t1.text
        assert x_media_sizes(x, t2) == [] and TOO_LARGE in t2.text

        # (b) production config: the homeserver is on 127.0.0.1, refused.
        async with running(cfg(tmp_path / "b", allow_private_media_hosts=False,
                               catchup_window=0)) as bridge:
            await asyncio.sleep(1.0)
            await image(PNG_A, "again.png")
            await eventually(lambda: asyncio.sleep(0, len(masto_copies(masto)) == 3))
            await quiescent(bridge)
        third = masto_copies(masto)[2]
        assert masto_media(masto, third) == [] and NOT_FROM in third.text
    finally:
        await mx.stop()


async def upload(mx: Any, token: str, data: bytes, name: str) -> str:
    async with aiohttp.ClientSession() as http, http.post(
            f"{mx.server.url}/_matrix/media/v3/upload", params={"filename": name}, data=data,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "image/png"}) as r:
        body = await r.json()
        assert r.status == 200, body
        return str(body["content_uri"])


# ---------------------------------------------------------------- email origin

async def test_list_mail_attachments_are_read_from_the_accounts_files_only(
        masto: MastodonSandbox, x: TwitterSandbox, tmp_path: Path) -> None:
    """List mail has no media host: its attachments are files the email adapter saved,
    which only posts from that account may point at (a Mastodon post with a file://
    URL gets nothing)."""
    import email.policy
    from email.message import EmailMessage

    from adapters.email.sandbox import EmailSandbox
    from bridge.contract.adapter import Health

    if EmailSandbox.available():
        pytest.skip(EmailSandbox.available())
    mail = EmailSandbox(tmp_path / "mail")
    await mail.start()
    try:
        cfg = build_config(tmp_path, [
            ChannelDef("mail", "email", mail.account_config(), mail.channel_config()),
            ChannelDef("masto", "mastodon", masto.account_config(), masto.channel_config()),
            ChannelDef("x", "twitter", x.account_config(), x.channel_config(),
                       {"direction": "out"})])
        async with running(cfg) as bridge:
            await eventually(lambda: asyncio.sleep(
                0, bridge.accounts["mail"].health is Health.CONNECTED))
            await reading(bridge, "masto", "min_id:")
            msg = EmailMessage()
            msg["From"] = "Mia <mia@members.test>"
            msg["To"] = mail.list.address
            msg["Subject"] = "a picture"
            msg["Message-ID"] = "<pic1@members.test>"
            msg.set_content("see attached\n")
            msg["List-Id"] = f"Kmers list <{mail.list.list_id}>"
            msg.add_attachment(PNG_A, maintype="image", subtype="png", filename="a.png")
            # Straight into the bridge's mailbox as a list that does not wrap posts sends
            # it (the mini list wraps multipart posts as Mailman does, and the email
            # parser does not look inside the wrapper yet: reported, not ours to fix).
            from adapters.email.testserver import LIST_DOMAIN
            await asyncio.to_thread(mail.dovecot.deliver, ["bridge"],
                                    msg.as_bytes(policy=email.policy.SMTP),
                                    f"{mail.list.name}-bounces@{LIST_DOMAIN}")
            [copy] = await eventually(lambda: asyncio.sleep(0, masto_copies(masto)))
            await eventually(lambda: asyncio.sleep(0, x_posts(x)))
            # A Mastodon post pointing at that same saved file is refused on X.
            [saved] = await asyncio.to_thread(
                lambda: [p for p in tmp_path.rglob("*") if p.parent.name == "email-attachments"])
            masto_post_with_media(masto, "stolen #kmers",
                                  emu_media(masto, url=f"file://{saved}"))
            await eventually(lambda: asyncio.sleep(0, len(x_posts(x)) == 2))
            await quiescent(bridge)
        assert masto_media(masto, copy) == [PNG_A]
        first, second = sorted(x_posts(x), key=lambda t: int(t.id))
        assert x_media_sizes(x, first) == [len(PNG_A)]
        assert x_media_sizes(x, second) == [] and NOT_FROM in second.text
    finally:
        await mail.stop()
