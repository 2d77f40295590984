"""The documented config keys stay in step with the models."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pydantic import ValidationError

from adapters.twitter.config import TwitterAccount, TwitterChannel

SNIPPET = Path(__file__).resolve().parents[2] / "adapters" / "twitter" / "example.toml"


def test_example_snippet_documents_and_validates_every_key() -> None:
    raw = SNIPPET.read_text()
    data = tomllib.loads(raw)
    acct = {k: v for k, v in data["accounts"]["x"].items() if k != "platform"}
    chan = {k: v for k, v in data["communities"]["channels"][0].items() if k != "account"}
    TwitterAccount(**acct)
    TwitterChannel(**chan)
    for key in [*TwitterAccount.model_fields, *TwitterChannel.model_fields]:
        assert f"{key} =" in raw, f"{key} is not documented in {SNIPPET.name}"


def test_unknown_and_bad_keys_are_refused() -> None:
    with pytest.raises(ValidationError):
        TwitterChannel(query="#kmers", mode="sometimes")
    with pytest.raises(ValidationError):
        TwitterChannel(query="#kmers", hashtag="kmers")
    with pytest.raises(ValidationError):
        TwitterAccount(consumer_key="a", consumer_secret="b", access_token="c",
                       access_token_secret="d", search_share=2)
