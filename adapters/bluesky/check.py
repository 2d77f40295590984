"""``hashbridge check --online`` for the channels of one Bluesky account, read-only:
no record is created, nothing is replayed, and the session is the one
:meth:`~adapters.bluesky.BlueskyFactory.check_online` made (resumed, not made again).

Reading channels: the firehose as configured answers a ``subscribeRepos`` websocket
upgrade (no cursor, so nothing is replayed; closed at once); authors resolve as the
reader resolves them (tried with the bridge's own DID: its document through
``plc_directory``, its profile from the PDS that document names, through the same
address guard); the hashtag, and which channel takes the untagged posts addressed
to the bridge.

Writing channels: the account's repo takes posts: ``getSession`` says the account
is active (a deactivated one still logs in, but its posts are refused; when the
session cannot say, the public ``sync.getRepoStatus`` does), ``checkAccountStatus``
that its DID document names this PDS; the handle it posts as; 300 graphemes a post.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from adapters.bluesky.adapter import MAX_FRAME, BlueskyAdapter, Identity
from adapters.bluesky.client import Gone, XrpcClient
from adapters.bluesky.compose import MAX_GRAPHEMES
from adapters.bluesky.config import BlueskyAccount, BlueskyChannel
from bridge.contract.adapter import AdapterError, ChannelCheck, ChannelSpec, TransientError
from bridge.contract.model import ChannelKey
from bridge.contract.services import Services

ALL_OF_BLUESKY = str(BlueskyAccount.model_fields["firehose"].default)
PROBE_SECONDS = 10.0
"""At most this long (or ``request_timeout`` if shorter) for the firehose to open and
for the bridge's identity to resolve: a silent server is then named per channel
within the ``check --online`` bound (20 s by default) of the whole account."""
CLOSE_WAIT = 2.0
"""Seconds the probe waits for the server's close frame (a relay may still be
sending the live stream)."""

_INACTIVE = {
    "deactivated": "is deactivated: it still logs in, but its PDS refuses its posts "
                   "(AccountDeactivated). Reactivate it (sign in to it on bsky.app, which "
                   "offers to, or call com.atproto.server.activateAccount with its main "
                   "password), then check again",
    "takendown": "is taken down by its PDS's moderators: it can neither post nor log in "
                 "with an app password. Appeal to the PDS's operator, or give the bridge "
                 "another account",
    "suspended": "is suspended (taken down for a time) by its PDS's moderators: it cannot "
                 "post until that ends. Appeal to the PDS's operator, or give the bridge "
                 "another account",
    "deleted": "is deleted: give the bridge another account (handle and app password)",
}


def inactive(who: str, status: str) -> str:
    """Why an account that is not active cannot post, and what to do."""
    return f"the account {who} " + _INACTIVE.get(
        status, f"is not active on its PDS (status: {status or 'not given'}): its posts "
                "are refused; ask the PDS's operator why")


@dataclass(frozen=True, slots=True)
class _Half:
    """What one side (reading or writing) of the account's channels found."""

    text: str = ""
    warnings: tuple[str, ...] = ()
    error: str = ""


async def check_channels(account: BlueskyAccount, channels: tuple[ChannelSpec, ...],
                         http: aiohttp.ClientSession, services: Services, *,
                         session: str | None = None) -> dict[ChannelKey, ChannelCheck]:
    """Each channel of *account*: what it reads and writes.  *session*: the exported
    session of the login just checked (resumed; without it, or when the PDS no longer
    takes it, the app password logs in once)."""
    adapter = BlueskyAdapter(account, channels, services=services)
    client = adapter.client
    try:
        try:
            await client.login(session)
        except AdapterError as exc:
            return {c.key: ChannelCheck(ok=False, error=f"cannot log in: {exc}")
                    for c in channels}
        reads = any(c.direction in ("both", "in") for c in channels)
        writes = any(c.direction in ("both", "out") for c in channels)
        source, target = await asyncio.gather(
            _source(adapter, http) if reads else _nothing(),
            _target(client) if writes else _nothing())
    finally:
        await adapter.close()
    addressed = adapter.addressed_channel()
    out: dict[ChannelKey, ChannelCheck] = {}
    for spec in channels:
        halves = []
        if spec.direction in ("both", "in"):
            tag = _opts(spec).hashtag
            extra = (" and the untagged posts addressed to the bridge (replies to its "
                     "posts, mentions of it)" if addressed is not None
                     and addressed.key == spec.key else "")
            halves.append(("reading", _Half(
                text=f"#{tag} (any case, in tag facets or a post's tags){extra}, "
                     f"{source.text}" if source.text else "",
                warnings=source.warnings, error=source.error)))
        if spec.direction in ("both", "out"):
            halves.append(("writing", target))
        errors = [f"{what}: {h.error}" for what, h in halves if h.error]
        out[spec.key] = ChannelCheck(
            ok=not errors,
            reads=next((h.text for what, h in halves if what == "reading"), ""),
            writes=next((h.text for what, h in halves if what == "writing"), ""),
            warnings=tuple(w for _, h in halves for w in h.warnings),
            error="; ".join(errors))
    return out


