"""The operator's contract: load, expand and validate the whole TOML config.

Everything is checked before anything starts, and every problem is reported at
once with its dotted key path and a hint::

    accounts.masto.access_token: environment variable MASTODON_TOKEN is not set
    communities[0].channels[1].acount: unknown key (did you mean 'account'?)
"""

from __future__ import annotations

import difflib
import os
import re
import stat
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bridge.contract.adapter import AdapterFactory, ChannelSpec, StrictModel
from bridge.contract.model import ChannelKey
from bridge.runtime import logs
from bridge.runtime.registry import Registry
from bridge.runtime.schedule import ChatEventConfig

M = TypeVar("M", bound=BaseModel)

EXIT_CONFIG = 78
"""sysexits' EX_CONFIG: systemd and scripts can tell a config error from a crash."""

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_PLACEHOLDER = re.compile(r"^(changeme|change-me|xxx+|todo|your[_-].*|<.*>|\.\.\.|secret|"
                          r"token|password)$", re.IGNORECASE)
_SECRET_NAME = re.compile(r"token|secret|password|passwd|key", re.IGNORECASE)


class ConfigError(Exception):
    def __init__(self, errors: list[str], secrets: frozenset[str] = frozenset()) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors
        self.secrets = secrets
        """The secret values the file holds, as far as they were read (to redact the
        messages where they are logged: a reload refused)."""


# ------------------------------------------------------------------ models

class WebSettings(StrictModel):
    listen: str = "127.0.0.1:8080"
    """host:port of the web view."""
    public_url: str = ""
    """How the web view is reached from outside (links in announcements)."""
    admin_token: str = ""
    """Token for the admin page; empty disables it."""
    # Limits a stranger cannot exhaust (docs/operations.md, "Web view limits").
    max_connections: int = Field(1000, ge=16, le=100_000)
    """Open connections at most; at the cap the one idle longest is closed."""
    header_timeout_seconds: float = Field(10.0, gt=0, le=600)
    """A connection that has not sent a whole request head by then is closed."""
    body_timeout_seconds: float = Field(30.0, gt=0, le=3600)
    """A request body (the admin forms) not received by then: 408."""
    send_timeout_seconds: float = Field(30.0, gt=0, le=3600)
    """A client that takes no data for this long (export, live stream) is dropped."""
    max_live_streams: int = Field(500, ge=1)
    """Live-page subscribers at once (each holds a connection); more get 503."""
    max_live_streams_per_client: int = Field(50, ge=1)
    max_exports: int = Field(2, ge=1, le=64)
    """Exports built at once (each reads the whole archive)."""
    max_exports_per_client: int = Field(1, ge=1)
    trusted_proxies: list[str] = Field(default_factory=list)
    """Addresses of reverse proxies whose X-Forwarded-For names the client."""

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses(cls, v: list[str]) -> list[str]:
        import ipaddress

        for a in v:
            try:
                ipaddress.ip_network(a, strict=False)
            except ValueError:
                raise ValueError(f"{a!r} is not an IP address or network "
                                 "(e.g. 127.0.0.1 or 10.0.0.0/8)") from None
        return v

    @field_validator("max_live_streams")
    @classmethod
    def _below_connections(cls, v: int, info: Any) -> int:
        cap = info.data.get("max_connections", 1000)
        if v >= cap:
            raise ValueError(f"must be below max_connections ({cap}): live streams "
                             "would leave no connection for the pages and /healthz")
        return v


class BridgeSettings(StrictModel):
    data_dir: str = "data"
    database: str = ""
    """Where the store lives, as a URL (see :func:`parse_database`); empty: the
    SQLite file ``hashbridge.sqlite`` in ``data_dir``."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    retry_max_seconds: float = Field(300.0, gt=0)
    give_up_after_hours: float = Field(168.0, gt=0)
    send_timeout_seconds: float = Field(60.0, gt=0)
    restart_budget: int = Field(5, ge=1)
    """Adapter crashes tolerated per 10 minutes before it is marked failed."""
    failover_seconds: float = Field(15.0, ge=3, le=600)
    """With a database several processes share (PostgreSQL): how soon another
    process takes over an account whose process died or lost the database."""
    web: WebSettings | None = None


DEFAULT_CATCHUP_WINDOW = 3600.0
"""Seconds of history a channel relays at its first start, unless configured."""
MAX_CATCHUP_WINDOW = 30 * 86400
"""The longest window accepted: a month (X's search reaches back 7 days at most,
Mastodon's and the firehose's history are bounded by what the server keeps)."""
_CATCHUP = Field(None, ge=0, le=MAX_CATCHUP_WINDOW)


class AccountCommon(BaseModel):
    platform: str
    rate_per_minute: float | None = Field(None, gt=0)
    rate_burst: int | None = Field(None, ge=1)
    catchup_window: float | None = _CATCHUP
    """The default of the account's channels (see :class:`ChannelCommon`)."""


