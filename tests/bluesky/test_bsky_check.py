"""``hashbridge check --online`` for Bluesky channels, against the real PDS: what each
channel reads (the firehose answers, authors resolve, the hashtag) and writes (the
account is active, its handle, 300 graphemes), read-only and on the session the
account check made; a deactivated or taken-down account, a firehose or PLC that
cannot be used, each FAILED with what to fix."""

from __future__ import annotations

import base64
import json
import os
import socket
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from bskyhelp import account_model

from adapters.bluesky import BlueskyFactory
from adapters.bluesky import check as check_module
from adapters.bluesky.config import BlueskyAccount, BlueskyChannel
from adapters.bluesky.sandbox import BlueskySandbox
from bridge.contract.adapter import ChannelCheck, ChannelSpec
from bridge.contract.model import ChannelKey
from bridge.contract.services import Services

SUBSCRIBE = "/xrpc/com.atproto.sync.subscribeRepos"


def spec(key: str, direction: str, tag: str = "kmers", **options: Any) -> ChannelSpec:
    return ChannelSpec(key=ChannelKey(key), community="kmers", hashtag=tag,
                       direction=direction, options=BlueskyChannel(hashtag=tag, **options))


BOTH = spec("kmers/bsky", "both")
READS = spec("other/bsky", "in", "other", relay_replies_to_bridge=False)
WRITES = spec("third/bsky", "out", "third")


def account(box: BlueskySandbox, **changes: Any) -> BlueskyAccount:
    return account_model(box.account_config() | changes)


def sessions(box: BlueskySandbox) -> int:
    """The PDS's own count of the bridge account's app-password sessions (one row per
    createSession; a resumed session adds none)."""
    assert box.bot is not None
    db = box.server.dir / "data" / "account.sqlite"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        return int(con.execute("SELECT count(*) FROM refresh_token WHERE did = ? AND "
                               "appPasswordName IS NOT NULL", (box.bot.did,)).fetchone()[0])


def head(box: BlueskySandbox) -> str:
    assert box.bot is not None
    got = box.server.xrpc("com.atproto.sync.getLatestCommit", params=f"did={box.bot.did}")
    return f"{got['cid']}@{got['rev']}"


