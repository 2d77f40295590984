"""How members take part from a mailing list, from the config alone (the web view's
about page): :meth:`~bridge.contract.adapter.AdapterFactory.join_facts`.  The list's
addresses are public; the bridge's mailbox, its IMAP and SMTP servers and logins are
never shown.  List mail carries no bot commands (``!join``/``!leave``)."""

from __future__ import annotations

from adapters.email.config import EmailAccount, EmailChannel
from bridge.contract.adapter import JoinFacts, JoinLink


def join_facts(account: EmailAccount, channel: EmailChannel) -> JoinFacts:
    del account  # its address, servers and logins are never shown
    subscribe = channel.subscribe
    follow = (JoinLink(label="Subscribe", url=subscribe),) if subscribe else ()
    return JoinFacts(
        where=(JoinLink(label=channel.list, url=f"mailto:{channel.list}"),),
        how_to_post="Write to the list from a subscribed address; replies thread as "
                    "usual (quotes and signatures are left out of the copies).",
        how_to_follow=("Subscribe to the list" + ("" if subscribe else
                       " (ask its owner how)") + ": every relayed post arrives as "
                       "list mail" + (f", in a digest every {channel.digest_hours:g} hours"
                                      if channel.digest_hours else "") + "."),
        follow_links=follow,
        posts_as="the bridge's own address, the sender's name reading "
                 "“Alice (Mastodon) via hashbridge”",
        link_command="a mail to the list whose text starts with {command} (the whole "
                     "list reads it)",
        edits_copies=False, deletes_copies=False,
        copies_note="Mail cannot be unsent." + (
            " When a post is edited or deleted, a short correction mail follows it in "
            "its thread." if channel.corrections == "mail" else ""))
