"""Exports through the real CLI (``hashbridge export``) on a store filled by the
real relay: jsonl, mbox (opened with ``mailbox``), markdown and the static site."""

from __future__ import annotations

import io
import json
import mailbox
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from webhelp import NETWORKS, live_bridge

from bridge.web.export import ProgressBar

ROOT = Path(__file__).resolve().parents[2]


def _toml(workdir: Path, event: dict[str, Any]) -> str:
    lines = ["[bridge]", f'data_dir = "{workdir / "data"}"', ""]
    for n in NETWORKS:
        lines += [f"[accounts.sb_{n}]", 'platform = "sandbox"',
                  f'dir = "{workdir / "networks"}"', f'display_name = "{n.title()}"', ""]
    lines += ["[[communities]]", 'name = "kmers"', 'hashtag = "kmers"', "",
              "[[communities.events]]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in event.items()]
    for n in NETWORKS:
        lines += ["", "[[communities.channels]]", f'account = "sb_{n}"', f'network = "{n}"']
    return "\n".join(lines) + "\n"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """A store with a three-network thread, an edit, a delete and a chat event."""
    import asyncio

    workdir = tmp_path_factory.mktemp("export")
    start = (datetime.now(UTC) - timedelta(minutes=30)).replace(microsecond=0, second=0)
    event = {"id": "weekly", "title": "Export chat", "rrule": "FREQ=DAILY", "timezone": "UTC",
             "dtstart": start.replace(tzinfo=None).isoformat(), "duration_minutes": 60,
             "hosts": ["alice"], "announce": False}

    async def fill() -> None:
        async with live_bridge(workdir, events=[event]) as live:
            lobby, garden, porch = (live.nets[n] for n in NETWORKS)
            root = await lobby.post_as_member("alice", "Q1: the root of a thread")
            await live.settle()
            copy = next(m for m in await garden.messages() if "root of a thread" in m.text)
            reply = await garden.post_as_member("bob", "A1: a reply from the garden",
                                                reply_to=copy.native_id)
            await live.settle()
            copy2 = next(m for m in await porch.messages() if "reply from the garden" in m.text)
            await porch.post_as_member("carol", "A1: a reply to the reply, mail me at "
                                       "carol@example.org", reply_to=copy2.native_id)
            gone = await lobby.post_as_member("dave", "a post deleted at its origin")
            await live.settle()
            await lobby.delete_as_member(gone)
            await garden.edit_as_member(reply, "A1: a reply from the garden (edited)")
            await live.settle()
            assert root

    asyncio.run(fill())
    cfg = workdir / "hashbridge.toml"
    cfg.write_text(_toml(workdir, event))
    return workdir, cfg, start.strftime("%Y%m%dT%H%M%SZ")


def test_jsonl_export(archive: tuple[Path, Path, str]) -> None:
    _, cfg, _ = archive
    r = _cli("export", "-c", str(cfg), "--community", "kmers", "--format", "jsonl")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["text"] for x in rows] == [
        "Q1: the root of a thread", "A1: a reply from the garden (edited)",
        "A1: a reply to the reply, mail me at carol@…"]
    assert [x["network"] for x in rows] == ["Lobby", "Garden", "Porch"]
    assert rows[1]["reply_to"] == rows[0]["id"] and rows[2]["reply_to"] == rows[1]["id"]
    assert rows[1]["edited_at"] and rows[0]["edited_at"] is None
    assert "deleted at its origin" not in r.stdout
    assert "exported 3 posts" in r.stderr


def test_mbox_opens_with_mailbox_and_keeps_threads(archive: tuple[Path, Path, str]) -> None:
    workdir, cfg, _ = archive
    out = workdir / "kmers.mbox"
    r = _cli("export", "-c", str(cfg), "--community", "kmers", "--format", "mbox",
             "-o", str(out))
    assert r.returncode == 0, r.stderr
    box = mailbox.mbox(str(out))
    msgs = list(box)
    assert len(msgs) == 3
    by_id = {m["Message-ID"]: m for m in msgs}
    root, reply, reply2 = msgs
    assert root["In-Reply-To"] is None and root["Subject"] == "[kmers] Q1: the root of a thread"
    assert reply["In-Reply-To"] == root["Message-ID"] in by_id
    assert reply2["In-Reply-To"] == reply["Message-ID"]
    assert reply2["References"].split() == [root["Message-ID"], reply["Message-ID"]]
    assert reply["Subject"] == reply2["Subject"] == "Re: [kmers] Q1: the root of a thread"
    assert reply.get_payload(decode=True).decode().startswith("A1: a reply from the garden")
    assert '"Bob (Garden)"' in reply["From"] and "@hashbridge.invalid" in reply["From"]
    assert "carol@example.org" not in out.read_text()
    assert "deleted at its origin" not in out.read_text()
    # Exporting again replaces the file instead of appending to it.
    assert _cli("export", "-c", str(cfg), "--community", "kmers", "--format", "mbox",
                "-o", str(out)).returncode == 0
    assert len(mailbox.mbox(str(out))) == 3


