"""The inbound pipeline as declared steps (``bridge.inbound.steps``): each step
drops what it should with its reason, the order matters where it must, and the
declared list is what ``status``, ``/metrics`` and the admin page show.

Real relay, real store; events go in through ``Relay.ingest`` as an adapter's do.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from bridge.contract.model import (
    Author,
    ChannelKey,
    Deleted,
    Edited,
    InboundEvent,
    NativeId,
    Posted,
    Reacted,
    Rejected,
    RejectKind,
    utcnow,
)
from bridge.contract.textconv import from_plain, to_plain
from bridge.daemon.harness import ChannelDef, build_config, running, sandbox_channels
from bridge.inbound import steps as declared_steps
from bridge.inbound.pipeline import DETAILED, Drop, DropReason, Step, check_declared, reason_of
from bridge.inbound.relay import IngestResult, Relay
from bridge.inbound.steps import PIPELINES, POSTED, declared, described
from bridge.runtime.config import parse
from bridge.runtime.metrics import Metrics
from bridge.runtime.registry import load_factories
from bridge.store import Store, Tx
from bridge.store.sqlite import SqliteStore

LOBBY = ChannelKey("kmers/sb_lobby")
GARDEN = ChannelKey("kmers/sb_garden")
PORCH = ChannelKey("kmers/sb_porch")
R = DropReason


def chans(tmp: Path) -> list[ChannelDef]:
    net = str(tmp / "networks")
    return [*sandbox_channels(tmp, ["lobby", "garden"]),
            ChannelDef("sb_porch", "sandbox", {"dir": net, "display_name": "Porch"},
                       {"network": "porch"}, {"direction": "out"})]


ALICE = Author(platform="sandbox", handle="alice", display_name="Alice")


def p(nid: str, text: str = "hello #kmers", channel: ChannelKey = LOBBY,
      author: Author = ALICE, **kw: Any) -> Posted:
    return Posted(channel=channel, native_id=NativeId(nid), author=author,
                  text=from_plain(text), **kw)


def edit(nid: str, text: str = "hello again #kmers", channel: ChannelKey = LOBBY) -> Edited:
    return Edited(channel=channel, native_id=NativeId(nid), text=from_plain(text))


def gone(nid: str, channel: ChannelKey = LOBBY) -> Deleted:
    return Deleted(channel=channel, native_id=NativeId(nid))


def like(nid: str, reactor: Author = ALICE, **kw: Any) -> Reacted:
    return Reacted(channel=LOBBY, native_id=NativeId(nid), reactor=reactor, **kw)


def our_copy_on_lobby(tx: Tx) -> None:
    """Lobby's ``c1`` is our copy of garden's ``g1`` (what the worker records)."""
    known = tx.native_lookup(GARDEN, "g1")
    assert known is not None
    tx.add_native(LOBBY, "c1", known[0], "copy")


@dataclass
class Case:
    id: str
    event: InboundEvent
    step: str
    reason: DropReason
    detail: str = ""
    """The legacy text (``hashbridge_posts_dropped_total``'s label), if not the reason's."""
    before: Sequence[InboundEvent] = ()
    prepare: Callable[[Tx], None] | None = None
    community: dict[str, Any] = field(default_factory=dict)
    blended: bool = False
    """In a config where pkmchat shares the lobby network with kmers, blended
    with it all the time (:func:`blended_relay`)."""


SHARED = ChannelKey("pkmchat/sb_lobby")


def our_copy_for_pkmchat(tx: Tx) -> None:
    """Lobby's ``c1`` is our copy of garden's ``g1``, made for kmers (the
    lobby network is one place: pkmchat reads the same messages)."""
    known = tx.native_lookup(GARDEN, "g1")
    assert known is not None
    tx.add_native(LOBBY, "c1", known[0], "copy")


DUP = [p("1", "same words #kmers"), p("g1", "Same  words", channel=GARDEN)]
BOT = Author(platform="sandbox", handle="b0t", is_bot=True)
BOB = Author(platform="sandbox", handle="bob", display_name="Bob")
CASES = [
    Case("unknown channel", p("1", channel=ChannelKey("kmers/nowhere")), "channel",
         R.UNKNOWN_CHANNEL),
    Case("unknown channel, an edit", edit("1", channel=ChannelKey("kmers/nowhere")),
         "channel", R.UNKNOWN_CHANNEL),
    Case("echo of our copy", p("c1", "Alice (Garden): hi"), "echo", R.ECHO,
         before=[p("g1", channel=GARDEN)], prepare=our_copy_on_lobby),
    Case("read again", p("1"), "echo", R.ALREADY_INGESTED, before=[p("1")]),
    Case("our copy read through another community's channel at its place",
         p("c1", "Alice (Garden): hi #pkmchat", channel=SHARED), "same-place", R.ECHO,
         before=[p("g1", channel=GARDEN)], prepare=our_copy_for_pkmchat, blended=True),
    Case("both hashtags, read at one place by blended communities",
         p("1", "hi #kmers #pkmchat", channel=SHARED), "same-place", R.SAME_POST,
         before=[p("1", "hi #kmers #pkmchat")], blended=True),
    Case("write-only channel", p("1", channel=PORCH), "direction", R.WRITE_ONLY),
    Case("unknown command", p("1", "!frob", command="!frob"), "consent-command",
         R.UNKNOWN_COMMAND, "unknown command '!frob'"),
    Case("!join twice", p("2", "!join", command="!join"), "consent-command",
         R.CONSENT_UNCHANGED, before=[p("1", "!join", command="!join")]),
    Case("!link from a bot", p("1", "!link mastodon:@a@b.example", author=BOT),
         "link-command", R.LINK_REFUSED),
    Case("!unlink over the rate", p("2", "!unlink"), "link-command", R.RATE,
         "author over 1 posts/minute", before=[p("1", "first")],
         community={"author_rate_per_minute": 1}),
    Case("!link", p("1", "!link mastodon:@alice@example.social"), "link-command",
         R.LINK_COMMAND),
    Case("!unlink", p("1", "!unlink"), "link-command", R.UNLINK_COMMAND),
    Case("not public", p("1", public=False), "visibility", R.NOT_PUBLIC),
    Case("profile opted out", p("1", author=Author(platform="sandbox", handle="olga",
                                                   opted_out=True)),
         "opt-out", R.PROFILE_OPTED_OUT),
    Case("#nobridge", p("1", "do not relay #nobridge"), "opt-out", R.OPT_OUT_TAG),
    Case("#nobot", p("1", "nor this #nobot"), "opt-out", R.OPT_OUT_TAG),
    Case("a bot", p("1", author=BOT), "bot", R.BOT),
    Case("reluctant profile", p("1", author=Author(platform="sandbox", handle="rue",
                                                   reluctant="profile says #nobot")),
         "consent", R.RELUCTANT, "author's profile: profile says #nobot (relayed after !join)"),
    Case("opt-in community", p("1"), "consent", R.NOT_OPTED_IN,
         community={"consent": "opt-in"}),
    Case("said !leave", p("2"), "consent", R.OPTED_OUT,
         before=[p("1", "!leave", command="!leave")]),
    Case("on the blocklist", p("1", author=Author(platform="sandbox", handle="mallory")),
         "moderation", R.BLOCKED, community={"blocklist": ["sandbox:mallory"]}),
    Case("blocked by an admin", p("1"), "moderation", R.BLOCKED,
         prepare=lambda tx: tx.block("sandbox", "alice", "spam")),
    # Over the rate a post is held (tests/core/test_held_posts.py); beyond ten
    # minutes of held posts it is refused.
    Case("over the rate and the held cap", p("12", "twelfth"), "rate", R.RATE,
         "author over 1 posts/minute with 10 posts held",
         before=[p(str(i), f"post {i}") for i in range(1, 12)],
         community={"author_rate_per_minute": 1}),
    Case("empty", p("1", ""), "empty", R.EMPTY),
    Case("posted by hand on two networks", DUP[1], "duplicate", R.DUPLICATE,
         before=DUP[:1]),
    Case("edit of an unknown post", edit("nope"), "edit-known", R.EDIT_UNKNOWN),
    Case("edit of our copy", edit("c1"), "edit-known", R.ECHO,
         before=[p("g1", channel=GARDEN)], prepare=our_copy_on_lobby),
    Case("edit of a duplicate", edit("g1", channel=GARDEN), "edit-origin",
         R.EDIT_OF_DUPLICATE, before=DUP),
    Case("edit of a deleted post", edit("1"), "edit-deleted", R.EDIT_OF_DELETED,
         before=[p("1"), gone("1")]),
    Case("edit without change", edit("1", "hello #kmers"), "edit-unchanged",
         R.EDIT_UNCHANGED, before=[p("1")]),
    Case("delete of an unknown post", gone("nope"), "delete-known", R.DELETE_UNKNOWN),
    Case("our copy deleted", gone("c1"), "delete-known", R.COPY_REMOVED,
         before=[p("g1", channel=GARDEN)], prepare=our_copy_on_lobby),
    Case("delete of a duplicate", gone("g1", channel=GARDEN), "delete-origin",
         R.DELETE_OF_DUPLICATE, before=DUP),
    Case("deleted twice", gone("1"), "delete-persist", R.ALREADY_DELETED,
         before=[p("1"), gone("1")]),
    Case("reaction to an unknown post", like("nope"), "reaction-known", R.REACTION_UNKNOWN),
    Case("reaction to a deleted post", like("1"), "reaction-known", R.REACTION_UNKNOWN,
         before=[p("1"), gone("1")]),
    Case("reaction of an opted-out profile",
         like("1", Author(platform="sandbox", handle="olga", opted_out=True)),
         "reaction-consent", R.PROFILE_OPTED_OUT, before=[p("1")]),
    Case("reaction of a reluctant profile",
         like("1", Author(platform="sandbox", handle="rue", reluctant="profile says #nobot")),
         "reaction-consent", R.RELUCTANT,
         "author's profile: profile says #nobot (relayed after !join)", before=[p("1")]),
    Case("reaction in an opt-in community", like("1"), "reaction-consent", R.NOT_OPTED_IN,
         before=[p("0", "!join", author=BOB, command="!join"), p("1", author=BOB)],
         community={"consent": "opt-in"}),
    Case("reaction after !leave", like("1"), "reaction-consent", R.OPTED_OUT,
         before=[p("1"), p("2", "!leave", command="!leave")]),
    Case("reaction of a blocked reactor", like("1"), "reaction-consent", R.BLOCKED,
         before=[p("1")], prepare=lambda tx: tx.block("sandbox", "alice", "spam")),
    Case("removal of an unknown reaction", like("", added=False, reaction_id="$gone"),
         "reaction-persist", R.REACTION_UNKNOWN),
    Case("unreadable", Rejected(channel=LOBBY, native_id=NativeId("9"), reason="unreadable: X"),
         "rejected", R.UNREADABLE),
    Case("too large", Rejected(channel=LOBBY, native_id=NativeId("9"), reason="too large: 9 MB",
                               kind=RejectKind.TOO_LARGE), "rejected", R.TOO_LARGE),
    Case("refused by the adapter", Rejected(channel=LOBBY, native_id=NativeId("9"),
                                            reason="not here", kind=RejectKind.POLICY),
         "rejected", R.POLICY),
    Case("unreadable read again", Rejected(channel=LOBBY, native_id=NativeId("9"),
                                           reason="unreadable: X"),
         "rejected", R.REJECTED_AGAIN, "unreadable",
         before=[Rejected(channel=LOBBY, native_id=NativeId("9"), reason="unreadable: X")]),
    Case("the relay's steps fail", Posted(channel=LOBBY, native_id=NativeId("1"), author=ALICE,
                                          text=None),  # type: ignore[arg-type]
         "rejected", R.RELAY_ERROR),
]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    st = await SqliteStore.open(str(tmp_path / "db.sqlite"))
    try:
        yield st
    finally:
        await st.close()


def blended_relay(tmp_path: Path, store: Store) -> Relay:
    """kmers (lobby, garden) and pkmchat (lobby, yard), blended every day all day."""
    net = str(tmp_path / "networks")
    accounts = {n: {"platform": "sandbox", "dir": net} for n in ("sb_lobby", "sb_garden",
                                                                  "sb_yard")}
    event = {"id": "mixer", "title": "mixer", "rrule": "FREQ=DAILY",
             "dtstart": datetime(2026, 1, 1), "duration_minutes": 1440, "announce": False,
             "guest": "pkmchat"}
    raw = {"bridge": {"data_dir": str(tmp_path / "data")}, "accounts": accounts,
           "communities": [
               {"name": "kmers", "hashtag": "kmers", "events": [event],
                "channels": [{"account": "sb_lobby", "network": "lobby"},
                             {"account": "sb_garden", "network": "garden"}]},
               {"name": "pkmchat", "hashtag": "pkmchat",
                "channels": [{"account": "sb_lobby", "network": "lobby"},
                             {"account": "sb_yard", "network": "yard"}]}]}
    return Relay(parse(raw, load_factories(), {}), store)


def relay_for(tmp_path: Path, store: Store, **community: Any) -> Relay:
    cfg = build_config(tmp_path, chans(tmp_path),
                       community_options={"author_rate_per_minute": 1000, **community})
    return Relay(cfg, store)


def now(ev: InboundEvent) -> InboundEvent:
    """*ev* as if it happened now: the cases are built at import, and a step that
    compares times (duplicate_window) must not see them age while the suite runs."""
    return dataclasses.replace(ev, created_at=utcnow()) if hasattr(ev, "created_at") else ev


async def ingest(relay: Relay, case: Case) -> IngestResult:
    for ev in case.before:
        await relay.ingest("sb_lobby", [now(ev)])
    if case.prepare is not None:
        await relay.store.run(case.prepare)
    return await relay.ingest("sb_lobby", [now(case.event)])


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_each_step_drops_what_it_should_with_its_reason(
        case: Case, tmp_path: Path, store: Store) -> None:
    relay = (blended_relay(tmp_path, store) if case.blended
             else relay_for(tmp_path, store, **case.community))
    policy_before = await store.run(lambda tx: tx.policy_refusal_counts())
    result = await ingest(relay, case)
    assert result.steps == Counter({(case.step, case.reason.value): 1})
    assert result.accepted == 0 and not result.changed
    text = case.detail or case.reason.value
    assert result.dropped == {text: 1}
    step = next(s for _, s in declared() if s.name == case.step)
    if step.rejection:
        assert not [k for k in result.counts if k[1] == "dropped"]
    else:
        assert result.counts == Counter({(case.event.channel, "dropped", text): 1})
    # the policy's refusals, and only those, are recorded with their text
    policy = await store.run(lambda tx: tx.policy_refusal_counts())
    added = Counter({(c, r): n for c, r, n, _ in policy}) \
        - Counter({(c, r): n for c, r, n, _ in policy_before})
    if step.recorded:
        assert added == Counter({(case.event.channel, text): 1})
        assert reason_of(text) is case.reason
    elif case.reason is not R.POLICY:
        assert added == Counter()


def test_every_declared_step_and_reason_has_a_case() -> None:
    declared_pairs = {(s.name, r) for _, s in declared() for r in s.reasons}
    assert {(c.step, c.reason) for c in CASES} == declared_pairs
    # and every reason belongs to some step
    assert {r for _, r in declared_pairs} == set(DropReason)


def test_step_names_are_unique_and_every_pipeline_starts_with_the_channel() -> None:
    names = [s.name for _, s in declared()]
    assert len(names) == len(set(names))
    for steps in PIPELINES.values():
        assert steps[0] is declared_steps.CHANNEL
    again = Step(name="echo", description="another", run=POSTED[1].run)
    check_declared([POSTED, [POSTED[1]]])  # the same step twice is fine
    with pytest.raises(ValueError, match="two inbound steps are named 'echo'"):
        check_declared([POSTED, [again]])


# ------------------------------------------------------------------ what they let through

async def test_a_post_that_passes_every_step_is_stored_cut_to_size(
        tmp_path: Path, store: Store) -> None:
    relay = relay_for(tmp_path, store, max_post_chars=100)
    result = await relay.ingest("sb_lobby", [p("1", "a long post that goes on " * 10 + "#kmers")])
    assert result.accepted == 1 and not result.steps and not result.dropped
    [(kind, post_id)] = result.changed
    post = await store.run(lambda tx: tx.get_post(post_id))
    assert kind == "posted" and post is not None
    assert to_plain(post.text) == ("a long post that goes on " * 4).rstrip() + " …"
    assert result.counts == Counter({(LOBBY, "accepted", ""): 1})


async def test_join_is_handled_not_dropped_and_an_edit_with_nobot_withdraws(
        tmp_path: Path, store: Store) -> None:
    relay = relay_for(tmp_path, store)
    joined = await relay.ingest("sb_lobby", [p("1", "!join", command="!join")])
    assert not joined.steps and not joined.dropped and joined.wake == {LOBBY}
    assert await store.run(lambda tx: tx.consent("sandbox", "alice")) == "in"
    await relay.ingest("sb_lobby", [p("2")])
    withdrawn = await relay.ingest("sb_lobby", [edit("2", "changed my mind #nobot")])
    assert not withdrawn.steps and withdrawn.accepted == 1
    assert [k for k, _ in withdrawn.changed] == ["deleted"]
    edited = await relay.ingest("sb_lobby", [p("3"), edit("3")])
    assert [k for k, _ in edited.changed] == ["posted", "edited"] and not edited.steps


# ------------------------------------------------------------------ the order

def _moved(steps: Sequence[Any], name: str, after: str) -> tuple[Any, ...]:
    """*steps* with the step *name* moved just after the step *after*."""
    rest = [s for s in steps if s.name != name]
    moving = next(s for s in steps if s.name == name)
    at = next(i for i, s in enumerate(rest) if s.name == after) + 1
    return (*rest[:at], moving, *rest[at:])


@dataclass
class OrderCase:
    id: str
    first: str
    then: str
    case: Case
    swapped: tuple[str, DropReason]
    """What the event meets with *first* moved after *then*."""


ORDER = [
    # Our own copy read back, with the very words of its post, is an echo: were
    # the duplicate step first, it would be linked as the member's hand-posted
    # duplicate (and its edits and deletes taken for the member's).
    OrderCase("echo before duplicate", "echo", "duplicate",
              Case("", p("c1", "same words", channel=GARDEN), "echo", R.ECHO,
                   before=[p("1", "same words #kmers")],
                   prepare=lambda tx: tx.add_native(
                       GARDEN, "c1", tx.native_lookup(LOBBY, "1")[0], "copy")),
              ("duplicate", R.DUPLICATE)),
    # !join is how a member opts in: the consent policy must not refuse it first.
    OrderCase("!join before consent", "consent-command", "consent",
              Case("", p("1", "!join", command="!join"), "", R.ECHO,
                   community={"consent": "opt-in"}),
              ("consent", R.NOT_OPTED_IN)),
    # A refused post costs the author nothing of the rate (nor of the held cap).
    OrderCase("refusals before the rate", "visibility", "rate",
              Case("", p("12"), "", R.ECHO,
                   before=[p(str(i), f"post {i}", public=False) for i in range(1, 12)],
                   community={"author_rate_per_minute": 1}),
              ("rate", R.RATE)),
]


@pytest.mark.parametrize("oc", ORDER, ids=[o.id for o in ORDER])
async def test_the_order_matters_where_it_must(oc: OrderCase, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    names = [s.name for s in POSTED]
    assert names.index(oc.first) < names.index(oc.then)
    got: list[Counter[tuple[str, str]]] = []
    for i, steps in enumerate((POSTED, _moved(POSTED, oc.first, after=oc.then))):
        monkeypatch.setitem(PIPELINES, Posted, steps)
        st = await SqliteStore.open(str(tmp_path / f"db{i}.sqlite"))
        try:
            got.append((await ingest(relay_for(tmp_path, st, **oc.case.community),
                                     oc.case)).steps)
        finally:
            await st.close()
    declared_order, swapped = got
    expected = Counter({(oc.case.step, oc.case.reason.value): 1}) if oc.case.step else Counter()
    assert declared_order == expected
    assert swapped == Counter({(oc.swapped[0], oc.swapped[1].value): 1})


# ------------------------------------------------------------------ where it shows

def test_detailed_reasons_are_read_back_from_their_text() -> None:
    assert reason_of("author over 30 posts/minute") is R.RATE
    assert reason_of("author's profile: not discoverable (relayed after !join)") is R.RELUCTANT
    assert reason_of("unknown command '!x'") is R.UNKNOWN_COMMAND
    assert reason_of("not public") is R.NOT_PUBLIC
    assert reason_of("something an older version wrote") is None
    assert set(DETAILED) == {R.RATE, R.RELUCTANT, R.UNKNOWN_COMMAND}
    assert Drop(R.RATE, "author over 2 posts/minute").text == "author over 2 posts/minute"
    assert Drop(R.ECHO).text == "echo"
    # every kind an adapter's Rejected may carry is a reason
    assert {k.value for k in RejectKind} <= {r.value for r in DropReason}


def test_metrics_export_every_declared_step_with_its_description_from_zero() -> None:
    m = Metrics(inbound_steps=described())
    m.ingested_page({(LOBBY, "dropped", "echo"): 2}, {("echo", "echo"): 2})
    text = m.prometheus()
    for i, (kind, step) in enumerate(declared(), 1):
        desc = step.description.replace('"', '\\"')
        assert (f'hashbridge_inbound_step_info{{event="{kind}",step="{step.name}",'
                f'position="{i}",description="{desc}"}} 1') in text
        for r in step.reasons:
            n = 2 if (step.name, r) == ("echo", R.ECHO) else 0
            assert f'hashbridge_inbound_dropped_total{{step="{step.name}",reason="{r}"}} {n}' \
                in text
    assert f'hashbridge_posts_dropped_total{{channel="{LOBBY}",reason="echo"}} 2' in text


STATUS_TOML = """
[bridge]
data_dir = "{data}"

[accounts.sb_lobby]
platform = "sandbox"
dir = "{net}"

[accounts.sb_garden]
platform = "sandbox"
dir = "{net}"

[[communities]]
name = "kmers"
hashtag = "kmers"
author_rate_per_minute = 1

[[communities.channels]]
account = "sb_lobby"
network = "lobby"

[[communities.channels]]
account = "sb_garden"
network = "garden"
"""


async def test_status_metrics_and_bridge_count_drops_by_step_and_reason(
        tmp_path: Path) -> None:
    toml = tmp_path / "bridge.toml"
    toml.write_text(STATUS_TOML.format(data=tmp_path / "data", net=tmp_path / "networks"))
    cfg = build_config(tmp_path, sandbox_channels(tmp_path, ["lobby", "garden"]),
                       community_options={"author_rate_per_minute": 1})
    async with running(cfg) as bridge:
        assert bridge.metrics.inbound_steps == described()
        await bridge.ingest("sb_lobby", [
            p("1", public=False), p("2", "first"),
            # over the rate: ten held, the eleventh refused (the cap)
            *(p(str(i), f"post {i}") for i in range(3, 14)), p("2", "first"),
            Rejected(channel=LOBBY, native_id=NativeId("9"), reason="unreadable: E: f"),
            Rejected(channel=LOBBY, native_id=NativeId("9"), reason="unreadable: E: f"),
            Rejected(channel=LOBBY, native_id=NativeId("8"), reason="adapter says no",
                     kind=RejectKind.POLICY)], None)
        text = bridge.metrics.prometheus()
    for step, reason, n in [("visibility", "not public", 1), ("rate", R.RATE.value, 1),
                            ("echo", "already ingested", 1), ("rejected", "unreadable", 1),
                            ("rejected", R.REJECTED_AGAIN.value, 1), ("rejected", "policy", 1),
                            ("bot", "author is a bot", 0)]:
        assert f'hashbridge_inbound_dropped_total{{step="{step}",reason="{reason}"}} {n}' \
            in text
    # the legacy counters keep their names and labels
    for reason in ("not public", "author over 1 posts/minute with 10 posts held",
                   "already ingested"):
        assert f'hashbridge_posts_dropped_total{{channel="{LOBBY}",reason="{reason}"}} 1' \
            in text
    assert f'hashbridge_inbound_rejected_total{{channel="{LOBBY}",reason="unreadable"}} 1' \
        in text

    cli = [sys.executable, "-m", "bridge.cli", "status", "-c", str(toml)]
    got = json.loads(await asyncio.to_thread(_run, [*cli, "--json"]))["pipeline"]
    assert got["steps"] == [
        {"event": st.event, "step": st.name, "description": st.description,
         "reasons": list(st.reasons), "kept": list(st.kept)} for st in described()]
    kept = {s["step"]: s["kept"] for s in got["steps"]}
    assert kept["echo"] == [] and kept["rate"] == [R.RATE.value]
    assert kept["rejected"] == ["unreadable", "too large", "relay error", "policy"]
    assert {(r["channel"], r["step"], r["reason"], r["count"]) for r in got["recorded"]} == {
        (LOBBY, "visibility", "not public", 1), (LOBBY, "rate", R.RATE.value, 1),
        (LOBBY, "rejected", "unreadable", 1), (LOBBY, "rejected", "policy", 1)}
    out = await asyncio.to_thread(_run, cli)
    for _, step in declared():
        assert step.description in out
    assert "not public: 1" in out and f"{R.RATE.value}: 1" in out and "unreadable: 1" in out
    assert R.REJECTED_AGAIN.value not in out  # counted in memory only


def _run(cmd: list[str]) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


async def test_a_post_read_again_with_its_edit_updates_a_known_post_or_is_new(
        tmp_path: Path, store: Store) -> None:
    """What X's reader emits for an edited post it does not know it emitted (its list
    was lost to a stop on a full disk): the post under its first id, then its edit.
    Known to the core: the post is a re-read and the edit applies; unknown: the post
    is new and the edit, unchanged, is dropped."""
    relay = relay_for(tmp_path, store)
    await relay.ingest("sb_lobby", [now(p("1", "first words #kmers"))])
    known = await relay.ingest("sb_lobby", [now(p("1", "new words #kmers")),
                                            edit("1", "new words #kmers")])
    assert known.steps == Counter({("echo", R.ALREADY_INGESTED.value): 1})
    assert [k for k, _ in known.changed] == ["edited"]
    fresh = await relay.ingest("sb_lobby", [now(p("2", "new words #kmers")),
                                            edit("2", "new words #kmers")])
    assert fresh.steps == Counter({("edit-unchanged", R.EDIT_UNCHANGED.value): 1})
    assert [k for k, _ in fresh.changed] == ["posted"]