async def _nothing() -> _Half:
    return _Half()


def _opts(spec: ChannelSpec) -> BlueskyChannel:
    assert isinstance(spec.options, BlueskyChannel)
    return spec.options


# ------------------------------------------------------------ reading
async def _source(adapter: BlueskyAdapter, http: aiohttp.ClientSession) -> _Half:
    """The firehose and the authors' identities, as the reader will use them."""
    account = adapter.client.account
    did = adapter.client.did
    fire_error, (ident, ident_error) = await asyncio.gather(
        probe_firehose(http, account), _authors(adapter, did))
    errors = [e for e in (fire_error, ident_error) if e]
    if errors:
        return _Half(error="; ".join(errors))
    assert ident is not None
    where = (f"through {account.plc_directory}" if did.startswith("did:plc:")
             else "from their DID documents")
    text = (f"from the firehose {account.firehose} (answered); authors' identities "
            f"{where} (the bridge's own resolved: @{ident.handle or '?'} on {ident.pds})")
    warnings = []
    own = {_origin(account.service), _origin(ident.pds),
           _origin(str(adapter.client.sdk._base_url).removesuffix("/xrpc"))}
    if _origin(account.firehose) in own:
        warnings.append("the firehose is the account's own PDS: only posts made on that "
                        f"PDS are read ({ALL_OF_BLUESKY} carries all of Bluesky)")
    return _Half(text=text, warnings=tuple(warnings))


def _origin(url: str) -> tuple[str, int | None]:
    u = URL(url)
    return (u.host or "").lower(), u.port


async def probe_firehose(http: aiohttp.ClientSession, account: BlueskyAccount) -> str:
    """Open the firehose's websocket as the reader does, without a cursor (nothing is
    replayed), and close it at once.  ``""`` when it answered, else why not and the fix."""
    url = account.firehose
    fix = (f"set firehose to a relay's subscribeRepos ({ALL_OF_BLUESKY} for all of "
           "Bluesky) or a PDS's")
    wait = min(account.request_timeout, PROBE_SECONDS)
    try:
        async with asyncio.timeout(wait):
            ws = await http.ws_connect(url, max_msg_size=MAX_FRAME, autoping=True,
                                       timeout=aiohttp.ClientWSTimeout(ws_receive=None,
                                                                       ws_close=CLOSE_WAIT))
    except TimeoutError:
        return (f"the firehose {url} did not open within {wait:g}s (connected, or still "
                "connecting, but no answer): check its host and port")
    except aiohttp.WSServerHandshakeError as exc:
        if exc.status == 429:
            return f"the firehose {url} is rate limiting this address (HTTP 429): try later"
        if exc.status >= 500:
            return (f"the firehose {url} is failing (HTTP {exc.status}): try later, or "
                    f"{fix}")
        return (f"{url} refused the websocket (HTTP {exc.status}): it is not a "
                f"subscribeRepos endpoint; {fix}")
    except aiohttp.ServerDisconnectedError:
        return (f"{url} closed the connection instead of opening the websocket: it is not "
                "a subscribeRepos endpoint (a PDS drops unknown paths so), or a proxy in "
                f"front of it does not pass websockets; {fix}")
    except (aiohttp.ClientError, OSError) as exc:
        return (f"cannot reach the firehose {url} ({type(exc).__name__}: {exc}): check its "
                "host and port")
    await ws.close()
    return ""


async def _authors(adapter: BlueskyAdapter, did: str) -> tuple[Identity | None, str]:
    """The bridge's own identity, read as every author's is (DID document, then the
    profile from the PDS it names): ``(identity, "")`` or ``(None, why)``."""
    account = adapter.client.account
    wait = min(account.request_timeout, PROBE_SECONDS)
    try:
        async with asyncio.timeout(wait):
            return await adapter.identity(did), ""
    except TimeoutError:
        return None, (f"authors cannot be resolved: the bridge's own {did} did not resolve "
                      f"within {wait:g}s (plc_directory {account.plc_directory}, then its "
                      "PDS): check plc_directory")
    except AdapterError as exc:
        why = (f"authors cannot be resolved as the reader resolves them (tried with the "
               f"bridge's own {did}): {exc}")
        if " resolves to " in str(exc) and not account.allow_private_media_hosts:
            why += ("; a PLC or PDS on your own network needs allow_private_media_hosts = "
                    "true (tests and private networks only)")
        elif isinstance(exc, Gone) and did.startswith("did:plc:"):
            why += (f"; {account.plc_directory} does not know the bridge's DID: set "
                    "plc_directory to the directory the network uses "
                    "(https://plc.directory for Bluesky)")
        return None, why


