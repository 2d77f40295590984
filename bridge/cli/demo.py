"""``hashbridge demo``: the real relay on a local sandbox of every platform.

Every installed adapter that offers a sandbox takes part (X and Mastodon
through their emulators, Matrix through a real Synapse installed on first use,
email through a real IMAP server: Dovecot, or pymap when Dovecot is absent, and
an aiosmtpd list; a new adapter's sandbox joins by itself).  A short scripted
conversation (a question, replies across networks, an edit and a delete) is
played and what each network shows afterwards is printed, with what the edit
and the delete did there.

Every sandbox started is stopped on every way out: the end, Ctrl-C, another
sandbox failing to start, an exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bridge.contract.model import ChannelKey
from bridge.contract.sandbox import PlatformSandbox, SandboxMessage
from bridge.contract.services import Services
from bridge.daemon.harness import ChannelDef, build_config, quiescent, running
from bridge.runtime.registry import Registry, load_factories

log = logging.getLogger("hashbridge.demo")

SCRIPT_QUESTION = "Q1: What got you into k-mer counting? Answers with A1 please #kmers"
CAROL = "A1: metagenomics, sketching with minhash"
CAROL_EDITED = "A1: metagenomics, sketching with MinHash (edited)"
DAVE = "oops, wrong channel"
ORDER = ("twitter", "mastodon", "matrix", "email")
"""How the known networks are listed; others (a new adapter) follow by name."""


def _out(text: str = "") -> None:
    print(text, flush=True)


@dataclass
class Network:
    name: str
    """The account name in the demo's config (the platform's name)."""
    platform: str
    title: str
    """The platform's display name (X, Mastodon...)."""
    box: PlatformSandbox
    kind: str
    started: bool = False


@dataclass
class Lineup:
    """The sandboxes in play, and the ones that could not take part (with why)."""

    networks: list[Network] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)
    attempted: list[PlatformSandbox] = field(default_factory=list)
    """Every sandbox whose start() was called: each is stopped at the end, even
    one that failed half way (its server may be up)."""


def _kind(box: PlatformSandbox) -> str:
    return str(getattr(box, "kind", "") or "sandbox")


def _ordered(registry: Registry) -> list[str]:
    names = [p for p in registry.factories if p != "sandbox"]
    return sorted(names, key=lambda p: (ORDER.index(p) if p in ORDER else len(ORDER), p))


async def _start_sandboxes(workdir: str, lineup: Lineup, *, skip: Sequence[str] = (),
                           install: bool = True) -> None:
    """Start every platform's sandbox into *lineup* (registered before it starts,
    so that a Ctrl-C in the middle still stops it)."""
    registry = load_factories()
    for name in sorted(set(skip) - set(registry.factories) - set(registry.broken)):
        _out(f"  --skip {name}: no such platform (the platforms: "
             f"{', '.join(_ordered(registry))})")
    for platform, why in sorted(registry.broken.items()):
        lineup.missing.append((platform, f"its package failed to load: {why} (pip install "
                                         f"'hashbridge[{platform}]')"))
    for platform in _ordered(registry):
        factory = registry.factories[platform]
        title = str(getattr(factory, "display_name", platform))
        if platform in skip:
            lineup.missing.append((platform, "skipped (--skip)"))
            continue
        box: PlatformSandbox | None
        provision = getattr(factory, "provision_sandbox", None)
        try:
            box = factory.sandbox(os.path.join(workdir, platform))
            if box is None and install and provision is not None:
                def progress(line: str, _title: str = title) -> None:
                    _out(f"  {_title}: {line}")
                await asyncio.to_thread(provision, progress)
                box = factory.sandbox(os.path.join(workdir, platform))
        except Exception as e:  # a broken sandbox must not stop the demo
            why = f"{type(e).__name__}: {e}"
            _out(f"  {title}: cannot start: {why}")
            lineup.missing.append((platform, why))
            continue
        if box is None:
            missing = getattr(factory, "sandbox_missing", None)
            why = str(missing()) if missing is not None else "this adapter offers no sandbox"
            if not install and provision is not None:
                why += "; run without --no-install to install it"
            _out(f"  {title}: cannot start: {why}")
            lineup.missing.append((platform, why))
            continue
        net = Network(platform, platform, title, box, _kind(box))
        lineup.attempted.append(box)
        t0 = time.monotonic()
        _out(f"  {title}: starting {net.kind} ...")
        try:
            await box.start()
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            _out(f"  {title}: cannot start: {first}")
            lineup.missing.append((platform, first))
            continue
        net.started = True
        lineup.networks.append(net)
        _out(f"  {title}: ready in {time.monotonic() - t0:.1f}s")