class ChannelCommon(BaseModel):
    account: str
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$")
    direction: Literal["both", "in", "out"] = "both"
    split: Literal["thread", "truncate"] | None = None
    attribution: str | None = None
    append_hashtag: bool | None = None
    on_edit: Literal["update", "skip", "correct"] = "update"
    on_delete: Literal["delete", "skip", "notice"] = "delete"
    reply_wait: float = Field(30.0, ge=0)
    catchup_window: float | None = _CATCHUP
    """Seconds: at the channel's first start (no saved read cursor), posts made up
    to this long before are relayed, oldest first; 0 starts from now.  Later starts
    resume from the cursor.  Default: the account's, else 3600."""
    links: bool | None = None
    max_length: int | None = Field(None, ge=20)
    author_share: float = Field(0.1, gt=0, le=1)
    """Where the platform has a daily post budget (X: ``max_posts_per_day``):
    the share of it one author's posts may take on this channel per UTC day,
    counted in parts, and the same share of its daily budget in money where
    each part has a price (X: ``max_usd_per_day``; a part with a URL costs
    $0.20, one without $0.015).  A post that would take an author past
    either goes out as one part, truncated, with a link to the web view (or
    the original)."""


class CommunityCommon(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    hashtag: str = Field(pattern=r"^[^\s#]+$")
    """Written with or without its '#', as everywhere else in the file."""
    description: str = ""
    """One line, at most 280 characters: what the directory page (``/``) says of it."""
    consent: Literal["opt-out", "opt-in"] = "opt-out"
    blocklist: list[str] = []
    duplicate_window: float = Field(600.0, ge=0)
    author_rate_per_minute: int = Field(30, ge=1)
    max_post_chars: int = Field(40000, ge=100)
    channels: list[dict[str, Any]]
    events: list[ChatEventConfig] = []
    """Recurring chat events (see :mod:`bridge.features.chatevents`)."""
    also_read: list[str] = []
    """Related hashtags read as well, read-only (Mastodon: one more hashtag stream
    each; Bluesky: the firehose filtered on them too).  Their posts are relayed to
    the community's other networks, never back to the one they were read from."""

    @field_validator("also_read", mode="before")
    @classmethod
    def _tags(cls, v: Any) -> Any:
        if not isinstance(v, list):
            return v
        out = []
        for i, t in enumerate(v):
            if not isinstance(t, str) or not re.fullmatch(r"#?[^\s#]+", t.strip()):
                raise ValueError(f"also_read[{i}] = {t!r} is not a hashtag; write "
                                 "also_read = [\"pkmchat\"]")
            out.append(t.strip().removeprefix("#"))
        return out

    @field_validator("hashtag", mode="before")
    @classmethod
    def _no_hash(cls, v: Any) -> Any:
        return v.strip().removeprefix("#") if isinstance(v, str) else v

    @field_validator("description")
    @classmethod
    def _one_line(cls, v: str) -> str:
        v = v.strip()
        if any(c in v for c in "\r\n\u2028\u2029\x0b\x0c\x85"):
            raise ValueError("one line only: the directory shows it under the hashtag")
        if len(v) > 280:
            raise ValueError(f"{len(v)} characters; at most 280")
        return v

    @field_validator("events")
    @classmethod
    def _unique_event_ids(cls, events: list[ChatEventConfig]) -> list[ChatEventConfig]:
        seen: set[str] = set()
        for e in events:
            if e.id in seen:
                raise ValueError(f"two events have id {e.id!r}; ids name transcript pages "
                                 "and must differ")
            seen.add(e.id)
        return events


_ACCOUNT_COMMON = set(AccountCommon.model_fields)
_CHANNEL_COMMON = set(ChannelCommon.model_fields)


# ------------------------------------------------------------------ result

@dataclass(frozen=True)
class AccountConfig:
    name: str
    platform: str
    factory: AdapterFactory
    options: StrictModel
    rate_per_minute: float | None
    rate_burst: int | None
    catchup_window: float | None = None


@dataclass(frozen=True)
class ChannelConfig:
    key: ChannelKey
    community: str
    hashtag: str
    account: str
    platform: str
    common: ChannelCommon
    options: StrictModel
    locator: str

    catchup_window: float = DEFAULT_CATCHUP_WINDOW
    """The channel's own ``catchup_window``, else its account's, else the default."""

    @property
    def reads(self) -> bool:
        return self.common.direction in ("both", "in")

    @property
    def writes(self) -> bool:
        return self.common.direction in ("both", "out")


@dataclass(frozen=True)
class CommunityConfig:
    settings: CommunityCommon
    channels: tuple[ChannelConfig, ...]

    @property
    def name(self) -> str:
        return self.settings.name


@dataclass(frozen=True)
class Config:
    bridge: BridgeSettings
    accounts: dict[str, AccountConfig]
    communities: tuple[CommunityConfig, ...]
    secrets: frozenset[str] = field(default_factory=frozenset)
    """Every secret value, for redaction in logs and errors."""
    path: str = ""

    def channel(self, key: str) -> ChannelConfig:
        for c in self.communities:
            for ch in c.channels:
                if ch.key == key:
                    return ch
        raise KeyError(key)

    def all_channels(self) -> list[ChannelConfig]:
        return [ch for c in self.communities for ch in c.channels]

    def channel_specs(self, account: str) -> tuple[ChannelSpec, ...]:
        """The channels account *account* serves, as its adapter is given them."""
        also = {c.name: tuple(c.settings.also_read) for c in self.communities}
        return tuple(ChannelSpec(key=ch.key, community=ch.community, hashtag=ch.hashtag,
                                 direction=ch.common.direction, options=ch.options,
                                 also_read=also.get(ch.community, ()),
                                 catchup_window=ch.catchup_window)
                     for ch in self.all_channels() if ch.account == account)

    def data_path(self, *parts: str) -> str:
        base = self.bridge.data_dir
        if not os.path.isabs(base) and self.path:
            base = os.path.join(os.path.dirname(os.path.abspath(self.path)), base)
        return os.path.join(base, *parts)

    @property
    def database(self) -> DatabaseUrl:
        """The store's location (validated when the config was loaded)."""
        got = parse_database(self.bridge.database, self._config_dir(),
                             self.data_path(DEFAULT_DATABASE_FILE))
        if isinstance(got, str):
            raise ConfigError([f"bridge.database: {got}"])
        return got

    def _config_dir(self) -> str:
        return os.path.dirname(os.path.abspath(self.path)) if self.path else os.getcwd()


# ------------------------------------------------------------------ the database URL

DEFAULT_DATABASE_FILE = "hashbridge.sqlite"
DATABASE_SCHEMES = ("sqlite", "postgresql")
"""The store backends this version has (``bridge.store.backends`` opens them)."""
_PLANNED_SCHEMES: dict[str, str] = {}
"""Schemes a later version adds: refused with a clear "not in this version"."""
_SCHEME_ALIASES = {"postgres": "postgresql"}


@dataclass(frozen=True, slots=True)
class DatabaseUrl:
    """``[bridge] database`` parsed: which backend, and where."""

    scheme: str
    """A member of :data:`DATABASE_SCHEMES`."""
    path: str
    """For ``sqlite``: the database file, absolute.  For ``postgresql``: the URL as
    written (it never holds a password: libpq reads that from ``PGPASSWORD`` or the
    ``.pgpass`` file)."""
    redacted: str
    """The URL as logs and errors may show it (no password, ever)."""

    def __str__(self) -> str:
        return self.redacted


def redact_url(url: str) -> str:
    """*url* with any password (in the user part, or a ``password=`` option)
    replaced by ``***`` (for logs and errors)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparseable URL>"
    in_query = bool(parts.query) and "password" in parse_qs(parts.query)
    if not password and not in_query:
        return url
    if in_query:
        parts = parts._replace(query=re.sub(r"(^|&)(password=)[^&]*", r"\1\2***",
                                            parts.query))
    if not password:
        return urlunsplit(parts)
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def url_password(url: str) -> str | None:
    """The password written inline in *url* (user part or ``password=`` option),
    if any (to refuse it, and redact it)."""
    try:
        parts = urlsplit(url)
        inline = parts.password
    except ValueError:
        return None
    if inline:
        return inline
    given = parse_qs(parts.query).get("password")
    return given[0] if given else None


def parse_database(url: str, base_dir: str, default_path: str) -> DatabaseUrl | str:
    """``[bridge] database`` to a :class:`DatabaseUrl`, or what is wrong with it.

    * empty: the SQLite file *default_path* (``hashbridge.sqlite`` in the data dir);
    * ``sqlite:///absolute/path.sqlite``, or ``sqlite:relative/path.sqlite``
      (relative to *base_dir*, the config file's directory, like ``data_dir``);
    * ``postgresql://user@host[:port]/db`` (or ``postgres://``; libpq's options such
      as ``?sslmode=verify-full`` or ``?host=/run/postgresql`` after ``?``);
    * a password inline in any URL is refused: it belongs in the environment.
    """
    if not url.strip():
        path = os.path.abspath(default_path)
        return DatabaseUrl("sqlite", path, f"sqlite://{path}")
    shown = redact_url(url)
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as e:
        return f"{shown!r} is not a valid URL ({e})"
    scheme = parts.scheme.lower()
    scheme = _SCHEME_ALIASES.get(scheme, scheme)
    supported = ", ".join(f"{s}://" for s in DATABASE_SCHEMES)
    if not scheme:
        return (f"{shown!r} has no scheme; write a URL such as sqlite:///var/lib/hashbridge/"
                f"hashbridge.sqlite (supported: {supported})")
    problems = []
    if parts.password or "password" in parse_qs(parts.query):
        problems.append("holds a password inline; remove it from the URL and give it "
                        "through the environment (PGPASSWORD) or a ~/.pgpass file, so it is "
                        "never in the config or the logs")
    if scheme in _PLANNED_SCHEMES:
        problems.append(f"{_PLANNED_SCHEMES[scheme]} is not available in this version of "
                        f"hashbridge (supported: {supported}); leave database unset to use "
                        "the SQLite file in data_dir")
    elif scheme not in DATABASE_SCHEMES:
        problems.append(f"unknown database scheme {scheme!r}; supported: {supported}"
                        + _suggest(scheme, list(DATABASE_SCHEMES)))
    if problems:
        return f"{shown!r}: " + "; ".join(problems)
    if scheme == "postgresql":
        if not parts.path.strip("/"):
            return (f"{shown!r}: names no database; write postgresql://user@host/dbname")
        if parts.fragment:
            return f"{shown!r}: remove what follows '#'"
        return DatabaseUrl("postgresql", url.strip(), shown)
    # sqlite
    if parts.netloc:
        return (f"{shown!r}: a SQLite database is a file on this machine, so the URL has no "
                "host; write sqlite:///absolute/path.sqlite or sqlite:relative/path.sqlite")
    if parts.query or parts.fragment:
        return f"{shown!r}: SQLite takes no options in the URL; remove what follows '?' or '#'"
    path = unquote(parts.path)
    if not path or path.endswith("/"):
        return f"{shown!r}: names no file; write sqlite:///absolute/path.sqlite"
    if path == ":memory:":
        return (f"{shown!r}: an in-memory database would lose everything at a restart; "
                "give a file")
    path = os.path.abspath(path if os.path.isabs(path) else os.path.join(base_dir, path))
    return DatabaseUrl("sqlite", path, f"sqlite://{path}")


# ------------------------------------------------------------------ loading

def load(path: str, registry: Registry, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate *path*; raise :class:`ConfigError` listing every problem."""
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file (copy config/example.toml to start)"]) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"{path}: not valid TOML: {e}"]) from None
    except OSError as e:
        raise ConfigError([f"{path}: cannot read: {e.strerror}"]) from None
    cfg = parse(raw, registry, os.environ if env is None else env, path=path)
    _check_permissions(path, raw, cfg)
    return cfg


def dotted(table: Any, path: str) -> Any:
    """``table["imap"]["password"]`` for ``"imap.password"`` (None if absent):
    secret fields may sit in nested tables."""
    for part in path.split("."):
        if not isinstance(table, dict):
            return None
        table = table.get(part)
    return table


def _check_permissions(path: str, raw: dict[str, Any], cfg: Config) -> None:
    """A file holding secrets inline must not be world-readable."""
    tables = raw.get("accounts", {})
    inline = [f"accounts.{a.name}.{f}" for a in cfg.accounts.values()
              for f in a.factory.secret_fields
              if isinstance(v := dotted(tables.get(a.name, {}), f), str)
              and not _VAR.search(v)]
    token = dotted(raw, "bridge.web.admin_token")
    if isinstance(token, str) and token and not _VAR.search(token):
        inline.append("bridge.web.admin_token")
    if not inline:
        return
    mode = os.stat(path).st_mode
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        raise ConfigError([f"{path}: holds secrets inline and is readable by every user on "
                           f"this machine; run: chmod o-rwx {path} (or move the secrets to "
                           "environment variables with ${VAR})"])


PLATFORM_ALIASES = {"x": "twitter", "bsky": "bluesky", "mail": "email"}
"""Other names people write for a platform in ``hosts``/``blocklist`` entries."""


def parse(raw: dict[str, Any], registry: Registry, env: Mapping[str, str],
          path: str = "") -> Config:
    errors: list[str] = []
    secrets: set[str] = set()
    missing: set[str] = set()
    expanded = _expand(raw, env, "", errors, secrets, missing)
    # A missing variable is one problem, reported once: what it would have made
    # invalid (an empty token, a model check needing it) is not reported again.
    found: list[str] = []

    unknown_top = set(expanded) - {"bridge", "accounts", "communities"}
    for k in sorted(unknown_top):
        found.append(f"{k}: unknown section{_suggest(k, ['bridge', 'accounts', 'communities'])}")

    bridge = _validate(BridgeSettings, expanded.get("bridge", {}), "bridge", found)

    accounts: dict[str, AccountConfig] = {}
    platform_of: dict[str, AdapterFactory] = {}
    """Each account's adapter, known even when the account has other errors, so
    that its channels are still checked against the right platform."""
    raw_accounts = expanded.get("accounts", {})
    if not isinstance(raw_accounts, dict) or not raw_accounts:
        found.append("accounts: at least one [accounts.NAME] table is required")
        raw_accounts = {}
    for name, table in raw_accounts.items():
        p = f"accounts.{name}"
        if not isinstance(table, dict):
            found.append(f"{p}: must be a table")
            continue
        common = _validate(AccountCommon, {k: v for k, v in table.items() if k in _ACCOUNT_COMMON},
                           p, found)
        if common is None:
            continue
        factory = registry.factories.get(common.platform)
        if factory is None:
            why = registry.broken.get(common.platform)
            hint = (f" (its package failed to load: {why}; install it with "
                    f"pip install 'hashbridge[{common.platform}]')" if why else
                    _suggest(common.platform, registry.names())
                    + f"; installed adapters: {', '.join(registry.names())}")
            found.append(f"{p}.platform: no adapter named {common.platform!r}{hint}")
            continue
        platform_of[name] = factory
        own = {k: v for k, v in table.items() if k not in _ACCOUNT_COMMON}
        for f in factory.secret_fields:
            v = dotted(own, f)
            if isinstance(v, str):
                if _PLACEHOLDER.match(v.strip()):
                    found.append(f"{p}.{f}: {v!r} looks like a placeholder; put the real "
                                 f"value in an environment variable and write ${{VAR}}")
                if f"{p}.{f}" not in missing:
                    secrets.add(v)
        opts = _validate(factory.account_model, own, p, found, missing)
        if opts is not None:
            accounts[name] = AccountConfig(name, common.platform, factory, opts,
                                           common.rate_per_minute, common.rate_burst,
                                           common.catchup_window)

    offered = set(registry.names())  # names only: an adapter is imported when used
    aliases = {a: t for a, t in PLATFORM_ALIASES.items() if t in offered}
    aliases.update({n: n for n in offered})
    communities: list[CommunityConfig] = []
    raw_comms = expanded.get("communities", [])
    if not isinstance(raw_comms, list) or not raw_comms:
        found.append("communities: at least one [[communities]] entry is required")
        raw_comms = []
    names: set[str] = set()
    for ci, comm in enumerate(raw_comms):
        p = f"communities[{ci}]"
        cs = _validate(CommunityCommon, comm, p, found, missing)
        if cs is None:
            # Its channels still get checked: every problem is reported at once.
            chans_raw = comm.get("channels") if isinstance(comm, dict) else None
            if isinstance(chans_raw, list):
                stub = CommunityCommon.model_construct(name=str(comm.get("name")), hashtag="",
                                                       channels=chans_raw)
                _channels(stub, p, raw_accounts, platform_of, accounts, found, missing)
            continue
        cs = _people(cs, p, aliases, found)
        if cs.name in names:
            found.append(f"{p}.name: community {cs.name!r} is declared twice")
        names.add(cs.name)
        if len(cs.channels) < 2:
            found.append(f"{p}.channels: a community needs at least two channels to bridge "
                         f"(has {len(cs.channels)})")
        chans = _channels(cs, p, raw_accounts, platform_of, accounts, found, missing)
        if chans and not any(c.reads for c in chans):
            found.append(f"{p}.channels: no channel reads (direction 'both' or 'in')")
        if chans and not any(c.writes for c in chans):
            found.append(f"{p}.channels: no channel writes (direction 'both' or 'out')")
        communities.append(CommunityConfig(cs, tuple(chans)))

    _blend_checks(communities, [str(c.get("name")) for c in raw_comms if isinstance(c, dict)],
                  found)
    if (bridge is not None and bridge.web is not None and bridge.web.admin_token
            and "bridge.web.admin_token" not in missing):
        secrets.add(bridge.web.admin_token)
    if bridge is not None and bridge.database:
        if (password := url_password(bridge.database)) is not None:
            secrets.add(password)  # refused below, and never logged meanwhile
        base = os.path.dirname(os.path.abspath(path)) if path else os.getcwd()
        got = parse_database(bridge.database, base, "")
        if isinstance(got, str):
            found.append(f"bridge.database: {got}")
    errors += [e for e in found if not _follows_from(e, missing)]
    if errors or bridge is None:
        # A refused file's messages quote values (`got 12345678`); none of its secrets,
        # whatever their type or wherever a message repeats them, is shown.
        hide = logs.Redactor(v for v in secrets | _secret_looking(expanded)
                             if not _PLACEHOLDER.match(v.strip()))
        raise ConfigError([hide.scrub(e) for e in errors] or ["bridge: invalid"],
                          frozenset(s for s in secrets if s))
    return Config(bridge, accounts, tuple(communities), frozenset(s for s in secrets if s),
                  path)


def _blend_checks(communities: list[CommunityConfig], names: list[str],
                  errors: list[str]) -> None:
    """Events' ``guest`` names another community of this file (*names*: every
    community declared); ``also_read`` is not the community's own hashtag."""
    for comm in communities:
        p = f"communities[{names.index(comm.name)}]"
        for ei, ev in enumerate(comm.settings.events):
            if ev.guest is None:
                continue
            where = f"{p}.events[{ei}].guest"
            if ev.guest == comm.name:
                errors.append(f"{where}: {ev.guest!r} is this event's own community; a "
                              "guest is another [[communities]] entry to blend in")
            elif ev.guest not in names:
                errors.append(f"{where}: no community named {ev.guest!r}"
                              f"{_suggest(ev.guest, names)}; a guest is the name of another "
                              "[[communities]] entry in this file")
        for ti, tag in enumerate(comm.settings.also_read):
            if tag.casefold() == comm.settings.hashtag.casefold():
                errors.append(f"{p}.also_read[{ti}]: {tag!r} is the community's own "
                              "hashtag; list related hashtags only")


def _follows_from(error: str, missing: set[str]) -> bool:
    """An error at a key whose ${VAR} is unset (already reported as such)."""
    where = error.split(": ", 1)[0]
    return where in missing


def _channels(cs: CommunityCommon, p: str, raw_accounts: dict[str, Any],
              platform_of: dict[str, AdapterFactory], accounts: dict[str, AccountConfig],
              errors: list[str], missing: set[str]) -> list[ChannelConfig]:
    """Validate a community's channels and give each its key: ``community/name``,
    the name defaulting to the account, or, when one account serves several
    channels, to the account and the channel's target (room, hashtag, list)."""
    staged: list[tuple[str, ChannelCommon, StrictModel, AccountConfig | None,
                       AdapterFactory]] = []
    any_platform = {k for f in platform_of.values() for k in f.channel_model.model_fields}
    for hi, ch in enumerate(cs.channels):
        cp = f"{p}.channels[{hi}]"
        if not isinstance(ch, dict):
            errors.append(f"{cp}: must be a table")
            continue
        # Unknown keys are judged against the core's keys and the platform's
        # together, so a typo of either gets the right suggestion.
        factory = platform_of.get(str(ch.get("account", "")))
        typos: set[str] = set()
        """Keys written with a typo: their 'required' is not a second message."""
        if factory is not None:
            allowed = set(_CHANNEL_COMMON) | set(factory.channel_model.model_fields)
            for k in ch:
                if k not in allowed:
                    errors.append(f"{cp}.{k}: unknown key{_suggest(k, sorted(allowed))}")
                    typos.update(difflib.get_close_matches(k, sorted(allowed), 1, 0.6))
            ch = {k: v for k, v in ch.items() if k in allowed}
        else:
            # Which platform is unknown: only keys no platform has are typos for sure.
            allowed = set(_CHANNEL_COMMON) | any_platform
            for k in ch:
                if k not in allowed:
                    errors.append(f"{cp}.{k}: unknown key"
                                  f"{_suggest(k, sorted(_CHANNEL_COMMON))}")
                    typos.update(difflib.get_close_matches(k, sorted(_CHANNEL_COMMON), 1, 0.6))
        mine: list[str] = []
        common_ch = _validate(ChannelCommon, {k: v for k, v in ch.items()
                                              if k in _CHANNEL_COMMON}, cp, mine, missing)
        errors += [e for e in mine if e.removesuffix(": required").removeprefix(f"{cp}.")
                   not in typos]
        if factory is None:
            # No such account (or its platform is unknown): that is the one message;
            # its platform keys cannot be judged.
            account = str(ch.get("account", ""))
            if common_ch is not None and account not in raw_accounts:
                errors.append(f"{cp}.account: no account named {account!r}"
                              f"{_suggest(account, list(raw_accounts))}")
            continue
        own = {k: v for k, v in ch.items() if k not in _CHANNEL_COMMON}
        opts = _validate(factory.channel_model, own, cp, errors, missing)
        if common_ch is None or opts is None:
            continue
        staged.append((cp, common_ch, opts, accounts.get(common_ch.account), factory))
    per_account: dict[str, int] = {}
    for _, common_ch, _, _, _ in staged:
        if common_ch.name is None:
            per_account[common_ch.account] = per_account.get(common_ch.account, 0) + 1
    chans: list[ChannelConfig] = []
    keys: dict[str, str] = {}
    for cp, common_ch, opts, acct, factory in staged:
        locator = str(getattr(opts, factory.channel_locator, "") or "")
        name = common_ch.name
        if name is None:
            name = common_ch.account
            if per_account[common_ch.account] > 1:
                name = f"{common_ch.account}-{_slug(locator)}"
        key = ChannelKey(f"{cs.name}/{name}")
        if key in keys:
            errors.append(f"{cp}.name: channel {key!r} is already {keys[key]}; give one of "
                          "them a distinct name = \"...\"")
            continue
        keys[key] = cp
        if acct is None:
            continue  # its account's errors are reported; its own keys were checked
        window = next((w for w in (common_ch.catchup_window, acct.catchup_window)
                       if w is not None), DEFAULT_CATCHUP_WINDOW)
        chans.append(ChannelConfig(key, cs.name, cs.hashtag, acct.name, acct.platform,
                                   common_ch, opts, locator, window))
    return chans


def _slug(locator: str) -> str:
    """A channel name from its target: ``#kmers:matrix.org`` → ``kmers``,
    ``kmers@lists.example`` → ``kmers``, ``#kmers -is:retweet`` → ``kmers-is-retweet``."""
    t = locator.strip().lstrip("#!@")
    if ":" in t and " " not in t:
        t = t.split(":", 1)[0]
    if "@" in t:
        t = t.split("@", 1)[0]
    return re.sub(r"[^A-Za-z0-9_.]+", "-", t).strip("-.") or "channel"


def _people(cs: CommunityCommon, p: str, aliases: dict[str, str],
            errors: list[str]) -> CommunityCommon:
    """``blocklist`` and events' ``hosts`` entries parsed: ``platform:handle`` with a
    known platform (aliases such as ``x`` accepted and written as the platform's
    name), or a bare handle (any platform)."""

    def norm(entry: str, where: str) -> str:
        e = entry.strip()
        platform, sep, handle = e.partition(":")
        if not sep or e.startswith("@") or not platform.isalpha():
            return e  # a bare handle (a Matrix id "@a:server" included)
        real = aliases.get(platform.casefold())
        if real is None:
            errors.append(f"{where}: {entry!r} names no platform {platform!r}"
                          f"{_suggest(platform.casefold(), sorted(aliases))}; write "
                          f"platform:handle with one of {', '.join(sorted(aliases))}, or "
                          "the bare handle for any platform")
            return e
        if not handle.strip():
            errors.append(f"{where}: {entry!r} has no handle after {platform}:")
        return f"{real}:{handle.strip()}"

    blocklist = [norm(e, f"{p}.blocklist[{i}]") for i, e in enumerate(cs.blocklist)]
    events = []
    for ei, ev in enumerate(cs.events):
        if not _iana(ev.timezone):
            errors.append(f"{p}.events[{ei}].timezone: {ev.timezone!r} is not an IANA zone "
                          "name; write the place, e.g. 'America/New_York' or 'Europe/Paris' "
                          "(or 'UTC'), so summer time is followed")
        hosts = [norm(h, f"{p}.events[{ei}].hosts[{hi}]") for hi, h in enumerate(ev.hosts)]
        events.append(ev.model_copy(update={"hosts": hosts}))
    return cs.model_copy(update={"blocklist": blocklist, "events": events})


def _iana(zone: str) -> bool:
    """An Area/Location name (or UTC), not a legacy abbreviation like EST or CET."""
    return zone == "UTC" or ("/" in zone and not zone.startswith(("Etc/", "SystemV/")))


def _expand(value: Any, env: Mapping[str, str], path: str, errors: list[str],
            secrets: set[str], missing: set[str]) -> Any:
    """Replace ``${VAR}`` from the environment, recording every missing one (its
    ``${VAR}`` text stays, so nothing else is reported about that key)."""
    if isinstance(value, dict):
        return {k: _expand(v, env, f"{path}.{k}" if path else k, errors, secrets, missing)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, env, f"{path}[{i}]", errors, secrets, missing)
                for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:
        def sub(m: re.Match[str]) -> str:
            var = m.group(1)
            if var not in env or env[var] == "":
                errors.append(f"{path}: environment variable {var} is not set (export {var}=...)")
                missing.add(path)
                return m.group(0)
            if _SECRET_NAME.search(var) or _SECRET_NAME.search(path.rsplit(".", 1)[-1]):
                secrets.add(env[var])
            return env[var]
        return _VAR.sub(sub, value)
    return value


_PATTERN_HINTS = {
    r"^[A-Za-z0-9_.-]+$": "letters, digits, '_', '.' and '-' only",
    r"^[a-z0-9][a-z0-9_-]*$": "lower-case letters, digits, '_' and '-', starting with a "
                              "letter or digit",
    r"^[^\s#]+$": "one word, without spaces",
    r"^([01]\d|2[0-3]):[0-5]\d$": "a 24-hour time HH:MM, e.g. \"19:30\"",
}


def _num(bound: Any) -> Any:
    """A bound as the operator wrote it: ``0``, not pydantic's ``0.0``."""
    return int(bound) if isinstance(bound, float) and bound.is_integer() else bound


def _plain(err: Any) -> str:
    """pydantic's message in the operator's words: what is wrong and how to fix it."""
    t, ctx, got = err["type"], err.get("ctx") or {}, err.get("input")
    shown = f" (got {got!r})" if not isinstance(got, dict | list) else ""
    match t:
        case "string_pattern_mismatch":
            hint = _PATTERN_HINTS.get(str(ctx.get("pattern")), "")
            return f"{got!r} is not allowed here" + (f": {hint}" if hint else "")
        case "string_too_short":
            return "must not be empty"
        case "string_too_long":
            return f"is too long: at most {ctx.get('max_length')} characters"
        case "literal_error" | "enum":
            return f"must be one of {ctx.get('expected')}{shown}"
        case "greater_than":
            return f"must be more than {_num(ctx.get('gt'))}{shown}"
        case "greater_than_equal":
            return f"must be at least {_num(ctx.get('ge'))}{shown}"
        case "less_than":
            return f"must be less than {_num(ctx.get('lt'))}{shown}"
        case "less_than_equal":
            return f"must be at most {_num(ctx.get('le'))}{shown}"
        case "int_parsing" | "int_type" | "int_from_float":
            return f"must be a whole number{shown}"
        case "float_parsing" | "float_type":
            return f"must be a number{shown}"
        case "bool_parsing" | "bool_type":
            return f"must be true or false{shown}"
        case "string_type":
            return f"must be text in quotes{shown}"
        case "list_type":
            return f"must be a list [...]{shown}"
        case "dict_type" | "model_type" | "model_attributes_type":
            return "must be a table"
        case "value_error" | "assertion_error":
            return str(err["msg"]).removeprefix("Value error, ").removeprefix(
                "Assertion failed, ")
        case _:
            return str(err["msg"])


def _validate(model: type[M], data: Any, path: str,
              errors: list[str], missing: set[str] | None = None) -> M | None:
    if not isinstance(data, dict):
        errors.append(f"{path}: must be a table")
        return None
    try:
        return model.model_validate(data)
    except ValidationError as e:
        typoed: set[tuple[Any, ...]] = set()
        """Required keys written with a typo: the typo is the one message."""
        for err in e.errors():
            if err["type"] == "extra_forbidden":
                fields = _fields_at(model, err["loc"][:-1])
                close = difflib.get_close_matches(str(err["loc"][-1]), fields, n=1, cutoff=0.6)
                if close:
                    typoed.add((*err["loc"][:-1], close[0]))
        for err in e.errors():
            loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
            where = f"{path}{loc}"
            match err["type"]:
                case "extra_forbidden":
                    key = str(err["loc"][-1])
                    fields = _fields_at(model, err["loc"][:-1])
                    errors.append(f"{where}: unknown key{_suggest(key, fields)}")
                case "missing" if tuple(err["loc"]) in typoed:
                    continue
                case "missing":
                    key = str(err["loc"][-1])
                    hint = (f" (write {key} = \"${{{key.upper()}}}\" and set it in the "
                            "environment)" if _SECRET_NAME.search(key) else "")
                    errors.append(f"{where}: required{hint}")
                case _:
                    if not err["loc"] and missing and any(
                            m.startswith(path + ".") for m in missing):
                        continue  # a check of the whole table, failing for the unset var
                    errors.append(f"{where}: {_plain(err)}")
        return None


def _secret_looking(table: Any) -> set[str]:
    """Values under secret-named keys anywhere in the file, as text whatever their type
    (a password written as a number)."""
    out: set[str] = set()
    items = table.items() if isinstance(table, dict) else enumerate(
        table if isinstance(table, list) else ())
    for k, v in items:
        if isinstance(v, dict | list):
            out |= _secret_looking(v)
        elif (isinstance(k, str) and _SECRET_NAME.search(k) and v is not None
              and not isinstance(v, bool)):
            out.add(str(v))
    return out


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys of the (nested) table at *loc* inside *model*, for suggestions."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field_info = getattr(current, "model_fields", {}).get(part)
        if field_info is None:
            return []
        current = _model_in(field_info.annotation)
        if current is None:
            return []
    return list(getattr(current, "model_fields", {}))


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model inside ``M``, ``M | None``, ``list[M]``..."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _suggest(word: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