# ------------------------------------------------------------ writing
async def _target(client: XrpcClient) -> _Half:
    """Whether the account's repo takes posts, and as whom."""
    sess: dict[str, Any] | None = None
    sess_error: AdapterError | None = None
    try:
        sess = await client.query("com.atproto.server.getSession")
    except AdapterError as exc:
        sess_error = exc
    try:
        account_status: dict[str, Any] | None = await client.query(
            "com.atproto.server.checkAccountStatus")
    except AdapterError:
        account_status = None     # getSession says enough
    known = [] if sess is None else [sess.get("active") is not False]
    if account_status is not None and isinstance(account_status.get("activated"), bool):
        known.append(account_status["activated"])
    status = str((sess or {}).get("status") or "")
    if sess is None or not all(known):
        # The reference PDS cannot find a taken-down account's session: the public
        # repo status still says why.
        try:
            repo = await client.query("com.atproto.sync.getRepoStatus", did=client.did)
        except AdapterError:
            repo = {}
        status = status or str(repo.get("status") or "")
        if repo.get("active") is False:
            known.append(False)
    handle = str((sess or {}).get("handle") or client.handle)
    who = f"@{handle} ({client.did})"
    if not all(known):
        return _Half(error=inactive(who, status))
    if sess_error is not None:
        if isinstance(sess_error, TransientError):
            return _Half(warnings=(f"not checked whether {who} may post: getSession: "
                                   f"{sess_error}",))
        return _Half(error=f"its PDS does not take the session of {who} (getSession: "
                           f"{sess_error}): sign in to it on bsky.app to see why")
    pds = str(client.sdk._base_url).removesuffix("/xrpc")
    warnings = []
    if handle == "handle.invalid":
        warnings.append(f"the account's handle does not resolve to {client.did} (Bluesky "
                        "shows it as handle.invalid): fix the handle's DNS TXT record or "
                        "its /.well-known/atproto-did")
    if account_status is not None and account_status.get("validDid") is False:
        warnings.append(f"the DID document of {client.did} does not name {pds} with this "
                        "account's key (a move between PDSes left half done?): the network "
                        "may not take its posts")
    return _Half(text=f"posts as {who} to its repo on {pds} (account active), at most "
                      f"{MAX_GRAPHEMES} graphemes a post (a longer one continues in a reply "
                      "thread)", warnings=tuple(warnings))


# ------------------------------------------------------------ the account check
async def session_status(client: XrpcClient) -> str:
    """The logged-in account's status when ``getSession`` says it is not active
    (``deactivated``...), else ``""`` (active, or a PDS that does not say)."""
    try:
        sess = await client.query("com.atproto.server.getSession")
    except AdapterError:
        return ""
    if sess.get("active") is not False:
        return ""
    return str(sess.get("status") or "inactive")


# ------------------------------------------------------------ a refused login
async def refusal_reason(client: XrpcClient) -> tuple[str, str]:
    """After the PDS refused the login: ``(status, why)`` when the account is there
    but not active (a taken-down account cannot log in with an app password, and the
    PDS answers as for a wrong one), ``("", hint)`` when the handle does not resolve
    there, ``("", "")`` when nothing more can be told.  Public queries only."""
    account = client.account
    did = account.handle if account.handle.startswith("did:") else ""
    if not did:
        try:
            got = await client.query("com.atproto.identity.resolveHandle",
                                     handle=account.handle)
        except AdapterError as exc:
            # the PDS says HandleNotFound, an AppView "Unable to resolve handle"
            if "HandleNotFound" in str(exc) or "Unable to resolve handle" in str(exc):
                return "", (f"{account.handle} does not resolve on {account.service}: check "
                            "handle and service (or the account was taken down or deleted)")
            return "", ""
        did = str(got.get("did") or "")
    try:
        repo = await client.query("com.atproto.sync.getRepoStatus", did=did)
    except Gone:
        return "", (f"{account.service} holds no repo for {did}: set service to the "
                    "account's own PDS")
    except AdapterError:
        return "", ""
    if repo.get("active") is not False:
        return "", ""
    status = str(repo.get("status") or "")
    who = did if account.handle == did else f"{account.handle} ({did})"
    return status or "inactive", inactive(who, status)
