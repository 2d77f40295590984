"""``hashbridge demo`` prints the live page URL and its scripted conversation is
there (sandbox networks only here: the other platforms' sandboxes have their own
tests)."""

from __future__ import annotations

import asyncio
import os
import re
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.cli import demo
from bridge.runtime.registry import load_factories


async def test_demo_serves_the_conversation_even_with_port_8080_taken(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines: list[str] = []
    monkeypatch.setattr(demo, "_out", lambda text="": lines.append(text))

    async def only_sandboxes(workdir: str, lineup: demo.Lineup, **_: Any) -> None:
        factory = load_factories().factories["sandbox"]
        for name in ("lobby", "garden", "porch"):
            box: Any = factory.sandbox(os.path.join(workdir, "networks"))
            box.network = name
            lineup.attempted.append(box)
            await box.start()
            lineup.networks.append(demo.Network(f"sb_{name}", "sandbox", name.title(), box,
                                                "sandbox", True))

    monkeypatch.setattr(demo, "_start_sandboxes", only_sandboxes)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        task = asyncio.create_task(demo.run_demo(duration=60, port=port,
                                                 workdir=str(tmp_path)))
        async with asyncio.timeout(45):
            while not any("posts relayed across" in line for line in lines):
                assert not task.done(), lines
                await asyncio.sleep(0.1)
        url_line = next(line for line in lines if line.startswith("live web view:"))
        url = re.search(r"(http://\S+)", url_line).group(1)  # type: ignore[union-attr]
        assert f":{port}/" not in url  # it fell back to a free port
        transcript_url = next(line for line in lines
                              if line.startswith("chat transcript:")).split()[-1]
        async with aiohttp.ClientSession() as s:
            async with s.get(url) as r:
                page = await r.text()
            async with s.get(transcript_url) as r:
                transcript = await r.text()
        assert "What got you into k-mer counting?" in page
        assert "sketching with MinHash (edited)" in page
        assert "wrong channel" not in page  # deleted at its origin
        assert "demo chat starts now" in page  # the event's announcement
        q1 = transcript.split('id="q1"')[1]
        assert q1.count('class="post ') == 4  # the question and three answers
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        taken.close()
