"""The ``sandbox`` platform's own sandbox: one network file, members acting on it
directly.  It has no network endpoint (faults there are :meth:`SandboxPlatform.set_down`),
no media, no bot commands and no poison: every row it reads is well formed."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import Any

from adapters.sandbox.network import Network
from bridge.contract.sandbox import (
    Endpoint,
    FailureAnswer,
    Fault,
    PoisonKind,
    SandboxFeatures,
    SandboxMessage,
)


class SandboxPlatform:
    """A :class:`bridge.contract.sandbox.PlatformSandbox` over one sandbox network file."""

    platform = "sandbox"
    kind = "sandbox (a made-up network in files)"
    features = SandboxFeatures(member_edits=True, member_deletes=True, in_process=True)

    def __init__(self, workdir: str, network: str = "lobby") -> None:
        self.workdir = workdir
        self.network = network
        self._net: Network | None = None

    @property
    def net(self) -> Network:
        if self._net is None:
            os.makedirs(self.workdir, exist_ok=True)
            self._net = Network(os.path.join(self.workdir, f"{self.network}.sqlite"))
        return self._net

    async def start(self) -> None:
        _ = self.net

    async def stop(self) -> None:
        if self._net is not None:
            self._net.close()
            self._net = None

    def account_config(self) -> dict[str, Any]:
        return {"dir": self.workdir}

    def channel_config(self) -> dict[str, Any]:
        return {"network": self.network}

    async def post_as_member(self, author: str, text: str, reply_to: str | None = None) -> str:
        return str(self.net.post(author, text, reply_to=int(reply_to) if reply_to else None))

    async def edit_as_member(self, native_id: str, text: str) -> None:
        self.net.edit(int(native_id), text)

    async def delete_as_member(self, native_id: str) -> None:
        self.net.delete(int(native_id))

    async def post_with_media(self, author: str, text: str, data: bytes, media_type: str,
                              alt_text: str) -> str:
        raise NotImplementedError("the sandbox network carries text only")

    async def post_poll_as_member(self, author: str, text: str, options: list[str]) -> str:
        raise NotImplementedError("the sandbox network carries text only")

    async def post_quote_as_member(self, author: str, text: str, quoted: str) -> str:
        raise NotImplementedError("the sandbox network carries text only")

    async def command_as_member(self, author: str, command: str) -> str:
        raise NotImplementedError("the sandbox adapter reads no bot commands")

    async def post_poison(self, author: str, tag: str) -> dict[str, PoisonKind]:
        return {}

    def set_down(self, down: bool) -> None:
        """Simulate an outage: sends raise TransientError while down."""
        flag = os.path.join(self.workdir, f"{self.network}.down")
        if down:
            open(flag, "w").close()
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(flag)

    def endpoints(self) -> list[Endpoint]:
        return []

    def account_config_via(self, ports: Mapping[str, int], timeout: float) -> dict[str, Any]:
        return self.account_config()

    def failure(self, endpoint: str, fault: Fault, n: int, until: float
                ) -> FailureAnswer | None:
        return None

    def unthrottle(self) -> None:
        pass

    async def messages(self) -> list[SandboxMessage]:
        return [SandboxMessage(native_id=str(m.id), author=m.author, text=m.text,
                               by_bridge=m.by_bridge,
                               reply_to=str(m.reply_to) if m.reply_to else None,
                               edited=m.edited, deleted=m.deleted, key=m.key or "")
                for m in self.net.messages()]
