"""SSRF-safe fetching of media that members' posts point at.

An attachment URL comes from someone else's post, so fetching it is a request the bridge
makes on a stranger's behalf from inside the operator's network.  :func:`fetch_media`
fetches it only when all of these hold, and otherwise raises :class:`MediaRefused` with
the reason:

- the scheme is ``http`` or ``https`` and the URL has no user info;
- the host is in the adapter's allow-list (the platform's own media hosts).  An entry
  ``host`` allows the scheme's default port only; ``host:port`` allows that port;
- every address the name resolves to is a public unicast address (private, loopback,
  link-local, multicast, reserved, unspecified, CGNAT, and IPv6 forms embedding one of
  those, e.g. ``::ffff:127.0.0.1``, are refused) unless ``allow_private`` (tests and local
  sandboxes only; production config must not set it);
- the connection goes to the address that was checked: the name is resolved once, and a
  resolver pinned to that answer is the only one the request's connector has, so a DNS
  answer that changes between check and connect (rebinding) cannot redirect it;
- at most :data:`MAX_REDIRECTS` redirects, each target checked like the first URL;
- the body is at most ``max_bytes`` (``Content-Length`` checked first, then counted while
  streaming), and the whole fetch including DNS and redirects finishes within ``timeout``.

The caller's session lends only its default headers (User-Agent): its cookies, auth and
middlewares (e.g. OAuth signing) are never sent to a media host.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

log = logging.getLogger("hashbridge.netguard")

MAX_REDIRECTS = 3
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORT = {"http": 80, "https": 443}
_CHUNK = 64 * 1024

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class MediaRefused(Exception):
    """The media was not fetched.  ``reason`` says why in words an operator can act on;
    ``transient`` is True when trying later may work (timeouts, 5xx, connection errors)
    and False for policy refusals and 4xx answers.  ``kind`` sorts the refusal for the
    note a reader sees: ``"policy"`` (where the URL points), ``"size"`` (over the
    limit) or ``"unavailable"`` (the host did not deliver it)."""

    def __init__(self, reason: str, *, transient: bool = False,
                 kind: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        self.kind = kind or ("unavailable" if transient else "policy")


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchedMedia:
    url: str
    """The URL asked for."""
    final_url: str
    """The URL the body came from (after redirects)."""
    address: str
    """The IP address connected to."""
    content_type: str
    data: bytes


def address_refusal(ip: IPAddress) -> str:
    """Why *ip* is not a public unicast address, or "" when it is."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _IPV4_COMPAT:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            inner = address_refusal(embedded)
            return f"{inner} (embedded in {ip})" if inner else ""
    for test, what in ((ip.is_loopback, "loopback"), (ip.is_link_local, "link-local"),
                       (ip.is_multicast, "multicast"), (ip.is_unspecified, "unspecified"),
                       (ip.is_private, "private"), (ip.is_reserved, "reserved")):
        if test:
            return f"{ip} is a {what} address"
    if not ip.is_global:
        return f"{ip} is not a public address"
    return ""


_IPV4_COMPAT = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _allowed(host: str, port: int, scheme: str, allowed_hosts: Collection[str]) -> bool:
    for entry in allowed_hosts:
        try:
            parsed = URL("//" + entry.strip())
        except ValueError:
            continue
        name = (parsed.host or "").lower().rstrip(".")
        if name == host and (parsed.port or _DEFAULT_PORT[scheme]) == port:
            return True
    return False


def check_url(url: str | URL, allowed_hosts: Collection[str]) -> URL:
    """The parsed URL if its scheme, user info, host and port are acceptable; else refuse."""
    try:
        u = url if isinstance(url, URL) else URL(url, encoded=False)
    except (ValueError, TypeError) as e:
        raise MediaRefused(f"not a URL: {e}") from e
    scheme = (u.scheme or "").lower()
    if scheme not in _DEFAULT_PORT:
        raise MediaRefused(f"scheme {scheme or 'missing'!r} is not http(s)")
    if u.user is not None or u.password is not None:
        raise MediaRefused("URLs with user info are refused")
    host = (u.host or "").lower().rstrip(".")
    if not host:
        raise MediaRefused("URL has no host")
    port = u.port or _DEFAULT_PORT[scheme]
    if not _allowed(host, port, scheme, allowed_hosts):
        raise MediaRefused(f"host {host}:{port} is not one of this platform's media hosts")
    return u


async def resolve_checked(host: str, port: int, *, allow_private: bool) -> str:
    """Resolve *host* once; refuse if any answer is not public (unless *allow_private*)."""
    try:
        literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        addrs = [literal]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM)
        except OSError as e:
            raise MediaRefused(f"cannot resolve {host}: {e}", transient=True) from e
        addrs = [ipaddress.ip_address(str(i[4][0]).split("%", 1)[0]) for i in infos]
        if not addrs:
            raise MediaRefused(f"{host} has no address", transient=True)
    if not allow_private:
        # Every answer, not just the first: the connector could otherwise fall back to one.
        for ip in addrs:
            why = address_refusal(ip)
            if why:
                raise MediaRefused(f"{host} resolves to {why}")
    return str(addrs[0])


