"""Test helpers shipped for adapter authors (ours and third parties').

* :class:`FakeContext`: an in-memory :class:`~bridge.contract.adapter.AdapterContext` to
  drive one adapter's ``run`` and ``send`` without the relay.
* :class:`FakeAdapter`: a scriptable adapter (queue inbound events, make sends
  fail transiently, permanently or with bad credentials) for testing the core or
  a harness.

Whole-bridge tests use :mod:`bridge.daemon.harness` instead, which runs the real relay
with a real SQLite store.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from bridge.contract.adapter import (
    AdapterError,
    AdapterFactory,
    Capabilities,
    ChannelSpec,
    Health,
    SendCreate,
    SendDelete,
    SendEdit,
    SendOp,
    SendResult,
    StrictModel,
)
from bridge.contract.model import ChannelKey, InboundEvent, NativeId
from bridge.contract.services import Services

if TYPE_CHECKING:
    import aiohttp


class MemoryAccountState:
    """:class:`~bridge.contract.adapter.AccountState` in memory (``rows``: namespace ->
    key -> value, in insertion order).  Keep the object to keep the state across an
    adapter's restart, as the store would."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, str]] = {}

    async def get(self, namespace: str, key: str) -> str | None:
        return self.rows.get(namespace, {}).get(key)

    async def put(self, namespace: str, key: str, value: str) -> None:
        self.rows.setdefault(namespace, {})[key] = value

    async def add(self, namespace: str, key: str, value: str) -> bool:
        space = self.rows.setdefault(namespace, {})
        if key in space:
            return False
        space[key] = value
        return True

    async def put_many(self, namespace: str, items: list[tuple[str, str]], *,
                       only_new: bool = False) -> int:
        n = 0
        for k, v in items:
            if only_new:
                n += await self.add(namespace, k, v)
            else:
                await self.put(namespace, k, v)
                n += 1
        return n

    async def items(self, namespace: str) -> list[tuple[str, str]]:
        return list(self.rows.get(namespace, {}).items())

    async def delete(self, namespace: str, keys: list[str]) -> int:
        space = self.rows.get(namespace, {})
        return sum(space.pop(k, None) is not None for k in keys)


class FakeContext:
    """Collects emitted events and cursors in memory.

    ``events`` is every event emitted, in order; ``cursors`` the latest value per
    name; ``state`` the account's :class:`MemoryAccountState`; ``health`` the last
    health reported; ``own`` the native ids treated as the bridge's own copies.
    """

    def __init__(self, channels: Iterable[ChannelSpec], *, name: str = "test",
                 http: aiohttp.ClientSession | None = None, data_dir: str = ".") -> None:
        self.name = name
        self.logger = logging.getLogger(f"hashbridge.adapter.test.{name}")
        self.channels = tuple(channels)
        self.data_dir = data_dir
        self._http = http
        self.events: list[InboundEvent] = []
        self.cursors: dict[str, str] = {}
        self.health: Health = Health.STARTING
        self.health_detail = ""
        self.rate_limits: list[tuple[int | None, float | None, int | None]] = []
        self.own: set[tuple[str, str]] = set()
        self.consents: dict[tuple[str, str], str] = {}
        self.state = MemoryAccountState()
        self._changed = asyncio.Condition()

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            raise RuntimeError("FakeContext was built without an aiohttp session")
        return self._http

    async def emit(self, event: InboundEvent, *, cursor: tuple[str, str] | None = None) -> None:
        await self.emit_many([event], cursor=cursor)

    async def emit_many(self, events: list[InboundEvent], *,
                        cursor: tuple[str, str] | None = None) -> None:
        async with self._changed:
            self.events.extend(events)
            if cursor:
                self.cursors[cursor[0]] = cursor[1]
            self._changed.notify_all()

    async def get_cursor(self, name: str) -> str | None:
        return self.cursors.get(name)

    async def set_cursor(self, name: str, value: str) -> None:
        async with self._changed:
            self.cursors[name] = value
            self._changed.notify_all()

    def set_health(self, health: Health, detail: str = "") -> None:
        self.health = health
        self.health_detail = detail

    def rate_limit(self, *, remaining: int | None, reset_at: float | None,
                   limit: int | None = None) -> None:
        self.rate_limits.append((remaining, reset_at, limit))

    async def is_own(self, channel: ChannelKey, native_id: NativeId) -> bool:
        return (channel, native_id) in self.own

    async def consent(self, platform: str, handle: str) -> str | None:
        return self.consents.get((platform, handle))

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[InboundEvent]:
        """Wait until at least *count* events were emitted; return them all."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self.events) >= count)
        return list(self.events)


@dataclass
class FakeAdapter:
    """A scriptable adapter.

    Push inbound events with :meth:`inject`; every successful send is appended
    to ``sent``.  Put exceptions in ``failures`` (consumed one per send) to
    script transient, permanent or auth errors, and set ``stalls`` for sends that
    never answer.
    """

    caps: Capabilities = field(default_factory=lambda: Capabilities(edit=True, delete=True))
    sent: list[SendOp] = field(default_factory=list)
    failures: list[AdapterError] = field(default_factory=list)
    send_delay: float = 0.0
    stalls: int = 0
    """This many sends hang without an answer (a stalled connection)."""
    _inbox: asyncio.Queue[InboundEvent] = field(default_factory=asyncio.Queue)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    async def run(self, ctx: Any) -> None:
        ctx.set_health(Health.CONNECTED)
        while True:
            ev = await self._inbox.get()
            await ctx.emit(ev)

    def inject(self, event: InboundEvent) -> None:
        self._inbox.put_nowait(event)

    async def send(self, op: SendOp) -> SendResult:
        if self.send_delay:
            await asyncio.sleep(self.send_delay)
        if self.stalls:
            self.stalls -= 1
            await asyncio.Event().wait()
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(op)
        match op:
            case SendCreate():
                return SendResult(native_id=NativeId(f"fake-{next(self._ids)}"))
            case SendEdit() | SendDelete():
                return SendResult()

    def capabilities(self, channel: ChannelKey) -> Capabilities:
        return self.caps


class FakeAccount(StrictModel):
    display_name: str = "Fake"


class FakeChannel(StrictModel):
    spot: str = "here"


class FakeFactory(AdapterFactory):
    """Registers :class:`FakeAdapter` as platform ``fake``; the adapter for an
    account is ``fakes[account display_name]`` (created on demand; pass *fakes*
    to choose some adapters beforehand, and read them back from it)."""

    platform: ClassVar[str] = "fake"
    display_name: ClassVar[str] = "Fake"
    account_model = FakeAccount
    channel_model = FakeChannel
    channel_locator = "spot"

    def __init__(self, fakes: dict[str, FakeAdapter] | None = None) -> None:
        self.fakes: dict[str, FakeAdapter] = fakes if fakes is not None else {}

    def create(self, account: StrictModel, channels: tuple[ChannelSpec, ...],
               services: Services) -> FakeAdapter:
        assert isinstance(account, FakeAccount)
        return self.fakes.setdefault(account.display_name, FakeAdapter())
