"""End to end: the real relay (bridge.daemon.harness) between a sandbox network and a mailing
list on a real Dovecot + mini list; counts are read on the platforms (the member's maildir
and the sandbox network), never in our store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adapters.email.convert import msgid, msgids
from adapters.email.sandbox import EmailSandbox
from adapters.sandbox import SandboxPlatform
from bridge.contract.adapter import Health
from bridge.daemon.harness import (
    ChannelDef,
    build_config,
    eventually,
    quiescent,
    running,
    sandbox_channels,
)


def config(mail: EmailSandbox, tmp: Path, **channel: Any) -> Any:
    em = ChannelDef("mail", "email", mail.account_config(),
                    {**mail.channel_config(), **channel})
    return build_config(tmp, [*sandbox_channels(tmp, ["lobby"]), em],
                        community_options={"author_rate_per_minute": 1000})


def lobby(tmp: Path) -> SandboxPlatform:
    return SandboxPlatform(str(tmp / "networks"), "lobby")


async def connected(bridge: Any) -> None:
    """Wait until the email account relays new mail (its IMAP cursor exists)."""
    await eventually(lambda: _true(bridge.accounts["mail"].health is Health.CONNECTED))


async def _true(value: bool) -> bool:
    return value


def bridge_mails(mail: EmailSandbox) -> list[Any]:
    return [m for m in mail.dovecot.messages("reader") if m["X-Hashbridge-Delivery"]]


async def test_sandbox_to_list_post_reply_and_edit_delete(mail: EmailSandbox,
                                                          tmp_path: Path) -> None:
    net = lobby(tmp_path)
    await net.start()
    async with running(config(mail, tmp_path)) as bridge:
        first = await net.post_as_member("dora", "Dough hydration\n\nWhat % do you use?")
        await quiescent(bridge)
        reply = await net.post_as_member("eve", "75% for me", reply_to=first)
        await quiescent(bridge)
        await net.edit_as_member(first, "Dough hydration, edited")
        await net.delete_as_member(reply)
        await quiescent(bridge)
    mails = bridge_mails(mail)
    assert len(mails) == 2  # edits and deletes cannot be unsent: ignored by default
    post, rep = mails
    assert "Dora" in post["From"].addresses[0].display_name
    assert "What % do you use?" in post.get_body(("plain",)).get_content()
    assert msgid(rep["In-Reply-To"]) == msgid(post["Message-ID"])
    assert str(rep["Subject"]).startswith("[kmers] Re: ")
    await net.stop()


async def test_corrections_mail_follows_an_edit_and_a_delete(mail: EmailSandbox,
                                                              tmp_path: Path) -> None:
    """corrections = "mail": mail cannot be unsent, so an edit and a delete each reach
    the list as a short correction mail in the post's thread."""
    net = lobby(tmp_path)
    await net.start()
    async with running(config(mail, tmp_path, corrections="mail")) as bridge:
        first = await net.post_as_member("dora", "Dough hydration\n\nWhat % do you use?")
        await quiescent(bridge)
        await net.edit_as_member(first, "Dough hydration: 70% for a start")
        await quiescent(bridge)
        await net.delete_as_member(first)
        await quiescent(bridge)
    mails = bridge_mails(mail)
    assert len(mails) == 3, [str(m["Subject"]) for m in mails]
    post, edited, deleted = mails
    for m in (edited, deleted):
        assert msgid(m["In-Reply-To"]) == msgid(post["Message-ID"])
    assert "It now reads:" in edited.get_body(("plain",)).get_content()
    assert "70% for a start" in edited.get_body(("plain",)).get_content()
    assert "deleted this message" in deleted.get_body(("plain",)).get_content()
    await net.stop()


async def test_reply_chain_of_five_across_networks_is_one_thread(mail: EmailSandbox,
                                                                 tmp_path: Path) -> None:
    net = lobby(tmp_path)
    await net.start()
    async with running(config(mail, tmp_path)) as bridge:
        await connected(bridge)
        m1 = await mail.post_as_member("Alice", "Starter care\n\nHow often do you feed?")
        [c1] = await eventually(lambda: _bridged(net, 1))
        await net.post_as_member("dora", "Daily", reply_to=c1.native_id)
        await quiescent(bridge)
        b2 = msgid(bridge_mails(mail)[-1]["Message-ID"])
        await mail.post_as_member("Carol", "Twice a day here", reply_to=b2)
        copies = await eventually(lambda: _bridged(net, 2))
        await net.post_as_member("eve", "Weekly, in the fridge", reply_to=copies[1].native_id)
        await quiescent(bridge)
        b4 = msgid(bridge_mails(mail)[-1]["Message-ID"])
        await mail.post_as_member("Alice", "Thanks all", reply_to=b4)
        copies = await eventually(lambda: _bridged(net, 3))
        await quiescent(bridge, settle=1.0)
    by_id = {msgid(m["Message-ID"]): m for m in mail.dovecot.messages("reader")}
    chain = [m1, b2, *[i for i in by_id if i not in (m1, b2, b4)][:1], b4]
    m3 = next(i for i, m in by_id.items() if msgid(m["In-Reply-To"]) == b2)
    m5 = next(i for i, m in by_id.items() if msgid(m["In-Reply-To"]) == b4)
    chain = [m1, b2, m3, b4, m5]
    assert len(by_id) == 5
    for i, mid in enumerate(chain[1:], start=1):
        assert msgid(by_id[mid]["In-Reply-To"]) == chain[i - 1]
        assert msgids(by_id[mid]["References"]) == chain[:i]
        assert str(by_id[mid]["Subject"]).endswith("Re: Starter care")
    # and on the sandbox side the copies thread the same way
    sb = {m.native_id: m for m in await net.messages()}
    assert copies[1].reply_to in sb and copies[2].reply_to in sb
    await net.stop()


async def _bridged(net: SandboxPlatform, n: int = 1) -> Any:
    msgs = [m for m in await net.messages() if m.by_bridge]
    return msgs if len(msgs) >= n else None
