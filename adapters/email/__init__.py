"""Email lists (IMAP + SMTP) as a hashbridge channel.  See ``adapter`` for the design.

``config``      account and channel keys (IMAP and SMTP servers, the list).
``convert``     inbound, pure: a raw list mail into the canonical model (quotes, footers
                and signatures stripped; addresses never leave it).
``compose``     outbound, pure: the MIME message for a relayed post, its threading
                headers and subject; ``digest`` the digest mails.
``client``      thin I/O shells around aioimaplib and aiosmtplib.
``check``       ``hashbridge check --online`` per channel: the folder examined read-only,
                the list tried as an SMTP recipient (no mail sent).
``store``       the adapter's small durable state (threading, the digest queue, the
                send journal), in the bridge's store through ``ctx.state``.
``legacy``      reads the side file earlier versions kept, once, into that state.
``adapter``     :class:`~adapters.email.adapter.EmailAdapter`: IMAP IDLE in, SMTP out.
``sandbox``     the demo/test stand-in: a real Dovecot and a small list server, run by
                ``testserver``.
``join``        how members take part from a channel, from the config alone (the web
                view's about page and join panel).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, ClassVar

from adapters.email.config import EmailAccount, EmailChannel
from bridge.contract.adapter import (
    Adapter,
    AdapterError,
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

log = logging.getLogger("hashbridge.adapter.email")


class EmailFactory(AdapterFactory):
    platform: ClassVar[str] = "email"
    display_name: ClassVar[str] = "Email"
    account_model: ClassVar[type[StrictModel]] = EmailAccount
    channel_model: ClassVar[type[StrictModel]] = EmailChannel
    channel_locator: ClassVar[str] = "list"
    secret_fields: ClassVar[frozenset[str]] = frozenset({"imap.password", "smtp.password"})

    def create(self, account: StrictModel, channels: tuple[ChannelSpec, ...],
               services: Services) -> Adapter:
        from adapters.email.adapter import EmailAdapter
        assert isinstance(account, EmailAccount)
        return EmailAdapter(account, channels, services=services)

    def join_facts(self, account: StrictModel, channel: ChannelSpec) -> JoinFacts:
        """How members take part from *channel* (see ``join``): the config alone."""
        from adapters.email.join import join_facts
        assert isinstance(account, EmailAccount) and isinstance(channel.options, EmailChannel)
        return join_facts(account, channel.options)

    def sandbox(self, workdir: str) -> PlatformSandbox | None:
        from adapters.email.sandbox import EmailSandbox
        reason = EmailSandbox.available()
        if reason:
            log.info("email sandbox unavailable: %s", reason)
            return None
        return EmailSandbox(workdir)

    def sandbox_missing(self) -> str:
        """Why :meth:`sandbox` gave None, and what to install (``hashbridge demo``)."""
        from adapters.email.sandbox import EmailSandbox
        return EmailSandbox.available()

    async def check_online(self, account: StrictModel, http: aiohttp.ClientSession,
                           services: Services) -> OnlineCheck:
        import aiosmtplib

        from adapters.email.client import imap_connect, smtp_client, smtp_login
        assert isinstance(account, EmailAccount)
        imap = f"IMAP {account.imap.host}:{account.imap.port}"
        try:
            # Each step bounded with its reason: a server that accepts and never
            # greets would otherwise hold the check for minutes, then say nothing.
            async with asyncio.timeout(account.imap.timeout):
                client = await imap_connect(account.imap)
                await client.logout()
        except TimeoutError:
            return OnlineCheck(ok=False, error=f"{imap}: no answer within "
                               f"{account.imap.timeout:g}s (connected, but the server never "
                               "greeted or replied: is this an IMAP port? does security "
                               f"= {account.imap.security!r} match it?)")
        except (AdapterError, OSError) as exc:
            return OnlineCheck(ok=False, error=f"{imap}: {exc or type(exc).__name__}")
        smtp = smtp_client(account.smtp)
        try:
            async with smtp:
                await smtp_login(smtp, account.smtp)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            what = (f"no answer within {account.smtp.timeout:g}s" if isinstance(
                exc, TimeoutError) else str(exc) or type(exc).__name__)
            return OnlineCheck(ok=False, error=f"SMTP {account.smtp.host}:"
                               f"{account.smtp.port}: {what}")
        return OnlineCheck(ok=True, identity=account.address)

    async def check_channels(self, account: StrictModel, channels: tuple[ChannelSpec, ...],
                             http: aiohttp.ClientSession, services: Services
                             ) -> dict[ChannelKey, ChannelCheck]:
        """The folder each channel reads, examined read-only (message count, UIDNEXT,
        its list's mail there), and whether the SMTP server takes the list as a
        recipient from the bridge's address (MAIL FROM, RCPT TO, RSET: nothing is
        sent).  See :mod:`adapters.email.check`."""
        from adapters.email.check import check_channels
        assert isinstance(account, EmailAccount)
        return await check_channels(account, channels)

__all__ = ["EmailFactory"]