async def _add_fallback(workdir: str, lineup: Lineup) -> None:
    """Fewer than two platforms could start: made-up sandbox networks fill in,
    so the relay still shows itself (said on screen)."""
    factory = load_factories().factories["sandbox"]
    for name in ("lobby", "garden"):
        if len(lineup.networks) >= 2:
            return
        box: Any = factory.sandbox(os.path.join(workdir, "networks"))
        box.network = name
        lineup.attempted.append(box)
        await box.start()
        _out(f"  (filling in with a made-up sandbox network {name!r})")
        lineup.networks.append(Network(f"sb_{name}", "sandbox", name.title(), box,
                                       _kind(box), True))


async def _stop_all(boxes: Sequence[PlatformSandbox]) -> None:
    """Stop every sandbox, even while being cancelled again (a second Ctrl-C)."""

    async def one(box: PlatformSandbox) -> None:
        try:
            await box.stop()
        except Exception as e:
            log.warning("stopping the %s sandbox: %s", box.platform, e)

    stopping = asyncio.ensure_future(asyncio.gather(*(one(b) for b in reversed(boxes))))
    cancelled = False
    while not stopping.done():
        try:
            await asyncio.shield(stopping)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError


async def run_demo(duration: float | None = None, port: int = 8080,
                   workdir: str | None = None, *, skip: Sequence[str] = (),
                   install: bool = True) -> int:
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="hashbridge-demo-")
        workdir = tmp.name
    _out("hashbridge demo: starting a local sandbox of every platform ...")
    lineup = Lineup()
    try:
        await _start_sandboxes(workdir, lineup, skip=skip, install=install)
        if len(lineup.networks) < 2:
            await _add_fallback(workdir, lineup)
        return await _run(lineup, workdir, duration, port)
    finally:
        await _stop_all(lineup.attempted)
        if tmp is not None:
            tmp.cleanup()


async def _run(lineup: Lineup, workdir: str, duration: float | None, port: int) -> int:
    channels = []
    for net in lineup.networks:
        table = dict(net.box.account_config())
        if net.platform == "sandbox":
            table["display_name"] = net.title
        channels.append(ChannelDef(net.name, net.platform, table, net.box.channel_config()))
    web: dict[str, Any] = {"listen": f"127.0.0.1:{port}"}
    # A chat event running now, so the scripted Q1/A1 exchange gets a transcript
    # page (and the start announcement shows on every network).
    began = datetime.now(UTC).replace(second=0, microsecond=0)
    event = {"id": "demo", "title": "#kmers demo chat", "rrule": "FREQ=DAILY",
             "dtstart": began.replace(tzinfo=None).isoformat(), "timezone": "UTC",
             "duration_minutes": 60, "hosts": ["alice"]}
    cfg = build_config(workdir, channels, bridge_options={"web": web},
                       community_options={"author_rate_per_minute": 1000,
                                          "events": [event]})
    started = time.monotonic()
    services = Services()
    extra: list[Callable[..., Any]] = []
    with contextlib.suppress(ImportError):
        from bridge.web import serve_web  # type: ignore[import-not-found,unused-ignore]
        extra.append(serve_web)
    async with running(cfg, services=services, timeout=120) as bridge:
        web_tasks = [asyncio.create_task(fn(bridge)) for fn in extra]
        try:
            deadline = time.monotonic() + 10  # the web view binds (or finds a free port)
            while (web_tasks and not bridge.services.web_url  # noqa: ASYNC110
                   and not web_tasks[0].done() and time.monotonic() < deadline):
                await asyncio.sleep(0.05)
            url = bridge.services.web_url
            _out(f"\nrelay running with {len(lineup.networks)} networks:")
            for net in lineup.networks:
                _out(f"  {net.title:<10} {net.kind}")
            for platform, why in lineup.missing:
                _out(f"  {platform:<10} NOT IN THE DEMO: {why}")
            if url:
                _out(f"live web view: {url}/c/kmers  (the conversation appears there as it "
                     "happens)")
                _out(f"chat transcript: {url}/c/kmers/events/demo/{began:%Y%m%dT%H%M%SZ}")
            summary, ok = await _play(bridge, lineup)
            _out(summary)
            if duration is None:
                _out("\nthe relay keeps running: post into the sandboxes or watch the web "
                     "view; Ctrl-C stops it")
                await asyncio.Event().wait()
            else:
                left = duration - (time.monotonic() - started)
                if left > 0:
                    await asyncio.sleep(left)
        finally:
            for t in web_tasks:
                t.cancel()
            await asyncio.gather(*web_tasks, return_exceptions=True)
    return 0 if ok else 1


