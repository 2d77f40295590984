"""Fault injection for any network: a :class:`~bridge.conformance.faultproxy.FaultProxy`
in front of each endpoint a sandbox names, answering with the platform's own failures
(:meth:`~bridge.contract.sandbox.PlatformSandbox.failure`).

Modes (the outage suite's vocabulary):

* ``refuse``: the server is gone (connections refused, open ones reset);
* ``stall``: a hung server (accepted, never answered);
* ``drop``: open connections go silent (a NAT timeout), new ones pass;
* ``error``: the platform's 5xx answers (SMTP 451, IMAP ``* BYE``);
* ``ratelimit``: its 429 with its real rate-limit headers, resetting when the fault ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bridge.conformance.faultproxy import (
    FORWARD,
    FaultProxy,
    HttpRequest,
    HttpResponse,
    Mode,
    SmtpFault,
)
from bridge.contract.sandbox import Fault, PlatformSandbox

MODES = ("refuse", "error", "ratelimit", "stall", "drop")


@dataclass
class Faults:
    """The proxies of one sandbox; :meth:`start`, then point the account through
    :meth:`account_config`, then :meth:`inject` and :meth:`restore`."""

    box: PlatformSandbox
    proxies: dict[str, FaultProxy] = field(default_factory=dict)

    async def start(self) -> None:
        for ep in self.box.endpoints():
            proxy = FaultProxy(f"{self.box.platform}:{ep.name}", "127.0.0.1", ep.port,
                               kind=ep.protocol)
            await proxy.start()
            self.proxies[ep.name] = proxy

    async def stop(self) -> None:
        for p in self.proxies.values():
            await p.stop()

    def account_config(self, timeout: float) -> dict[str, Any]:
        return self.box.account_config_via({n: p.port for n, p in self.proxies.items()},
                                           timeout)

    def injected(self) -> int:
        """Answers injected so far (requests that never reached the platform)."""
        return sum(p.stats["injected"] for p in self.proxies.values())

    async def inject(self, mode: str, until: float) -> None:
        """Make every endpoint fail in *mode*; a 429 resets at *until* (epoch seconds)."""
        if mode not in MODES:
            raise ValueError(f"unknown fault mode {mode!r}; one of {', '.join(MODES)}")
        for name, p in self.proxies.items():
            if mode in ("refuse", "stall", "drop"):
                await p.set_mode(Mode(mode))
                continue
            fault: Fault = "error" if mode == "error" else "ratelimit"
            await self._answer(name, p, fault, until)

    async def _answer(self, name: str, p: FaultProxy, fault: Fault, until: float) -> None:
        box = self.box
        if p.kind == "http":
            n = [0]

            def answer(req: HttpRequest) -> HttpResponse:
                n[0] += 1
                got = box.failure(name, fault, n[0], until)
                if got is None:
                    return FORWARD
                return HttpResponse(got.status, got.body, dict(got.headers), got.content_type)

            await p.set_mode(Mode.ERROR, http=answer)
            return
        got = box.failure(name, fault, 1, until)
        if got is None:
            return  # no such answer on this protocol (IMAP has no rate limit)
        if p.kind == "smtp":
            await p.set_mode(Mode.ERROR, smtp=SmtpFault(mail_reply=got.smtp_reply))
        elif p.kind == "imap":
            await p.set_mode(Mode.ERROR, imap_bye=got.imap_bye)
        else:
            await p.set_mode(Mode.REFUSE)

    async def restore(self) -> None:
        for p in self.proxies.values():
            await p.set_mode(Mode.PASS)
