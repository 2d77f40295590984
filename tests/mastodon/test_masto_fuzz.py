"""Hostile input: the converters return values, never raise."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from mastohelp import recorded_statuses

from adapters.mastodon.convert import (
    opt_out_reasons,
    parse_edit,
    parse_status,
    parse_stream_event,
)
from bridge.contract.adapter import Unsupported
from bridge.contract.model import ChannelKey

CH = ChannelKey("kmers/masto")
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                               max_size=5),
    max_leaves=20)
BASE = recorded_statuses()[0]
FIELDS = ["id", "content", "account", "visibility", "spoiler_text", "in_reply_to_id",
          "media_attachments", "mentions", "tags", "created_at", "reblog", "language", "url"]


@settings(max_examples=300, deadline=None)
@given(over=st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6))
def test_mutated_real_status_never_raises(over: dict[str, Any]) -> None:
    status = {**BASE, **over}
    for fn in (parse_status, parse_edit):
        ev = fn(status, channel=CH)
        assert ev is not None
    if isinstance(status.get("account"), dict):
        assert isinstance(opt_out_reasons(status["account"]), tuple)


@settings(max_examples=200, deadline=None)
@given(event=st.sampled_from(["update", "status.update", "delete", "notification", "x"]),
       data=st.one_of(st.text(max_size=60), json_values.map(json.dumps)))
def test_stream_events_never_raise(event: str, data: str) -> None:
    ev = parse_stream_event(event, data, channel=CH)
    assert ev is not None
    if event in ("notification", "x"):
        assert isinstance(ev, Unsupported)


@settings(max_examples=100, deadline=None)
@given(html=st.text(alphabet=st.sampled_from(list("<>/\"'&#;=ab pspanclass@")), max_size=200))
def test_hostile_html_content(html: str) -> None:
    ev = parse_status({**BASE, "content": html}, channel=CH)
    assert not isinstance(ev, Unsupported) or ev.reason


@settings(max_examples=200, deadline=None)
@given(data=json_values)
def test_instance_parsing_never_raises(data: Any) -> None:
    from adapters.mastodon.convert import parse_instance

    lim = parse_instance({"configuration": {"statuses": data, "media_attachments": data},
                          "version": data} if isinstance(data, dict) else {"configuration": data})
    assert lim.max_characters > 0 and lim.url_weight > 0