MEMBERS = ["bob", "erin", "frank", "grace", "heidi", "ivan", "judy"]
ANSWERS = ["A1: a genome assembly that would not fit in RAM",
           "A1: counting spaced seeds for a read mapper",
           "A1: a class on de Bruijn graphs",
           "A1: hunting contamination in sequencing runs",
           "A1: curiosity about Bloom filters",
           "A1: a minimizer index for long reads",
           "A1: comparing soil samples"]


async def _find_copy(box: PlatformSandbox, needle: str, timeout: float = 60.0) -> str | None:
    """The copy of the post with *needle* on *box*, or None (said on screen) when it
    has not arrived in *timeout* seconds: the member then posts at the top level and
    the summary counts the copy as lost, instead of the script stopping."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in await box.messages():
            if m.by_bridge and needle in m.text and not m.deleted:
                return m.native_id
        await asyncio.sleep(0.1)
    _out(f"  (the copy of {needle!r}… has not arrived on {box.platform} after "
         f"{timeout:.0f}s: answering at the top level; run with --log-level info to see why)")
    return None


def _can(bridge: Any, net: Network, what: str) -> bool:
    """Whether the network's adapter edits/deletes (its members can, then, too)."""
    rt = bridge.accounts.get(net.name)
    if rt is None or rt.adapter is None:
        return False
    return bool(getattr(rt.adapter.capabilities(ChannelKey(f"kmers/{net.name}")), what))


async def _play(bridge: Any, lineup: Lineup) -> tuple[str, bool]:
    nets = lineup.networks
    lobby = nets[0]
    others = nets[1:]
    editor = next((n for n in reversed(nets) if _can(bridge, n, "edit")), None)
    deleter = next((n for n in reversed(nets) if _can(bridge, n, "delete")), None)
    _out(f"\nscript: alice asks on {lobby.title}; "
         + "".join(f"{m} answers from {n.title}; "
                   for m, n in zip(MEMBERS, others, strict=False))
         + (f"carol answers from {editor.title} and edits; " if editor else "")
         + (f"dave posts on {deleter.title} and deletes" if deleter else ""))
    await lobby.box.post_as_member("alice", SCRIPT_QUESTION)
    for member, answer, net in zip(MEMBERS, ANSWERS, others, strict=False):
        parent = await _find_copy(net.box, "What got you into")
        await net.box.post_as_member(member, answer, reply_to=parent)
    c = None
    if editor is not None:
        above = (await _find_copy(editor.box, "What got you into")
                 if editor is not lobby else None)
        c = await editor.box.post_as_member("carol", CAROL, reply_to=above)
    await quiescent(bridge, timeout=60)
    if editor is not None and c is not None:
        await editor.box.edit_as_member(c, CAROL_EDITED)
    d = None
    if deleter is not None:
        d = await deleter.box.post_as_member("dave", DAVE)
        await quiescent(bridge, timeout=60)
        await _arrived(lineup, {"dave": (DAVE, deleter)})  # copies to delete
        await deleter.box.delete_as_member(d)
    await quiescent(bridge, timeout=60)
    texts = _expected(lineup, editor)
    await _arrived(lineup, texts)
    await _followed(bridge, lineup, editor, deleter)
    return await _report(bridge, lineup, texts, editor, deleter)


async def _followed(bridge: Any, lineup: Lineup, editor: Network | None,
                    deleter: Network | None, timeout: float = 30.0) -> None:
    """Wait (bounded) until the edit and the delete reached every network that can
    follow them: a network read by polling or a stream (the firehose) tells the
    bridge of a delete a moment after the member made it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = False
        for net in lineup.networks:
            msgs = await net.box.messages()
            if editor is not None and _edit_effect(bridge, net, msgs, editor).endswith(
                    "(yet)"):
                pending = True
            if deleter is not None and _delete_effect(bridge, net, msgs, deleter).endswith(
                    "(yet)"):
                pending = True
        if not pending:
            return
        await asyncio.sleep(0.2)


def _expected(lineup: Lineup, editor: Network | None) -> dict[str, tuple[str, Network]]:
    """Each author's post: a piece of its text and the network it was posted on."""
    nets = lineup.networks
    texts = {"alice": ("What got you into", nets[0])}
    for member, answer, net in zip(MEMBERS, ANSWERS, nets[1:], strict=False):
        texts[member] = (answer.removeprefix("A1: "), net)
    if editor is not None:
        texts["carol"] = ("sketching with", editor)
    return texts


