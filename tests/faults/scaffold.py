"""Scaffolding shared by the cross-platform fault suites, over every network the
registry offers (:mod:`bridge.conformance.fleet`): a new network's sandbox joins these
suites with no edit here.

What members can do on a network comes from its sandbox's ``features``; what the
bridge's copies can do there comes from its adapter's ``capabilities``, read from the
config each suite writes (``write_config`` fills ``CAN_EDIT_COPIES`` and
``CAN_DELETE_COPIES``).  Messages are recognised by a mark in their text (``[f0042]``
by default; each suite may pass its own pattern whose first group is the index).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bridge.conformance import fleet
from bridge.conformance.fleet import (
    LOBBY,
    copies_by_mark,
    pending,
    start_bridge,
    status_json,
    stop_bridge,
    wait_connected,
)
from bridge.contract.adapter import Capabilities
from bridge.contract.sandbox import PlatformSandbox, SandboxFeatures, SandboxMessage
from bridge.runtime.registry import load_factories

ROOT = Path(__file__).parents[2]
MARK = fleet.MARK

__all__ = ["ALL", "CAN_DELETE_COPIES", "CAN_EDIT_COPIES", "DELETES", "EDITS", "LOBBY", "MARK",
           "ROOT", "check", "copies_by_mark", "pending", "start_boxes", "start_bridge",
           "status_json", "stop_bridge", "wait_complete", "wait_connected", "write_config"]


def _features() -> dict[str, SandboxFeatures]:
    """Each registered platform's sandbox features (constructing a sandbox starts nothing)."""
    out: dict[str, SandboxFeatures] = {}
    with tempfile.TemporaryDirectory() as d:
        for name, factory in load_factories().factories.items():
            box = factory.sandbox(str(Path(d) / name))
            if box is not None:
                out[LOBBY if name == "sandbox" else name] = box.features
    return out


FEATURES = _features()
ALL = frozenset(FEATURES) - {LOBBY}
"""Every registered network with a sandbox that can run here (the lobby apart)."""
EDITS = frozenset(n for n, f in FEATURES.items() if f.member_edits)
"""Networks whose members' edits the suites make (and copies follow)."""
DELETES = frozenset(n for n, f in FEATURES.items() if f.member_deletes)
CAN_EDIT_COPIES: set[str] = set()
CAN_DELETE_COPIES: set[str] = set()
"""Filled by :func:`write_config` from the adapters' own capabilities."""
_CAPS: dict[str, Capabilities] = {}


async def start_boxes(tmp: Path, platforms: set[str] | frozenset[str] = ALL
                      ) -> dict[str, PlatformSandbox]:
    """The lobby and the sandboxes of *platforms* (all by default), started; each one's
    own rate limits and budgets lifted (the suites inject rate limits themselves)."""
    boxes = await fleet.start_boxes(tmp, platforms)
    for box in boxes.values():
        box.unthrottle()
    return boxes


def write_config(path: Path, boxes: Mapping[str, PlatformSandbox], data: Path,
                 overrides: Mapping[str, Mapping[str, Any]],
                 channel_overrides: Mapping[str, Mapping[str, Any]], *,
                 bridge_options: Mapping[str, Any] | None = None,
                 accounts: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    config = fleet.write_config(path, boxes, data, overrides, channel_overrides,
                                bridge_options=bridge_options, accounts=accounts)
    _CAPS.clear()
    _CAPS.update(fleet.copy_capabilities(config))
    CAN_EDIT_COPIES.clear()
    CAN_EDIT_COPIES.update(n for n, c in _CAPS.items() if c.edit)
    CAN_DELETE_COPIES.clear()
    CAN_DELETE_COPIES.update(n for n, c in _CAPS.items() if c.delete)


async def wait_complete(boxes: Mapping[str, PlatformSandbox],
                        origin: Mapping[int, tuple[str, str]], deleted: set[int],
                        timeout: float, read_only: set[str],
                        mark: re.Pattern[str] = MARK) -> None:
    await fleet.wait_complete(boxes, origin, deleted, timeout, read_only, _CAPS, mark)


def check(snapshot: Mapping[str, list[SandboxMessage]], origin: Mapping[int, tuple[str, str]],
          edited: set[int], deleted: set[int], log: Path, read_only: set[str],
          mark: re.Pattern[str] = MARK) -> None:
    fleet.check(snapshot, origin, edited, deleted, log, read_only, _CAPS, mark)