def test_markdown_transcript_and_static_site(archive: tuple[Path, Path, str]) -> None:
    workdir, cfg, occ = archive
    r = _cli("export", "-c", str(cfg), "--community", "kmers", "--format", "markdown",
             "--event", f"weekly/{occ}")
    assert r.returncode == 0, r.stderr
    md = r.stdout
    assert md.count("### Q1") == 1 and "#### 2 answers" in md
    assert md.index("root of a thread") < md.index("reply from the garden") < md.index(
        "reply to the reply")
    site = workdir / "site"
    r = _cli("export", "-c", str(cfg), "--community", "kmers", "--format", "html",
             "-o", str(site))
    assert r.returncode == 0, r.stderr
    index = (site / "index.html").read_text()
    transcript = site / f"weekly-{occ}.html"
    assert transcript.exists() and f'href="weekly-{occ}.html"' in index
    assert "2 answers" in transcript.read_text()
    assert "reply from the garden" in (site / "archive-1.html").read_text()
    assert (site / "style.css").exists() and "<script" not in index
    assert "deleted at its origin" not in "".join(p.read_text() for p in site.glob("*.html"))


def test_export_errors_are_precise(archive: tuple[Path, Path, str]) -> None:
    _, cfg, _ = archive
    r = _cli("export", "-c", str(cfg), "--community", "nope", "--format", "jsonl")
    assert r.returncode == 1 and "no community 'nope' (configured: kmers)" in r.stderr
    r = _cli("export", "-c", str(cfg), "--community", "kmers", "--format", "jsonl",
             "--event", "monthly")
    assert r.returncode == 1 and "no chat event 'monthly'" in r.stderr
    r = _cli("export", "-c", str(cfg), "--community", "kmers", "--format", "html")
    assert r.returncode == 1 and "-o DIR" in r.stderr


def test_progress_bar_only_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        bar = ProgressBar(stream, width=10)
        for done in (500, 1000, 1500):
            bar(done, 1500)
    assert pipe.getvalue() == ""
    lines = tty.getvalue().split("\r")
    assert lines[1].startswith("exporting [###       ]  33% 500/1500")
    assert lines[-1] == "exporting [##########] 100% 1500/1500\n"


def test_mbox_headers_survive_hostile_names(tmp_path: Path) -> None:
    from bridge.contract.model import Author, ChannelKey, NativeId, Post, PostId
    from bridge.contract.textconv import from_plain
    from bridge.daemon.harness import build_config, sandbox_channels
    from bridge.web.export import MboxWriter

    comm = build_config(tmp_path, sandbox_channels(tmp_path)).communities[0]
    post = Post(id=PostId("01" + "0" * 24), community="kmers",
                origin_channel=ChannelKey("kmers/sb_lobby"), origin_native_id=NativeId("1"),
                permalink="", text=from_plain("From the start: héllo\nFrom here too"),
                author=Author(platform="sandbox", handle="z",
                              display_name='Zoë "the" <evil@x.org>\nBcc: victim@y.org'))
    path = tmp_path / "h.mbox"
    w = MboxWriter(str(path), comm, lambda ch: "Lobby")
    w.add(post, None)
    w.close()
    (msg,) = list(mailbox.mbox(str(path)))
    assert msg["Bcc"] is None and "victim@y.org" not in path.read_text()
    from email.header import decode_header, make_header
    from email.utils import parseaddr

    encoded_name, addr = parseaddr(msg["From"])
    assert addr.endswith("@hashbridge.invalid")
    name = str(make_header(decode_header(encoded_name)))
    assert name == 'Zoë "the" <evil@…> Bcc: victim@… (Lobby)'  # one line, no address
    body = msg.get_payload(decode=True).decode()
    assert body.splitlines()[:2] == [">From the start: héllo", ">From here too"]
