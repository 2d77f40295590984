"""The opt-out tags are defined once (bridge.contract.consent) and read by the core's policy
and the adapters alike."""

from __future__ import annotations

import re
from pathlib import Path

from bridge.contract.consent import OPT_OUT_TAGS, opt_out_tags, profile_opt_outs
from bridge.inbound import policy

ROOT = Path(__file__).resolve().parents[2]


def test_profile_texts_name_each_opt_out_tag_once() -> None:
    texts = ["I am a person. ＃NoBot", "<b>#nobridge</b> and #nobot again", "#nobotanist"]
    assert opt_out_tags(texts) == ["nobot", "nobridge"]
    assert profile_opt_outs(["hello #NOBRIDGE"]) == ["profile says #nobridge"]
    assert profile_opt_outs(["#kmers fan"]) == []


def test_the_policy_and_the_adapters_share_one_definition() -> None:
    assert policy.OPT_OUT_TAGS is OPT_OUT_TAGS
    defined = [str(p.relative_to(ROOT)) for p in (ROOT / "adapters").rglob("*.py")
               if re.search(r"^OPT_OUT_TAGS\s*=", p.read_text(), re.M)]
    assert defined == []
