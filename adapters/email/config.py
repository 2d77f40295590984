"""The email adapter's config models (the ``[accounts.X]`` and channel keys)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator

from bridge.contract.adapter import StrictModel


class MailServer(StrictModel):
    host: str
    port: int = Field(gt=0, lt=65536)
    username: str = ""
    password: SecretStr = SecretStr("")
    security: Literal["tls", "starttls", "none"] = "tls"
    """``tls``: implicit TLS (993/465); ``starttls``: upgrade (143/587); ``none``: tests."""
    timeout: float = 30.0


class EmailAccount(StrictModel):
    address: str
    """The bridge's own address, subscribed to the lists (``kmbridge@example.org``)."""
    imap: MailServer
    smtp: MailServer
    domain: str = ""
    """Right part of our Message-IDs; defaults to the address's domain."""
    folder: str = "INBOX"
    idle_seconds: float = Field(default=5 * 60, gt=0, le=29 * 60)
    """IDLE is re-issued this often (RFC 2177: servers may drop it after 30
    minutes); a connection that died silently is noticed within this plus
    ``imap.timeout``."""
    network_name: str = "Email"

    @property
    def message_domain(self) -> str:
        return self.domain or self.address.rsplit("@", 1)[-1]


class EmailChannel(StrictModel):
    list: str
    """The list's posting address (``kmers@lists.example.org``)."""
    list_id: str = ""
    """The bare List-Id; defaults to the address with ``@`` as ``.`` (Mailman 3's rule)."""
    subject_tag: str = ""
    """The list's subject prefix without brackets; "" strips any ``[...]`` prefix."""
    verify_sender: bool = True
    """Only accept mail whose envelope sender is at the list's domain."""
    corrections: Literal["ignore", "mail"] = "ignore"
    """Edits and deletes cannot be unsent: ignore them or send a short correction mail."""
    digest_hours: float = Field(default=0, ge=0)
    """0: one mail per post; N: one digest mail every N hours."""
    max_length: int | None = None
    max_attachment_bytes: int = 8_000_000
    max_attachments: int = 4
    subscribe: str = ""
    """How people subscribe to the list, shown on the web view's about page: a
    ``mailto:`` address (``mailto:kmers-join@lists.example.org``, Mailman's
    ``-join`` address) or the list's ``https://`` page; "" says "ask its owner"."""

    @field_validator("subscribe")
    @classmethod
    def _subscribe(cls, v: str) -> str:
        v = v.strip()
        if not v:
            return v
        if v.lower().startswith("mailto:"):
            address = v[len("mailto:"):].split("?", 1)[0]
            local, at, domain = address.partition("@")
            if at and local and "." in domain and not any(c.isspace() or c in "<>\"',"
                                                          for c in address):
                return v
            raise ValueError(f"{v!r}: a mailto: link needs one address, e.g. "
                             "\"mailto:kmers-join@lists.example.org\" (or give the list's "
                             "https:// page)")
        if v.lower().startswith("https://") and len(v) > len("https://") and not any(
                c.isspace() or c in "<>\"'" for c in v):
            return v
        raise ValueError(f"{v!r} is neither a mailto: address nor an https:// page: write "
                         "\"mailto:kmers-join@lists.example.org\" or the list's "
                         "\"https://lists.example.org/...\" page")

    @property
    def effective_list_id(self) -> str:
        return self.list_id or self.list.replace("@", ".")
