"""The shared end-to-end scenarios every network must pass, over its sandbox.

Each scenario is an async function of a running :class:`~bridge.conformance.kit.Kit`
(the network under test opposite the lobby, the relay between them), registered in
:data:`SCENARIOS` with what it needs.  A need the network lacks raises
:class:`~bridge.conformance.kit.Unsupported` with the reason (X cannot edit, mail
cannot be deleted, a network without a length limit never splits); the pytest entry
(``tests/conformance/test_kit.py``) turns that into a skip.

Counted on the platforms (:meth:`PlatformSandbox.messages`), never in the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bridge.conformance import fleet
from bridge.conformance.faults import MODES, Faults
from bridge.conformance.kit import LOBBY, NET, Kit, Unsupported
from bridge.contract.adapter import Capabilities, Health
from bridge.contract.sandbox import PlatformSandbox, PoisonKind, SandboxMessage

REMOVED = "(removed in an edit)"
"""What a surplus part of a split post says after an edit where it cannot be deleted."""
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 12


@dataclass(frozen=True)
class Scenario:
    name: str
    run: Callable[[Kit], Awaitable[None]]
    description: str
    own_bridge: bool = False
    """Runs its own bridge (another config or a process); the kit's is restarted after."""


SCENARIOS: list[Scenario] = []


def scenario(description: str, *, own_bridge: bool = False
             ) -> Callable[[Callable[[Kit], Awaitable[None]]], Callable[[Kit], Awaitable[None]]]:
    def register(fn: Callable[[Kit], Awaitable[None]]) -> Callable[[Kit], Awaitable[None]]:
        SCENARIOS.append(Scenario(fn.__name__, fn, description, own_bridge))
        return fn
    return register


def by_name(name: str) -> Scenario:
    return next(s for s in SCENARIOS if s.name == name)


def _one(have: dict[int, list[SandboxMessage]], i: int, where: str) -> SandboxMessage:
    live = [m for m in have.get(i, []) if not m.deleted]
    assert len(live) == 1, f"{where}: #{i} has {len(live)} copies: {[m.text for m in live]}"
    return live[0]


# ---------------------------------------------------------------- post and replies
@scenario("a post crosses each way exactly once and is never echoed back")
async def post(kit: Kit) -> None:
    t = kit.tag()
    await kit.lobby.post_as_member("dora", f"[{t}-1] hello from the lobby")
    await kit.box.post_as_member("alice", f"[{t}-2] hello from {kit.platform}")
    await kit.until(kit.box, t, {1})
    await kit.until(kit.lobby, t, {2})
    await kit.settle()
    on_net, on_lobby = await kit.copies(kit.box, t), await kit.copies(kit.lobby, t)
    _one(on_net, 1, kit.platform)
    _one(on_lobby, 2, "lobby")
    assert 2 not in on_net, f"{kit.platform}: its own member's post came back: {on_net[2]}"
    assert 1 not in on_lobby, f"lobby: its own member's post came back: {on_lobby[1]}"


@scenario("replies keep their thread each way, and across (a reply to a copy)")
async def reply_threading(kit: Kit) -> None:
    t = kit.tag()
    root = await kit.lobby.post_as_member("dora", f"[{t}-1] a question")
    await kit.until(kit.box, t, {1})
    await kit.lobby.post_as_member("eve", f"[{t}-2] an answer", reply_to=root)
    nroot = await kit.box.post_as_member("alice", f"[{t}-3] another question")
    await kit.until(kit.lobby, t, {3})
    await kit.box.post_as_member("bob", f"[{t}-4] another answer", reply_to=nroot)
    on_lobby = await kit.until(kit.lobby, t, {3, 4})
    copy3 = _one(on_lobby, 3, "lobby")
    # a lobby member answers the copy of a post from the network
    await kit.lobby.post_as_member("eve", f"[{t}-5] answering across", reply_to=copy3.native_id)
    on_net = await kit.until(kit.box, t, {1, 2, 5})
    await kit.settle()
    on_net, on_lobby = await kit.copies(kit.box, t), await kit.copies(kit.lobby, t)
    c1, c2, c5 = (_one(on_net, i, kit.platform) for i in (1, 2, 5))
    assert c2.reply_to == c1.native_id, f"{kit.platform}: reply copy answers {c2.reply_to!r}"
    c3, c4 = _one(on_lobby, 3, "lobby"), _one(on_lobby, 4, "lobby")
    assert c4.reply_to == c3.native_id, f"lobby: reply copy answers {c4.reply_to!r}"
    if not (kit.box.features.replies_need_mention and c5.reply_to is None):
        assert c5.reply_to == nroot, \
            f"{kit.platform}: the answer to a copy answers {c5.reply_to!r}, not {nroot!r}"


