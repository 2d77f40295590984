"""The ``sandbox`` platform: local chat networks in SQLite files.

Used by ``hashbridge demo``, the end-to-end tests and the benchmarks as a
network that needs nothing installed.  See :mod:`adapters.sandbox.network`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import time
from datetime import UTC, datetime
from typing import Any, ClassVar

from adapters.sandbox.network import Network
from adapters.sandbox.sandbox import SandboxPlatform
from bridge.contract.adapter import (
    AdapterFactory,
    Capabilities,
    ChannelCheck,
    ChannelSpec,
    Health,
    JoinFacts,
    JoinLink,
    OnlineCheck,
    PermanentError,
    SendCreate,
    SendDelete,
    SendEdit,
    SendOp,
    SendResult,
    StrictModel,
    TextFormat,
    TransientError,
    read_guarded,
)
from bridge.contract.model import (
    Author,
    ChannelKey,
    Deleted,
    Edited,
    InboundEvent,
    NativeId,
    Posted,
)
from bridge.contract.services import Services
from bridge.contract.textconv import from_plain


class SandboxAccount(StrictModel):
    dir: str
    """Directory holding the network files (``<network>.sqlite``)."""
    bot_name: str = "hashbridge"
    display_name: str = "Sandbox"
    """Network name shown in attributions."""
    poll_interval: float = 0.02
    max_length: int = 0
    """0: no limit; else the length limit to emulate (in characters)."""
    edits: bool = True
    deletes: bool = True


class SandboxChannel(StrictModel):
    network: str


class SandboxAdapter:
    def __init__(self, account: SandboxAccount, channels: tuple[ChannelSpec, ...]) -> None:
        self.account = account
        self.channels = channels
        self._nets: dict[str, Network] = {}
        self._caps = Capabilities(
            max_length=account.max_length or None, text_format=TextFormat.HTML,
            edit=account.edits, delete=account.deletes, reply=True, threads=True,
            formatted=True, needs_hashtag=False)

    def _net(self, channel: str) -> tuple[Network, str]:
        spec = next(c for c in self.channels if c.key == channel)
        name = spec.options.network  # type: ignore[attr-defined]
        if channel not in self._nets:
            os.makedirs(self.account.dir, exist_ok=True)
            self._nets[channel] = Network(os.path.join(self.account.dir, f"{name}.sqlite"))
        return self._nets[channel], name

    def capabilities(self, channel: ChannelKey) -> Capabilities:
        return self._caps

    async def run(self, ctx: Any) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                for spec in ctx.channels:
                    if spec.direction in ("both", "in"):
                        tg.create_task(self._poll(ctx, spec))
                ctx.set_health(Health.CONNECTED)
                if not any(s.direction in ("both", "in") for s in ctx.channels):
                    await asyncio.Event().wait()  # only written to: stay until stopped
        finally:
            for net in self._nets.values():
                net.close()
            self._nets.clear()

    async def _poll(self, ctx: Any, spec: ChannelSpec) -> None:
        net, _ = self._net(spec.key)
        cursor_name = f"{spec.key}:seq"
        saved = await ctx.get_cursor(cursor_name)
        cutoff, history_end = 0.0, 0
        if saved is None:
            # First start: what was posted within the channel's catchup_window
            # (by its time: an old post that came in late is history too).
            cutoff, history_end = time.time() - spec.catchup_window, net.last_seq()
            seq = net.seq_before(cutoff)
            await ctx.set_cursor(cursor_name, str(seq))
        else:
            seq = int(saved or 0)
        while True:
            batch = net.events_after(seq)
            if not batch:
                await asyncio.sleep(self.account.poll_interval)
                continue
            events: list[InboundEvent] = []
            for ev in batch:
                m = ev.message
                if m.by_bridge or m.notice:
                    continue
                if ev.seq <= history_end and ev.kind == "posted" and m.created_at < cutoff:
                    continue
                got = await read_guarded(functools.partial(_read, spec, ev),
                                         channel=spec.key, native_id=str(m.id),
                                         logger=ctx.logger, size=len(m.text or ""))
                if got is not None:
                    events.append(got)
            seq = batch[-1].seq
            if events:
                await ctx.emit_many(events, cursor=(cursor_name, str(seq)))
            else:
                await ctx.set_cursor(cursor_name, str(seq))

    async def send(self, op: SendOp) -> SendResult:
        net, name = self._net(op.channel)
        if os.path.exists(os.path.join(self.account.dir, f"{name}.down")):
            raise TransientError(f"sandbox network {name} is down")
        match op:
            case SendCreate():
                reply = int(op.reply_to) if op.reply_to and op.reply_to.isdigit() else None
                mid = net.post(self.account.bot_name, op.rendered.plain, html=op.rendered.html,
                               reply_to=reply, by_bridge=True, notice=op.rendered.is_notice,
                               key=op.idempotency_key)
                return SendResult(native_id=NativeId(str(mid)),
                                  permalink=f"sandbox://{name}/{mid}")
            case SendEdit():
                if not net.exists(int(op.native_id)):
                    raise PermanentError(f"no message {op.native_id} on {name}")
                net.edit(int(op.native_id), op.rendered.plain, html=op.rendered.html,
                         by_bridge=True)
                return SendResult()
            case SendDelete():
                net.delete(int(op.native_id), by_bridge=True)
                return SendResult()


def _read(spec: ChannelSpec, ev: Any) -> InboundEvent | None:
    """One network event as an inbound event (run guarded: whatever it raises
    costs this event only)."""
    m = ev.message
    nid = NativeId(str(m.id))
    match ev.kind:
        case "posted":
            return Posted(
                channel=spec.key, native_id=nid,
                author=Author(platform="sandbox", handle=m.author,
                              display_name=m.author.title()),
                text=from_plain(m.text),
                permalink=f"sandbox://{spec.options.network}/{m.id}",  # type: ignore[attr-defined]
                reply_to_native=NativeId(str(m.reply_to)) if m.reply_to else None,
                created_at=datetime.fromtimestamp(m.created_at, UTC))
        case "edited":
            return Edited(channel=spec.key, native_id=nid, text=from_plain(m.text))
        case "deleted":
            return Deleted(channel=spec.key, native_id=nid)
    return None


class SandboxFactory(AdapterFactory):
    platform: ClassVar[str] = "sandbox"
    display_name: ClassVar[str] = "Sandbox"
    account_model = SandboxAccount
    channel_model = SandboxChannel
    channel_locator = "network"

    def create(self, account: StrictModel, channels: tuple[ChannelSpec, ...],
               services: Services) -> SandboxAdapter:
        assert isinstance(account, SandboxAccount)
        return SandboxAdapter(account, channels)

    def join_facts(self, account: StrictModel, channel: ChannelSpec) -> JoinFacts:
        """A sandbox network has no public address: its name, and what the bridge
        does there (it reads no member commands)."""
        assert isinstance(account, SandboxAccount) and isinstance(channel.options,
                                                                  SandboxChannel)
        net = channel.options.network
        return JoinFacts(
            where=(JoinLink(label=f"the {net} sandbox network"),),
            how_to_post=f"Post on the {net} sandbox network (the demo's members do); "
                        "every message there is read.",
            how_to_follow=f"Read the {net} network: the other networks' posts arrive there.",
            posts_as=f"{account.bot_name}, with each author's name and network",
            link_command="{command} as a message there",
            edits_copies=account.edits, deletes_copies=account.deletes)

    def sandbox(self, workdir: str) -> SandboxPlatform:
        return SandboxPlatform(workdir)

    async def check_online(self, account: StrictModel, http: Any,
                           services: Services) -> OnlineCheck:
        assert isinstance(account, SandboxAccount)
        ok = os.path.isdir(account.dir) or not os.path.exists(account.dir)
        return OnlineCheck(ok=ok, identity=account.bot_name,
                           error="" if ok else f"{account.dir} is not a directory")

    async def check_channels(self, account: StrictModel, channels: tuple[ChannelSpec, ...],
                             http: Any, services: Services) -> dict[ChannelKey, ChannelCheck]:
        """Each channel's network file: there (with how many messages) or created at
        start, and whether this user may write it.  Reads only."""
        assert isinstance(account, SandboxAccount)
        return {spec.key: await asyncio.to_thread(_check_network, account, spec)
                for spec in channels}


def _check_network(account: SandboxAccount, spec: ChannelSpec) -> ChannelCheck:
    assert isinstance(spec.options, SandboxChannel)
    path = os.path.abspath(os.path.join(account.dir, f"{spec.options.network}.sqlite"))
    if not os.path.exists(path):
        parent = account.dir if os.path.isdir(account.dir) else os.path.dirname(
            os.path.abspath(account.dir))
        if not os.access(parent, os.W_OK):
            return ChannelCheck(ok=False, error=f"{path} does not exist and {parent} is not "
                                "writable by this user: create it or fix the permissions")
        return ChannelCheck(ok=True, reads=f"network {spec.options.network} (new: {path} is "
                            "created at start)", writes=f"posts as {account.bot_name}")
    if not os.access(path, os.R_OK | os.W_OK):
        return ChannelCheck(ok=False, error=f"{path} is not readable and writable by this "
                            "user: fix its permissions")
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            count = db.execute("SELECT count(*) FROM messages").fetchone()[0]
    except sqlite3.Error as e:
        return ChannelCheck(ok=False, error=f"{path} is not a sandbox network ({e}): move it "
                            "away or name another network")
    return ChannelCheck(ok=True, reads=f"network {spec.options.network} ({count} messages in "
                        f"{path})", writes=f"posts as {account.bot_name}")
