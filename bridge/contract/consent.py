"""Opt-out signals every network shares: the ``#nobridge``/``#nobot`` tags.

A post carrying one of the tags is never relayed, and a profile (bio, name, fields) that
carries one means its author is never relayed; both are the conventions Bridgy Fed and
the fediverse's bots honour.  One definition here, read by the core's policy steps and by
each adapter's converter.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

OPT_OUT_TAGS = frozenset({"nobridge", "nobot"})
"""Tag names (without ``#``, case-insensitive) that opt a post or a profile out."""

_OPT_OUT_RE = re.compile(r"[#＃](" + "|".join(sorted(OPT_OUT_TAGS)) + r")\b", re.IGNORECASE)
"""``#`` or the fullwidth ``＃`` that the apps also read as a hashtag sign."""


def opt_out_tags(texts: Iterable[str]) -> list[str]:
    """The opt-out tags written in *texts* (plain text: a bio, a display name, a profile
    field), lower-cased, sorted, each once."""
    return sorted({m.group(1).lower() for t in texts for m in _OPT_OUT_RE.finditer(t)})


def profile_opt_outs(texts: Iterable[str]) -> list[str]:
    """``profile says #nobot``-style reasons for the opt-out tags in a profile's texts."""
    return [f"profile says #{t}" for t in opt_out_tags(texts)]