async def _arrived(lineup: Lineup, texts: dict[str, tuple[str, Network]],
                   timeout: float = 30.0) -> None:
    """Wait (bounded) until every post has its copy everywhere: a network that polls
    (or an IMAP server that reports new mail every second or two) may be behind the
    outbox by a moment."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        complete = True
        for net in lineup.networks:
            msgs = await net.box.messages()
            for needle, origin in texts.values():
                if net is not origin and not any(m.by_bridge and needle in m.text
                                                 and not m.deleted for m in msgs):
                    complete = False
        if complete:
            return
        await asyncio.sleep(0.2)


def _edit_effect(bridge: Any, net: Network, msgs: list[SandboxMessage],
                 editor: Network) -> str:
    if net is editor:
        return "edited by carol here"
    if not _can(bridge, net, "edit"):
        return f"{net.title} cannot edit: kept the first text"
    copies = [m for m in msgs if m.by_bridge and "sketching with" in m.text and not m.deleted]
    if any("(edited)" in m.text for m in copies):
        if any("(edited)" not in m.text for m in copies):
            return "the edit was sent as a new message (the first stays)"
        return "the copy was edited in place"
    return "not edited (yet)"


def _delete_effect(bridge: Any, net: Network, msgs: list[SandboxMessage],
                   deleter: Network) -> str:
    if net is deleter:
        return "deleted by dave here"
    if not _can(bridge, net, "delete"):
        return f"{net.title} cannot delete: the copy stays"
    copies = [m for m in msgs if m.by_bridge and DAVE in m.text]
    if not copies or all(m.deleted for m in copies):
        return "the copy was deleted"
    return "not deleted (yet)"


async def _report(bridge: Any, lineup: Lineup, texts: dict[str, tuple[str, Network]],
                  editor: Network | None, deleter: Network | None) -> tuple[str, bool]:
    nets = lineup.networks
    lost = dup = copies = 0
    effects: list[str] = []
    _out("")
    for net in nets:
        msgs: list[SandboxMessage] = await net.box.messages()
        _out(f"── {net.title} ({net.kind}) ──")
        for m in msgs:
            flags = (" [edited]" if m.edited else "") + (" [deleted]" if m.deleted else "")
            who = "relayed" if m.by_bridge else m.author
            reply = " ↪" if m.reply_to else ""
            _out(f"  {who[:12]:<12}{reply} {' '.join(m.text.split())[:100]}{flags}")
        for _author, (needle, origin) in texts.items():
            if net is origin:
                continue
            relayed = [m for m in msgs if m.by_bridge and needle in m.text and not m.deleted]
            if not relayed:
                lost += 1
            elif len(relayed) > 1 and _author != "carol":
                dup += len(relayed) - 1
            copies += min(len(relayed), 1)
        parts = []
        if editor is not None:
            parts.append("edit: " + _edit_effect(bridge, net, msgs, editor))
        if deleter is not None:
            parts.append("delete: " + _delete_effect(bridge, net, msgs, deleter))
        if parts:
            effects.append(f"  {net.title:<10} " + "; ".join(parts))
    if effects:
        _out("\nwhat the edit and the delete did on each network:")
        for line in effects:
            _out(line)
    behind = any("(yet)" in line for line in effects)
    followed = (f"; 1 edit ({editor.title}) and 1 delete ({deleter.title}) "
                + ("not yet followed everywhere" if behind else "followed")
                if editor and deleter else "")
    summary = (f"\ndemo: {len(texts)} posts relayed across {len(nets)} networks ("
               + ", ".join(f"{n.title}: {n.kind}" for n in nets)
               + f"): {copies} copies, {lost} lost, {dup} duplicated{followed}")
    for platform, why in lineup.missing:
        summary += f"\n  {platform} not in the demo: {why}"
    return summary, lost == 0 and dup == 0


if __name__ == "__main__":
    sys.exit(asyncio.run(run_demo(5)))
