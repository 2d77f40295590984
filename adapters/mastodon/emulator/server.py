"""Runs the Mastodon emulator on 127.0.0.1 and offers the test-side API: act as
members (post, edit, delete), and inject faults."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from adapters.mastodon.emulator.app import _CLOSE, build_app
from adapters.mastodon.emulator.state import EmuAccount, EmulatorState, EmuStatus, Limits


class MastodonEmulator:
    """An emulated Mastodon instance served in this event loop.

    ``state`` holds its data; ``bridge`` is the account whose token the bridge
    uses (flagged as a bot unless ``bot=False``).
    """

    def __init__(self, *, max_characters: int = 500, characters_reserved_per_url: int = 23,
                 heartbeat: float = 15.0, limits: Limits | None = None,
                 bridge_username: str = "kmbridge", bridge_bot: bool = True) -> None:
        self.state = EmulatorState(max_characters=max_characters,
                                   characters_reserved_per_url=characters_reserved_per_url,
                                   heartbeat=heartbeat, limits=limits)
        self.bridge = self.state.add_account(bridge_username, token="bridge-token",
                                             bot=bridge_bot, display_name="Bridge")
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._runner = web.AppRunner(build_app(self.state), shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.state.domain = f"127.0.0.1:{self.port}"
        self.state.base_url = self.url

    async def stop(self) -> None:
        self.drop_streams()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> MastodonEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------ members
    def member(self, username: str, **profile: Any) -> EmuAccount:
        """The member account called *username*, created on first use;
        ``user@other.example`` is an account of another server, known here."""
        name, _, domain = username.partition("@")
        if domain:
            profile["domain"] = domain
        return self.state.by_username(username) or self.state.add_account(name, **profile)

    def post(self, username: str, text: str, **kw: Any) -> EmuStatus:
        return self.state.create(self.member(username), text, **kw)

    def edit(self, status_id: str, text: str, **kw: Any) -> EmuStatus:
        return self.state.edit(self.state.statuses[status_id], text, **kw)

    def delete(self, status_id: str) -> EmuStatus:
        return self.state.delete(self.state.statuses[status_id])

    def bridge_statuses(self) -> list[EmuStatus]:
        return [s for s in self.state.statuses.values() if s.account is self.bridge]

    # ------------------------------------------------------------ faults
    def storm(self, seconds: float) -> float:
        """Answer every REST call with 429 for *seconds*; return the reset time."""
        self.state.faults.storm_until = time.time() + seconds
        return self.state.faults.storm_until

    def fail(self, count: int, path: str = "") -> None:
        """The next *count* REST calls (to paths starting with *path*) answer 500."""
        self.state.faults.fail_500 = count
        self.state.faults.fail_500_path = path

    def slow(self, seconds: float) -> None:
        self.state.faults.delay = seconds

    def drop_streams(self, *, silent: bool = False) -> None:
        """Silent: streams stay open but deliver nothing (what real drops look
        like); else every open stream is closed at once."""
        if silent:
            self.state.faults.streams_silent = True
            return
        for _, _, queue in list(self.state.subscribers):
            queue.put_nowait(_CLOSE)

    def heal_streams(self) -> None:
        """End a silent drop: the silent connections close, new ones work."""
        self.state.faults.streams_silent = False
        self.drop_streams()
