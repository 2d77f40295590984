"""Matrix adapter (matrix-nio): relay-bot mode on any homeserver, appservice
(ghost) mode where the operator runs one.

``config``      account and channel keys (homeserver, mode, tokens, the room).
``convert``     inbound, pure: timeline events into the canonical model.
``compose``     outbound, pure: ``m.room.message`` content (new, edit, media) kept under
                the event size limit; deterministic transaction ids.
``client``      the I/O shell around matrix-nio: session, error mapping, raw calls.
``appservice``  appservice mode: the registration file and the ghost users.
``adapter``     :class:`~adapters.matrix.adapter.MatrixAdapter`: sync (or appservice
                transactions), rooms and capabilities; its sending half is the
                ``outbound`` mixin.
``check``       ``check --online``: each channel's room as the homeserver answers (read-only).
``sandbox``     the demo/test stand-in: a real Synapse run by ``testserver``.
``join``        how members take part from a channel, from the config alone (the web
                view's about page and join panel).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from adapters.matrix.appservice import generate_registration
from adapters.matrix.config import MatrixAccount, MatrixChannel
from bridge.contract.adapter import (
    Adapter,
    AdapterFactory,
    ChannelCheck,
    ChannelSpec,
    JoinFacts,
    OnlineCheck,
    StrictModel,
)
from bridge.contract.model import ChannelKey
from bridge.contract.services import Services

if TYPE_CHECKING:
    import aiohttp

    from bridge.contract.sandbox import PlatformSandbox

log = logging.getLogger("hashbridge.adapter.matrix")


class MatrixFactory(AdapterFactory):
    platform: ClassVar[str] = "matrix"
    display_name: ClassVar[str] = "Matrix"
    account_model: ClassVar[type[StrictModel]] = MatrixAccount
    channel_model: ClassVar[type[StrictModel]] = MatrixChannel
    channel_locator: ClassVar[str] = "room"
    secret_fields: ClassVar[frozenset[str]] = frozenset(
        {"access_token", "password", "as_token", "hs_token"})

    def create(self, account: StrictModel, channels: tuple[ChannelSpec, ...],
               services: Services) -> Adapter:
        from adapters.matrix.adapter import MatrixAdapter

        assert isinstance(account, MatrixAccount)
        return MatrixAdapter(account, channels, services)

    def cli_commands(self) -> list[tuple[str, str, Callable[..., int]]]:
        return [("matrix-registration",
                 "print the appservice registration YAML for the homeserver",
                 _registration_command)]

    def join_facts(self, account: StrictModel, channel: ChannelSpec) -> JoinFacts:
        """How members take part from *channel* (see ``join``): the config alone."""
        from adapters.matrix.join import join_facts
        assert isinstance(account, MatrixAccount) and isinstance(channel.options, MatrixChannel)
        return join_facts(account, channel.options)

    def sandbox(self, workdir: str) -> PlatformSandbox | None:
        from adapters.matrix.sandbox import MatrixSandbox
        from adapters.matrix.testserver import synapse_python

        if synapse_python() is None:
            log.info("no Matrix sandbox: %s", self.sandbox_missing())
            return None
        return MatrixSandbox(workdir)

    def sandbox_missing(self) -> str:
        """Why :meth:`sandbox` gave None, and what to do (``hashbridge demo``)."""
        from adapters.matrix.testserver import synapse_venv

        return (f"Synapse is not installed (no {synapse_venv()}; set SYNAPSE_PYTHON to a "
                "python that imports synapse, or let `hashbridge demo` install it)")

    def provision_sandbox(self, progress: Callable[[str], None]) -> None:
        """Install what :meth:`sandbox` needs (Synapse in its own venv): the demo's
        first-use step.  Raises RuntimeError saying why it failed."""
        from adapters.matrix.testserver import provision_synapse

        provision_synapse(progress)

    async def check_online(self, account: StrictModel, http: aiohttp.ClientSession,
                           services: Services) -> OnlineCheck:
        import aiohttp

        assert isinstance(account, MatrixAccount)
        token = account.as_token if account.mode == "appservice" else account.access_token
        if not token:
            return OnlineCheck(ok=True, warnings=("password login: checked at first run",))
        url = account.homeserver.rstrip("/") + "/_matrix/client/v3/account/whoami"
        try:
            async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as r:
                body = await r.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as e:
            return OnlineCheck(ok=False, error=f"{url}: {type(e).__name__} {e}")
        if r.status != 200 or not isinstance(body, dict):
            code = body.get("errcode", r.status) if isinstance(body, dict) else r.status
            return OnlineCheck(ok=False, error=f"whoami refused: {code}")
        who = body.get("user_id", "")
        warnings = () if who == account.user_id else (
            f"token belongs to {who}, not {account.user_id}",)
        return OnlineCheck(ok=True, identity=who, warnings=warnings)

    async def check_channels(self, account: StrictModel, channels: tuple[ChannelSpec, ...],
                             http: aiohttp.ClientSession, services: Services
                             ) -> dict[ChannelKey, ChannelCheck]:
        """Each room: resolved, joined (members) or whether it can join at start, and
        the power to post and redact; GETs only.  A password login is not checked (it
        would create a device): each channel says so, as :meth:`check_online` does."""
        from adapters.matrix.check import check_channels

        assert isinstance(account, MatrixAccount)
        return await check_channels(account, channels, http)


__all__ = ["MatrixAccount", "MatrixChannel", "MatrixFactory", "generate_registration"]


def _registration_command(args: Any) -> int:
    """``hashbridge matrix-registration -c FILE``: one registration per matrix
    account in appservice mode (the homeserver admin adds it to
    ``app_service_config_files``)."""
    import sys

    from bridge.runtime.config import load
    from bridge.runtime.registry import load_factories

    cfg = load(args.config, load_factories())
    found = [a for a in cfg.accounts.values() if a.platform == "matrix"
             and isinstance(a.options, MatrixAccount) and a.options.mode == "appservice"]
    if not found:
        print(f"{args.config}: no matrix account has mode = \"appservice\"", file=sys.stderr)
        return 1
    for acct in found:
        assert isinstance(acct.options, MatrixAccount)
        print(f"# accounts.{acct.name}")
        print(generate_registration(acct.options))
    return 0