def admin(box: BlueskySandbox, method: str, body: dict[str, Any]) -> None:
    req = urllib.request.Request(f"{box.server.listen_url}/xrpc/{method}",
                                 data=json.dumps(body).encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    req.add_header("Authorization", "Basic " + base64.b64encode(b"admin:admin-pass").decode())
    with urllib.request.urlopen(req, timeout=30):
        pass


def take_down(box: BlueskySandbox) -> None:
    assert box.bot is not None
    admin(box, "com.atproto.admin.updateSubjectStatus", {
        "subject": {"$type": "com.atproto.admin.defs#repoRef", "did": box.bot.did},
        "takedown": {"applied": True, "ref": "test"}})


def deactivate(box: BlueskySandbox) -> None:
    """As the owner does (its main password's session: an app password may not)."""
    assert box.bot is not None
    box.server.xrpc("com.atproto.server.deactivateAccount", {}, token=box.bot.access_jwt)


async def check(acct: BlueskyAccount, *channels: ChannelSpec,
                factory: BlueskyFactory | None = None) -> dict[ChannelKey, ChannelCheck]:
    async with aiohttp.ClientSession() as http:
        return await (factory or BlueskyFactory()).check_channels(acct, channels, http,
                                                                  Services())


async def test_each_channel_says_what_it_reads_and_writes(bsky: BlueskySandbox) -> None:
    """Reading: the firehose answered, authors resolve through the PLC, the hashtag, and
    the one channel that takes posts addressed to the bridge; writing: the handle, the
    account active, 300 graphemes.  Nothing is written, and check_online's session is
    resumed (one login for both checks)."""
    assert bsky.bot is not None
    acct = account(bsky)
    f = BlueskyFactory()
    before, logins = head(bsky), sessions(bsky)
    async with aiohttp.ClientSession() as http:
        assert (await f.check_online(acct, http, Services())).ok
        found = await f.check_channels(acct, (BOTH, READS, WRITES), http, Services())
    assert sessions(bsky) == logins + 1, "check_channels logged in again"
    assert head(bsky) == before, "the check wrote to the repo"
    both, reads, writes = found[BOTH.key], found[READS.key], found[WRITES.key]
    assert both.ok and reads.ok and writes.ok, found
    who = f"@{bsky.bot.handle} ({bsky.bot.did})"
    for got, tag in ((both, "kmers"), (reads, "other")):
        assert got.reads.startswith(f"#{tag} (any case, in tag facets or a post's tags)")
        assert f"from the firehose {acct.firehose} (answered)" in got.reads
        assert f"authors' identities through {acct.plc_directory}" in got.reads
        assert f"@{bsky.bot.handle} on " in got.reads
        # the sandbox reads its own PDS's firehose: only that PDS's posts
        assert any("the firehose is the account's own PDS" in w and "bsky.network" in w
                   for w in got.warnings), got.warnings
    assert "untagged posts addressed to the bridge" in both.reads
    assert "addressed" not in reads.reads       # only one channel takes them
    assert not writes.reads and not reads.writes and not writes.warnings
    for got in (both, writes):
        assert got.writes.startswith(f"posts as {who} to its repo on ")
        assert "(account active), at most 300 graphemes a post" in got.writes
    shown = repr(found)
    assert bsky.bot_app_password not in shown and bsky.bot.password not in shown


async def test_without_the_account_check_it_logs_in_once(bsky: BlueskySandbox) -> None:
    logins = sessions(bsky)
    found = await check(account(bsky), BOTH, WRITES)
    assert all(c.ok for c in found.values()), found
    assert sessions(bsky) == logins + 1


async def test_a_deactivated_account_logs_in_but_cannot_write(bsky: BlueskySandbox) -> None:
    """The PDS lets a deactivated account log in and refuses its posts: its writing
    channels FAILED with how to reactivate it; reading needs no active account."""
    assert bsky.bot is not None
    deactivate(bsky)
    acct = account(bsky)
    f = BlueskyFactory()
    async with aiohttp.ClientSession() as http:
        assert (await f.check_online(acct, http, Services())).ok
        found = await f.check_channels(acct, (BOTH, READS, WRITES), http, Services())
    assert found[READS.key].ok, found[READS.key]
    for key in (BOTH.key, WRITES.key):
        got = found[key]
        assert not got.ok
        assert got.error.startswith(f"writing: the account @{bsky.bot.handle} "
                                    f"({bsky.bot.did}) is deactivated"), got.error
        assert "Reactivate it" in got.error and "activateAccount" in got.error
    assert "reading" not in found[BOTH.key].error and found[BOTH.key].reads


async def test_a_taken_down_account_says_so(bsky: BlueskySandbox) -> None:
    """Taken down: the PDS answers an app-password login as for a wrong password, so
    check_online asks the public repo status (given the DID) or says the handle no
    longer resolves; a session made before the takedown: the writes FAILED."""
    assert bsky.bot is not None
    acct = account(bsky)
    f = BlueskyFactory()
    async with aiohttp.ClientSession() as http:
        assert (await f.check_online(acct, http, Services())).ok
        take_down(bsky)
        found = await f.check_channels(acct, (BOTH, WRITES), http, Services())
        by_handle = await f.check_online(acct, http, Services())
        by_did = await f.check_online(account(bsky, handle=bsky.bot.did), http, Services())
    for got in found.values():
        assert not got.ok and got.error.startswith("writing: the account ")
        assert "is taken down by its PDS's moderators" in got.error, got.error
    assert by_did.error == ("account takendown: the account " + bsky.bot.did
                            + " is taken down by its PDS's moderators: it can neither post "
                            "nor log in with an app password. Appeal to the PDS's operator, "
                            "or give the bridge another account"), by_did.error
    assert "taken down by its PDS's moderators" in by_did.error
    assert not by_handle.ok and by_handle.error.startswith("bad_credentials: ")
    assert (f"{bsky.bot.handle} does not resolve on {acct.service}: check handle and "
            "service (or the account was taken down or deleted)") in by_handle.error


async def test_a_wrong_password_still_says_so(bsky: BlueskySandbox) -> None:
    """The account is there and active: no status to add, the app-password hint stays."""
    async with aiohttp.ClientSession() as http:
        got = await BlueskyFactory().check_online(
            account(bsky, app_password="wrong-pass-word-1234"), http, Services())
    assert not got.ok and got.error.startswith("bad_credentials: Bluesky refused")
    assert "App passwords" in got.error and "resolve" not in got.error


async def test_an_account_of_another_pds_says_which_key_to_fix(bsky: BlueskySandbox
                                                               ) -> None:
    stranger = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"
    async with aiohttp.ClientSession() as http:
        got = await BlueskyFactory().check_online(account(bsky, handle=stranger), http,
                                                  Services())
    assert not got.ok and got.error.startswith("bad_credentials: Bluesky refused")
    assert (f"{bsky.account_config()['service']} holds no repo for {stranger}: set service "
            "to the account's own PDS") in got.error


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("case", ["closed", "not_a_firehose", "unknown_path", "silent"])
async def test_a_firehose_that_cannot_be_read_fails_its_readers(
        bsky: BlueskySandbox, silent_server: int, case: str) -> None:
    """The probe opens the websocket as the reader does: a closed port, a server that
    is no firehose (HTTP 404), a PDS path it does not serve (it drops the connection),
    a server that never answers (within request_timeout); the writers are unaffected."""
    plc = bsky.account_config()["plc_directory"]
    pds = bsky.account_config()["service"].replace("http", "ws", 1)
    url, expect = {
        "closed": (f"ws://127.0.0.1:{_closed_port()}{SUBSCRIBE}",
                   "cannot reach the firehose"),
        "not_a_firehose": (plc.replace("http", "ws", 1) + SUBSCRIBE,
                           "refused the websocket (HTTP 404): it is not a subscribeRepos "
                           "endpoint; set firehose to a relay's subscribeRepos "
                           "(wss://bsky.network/xrpc/com.atproto.sync.subscribeRepos"),
        "unknown_path": (f"{pds}/relay{SUBSCRIBE}",
                         "closed the connection instead of opening the websocket"),
        "silent": (f"ws://127.0.0.1:{silent_server}{SUBSCRIBE}",
                   "did not open within 1s (connected, or still connecting, but no answer)"),
    }[case]
    found = await check(account(bsky, firehose=url, request_timeout=1.0), BOTH, WRITES)
    got = found[BOTH.key]
    assert not got.ok and got.error.startswith("reading: ") and url in got.error, got
    assert expect in got.error, got.error
    assert not got.reads and got.writes       # what it writes is still said
    assert found[WRITES.key].ok, found[WRITES.key]


async def test_authors_that_cannot_be_resolved_fail_the_readers(bsky: BlueskySandbox
                                                                ) -> None:
    """Every relayed post's author is resolved (DID document, profile: consent) as the
    bridge's own DID is here: a plc_directory that does not know it, or a private
    address without allow_private_media_hosts, would reject every post."""
    assert bsky.bot is not None
    cfg = bsky.account_config()
    wrong_plc = await check(account(bsky, plc_directory=cfg["service"]), BOTH)
    private = await check(account(bsky, allow_private_media_hosts=False), BOTH, WRITES)
    got = wrong_plc[BOTH.key]
    assert not got.ok and f"tried with the bridge's own {bsky.bot.did}" in got.error
    assert (f"{cfg['service']} does not know the bridge's DID: set plc_directory to the "
            "directory the network uses (https://plc.directory for Bluesky)") in got.error
    got = private[BOTH.key]
    assert not got.ok and "is a loopback address" in got.error
    assert "needs allow_private_media_hosts = true" in got.error
    assert private[WRITES.key].ok


async def test_silent_servers_are_named_within_the_probe_bound(
        bsky: BlueskySandbox, silent_server: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A firehose and a PLC that accept connections and never answer, with the default
    request_timeout (30 s, past check --online's 20 s for the whole account): each is
    named per channel within the probe bound (lowered here from 10 s)."""
    assert bsky.bot is not None
    monkeypatch.setattr(check_module, "PROBE_SECONDS", 1.0)
    plc = f"http://127.0.0.1:{silent_server}"
    firehose = f"ws://127.0.0.1:{silent_server}{SUBSCRIBE}"
    got = (await check(account(bsky, plc_directory=plc, firehose=firehose,
                               request_timeout=30.0), BOTH))[BOTH.key]
    assert not got.ok and got.error == (
        f"reading: the firehose {firehose} did not open within 1s (connected, or still "
        "connecting, but no answer): check its host and port; authors cannot be resolved: "
        f"the bridge's own {bsky.bot.did} did not resolve within 1s (plc_directory {plc}, "
        "then its PDS): check plc_directory")


def _cli_config(tmp_path: Path, box: BlueskySandbox) -> str:
    cfg = box.account_config()
    text = f"""
[bridge]
data_dir = "{tmp_path / 'data'}"

[accounts.bsky]
platform = "bluesky"
service = "{cfg['service']}"
handle = "{cfg['handle']}"
app_password = "${{BSKY_APP_PASSWORD}}"
firehose = "{cfg['firehose']}"
plc_directory = "{cfg['plc_directory']}"
allow_private_media_hosts = true

[accounts.lobby]
platform = "sandbox"
dir = "{tmp_path / 'nets'}"

[[communities]]
name = "kmers"
hashtag = "kmers"

[[communities.channels]]
account = "bsky"
hashtag = "kmers"

[[communities.channels]]
account = "lobby"
network = "lobby"
"""
    p = tmp_path / "c.toml"
    p.write_text(text)
    p.chmod(0o600)
    return str(p)


def test_check_online_prints_each_channel(bsky: BlueskySandbox, tmp_path: Path) -> None:
    """``hashbridge check --online``: the account logs in once, its channel says what it
    reads and writes (exit 0); deactivated, the account still logs in (and says why its
    handle resolves no more) and the channel FAILED (exit 1).  The app password is
    never printed."""
    assert bsky.bot is not None
    c = _cli_config(tmp_path, bsky)
    env = {**os.environ, "BSKY_APP_PASSWORD": bsky.bot_app_password}

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bridge.cli", "check", "-c", c,
                               "--online"], cwd=tmp_path, capture_output=True, text=True,
                              timeout=120, env=env)

    logins = sessions(bsky)
    res = run()
    out = res.stdout
    assert res.returncode == 0, out + res.stderr
    assert sessions(bsky) == logins + 1
    assert "  kmers/bsky: will read and write kmers\n    reads: #kmers (any case" in out
    assert f"    writes: posts as @{bsky.bot.handle} ({bsky.bot.did}) to its repo" in out
    assert "    warning: the firehose is the account's own PDS" in out
    assert "every channel checked usable" in out
    deactivate(bsky)
    res = run()
    assert res.returncode == 1, res.stdout + res.stderr
    assert f"account bsky (bluesky): ok as @{bsky.bot.handle}" in res.stdout
    assert (f"  warning: the account @{bsky.bot.handle} ({bsky.bot.did}) is deactivated"
            in res.stdout)
    assert (f"    FAILED: writing: the account @{bsky.bot.handle} ({bsky.bot.did}) is "
            "deactivated") in res.stdout
    for text in (out, res.stdout, res.stderr):
        assert bsky.bot_app_password not in text