# ---------------------------------------------------------------- edits and deletes
@scenario("a member's edit in the lobby reaches the network's copy (where copies edit)")
async def edit_to_network(kit: Kit) -> None:
    if not kit.caps().edit:
        raise Unsupported(f"{kit.platform}'s copies cannot be edited")
    t = kit.tag()
    nid = await kit.lobby.post_as_member("dora", f"[{t}-1] first version")
    await kit.until(kit.box, t, {1})
    await kit.lobby.edit_as_member(nid, f"[{t}-1] second version, edited")
    await kit.until(kit.box, t, {1}, ready=lambda m: "edited" in m.text and not m.deleted)
    await kit.settle()
    copy = _one(await kit.copies(kit.box, t), 1, kit.platform)
    assert "first version" not in copy.text and "second version" in copy.text


@scenario("a member's edit on the network reaches the lobby's copy")
async def edit_from_network(kit: Kit) -> None:
    if not kit.box.features.member_edits:
        raise Unsupported(f"members cannot edit on {kit.platform}")
    t = kit.tag()
    nid = await kit.box.post_as_member("alice", f"[{t}-1] first version")
    await kit.until(kit.lobby, t, {1})
    await kit.box.edit_as_member(nid, f"[{t}-1] second version, edited")
    await kit.until(kit.lobby, t, {1}, ready=lambda m: "edited" in m.text)
    await kit.settle()
    copy = _one(await kit.copies(kit.lobby, t), 1, "lobby")
    assert "first version" not in copy.text and "second version" in copy.text


@scenario("a member's delete in the lobby removes the network's copy (where copies delete)")
async def delete_to_network(kit: Kit) -> None:
    if not kit.caps().delete:
        raise Unsupported(f"{kit.platform}'s copies cannot be deleted")
    t = kit.tag()
    keep = await kit.lobby.post_as_member("dora", f"[{t}-1] stays")
    gone = await kit.lobby.post_as_member("dora", f"[{t}-2] goes", reply_to=keep)
    await kit.until(kit.box, t, {1, 2})
    await kit.lobby.delete_as_member(gone)
    await kit.eventually(lambda: _all_gone(kit, kit.box, t, 2), "the copy's deletion")
    await kit.settle()
    _one(await kit.copies(kit.box, t), 1, kit.platform)


@scenario("a member's delete on the network removes the lobby's copy")
async def delete_from_network(kit: Kit) -> None:
    if not kit.box.features.member_deletes:
        raise Unsupported(f"members cannot delete on {kit.platform}")
    t = kit.tag()
    await kit.box.post_as_member("alice", f"[{t}-1] stays")
    gone = await kit.box.post_as_member("alice", f"[{t}-2] goes")
    await kit.until(kit.lobby, t, {1, 2})
    await kit.box.delete_as_member(gone)
    await kit.eventually(lambda: _all_gone(kit, kit.lobby, t, 2), "the copy's deletion")
    await kit.settle()
    _one(await kit.copies(kit.lobby, t), 1, "lobby")


async def _all_gone(kit: Kit, box: PlatformSandbox, tag: str, i: int) -> bool:
    return all(m.deleted for m in (await kit.copies(box, tag)).get(i, []))


