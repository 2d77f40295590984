"""``hashbridge check --online`` for a Mastodon account, as the operator reads it:
the bot flag and the instance's rules, against the emulator."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from sandboxconfig import two_sandboxes

from adapters.mastodon.emulator.server import MastodonEmulator


async def test_check_online_prints_the_rules_and_the_bot_flag_advice(tmp_path: Path) -> None:
    async with MastodonEmulator(bridge_bot=False) as emu:
        emu.state.rules = [("Be excellent to each other.", ""),
                           ("Automated accounts must post unlisted.",
                            "Keep the federated timeline for people.")]
        cfg = tmp_path / "c.toml"
        cfg.write_text(two_sandboxes() + f"""
[accounts.masto]
platform = "mastodon"
base_url = "{emu.url}"
access_token = "${{MASTODON_TOKEN}}"

[[communities.channels]]
account = "masto"
hashtag = "kmers"
""")
        cfg.chmod(0o600)
        res = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "bridge.cli", "check", "-c", str(cfg),
                             "--online"], cwd=tmp_path, capture_output=True, text=True,
            timeout=120, env={**os.environ, "MASTODON_TOKEN": "bridge-token"})
    out = res.stdout
    assert res.returncode == 0, out + res.stderr
    assert f"account masto (mastodon): ok as @kmbridge on {emu.url}" in out
    assert "  warning: @kmbridge is not flagged as a bot: tick 'This is an automated " \
           "account'" in out
    assert f"  instance rules ({emu.url}/about):\n" \
           "    1. Be excellent to each other.\n" \
           "    2. Automated accounts must post unlisted. (Keep the federated timeline " \
           "for people.)\n" in out
    assert "  warning: instance rule 2 speaks of bots" in out
    assert "bridge-token" not in out + res.stderr
