"""The backup procedure of docs/operations.md, done to a live store.

The relay runs (in-process, real store, real workers) on sandbox networks while
members keep posting; the data dir's database is copied with SQLite's online
backup (the Python ``sqlite3.Connection.backup`` snippet from the docs, and the
``sqlite3`` CLI's ``.backup`` when the binary is installed) in the middle of
the burst.  The copy must be a consistent hashbridge database, and restoring
it (relay stopped, file replaced, relay started again) must end with every
member post on every other network exactly once: posts the backup does not
know are read again from the platform (the cursor in the backup is older) and
resent with the same idempotency keys, which the platform deduplicates.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from adapters.sandbox import SandboxPlatform
from bridge.daemon.harness import build_config, quiescent, running, sandbox_channels
from bridge.store.sqlite.migrations import latest_version

NAMES = ("lobby", "garden", "porch")
BURST = 300
TEXTS = [f"post {i} from {NAMES[i % 3]} #kmers" for i in range(BURST)]


def backup_python(src: str, dest: str) -> None:
    """The snippet from docs/operations.md, verbatim in spirit: no hashbridge import."""
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
    target = sqlite3.connect(dest)
    with target:
        source.backup(target)
    target.close()
    source.close()


def backup_cli(src: str, dest: str) -> None:
    subprocess.run(["sqlite3", src, f".backup '{dest}'"], check=True, timeout=60)


METHODS = [pytest.param(backup_python, id="python")]
if shutil.which("sqlite3"):
    METHODS.append(pytest.param(backup_cli, id="sqlite3-cli"))


def restore(copy: str, db_path: str) -> None:
    """The docs' restore: the copy replaces the database; the old WAL and shared
    memory files go with it (a stale WAL would be replayed onto the copy)."""
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db_path + suffix):
            os.remove(db_path + suffix)
    shutil.copyfile(copy, db_path)


def check_copy(path: str) -> dict[str, int]:
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("PRAGMA user_version").fetchone()[0] == latest_version()
        orphans = db.execute("SELECT count(*) FROM deliveries d LEFT JOIN posts p "
                             "ON p.id = d.post_id WHERE p.id IS NULL").fetchone()[0]
        assert orphans == 0, "a delivery without its post: the copy is not one transaction"
        return {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("posts", "deliveries", "native_ids")}
    finally:
        db.close()


async def backup_and_restore(tmp_path: Path, backup: object) -> dict[tuple[str, str], int]:
    """Run the burst, back up mid-way, restore, run again; return how many
    copies of each member post each network shows (by (network, text))."""
    boxes = {n: SandboxPlatform(str(tmp_path / "networks"), n) for n in NAMES}
    for b in boxes.values():
        await b.start()
    cfg = build_config(tmp_path, sandbox_channels(tmp_path, NAMES),
                       community_options={"author_rate_per_minute": 100000})
    db_path = cfg.data_path("hashbridge.sqlite")
    copy = str(tmp_path / "backup.sqlite")

    async with running(cfg) as bridge:
        for i, text in enumerate(TEXTS):
            await boxes[NAMES[i % 3]].post_as_member(f"m{i % 7}", text)
            if i == BURST // 2:
                # Mid-burst, while the relay ingests and delivers.
                await asyncio.to_thread(backup, db_path, copy)  # type: ignore[operator]
            if i % 20 == 0:
                await asyncio.sleep(0.01)  # let the relay work between bursts
        await quiescent(bridge, timeout=120)
    counts = check_copy(copy)
    assert 0 < counts["posts"] < BURST, f"the copy was not taken mid-burst: {counts}"

    restore(copy, db_path)  # the relay is stopped here

    async with running(cfg) as bridge:
        await quiescent(bridge, timeout=120)
        assert sum(bridge.metrics.posts_in.values()) > 0, "nothing re-read after restore"

    seen: dict[tuple[str, str], int] = {}
    for name, box in boxes.items():
        relayed = Counter(m.text for m in await box.messages() if m.by_bridge)
        for i, text in enumerate(TEXTS):
            if NAMES[i % 3] != name:
                seen[(name, text)] = sum(n for t, n in relayed.items() if text in t)
    for b in boxes.values():
        await b.stop()
    return seen


@pytest.mark.parametrize("backup", METHODS)
async def test_online_backup_is_consistent_and_restore_loses_nothing(
        tmp_path: Path, backup: object) -> None:
    seen = await backup_and_restore(tmp_path, backup)
    lost = [k for k, n in seen.items() if n == 0]
    assert not lost, f"{len(lost)} copies missing after the restore, e.g. {lost[:3]}"


async def test_restore_does_not_repeat_posts_relayed_after_the_backup(tmp_path: Path) -> None:
    # Deliveries re-created from re-read posts carry the ids (idempotency keys)
    # they had before the backup, derived from the origin message; the platform
    # refuses a key it has already seen.
    seen = await backup_and_restore(tmp_path, backup_python)
    twice = [k for k, n in seen.items() if n > 1]
    assert not twice, f"{len(twice)} copies posted twice after the restore, e.g. {twice[:3]}"