# ---------------------------------------------------------------- long posts
def _words(tag: str, version: str, n: int) -> list[str]:
    return [f"{tag}{version}{i:04d}" for i in range(n)]


def _needs_split(kit: Kit) -> Capabilities:
    caps = kit.caps()
    if not caps.max_length:
        raise Unsupported(f"{kit.platform} has no length limit: nothing splits")
    if not caps.threads:
        raise Unsupported(f"{kit.platform} cannot thread the parts of a split post")
    return caps


def _thread(msgs: list[SandboxMessage], root: str) -> list[SandboxMessage]:
    """The chain of the bridge's live messages from *root*, each answering the previous
    (a part an edit deleted still answers its predecessor: it is not in the chain)."""
    by_id = {m.native_id: m for m in msgs}
    chain = [by_id[root]]
    while True:
        nxt = [m for m in msgs if m.by_bridge and not m.deleted
               and m.reply_to == chain[-1].native_id]
        if not nxt:
            return chain
        chain.append(nxt[0])


def _word_count(caps: Capabilities, parts: float, tag: str) -> int:
    per_word = len(f"{tag}a0000 ")
    assert caps.max_length is not None
    return max(3, min(int(caps.max_length * parts / per_word), 30_000 // per_word))


async def _split_copies(kit: Kit, words: list[str]) -> list[SandboxMessage]:
    first = words[0]

    async def root() -> SandboxMessage | None:
        return next((m for m in await kit.box.messages()
                     if m.by_bridge and first in m.text.split()), None)

    r = await kit.eventually(root, "the first part")
    await kit.settle()
    return _thread(await kit.box.messages(), r.native_id)


def _check_parts(kit: Kit, caps: Capabilities, parts: list[SandboxMessage],
                 words: list[str], version: str) -> None:
    live = [m for m in parts if not m.deleted and m.text.strip() != REMOVED]
    seen = [w for m in live for w in m.text.split() if w.startswith(words[0][:-4])]
    assert seen == words, (f"{kit.platform}: the parts hold {len(seen)} of {len(words)} "
                           f"words of version {version}, in this order: {seen[:5]}...")
    for m in live:
        assert caps.max_length is not None
        assert caps.count(m.text) <= caps.max_length, \
            f"{kit.platform}: a part of {caps.count(m.text)} over {caps.max_length}"


@scenario("a post over the network's limit arrives whole, split into a thread")
async def long_post_split(kit: Kit) -> None:
    caps = _needs_split(kit)
    t = kit.tag()
    words = _words(t, "a", _word_count(caps, 2.5, t))
    await kit.lobby.post_as_member("dora", " ".join(words))
    parts = await _split_copies(kit, words)
    assert len(parts) >= 2, f"{kit.platform}: not split: {len(parts)} part"
    _check_parts(kit, caps, parts, words, "a")


@scenario("an edit that changes how many parts a split post has leaves the copies holding "
          "exactly the edited text, in order (issue 13 §2)")
async def split_edit(kit: Kit) -> None:
    caps = _needs_split(kit)
    if not caps.edit:
        raise Unsupported(f"{kit.platform}'s copies cannot be edited")
    t = kit.tag()
    words = _words(t, "a", _word_count(caps, 2.5, t))
    nid = await kit.lobby.post_as_member("dora", " ".join(words))
    parts = await _split_copies(kit, words)
    root, before = parts[0].native_id, len(parts)
    # shrink to one part: surplus parts deleted (or marked removed where they cannot be)
    short = _words(t, "b", 3)
    await kit.lobby.edit_as_member(nid, " ".join(short))
    await kit.eventually(lambda: _holds(kit, root, short[0]), "the shrinking edit")
    await kit.settle()
    parts = _thread(await kit.box.messages(), root)
    _check_parts(kit, caps, parts, short, "b")
    assert len(parts) == before or caps.delete, parts
    # grow to more parts than at first: the extra ones added to the same thread
    long = _words(t, "c", _word_count(caps, 4.5, t))
    await kit.lobby.edit_as_member(nid, " ".join(long))
    await kit.eventually(lambda: _holds(kit, root, long[-1], everywhere=True), "the growing edit")
    await kit.settle()
    parts = _thread(await kit.box.messages(), root)
    _check_parts(kit, caps, parts, long, "c")


async def _holds(kit: Kit, root: str, word: str, everywhere: bool = False) -> bool:
    msgs = await kit.box.messages()
    chain = _thread(msgs, root)
    return any(word in m.text.split() for m in (chain if everywhere else chain[:1]))


# ---------------------------------------------------------------- mentions and consent
@scenario("a relayed mention never pings anyone on the network")
async def mentions_never_ping(kit: Kit) -> None:
    t = kit.tag()
    # "alice" exists on the network: a mention of her would be a real ping
    await kit.box.post_as_member("alice", f"[{t}-1] I am here")
    await kit.until(kit.lobby, t, {1})
    await kit.lobby.post_as_member(
        "dora", f"[{t}-2] hi @alice, @alice@example.org and ＠alice; mail alice@example.org")
    on_net = await kit.until(kit.box, t, {2})
    await kit.settle()
    copy = _one(on_net, 2, kit.platform)
    assert copy.pings == (), f"{kit.platform}: the copy pings {copy.pings}: {copy.text!r}"
    assert "alice" in copy.text, f"{kit.platform}: the mention's name was lost: {copy.text!r}"


@scenario("#nobridge on a post keeps it where it was posted, each way")
async def consent_nobridge(kit: Kit) -> None:
    t = kit.tag()
    await kit.box.post_as_member("alice", f"[{t}-1] only here please #nobridge")
    await kit.lobby.post_as_member("dora", f"[{t}-2] only here please #NoBridge")
    # the next post of each side crosses after the tagged one was read
    await kit.box.post_as_member("alice", f"[{t}-3] this one may travel")
    await kit.lobby.post_as_member("dora", f"[{t}-4] this one may travel")
    await kit.until(kit.lobby, t, {3})
    await kit.until(kit.box, t, {4})
    await kit.settle()
    on_net, on_lobby = await kit.copies(kit.box, t), await kit.copies(kit.lobby, t)
    assert 1 not in on_lobby and 2 not in on_net, (on_lobby.get(1), on_net.get(2))


@scenario("input the adapter cannot read costs that post only: rejected with its reason, "
          "the posts around it relayed, the adapter connected", own_bridge=False)
async def poison_input(kit: Kit) -> None:
    t = kit.tag()
    await kit.box.post_as_member("alice", f"[{t}-1] before the poison")
    sent = await kit.box.post_poison("mallory", f"[{t}-9]")
    if not sent:
        raise Unsupported(f"the {kit.platform} sandbox has no poison to post")
    await kit.box.post_as_member("alice", f"[{t}-2] after the poison")
    await kit.until(kit.lobby, t, {1, 2})
    bridge = kit.bridge
    assert bridge is not None

    channel = next(ch.key for ch in bridge.config.all_channels() if ch.account == NET)

    async def recorded() -> set[str]:
        def read(tx: Any) -> tuple[set[str], set[str]]:
            return ({r[1] for r in tx.rejections(10_000)},
                    {n for n in sent if tx.native_lookup(channel, n) is not None})

        ids, relayed = await bridge.store.run(read)
        missing = {n for n, how in sent.items()
                   if n not in ids and not (how == PoisonKind.EITHER and n in relayed)}
        return ids if not missing else set()

    rejected = await kit.eventually(recorded, "the poison's rejections")
    await kit.settle()
    for nid, how in sent.items():
        if how == PoisonKind.ALWAYS:
            assert nid in rejected, f"{kit.platform}: poison {nid} not recorded as rejected"
    assert bridge.accounts[NET].health == Health.CONNECTED
    assert bridge.accounts[NET].adapter is not None


@scenario("opt-in community: nothing of a member's crosses before !join, after it does",
          own_bridge=True)
async def consent_opt_in_join(kit: Kit) -> None:
    if not kit.box.features.commands:
        raise Unsupported(f"members cannot address commands to the bridge on {kit.platform}")
    await kit.start_bridge(kit.config(community={"consent": "opt-in"}), warm=False)
    t = kit.tag()
    await kit.box.post_as_member("olive", f"[{t}-1] before joining")
    await kit.box.command_as_member("olive", "!join")
    # The core answers a command on its network ("... Reply !leave to stop."): once it
    # has, the command was read (commands may come by another route than posts).

    async def answered() -> bool:
        return any(m.by_bridge and "!leave" in m.text for m in await kit.box.messages())

    await kit.eventually(answered, "the bridge's answer to !join")
    await kit.box.post_as_member("olive", f"[{t}-2] after joining")
    await kit.until(kit.lobby, t, {2})
    await kit.settle()
    on_lobby = await kit.copies(kit.lobby, t)
    assert 1 not in on_lobby, f"relayed before !join: {on_lobby[1]}"
    _one(on_lobby, 2, "lobby")


# ---------------------------------------------------------------- media
@scenario("a member's image in the lobby's partner reaches the network's copy with its alt "
          "text", own_bridge=True)
async def media_to_network(kit: Kit) -> None:
    if not kit.caps().media_types:
        raise Unsupported(f"{kit.platform}'s copies carry no media")
    partner = await _start_partner(kit)
    t = kit.tag()
    await partner.post_with_media("pat", f"[{t}-1] look at this", PNG, "image/png",
                                  f"{t} a grey gradient")
    got = await kit.until(kit.box, t, {1}, ready=lambda m: bool(m.media))
    await kit.settle()
    copy = _one(got, 1, kit.platform)
    assert [a.alt_text for a in copy.media] == [f"{t} a grey gradient"], copy.media


@scenario("a member's image on the network reaches a copy with its alt text", own_bridge=True)
async def media_from_network(kit: Kit) -> None:
    if not kit.box.features.member_media:
        raise Unsupported(f"members' media on {kit.platform}: the sandbox cannot post it")
    partner = await _start_partner(kit)
    t = kit.tag()
    await kit.box.post_with_media("alice", f"[{t}-1] look at this", PNG, "image/png",
                                  f"{t} a grey gradient")
    got = await kit.until(partner, t, {1}, ready=lambda m: bool(m.media))
    await kit.settle()
    copy = _one(got, 1, partner.platform)
    assert [a.alt_text for a in copy.media] == [f"{t} a grey gradient"], copy.media


@scenario("a member's poll and quote post reach the lobby with the options and the quoted post")
async def polls_and_quotes_from_network(kit: Kit) -> None:
    features = kit.box.features
    if not (features.member_polls or features.member_quotes):
        raise Unsupported(f"{kit.platform}: members post neither polls nor quote posts there")
    t = kit.tag()
    want: set[int] = set()
    if features.member_polls:
        await kit.box.post_poll_as_member("alice", f"[{t}-1] tea or coffee?", ["Tea", "Coffee"])
        want.add(1)
    if features.member_quotes:
        quoted = await kit.box.post_as_member("bob", f"[{t}-2] words worth quoting")
        await kit.until(kit.lobby, t, {2})  # (read, so its author's consent is known)
        await kit.box.post_quote_as_member("alice", f"[{t}-3] so true", quoted)
        want.add(3)
    got = await kit.until(kit.lobby, t, want)
    await kit.settle()
    if 1 in want:
        poll = _one(got, 1, "lobby").text
        assert "Poll: 1) Tea 2) Coffee" in poll, poll
    if 3 in want:
        quote = _one(got, 3, "lobby").text
        assert "so true" in quote and f"[{t}-2] words worth quoting" in quote, quote
        assert "quoting bob on " in quote.casefold(), quote  # the quoted author, by name
        assert "://" in quote.split("words worth quoting", 1)[1], quote  # and its address


async def _start_partner(kit: Kit) -> PlatformSandbox:
    """An in-process network that takes media, bridged to the network under test (the
    lobby, a sandbox network, carries text only)."""
    partner = kit.extra.get("partner")
    if partner is None:
        partner = _media_partner(kit)
        await partner.start()
        partner.unthrottle()
        kit.extra["partner"] = partner
    await kit.start_bridge(kit.config(boxes={NET: kit.box, "partner": partner}))
    return partner


def _media_partner(kit: Kit) -> PlatformSandbox:
    for name in sorted(kit.registry.factories):
        if name in (kit.platform, "sandbox"):
            continue
        box = kit.registry.factories[name].sandbox(str(kit.workdir / f"partner-{name}"))
        if box is not None and box.features.in_process and box.features.member_media:
            return box
    raise Unsupported("no other registered network has an in-process sandbox with media")


# ---------------------------------------------------------------- faults
@scenario("kill -9 of a real bridge process mid-burst, twice: every post exactly once, "
          "in order", own_bridge=True)
async def kill9_exactly_once(kit: Kit, posts: int = 16, kills: int = 2, seed: int = 7) -> None:
    await kit.stop_bridge()
    rng = random.Random(seed)
    boxes = {LOBBY: kit.lobby, NET: kit.box}
    kit.box.unthrottle()
    cfg, log_file = kit.workdir / "kill9.toml", kit.workdir / "kill9.log"
    config = fleet.write_config(cfg, boxes, kit.workdir / "data", {}, {},
                                bridge_options={"log_level": "info"})
    caps = fleet.copy_capabilities(config)
    db = kit.workdir / "data" / "hashbridge.sqlite"
    t = kit.tag()
    mark = kit.mark(t)
    origin: dict[int, tuple[str, str]] = {}
    kill_at = sorted(rng.sample(range(posts // 4, posts), kills))
    proc = fleet.start_bridge(cfg, log_file)
    try:
        await fleet.wait_connected(db, set(boxes), 90, proc=proc, log_file=log_file)
        for i in range(posts):
            net = (LOBBY, NET)[i % 2]
            origin[i] = (net, await boxes[net].post_as_member(f"m{i % 3}", f"[{t}-{i}] burst"))
            if kill_at and i == kill_at[0]:
                kill_at.pop(0)
                await asyncio.sleep(rng.uniform(0.0, 1.0))  # with work in flight
                await fleet.kill9(proc)
                proc = fleet.start_bridge(cfg, log_file)
            await asyncio.sleep(0.05)
        await fleet.wait_complete(boxes, origin, set(), 120, set(), caps, mark)
        await asyncio.sleep(2.0)  # a late duplicate would show up now
    finally:
        await fleet.stop_bridge(proc)
    snapshot = {n: await b.messages() for n, b in boxes.items()}
    fleet.check(snapshot, origin, set(), set(), log_file, set(), caps, mark)
    assert fleet.pending(db) == [], f"outbox not empty: {fleet.pending(db)[:10]}"


STORM_CALLS = 6
"""Requests a network may get during a 429 storm: about one per loop that calls it."""
OUTAGE_MODES = MODES
"""Every way a platform goes away (:mod:`bridge.conformance.faults`)."""


@scenario("the platform goes away in each way (connections refused, its own 5xx answers, a "
          "429 storm with its real headers, a hung server, streams dropped silently) while "
          "members post, answer and delete: nothing lost or doubled, in order, replies "
          "threaded, deletes applied, the outage shows in health, a 429 storm is waited "
          "out, not hammered", own_bridge=True)
async def outage_storm(kit: Kit, outage: float = 3.0) -> None:
    if not kit.box.endpoints():
        raise Unsupported(f"the {kit.platform} sandbox names no endpoint to inject faults at")
    faults = Faults(kit.box)
    await faults.start()
    try:
        timeout = 5.0
        config = kit.config(accounts={NET: faults.account_config(timeout)},
                            bridge_options={"send_timeout_seconds": 2 * timeout,
                                            "retry_max_seconds": 5.0})
        await kit.start_bridge(config)
        caps = {LOBBY: kit.caps(LOBBY), NET: kit.caps(NET)}
        for mode in OUTAGE_MODES:
            await _one_outage(kit, faults, mode, outage, caps)
    finally:
        await kit.stop_bridge()
        await faults.stop()


class _HealthChanges(logging.Handler):
    """The ``health: ...`` lines an account's runtime logs at each change."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seen: list[str] = []

    @property
    def disconnected(self) -> bool:
        return any(s.startswith("health: disconnected") for s in self.seen)

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if msg.startswith("health: "):
            self.seen.append(msg)


async def _one_outage(kit: Kit, faults: Faults, mode: str, outage: float,
                      caps: dict[str, Capabilities]) -> None:
    bridge = kit.bridge
    assert bridge is not None
    t = kit.tag()
    mark = kit.mark(t)
    seen: list[Health] = []

    async def watch() -> None:
        while True:
            seen.append(bridge.accounts[NET].health)
            await asyncio.sleep(0.05)

    # A blip can be shorter than any sampling: every change of health is also logged.
    logger = bridge.accounts[NET].logger
    changes = _HealthChanges()
    level = logger.level
    logger.addHandler(changes)
    logger.setLevel(min(level or logging.INFO, logging.INFO))
    watcher = asyncio.create_task(watch())
    boxes = {LOBBY: kit.lobby, NET: kit.box}
    origin: dict[int, tuple[str, str]] = {}
    deleted: set[int] = set()
    parents: dict[int, int] = {6: 2, 7: 3}   # a member answers an earlier post of theirs
    # a member's delete while the adapter cannot read: seen after it is back, where the
    # platform's catch-up can see deletes at all
    features = kit.box.features
    quick_deletes = features.member_deletes and features.deletes_noticed_seconds <= 2 and \
        features.deletes_seen_after_downtime
    start = faults.injected()
    began = time.monotonic()
    try:
        for i in range(8):
            if i == 2:
                began = time.monotonic()
                await faults.inject(mode, time.time() + outage)
            side = (LOBBY, NET)[i % 2]
            answers = origin[parents[i]][1] if i in parents else None
            origin[i] = (side, await boxes[side].post_as_member(
                f"m{i % 3}", f"[{t}-{i}] during {mode}", reply_to=answers))
            if i == 4:   # deletes while the platform is away
                await kit.lobby.delete_as_member(origin[0][1])
                deleted.add(0)
                if quick_deletes:
                    await kit.box.delete_as_member(origin[1][1])
                    deleted.add(1)
            await asyncio.sleep(0.25)
        await asyncio.sleep(max(0.0, outage - (time.monotonic() - began)))
        injected = faults.injected() - start
        await faults.restore()
        await fleet.wait_complete(boxes, origin, deleted, 120, set(), caps, mark)
        await kit.settle()
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        logger.removeHandler(changes)
        logger.setLevel(level)
        await faults.restore()
    snapshot = {n: await b.messages() for n, b in boxes.items()}
    fleet.check(snapshot, origin, set(), deleted, None, set(), caps, mark)
    for child, parent in parents.items():
        other = LOBBY if origin[child][0] == NET else NET
        have = fleet.copies_by_mark(snapshot[other], mark)
        want = {m.native_id for m in have.get(parent) or ()}
        got = {m.reply_to for m in have.get(child) or () if not m.deleted}
        assert got <= want and got, \
            f"{other}: after {mode}, the reply #{child} answers {got}, not #{parent}'s copy {want}"
    assert Health.DISCONNECTED in seen or changes.disconnected, \
        f"{kit.platform}: the {mode} outage never showed in its health: {changes.seen}"
    if mode == "ratelimit":
        assert injected <= STORM_CALLS, \
            f"{kit.platform}: {injected} calls refused with 429 during the storm"
    await kit.connected(60)
