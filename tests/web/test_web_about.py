"""The about page (``/c/<name>/about``) and the live page's join panel: what each
network's members read about taking part, built from the adapters' ``join_facts``.

The five-network pages are rendered from a config loaded and validated as
``hashbridge run`` loads it, by the templates and the builder the handler uses;
the route itself is served by a running bridge (sandbox networks).
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from webhelp import live_bridge

from bridge.runtime.config import Config, ConfigError, load
from bridge.runtime.registry import load_factories
from bridge.web.about import join_page
from bridge.web.site import templates

PLATFORMS = {"mastodon", "twitter", "matrix", "email", "bluesky"}

SECRETS = {
    "MASTODON_TOKEN": "mastoTOKEN-9f2c1a7e",
    "X_BEARER": "xBEARER-77aa11", "X_CKEY": "xCONSUMERKEY-31b2", "X_CSECRET": "xCSECRET-8c8c",
    "X_ATOKEN": "xACCESSTOKEN-4d4d", "X_ASECRET": "xACCESSSECRET-5e5e",
    "MATRIX_TOKEN": "mxTOKEN-6f6f6f", "MATRIX_PASSWORD": "mxPASSWORD-7a7a",
    "AS_TOKEN": "asTOKEN-8b8b8b", "HS_TOKEN": "hsTOKEN-9c9c9c",
    "IMAP_PASSWORD": "imapPASSWORD-1d1d", "SMTP_PASSWORD": "smtpPASSWORD-2e2e",
    "BSKY_APP_PASSWORD": "bskyAPPPW-3f3f", "ADMIN_TOKEN": "adminTOKEN-4a4a4a",
}
"""Every secret the config can hold; none may reach a page."""

HIDDEN = [
    *SECRETS.values(),
    "imap-internal.mailhost.test", "smtp-relay.mailhost.test",   # IMAP/SMTP hosts
    "imaplogin-kb7", "smtplogin-kb8",                            # IMAP/SMTP logins
    "kmbridge-box",                                              # the bridge's own mailbox
    "synapse-internal.test", "8448",                             # the homeserver the bridge uses
    "pds-internal.test", "relay-internal.test", "plc-internal.test",  # Bluesky's servers
    "api-internal.test",                                         # X's API base
    "stream-internal.test",                                      # Mastodon's streaming host
    "db-host.internal", "dbuser",                                # the database URL
    "appservice-listen.test",                                    # the appservice listener
]
"""Strings of the config that must never be shown (secrets, servers, logins)."""

CONFIG = """
[bridge]
data_dir = "data"
database = "postgresql://dbuser@db-host.internal:5432/hashbridge"
[bridge.web]
listen = "127.0.0.1:0"
admin_token = "${ADMIN_TOKEN}"

[accounts.masto]
platform = "mastodon"
base_url = "https://social.example"
access_token = "${MASTODON_TOKEN}"
streaming_url = "wss://stream-internal.test"

[accounts.x]
platform = "twitter"
bearer_token = "${X_BEARER}"
consumer_key = "${X_CKEY}"
consumer_secret = "${X_CSECRET}"
access_token = "${X_ATOKEN}"
access_token_secret = "${X_ASECRET}"
api_base = "https://api-internal.test"
bot_username = "kmbridge"

[accounts.mx]
platform = "matrix"
homeserver = "https://synapse-internal.test:8448"
user_id = "@kmbot:matrix.example"
access_token = "${MATRIX_TOKEN}"
password = "${MATRIX_PASSWORD}"

[accounts.mxas]
platform = "matrix"
mode = "appservice"
homeserver = "https://synapse-internal.test:8448"
user_id = "@hbbot:matrix.example"
as_token = "${AS_TOKEN}"
hs_token = "${HS_TOKEN}"
as_listen = "appservice-listen.test:29331"

[accounts.mail]
platform = "email"
address = "kmbridge-box@example.org"
[accounts.mail.imap]
host = "imap-internal.mailhost.test"
port = 993
username = "imaplogin-kb7"
password = "${IMAP_PASSWORD}"
[accounts.mail.smtp]
host = "smtp-relay.mailhost.test"
port = 587
username = "smtplogin-kb8"
password = "${SMTP_PASSWORD}"
security = "starttls"

[accounts.bsky]
platform = "bluesky"
service = "https://pds-internal.test"
handle = "kmbridge.bsky.social"
app_password = "${BSKY_APP_PASSWORD}"
firehose = "wss://relay-internal.test/xrpc/com.atproto.sync.subscribeRepos"
plc_directory = "https://plc-internal.test"

[[communities]]
name = "kmers"
hashtag = "kmers"
consent = "CONSENT"

[[communities.channels]]
account = "masto"
hashtag = "kmers"

[[communities.channels]]
account = "x"
query = "#kmers -is:retweet"

[[communities.channels]]
account = "mx"
room = "#kmers:matrix.example"
on_edit = "correct"

