"""Digest mails (pure): one mail with the conversation since the last one, by topic."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage

from adapters.email.compose import Outgoing, build_mail
from adapters.email.config import EmailAccount
from adapters.email.store import DigestItem


def digest_text(items: list[DigestItem]) -> str:
    """Posts grouped by topic (first-seen order), each as "Author (Network): text"."""
    topics: dict[str, list[DigestItem]] = {}
    for item in items:
        topics.setdefault(item.thread or "(no topic)", []).append(item)
    parts: list[str] = []
    for topic, posts in topics.items():
        parts.append(f"== {topic} ==")
        for p in posts:
            body = p.plain.strip().replace("\n", "\n    ")
            parts.append(f"{p.author} ({p.network}):\n    {body}")
        parts.append("")
    return "\n".join(parts).rstrip()


def digest_mail(items: list[DigestItem], *, key: str, account: EmailAccount,
                list_address: str, hashtag: str, period_hours: float) -> EmailMessage:
    n = len(items)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = Outgoing(
        key=key, from_address=account.address, domain=account.message_domain,
        list_address=list_address, author=f"#{hashtag} digest" if hashtag else "Digest",
        network="", plain=digest_text(items),
        subject=f"#{hashtag} digest: {n} post{'s' if n != 1 else ''} until {when}",
        origin=f"digest:{key}", date=datetime.now(UTC))
    return build_mail(out)