class _PinnedResolver(AbstractResolver):
    """Answers only for the one host that was checked, with the one address checked."""

    def __init__(self, host: str, address: str) -> None:
        self.host, self.address = host, address

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        if host.lower().rstrip(".") != self.host:
            raise OSError(f"netguard: {host} was not checked")
        fam = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        return [ResolveResult(hostname=host, host=self.address, port=port, family=fam,
                              proto=0, flags=socket.AI_NUMERICHOST)]

    async def close(self) -> None:
        return None


async def fetch_media(http: aiohttp.ClientSession | None, url: str, *,
                      allowed_hosts: Collection[str], max_bytes: int, timeout: float,
                      allow_private: bool = False,
                      headers: Mapping[str, str] | None = None) -> FetchedMedia:
    """Fetch *url* under the rules in the module docstring; raise :class:`MediaRefused`.

    *headers* (e.g. Matrix's ``Authorization`` for authenticated media) go to the first
    host only: they are dropped when a redirect leaves it.  *http* lends only its
    User-Agent (None: ``hashbridge``).
    """
    try:
        async with asyncio.timeout(timeout):
            return await _fetch(http, url, allowed_hosts, max_bytes, allow_private,
                                dict(headers or {}), timeout)
    except TimeoutError as e:
        try:
            host = URL(url).host or "?"
        except ValueError:
            host = "?"
        raise MediaRefused(f"fetching from {host} took longer than {timeout:g} s",
                           transient=True) from e


async def _fetch(http: aiohttp.ClientSession | None, url: str, allowed_hosts: Collection[str],
                 max_bytes: int, allow_private: bool, headers: dict[str, str],
                 timeout: float) -> FetchedMedia:
    current = check_url(url, allowed_hosts)
    first_origin = current.origin()
    base_headers = ({k: v for k, v in http.headers.items() if k.lower() == "user-agent"}
                    if http is not None else {})
    base_headers = base_headers or {"User-Agent": "hashbridge"}
    for hop in range(MAX_REDIRECTS + 1):
        host = (current.host or "").lower().rstrip(".")
        port = current.port or _DEFAULT_PORT[current.scheme.lower()]
        address = await resolve_checked(host, port, allow_private=allow_private)
        hop_headers = {**base_headers, **(headers if current.origin() == first_origin else {}),
                       "Accept-Encoding": "identity"}
        connector = aiohttp.TCPConnector(resolver=_PinnedResolver(host, address),
                                         use_dns_cache=False, force_close=True, limit=1)
        async with aiohttp.ClientSession(
                connector=connector, trust_env=False, cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            try:
                async with session.get(current, allow_redirects=False, headers=hop_headers,
                                       auto_decompress=False) as resp:
                    if resp.status in _REDIRECTS:
                        target = resp.headers.get("Location")
                        if not target:
                            raise MediaRefused(f"redirect without Location from {current}")
                        if hop == MAX_REDIRECTS:
                            raise MediaRefused(f"more than {MAX_REDIRECTS} redirects")
                        try:
                            nxt = current.join(URL(target))
                        except ValueError as e:
                            raise MediaRefused(f"bad redirect target {target!r}") from e
                        current = check_url(nxt, allowed_hosts)
                        log.debug("media redirect to %s", current)
                        continue
                    if resp.status >= 400:
                        raise MediaRefused(f"{current.host} answered HTTP {resp.status}",
                                           transient=resp.status >= 500 or resp.status == 429,
                                           kind="unavailable")
                    if resp.status != 200:
                        raise MediaRefused(f"{current.host} answered HTTP {resp.status}",
                                           kind="unavailable")
                    encoding = resp.headers.get("Content-Encoding", "identity").lower()
                    if encoding != "identity":
                        # Asked for identity; a compressed body could expand past the limit.
                        raise MediaRefused(f"{current.host} sent {encoding}-encoded media",
                                           kind="unavailable")
                    data = await _read_limited(resp, max_bytes)
                    return FetchedMedia(url=url, final_url=str(current), address=address,
                                        content_type=resp.content_type, data=data)
            except aiohttp.ClientError as e:
                raise MediaRefused(f"fetching from {host} failed: {type(e).__name__}: {e}",
                                   transient=True) from e
    raise MediaRefused(f"more than {MAX_REDIRECTS} redirects")  # not reached


async def _read_limited(resp: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    if resp.content_length is not None and resp.content_length > max_bytes:
        raise MediaRefused(f"media is {resp.content_length} bytes, over the "
                           f"{max_bytes} byte limit", kind="size")
    data = bytearray()
    async for chunk in resp.content.iter_chunked(_CHUNK):
        data += chunk
        if len(data) > max_bytes:
            raise MediaRefused(f"media is over the {max_bytes} byte limit", kind="size")
    return bytes(data)
