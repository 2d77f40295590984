"""The adapter's small durable state, in the bridge's store (``ctx.state``).

Namespaces of the account's :class:`~bridge.contract.adapter.AccountState`:

* ``threads``: subject and References chain per Message-ID we saw or sent, so a reply
  gets a complete ``References`` header (the core map only knows the parent's id).
* ``digest:<channel>``: posts waiting for the channel's next digest mail, keyed by the
  delivery's idempotency key (a retried send is queued once).  A row is written before
  ``send`` returns and deleted only after the digest mail was accepted, so a restart
  loses nothing; the digest's Message-ID comes from the batch, so a retry is the same mail.
* ``attempts``: keys of mails whose submission started, so a retry knows to look for
  the list's echo of the first attempt before sending again.
* ``sent``: the exact Message-ID of every mail the bridge submitted (copies, corrections,
  digests), written before the submission starts.  This is how the inbound side knows
  the list's echo of our own mail: by its id, never by its domain (members may share
  the bridge's domain, and their clients put it in their Message-IDs).  The list can
  echo a mail before ``send`` has returned, so the core's id map alone would be late.
* ``meta``: ``salt``, the installation's secret for author handles (see ``convert``),
  and a marker per imported side file (see :mod:`adapters.email.legacy`).

Earlier versions kept these in a SQLite file of their own under ``ctx.data_dir``;
:meth:`EmailStore.open` imports it on first start.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
from dataclasses import dataclass

from adapters.email.compose import message_id as message_id_of
from adapters.email.legacy import read_side_file, retire_side_file
from bridge.contract.adapter import AccountState

_THREADS, _ATTEMPTS, _SENT, _META = "threads", "attempts", "sent", "meta"


def digest_namespace(channel: str) -> str:
    return f"digest:{channel}"


@dataclass(frozen=True, slots=True, kw_only=True)
class DigestItem:
    key: str
    """The delivery's idempotency key (the row's key in the digest namespace)."""
    channel: str
    batch: int
    thread: str
    author: str
    network: str
    plain: str
    reply_to: str | None


class EmailStore:
    """Typed access to the email adapter's rows in its account state."""

    def __init__(self, state: AccountState) -> None:
        self._state = state

    @classmethod
    async def open(cls, state: AccountState, side_file: str, log: logging.Logger
                   ) -> EmailStore:
        """The store over *state*, after importing an earlier version's *side_file*
        (when there is one and it was not imported yet)."""
        store = cls(state)
        await store._import(side_file, log)
        return store

    async def _import(self, path: str, log: logging.Logger) -> None:
        """Copy every row of the side file into the state, then retire the file.

        Each write is idempotent (the side file's values win; queued and journalled
        keys are added only if absent), so a crash part-way imports again at the next
        start.  The marker, written last, keeps a file that could not be renamed from
        being imported twice (its digest rows would come back after being sent)."""
        marker = f"imported:{os.path.basename(path)}"
        old = await asyncio.to_thread(read_side_file, path)
        if old is None:
            return
        if await self._state.get(_META, marker) is None:
            if old.salt is not None:
                await self._state.put(_META, "salt", old.salt)
            await self._state.put_many(_THREADS, [
                (nid, thread_value(subject, json.loads(refs)))
                for nid, subject, refs in old.threads])
            await self._state.put_many(_ATTEMPTS, [(k, repr(at)) for k, at in old.attempts],
                                       only_new=True)
            by_channel: dict[str, list[tuple[str, str]]] = {}
            for key, channel, batch, thread, author, network, plain, reply_to in old.digest:
                by_channel.setdefault(channel, []).append((key, digest_value(
                    batch=batch, thread=thread, author=author, network=network, plain=plain,
                    reply_to=reply_to)))
            for channel, rows in by_channel.items():
                await self._state.put_many(digest_namespace(channel), rows, only_new=True)
            await self._state.put(_META, marker, path)
            log.info("imported %s (%d threads, %d queued digest posts, %d send attempts) "
                     "into the bridge's database", path, len(old.threads), len(old.digest),
                     len(old.attempts))
        try:
            moved = await asyncio.to_thread(retire_side_file, path)
        except OSError as e:
            log.warning("could not rename %s after importing it (%s); it is not read "
                        "again, delete it by hand", path, e)
        else:
            log.info("renamed %s to %s; delete it once you no longer need it", path, moved)

    async def salt(self) -> bytes:
        value = await self._state.get(_META, "salt")
        if value is None:
            await self._state.add(_META, "salt", secrets.token_bytes(16).hex())
            value = await self._state.get(_META, "salt")
            assert value is not None
        return bytes.fromhex(value)

    async def remember(self, native_id: str, subject: str, refs: tuple[str, ...]) -> None:
        await self._state.put(_THREADS, native_id, thread_value(subject, refs))

    async def thread(self, native_id: str) -> tuple[str, tuple[str, ...]] | None:
        value = await self._state.get(_THREADS, native_id)
        if value is None:
            return None
        row = json.loads(value)
        return row["subject"], tuple(row["refs"])

    async def attempt(self, key: str, at: float) -> bool:
        """Journal a submission attempt before it starts; True if one was made before
        (its outcome is unknown: the process may have died after the server's 250)."""
        return not await self._state.add(_ATTEMPTS, key, repr(at))

    async def sending(self, message_id: str) -> None:
        """Journal the Message-ID of a mail about to be submitted (idempotent)."""
        await self._state.add(_SENT, message_id, "1")

    async def sent_by_us(self, message_id: str, domain: str) -> bool:
        """Whether *message_id* is exactly the id of a mail this bridge submitted.

        Besides the ``sent`` journal, a mail an earlier version submitted is known by
        its send-attempt key: its id was ``<key>@<domain>`` (see ``compose.message_id``),
        checked exactly, so a member's id on the same domain never matches."""
        if await self._state.get(_SENT, message_id) is not None:
            return True
        local, at, dom = message_id.rpartition("@")
        return bool(at) and dom.lower() == domain.lower() \
            and await self._state.get(_ATTEMPTS, local) is not None \
            and message_id_of(local, domain) == message_id

    async def enqueue(self, *, key: str, channel: str, batch: int, thread: str, author: str,
                      network: str, plain: str, reply_to: str | None) -> None:
        # Added only if absent: a retried send (same key) is queued once.
        await self._state.add(digest_namespace(channel), key, digest_value(
            batch=batch, thread=thread, author=author, network=network, plain=plain,
            reply_to=reply_to))

    async def due(self, channel: str, now_batch: int) -> list[DigestItem]:
        """Queued items of the oldest batch that is due, oldest first."""
        items = [_digest_item(channel, k, v)
                 for k, v in await self._state.items(digest_namespace(channel))]
        due = [i.batch for i in items if i.batch <= now_batch]
        if not due:
            return []
        oldest = min(due)
        return [i for i in items if i.batch == oldest]

    async def done(self, channel: str, keys: list[str]) -> None:
        await self._state.delete(digest_namespace(channel), keys)


def thread_value(subject: str, refs: tuple[str, ...] | list[str]) -> str:
    return json.dumps({"subject": subject, "refs": list(refs)})


def digest_value(*, batch: int, thread: str, author: str, network: str, plain: str,
                 reply_to: str | None) -> str:
    return json.dumps({"batch": batch, "thread": thread, "author": author,
                       "network": network, "plain": plain, "reply_to": reply_to})


def _digest_item(channel: str, key: str, value: str) -> DigestItem:
    row = json.loads(value)
    return DigestItem(key=key, channel=channel, batch=int(row["batch"]), thread=row["thread"],
                      author=row["author"], network=row["network"], plain=row["plain"],
                      reply_to=row["reply_to"])