[[communities.channels]]
account = "mxas"
room = "#kmers-ghosts:matrix.example"
direction = "out"

[[communities.channels]]
account = "mail"
list = "kmers@lists.example.org"
subscribe = "SUBSCRIBE"
on_delete = "notice"

[[communities.channels]]
account = "bsky"
hashtag = "kmers"
"""


def _config(tmp_path: Path, *, consent: str = "opt-out",
            subscribe: str = "https://lists.example.org/postorius/lists/kmers/",
            replace: dict[str, str] | None = None) -> Config:
    registry = load_factories()
    missing = PLATFORMS - set(registry.names())
    if missing:
        pytest.skip(f"adapters not installed: {sorted(missing)}")
    text = CONFIG.replace("CONSENT", consent).replace("SUBSCRIBE", subscribe)
    for old, new in (replace or {}).items():
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "hashbridge.toml"
    path.write_text(text)
    path.chmod(0o600)
    return load(str(path), registry, SECRETS)


def _pages(cfg: Config) -> tuple[str, str]:
    """The about page and the live page's join panel, as the handlers render them."""
    comm = cfg.communities[0]
    env = templates()
    page = join_page(cfg, comm)
    about = env.get_template("about.html").render(comm=comm, page=page)
    panel = env.get_template("join_panel.html").render(comm=comm, join=page)
    return about, panel


def _sections(about: str) -> dict[str, str]:
    """Network section text by its heading's badge (``Mastodon``, ``X``...), tags out."""
    out: dict[str, str] = {}
    for m in re.finditer(r'<section class="network[^"]*"[^>]*>(.*?)</section>', about, re.S):
        body = m.group(1)
        name = re.search(r'<span class="badge">([^<]+)</span>', body)
        assert name is not None
        key = name.group(1)
        while key in out:
            key += "+"
        out[key] = body
    return out


