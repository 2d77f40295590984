"""``hashbridge demo``: the real relay on a local sandbox of every platform.

Each installed adapter offers a sandbox (an emulator, or a local server when
one is installed); two plain sandbox networks are always there.  A short
scripted conversation (a question, replies across networks, an edit and a
delete) is played and the mirrored result printed per network.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bridge.contract.sandbox import PlatformSandbox, SandboxMessage
from bridge.contract.services import Services
from bridge.daemon.harness import ChannelDef, build_config, quiescent, running
from bridge.runtime.registry import load_factories

log = logging.getLogger("hashbridge.demo")

SCRIPT_QUESTION = "Q1: What got you into k-mer counting? Answers with A1 please #kmers"


def _out(text: str = "") -> None:
    print(text, flush=True)


async def _start_sandboxes(workdir: str) -> list[tuple[str, PlatformSandbox]]:
    registry = load_factories()
    boxes: list[tuple[str, PlatformSandbox]] = []
    sandbox_factory = registry.factories["sandbox"]
    for name in ("lobby", "garden"):
        box: Any = sandbox_factory.sandbox(os.path.join(workdir, "networks"))
        box.network = name
        boxes.append((f"sb_{name}", box))
    for platform, factory in sorted(registry.factories.items()):
        if platform == "sandbox":
            continue
        try:
            box = factory.sandbox(os.path.join(workdir, platform))
        except Exception as e:  # a broken sandbox must not stop the demo
            log.warning("%s sandbox unavailable: %s", platform, e)
            continue
        if box is None:
            _out(f"  ({platform}: no local sandbox here; skipped)")
            continue
        boxes.append((platform, box))
    started = []
    for name, box in boxes:
        try:
            await box.start()
        except Exception as e:
            _out(f"  ({name}: sandbox failed to start: {e}; skipped)")
            continue
        started.append((name, box))
    return started


async def _find_copy(box: PlatformSandbox, needle: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in await box.messages():
            if m.by_bridge and needle in m.text and not m.deleted:
                return m.native_id
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{needle!r} never arrived on {box.platform}")


async def run_demo(duration: float | None = None, port: int = 8080,
                   workdir: str | None = None) -> int:
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="hashbridge-demo-")
        workdir = tmp.name
    _out("hashbridge demo: starting local sandboxes ...")
    boxes = await _start_sandboxes(workdir)
    try:
        return await _run(boxes, workdir, duration, port)
    finally:
        for _, box in boxes:
            with contextlib.suppress(Exception):
                await box.stop()
        if tmp is not None:
            tmp.cleanup()


async def _run(boxes: list[tuple[str, PlatformSandbox]], workdir: str,
               duration: float | None, port: int) -> int:
    channels = []
    for name, box in boxes:
        table = dict(box.account_config())
        if box.platform == "sandbox":
            table["display_name"] = name.removeprefix("sb_").title()
        channels.append(ChannelDef(name, box.platform, table, box.channel_config()))
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
    async with running(cfg, services=services) as bridge:
        web_tasks = [asyncio.create_task(fn(bridge)) for fn in extra]
        deadline = time.monotonic() + 10  # the web view binds (or finds a free port)
        while (web_tasks and not bridge.services.web_url  # noqa: ASYNC110 - set by serve_web
               and not web_tasks[0].done() and time.monotonic() < deadline):
            await asyncio.sleep(0.05)
        url = bridge.services.web_url
        _out(f"relay running with {len(boxes)} networks: "
             + ", ".join(f"{n} ({b.platform})" for n, b in boxes))
        if url:
            _out(f"live web view: {url}/c/kmers  (the conversation appears there as it "
                 "happens)")
            _out(f"chat transcript: {url}/c/kmers/events/demo/{began:%Y%m%dT%H%M%SZ}")
        summary = await _play(bridge, boxes)
        _out(summary)
        if duration is None:
            _out("\nthe relay keeps running: post into the sandboxes or watch the web view;"
                 " Ctrl-C stops it")
            await asyncio.Event().wait()
        else:
            left = duration - (time.monotonic() - started)
            if left > 0:
                await asyncio.sleep(left)
        for t in web_tasks:
            t.cancel()
    ok = "0 lost" in summary and "0 duplicated" in summary
    return 0 if ok else 1


MEMBERS = ["bob", "erin", "frank", "grace", "heidi"]
ANSWERS = ["A1: a genome assembly that would not fit in RAM",
           "A1: counting spaced seeds for a read mapper",
           "A1: a class on de Bruijn graphs",
           "A1: hunting contamination in sequencing runs",
           "A1: curiosity about Bloom filters"]


async def _play(bridge: Any, boxes: list[tuple[str, PlatformSandbox]]) -> str:
    (lobby_name, lobby), (garden_name, garden) = boxes[0], boxes[1]
    others = boxes[2:]
    _out(f"\nscript: alice asks on {lobby_name}; "
         + "".join(f"{m} answers from {n}; " for m, (n, _) in zip(MEMBERS, others, strict=False))
         + f"carol answers from {garden_name} and edits; dave posts on {lobby_name} and deletes")
    await lobby.post_as_member("alice", SCRIPT_QUESTION)
    for member, answer, (_, box) in zip(MEMBERS, ANSWERS, others, strict=False):
        parent = await _find_copy(box, "What got you into")
        await box.post_as_member(member, answer, reply_to=parent)
    parent = await _find_copy(garden, "What got you into")
    c = await garden.post_as_member("carol", "A1: metagenomics, sketching with minhash",
                                    reply_to=parent)
    await quiescent(bridge, timeout=30)
    await garden.edit_as_member(c, "A1: metagenomics, sketching with MinHash (edited)")
    d = await lobby.post_as_member("dave", "oops, wrong channel")
    await quiescent(bridge, timeout=30)
    await lobby.delete_as_member(d)
    await quiescent(bridge, timeout=30)
    return await _report(boxes)


async def _report(boxes: list[tuple[str, PlatformSandbox]]) -> str:
    texts = {"alice": "What got you into", "carol": "sketching with",
             "dave": "wrong channel"}
    for member, answer, _ in zip(MEMBERS, ANSWERS, boxes[2:], strict=False):
        texts[member] = answer.removeprefix("A1: ")
    lost = dup = 0
    copies = 0
    _out("")
    for name, box in boxes:
        msgs: list[SandboxMessage] = await box.messages()
        _out(f"── {name} ({box.platform}) ──")
        for m in msgs:
            flags = (" [edited]" if m.edited else "") + (" [deleted]" if m.deleted else "")
            who = "relayed" if m.by_bridge else m.author
            reply = f" ↪{m.reply_to}" if m.reply_to else ""
            _out(f"  {m.native_id:>4} {who:<8}{reply} {m.text[:110]}{flags}")
        for author, needle in texts.items():
            own = any(not m.by_bridge and needle in m.text for m in msgs)
            relayed = [m for m in msgs if m.by_bridge and needle in m.text and not m.deleted]
            if author == "dave":
                continue  # deleted at its origin: its copies are gone
            if own:
                continue
            if not relayed:
                lost += 1
            elif len(relayed) > 1:
                dup += len(relayed) - 1
            copies += len(relayed)
    return (f"\ndemo: {len(texts) - 1} posts relayed across {len(boxes)} networks: "
            f"{copies} copies, {lost} lost, {dup} duplicated; 1 edit and 1 delete followed")


if __name__ == "__main__":
    sys.exit(asyncio.run(run_demo(5)))