def _text(fragment: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", fragment)))


def test_each_network_says_where_and_how(tmp_path: Path) -> None:
    about, panel = _pages(_config(tmp_path))
    sections = _sections(about)
    assert set(sections) == {"Mastodon", "X", "Matrix", "Matrix+", "Email", "Bluesky"}

    masto = sections["Mastodon"]
    assert 'href="https://social.example/tags/kmers"' in masto
    assert "Follow the hashtag #kmers" in _text(masto)
    x = sections["X"]
    assert 'href="https://x.com/search?q=%23kmers+-is%3Aretweet&amp;f=live"' in x
    assert "@kmbridge" in _text(x)
    bsky = sections["Bluesky"]
    assert 'href="https://bsky.app/hashtag/kmers"' in bsky
    assert 'href="https://bsky.app/search?q=%23kmers"' in bsky
    assert "@kmbridge.bsky.social !join" in _text(bsky)
    mx = sections["Matrix"]
    assert 'href="https://matrix.to/#/#kmers:matrix.example"' in mx
    assert "@kmbot:matrix.example" in _text(mx)
    assert "a correction is posted as a reply" in _text(mx)      # on_edit = "correct"
    ghosts = _text(sections["Matrix+"])
    assert "@hb_mastodon_alice:matrix.example" in ghosts          # appservice: ghost users
    assert "Posts made here are not relayed" in ghosts            # direction = "out"
    mail = sections["Email"]
    assert 'href="mailto:kmers@lists.example.org"' in mail
    assert 'href="https://lists.example.org/postorius/lists/kmers/"' in mail
    assert "a short notice says the post was deleted" in _text(mail)  # on_delete = "notice"
    assert "Mail cannot be unsent" in _text(mail)

    # Where a member's post goes, and what happens to the copies.
    reach = re.search(r"Your posts reach (.*?), and this site", _text(masto))
    assert reach is not None
    assert reach.group(1).split(", ") == [
        "X", "Matrix (the room #kmers:matrix.example)",
        "Matrix (the room #kmers-ghosts:matrix.example)", "Email", "Bluesky"]
    # A room's own posts reach the other room, never itself.
    assert "Matrix (the room #kmers:matrix.example)" not in _text(mx).split("Commands")[0]
    assert "lives on 5 networks at once" in _text(about)
    assert "the copy keeps its first text" in _text(x)             # X cannot edit
    assert "the copy is deleted too" in _text(x)
    assert "the copy is edited too" in _text(masto)

    # Commands: said where each network reads them, and the X and email truth.
    assert "!join" in _text(masto) and "in a reply to one of the bridge's posts" in _text(masto)
    assert "X members cannot say !join or !leave" in _text(x)
    assert "Email members cannot say !join or !leave" in _text(mail)
    for body in sections.values():
        assert "#nobridge" in _text(body) or "Posts made here are not relayed" in _text(body)
    assert "!link PLATFORM:HANDLE" in _text(about)
    assert "bluesky, email, mastodon, matrix, twitter" in _text(about)
    assert "opt-out" in _text(about)
    for fmt in ("export.jsonl", "export.mbox", "export.md", "export.zip"):
        assert f'href="/c/kmers/{fmt}"' in about

    # The join panel: the same places, compact, with the about page one click away.
    for href in ("https://social.example/tags/kmers", "mailto:kmers@lists.example.org",
                 "https://bsky.app/hashtag/kmers", "https://matrix.to/#/#kmers:matrix.example"):
        assert f'href="{href}"' in panel
    assert 'href="/c/kmers/about"' in panel
    assert "<details" in panel and 'class="join-panel join-wide"' in panel


def test_opt_in_says_plainly_that_x_and_email_members_cannot_join(tmp_path: Path) -> None:
    about, panel = _pages(_config(tmp_path, consent="opt-in",
                                  subscribe="mailto:kmers-join@lists.example.org"))
    consent = _text(about.split('id="consent"', 1)[1].split("</section>", 1)[0])
    assert "opt-in" in consent
    assert "X and Email members cannot say !join" in consent
    sections = _sections(about)
    assert "no other network: this community is opt-in" in _text(sections["X"])
    assert "no other network: this community is opt-in" in _text(sections["Email"])
    assert "needed before anything you post is relayed" in _text(sections["Bluesky"])
    assert 'href="mailto:kmers-join@lists.example.org"' in sections["Email"]
    assert "@kmbridge.bsky.social !join" in _text(panel)


@pytest.mark.parametrize("consent", ["opt-out", "opt-in"])
def test_no_secret_server_or_login_on_the_pages(tmp_path: Path, consent: str) -> None:
    cfg = _config(tmp_path, consent=consent)
    assert set(SECRETS.values()) <= cfg.secrets  # each read from the environment
    about, panel = _pages(cfg)
    for page in (about, panel, html.unescape(about), html.unescape(panel)):
        shown = [s for s in HIDDEN if s.casefold() in page.casefold()]
        assert shown == []


def test_hostile_config_values_are_escaped(tmp_path: Path) -> None:
    evil = '<img src=x onerror=alert(1)>'
    cfg = _config(tmp_path, replace={
        'list = "kmers@lists.example.org"': f'list = "k{evil}@lists.example.org"',
        'query = "#kmers -is:retweet"': f'query = "#kmers {evil}"',
        'bot_username = "kmbridge"': 'bot_username = "kb\\"><script>alert(2)</script>"',
    })
    about, panel = _pages(cfg)
    for page in (about, panel):
        assert "<img" not in page and "<script" not in page
        assert "&lt;img src=x onerror=alert(1)&gt;" in page


@pytest.mark.parametrize("bad", ["https://", "ftp://lists.example.org/kmers",
                                 "mailto:", "mailto:two@a.org,three@b.org",
                                 "javascript:alert(1)", "lists.example.org/join"])
def test_check_refuses_a_bad_subscribe(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigError) as e:
        _config(tmp_path, subscribe=bad)
    msg = str(e.value)
    assert "communities[0].channels[4].subscribe" in msg, msg
    assert "mailto:" in msg and "https://" in msg


async def test_the_route_serves_the_page(tmp_path: Path) -> None:
    async with live_bridge(tmp_path) as lv, aiohttp.ClientSession() as http:
        async with http.get(f"{lv.url}/c/kmers/about") as resp:
            assert resp.status == 200
            body = await resp.text()
        async with http.get(f"{lv.url}/c/kmers") as resp:
            live: Any = await resp.text()
        async with http.get(f"{lv.url}/c/nope/about") as resp:
            assert resp.status == 404
    assert "How to take part in #kmers" in body
    assert [m for m in re.findall(r'<span class="badge">([^<]+)</span>', body)] == [
        "Lobby", "Garden", "Porch"]
    assert "the lobby sandbox network" in body
    assert 'href="/c/kmers/about"' in live and "join-panel" in live


def test_hashbridge_check_names_the_bad_subscribe(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    _config(tmp_path)  # skips when an adapter is missing; writes a valid file first
    path = tmp_path / "hashbridge.toml"
    path.write_text(path.read_text().replace(
        'subscribe = "https://lists.example.org/postorius/lists/kmers/"',
        'subscribe = "lists.example.org/join"'))
    res = subprocess.run(
        [sys.executable, "-m", "bridge.cli", "check", "-c", str(path)], cwd=tmp_path,
        capture_output=True, text=True, timeout=120,
        env={**os.environ, **SECRETS, "PYTHONPATH": str(Path(__file__).parents[2])})
    assert res.returncode == 78, res.stdout + res.stderr
    assert "communities[0].channels[4].subscribe: 'lists.example.org/join' is neither a " \
           "mailto: address nor an https:// page" in res.stderr
    assert not any(s in res.stdout + res.stderr for s in SECRETS.values())
