"""The blending keys (``guest``, ``also_read``) and scheduled questions
(``[[communities.events.questions]]``): loaded as documented, and refused by
``hashbridge check`` with a message naming the key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.runtime.config import ConfigError, load
from bridge.runtime.registry import load_factories

BASE = """
[bridge]
data_dir = "data"

[accounts.a]
platform = "sandbox"
dir = "nets"

[accounts.b]
platform = "sandbox"
dir = "nets"

[[communities]]
name = "kmers"
hashtag = "kmers"
{kmers}

[[communities.channels]]
account = "a"
network = "lobby"

[[communities.channels]]
account = "b"
network = "garden"

[[communities.events]]
id = "mixer"
title = "#chatmixer"
day = "thursday"
time = "18:00"
timezone = "Europe/Paris"
duration_minutes = 60
hosts = ["sandbox:alice"]
{event}

[[communities]]
name = "pkmchat"
hashtag = "pkmchat"

[[communities.channels]]
account = "a"
network = "yard"

[[communities.channels]]
account = "b"
network = "porch"
"""

QUESTIONS = """
[[communities.events.questions]]
offset = "{offset}"
text = "{text}"
"""


def cfg_text(*, kmers: str = "", event: str = 'guest = "pkmchat"', questions: str = "") -> str:
    # questions belong to the event: they go right after its keys.
    return BASE.format(kmers=kmers, event=event + "\n" + questions)


def write(tmp_path: Path, text: str) -> str:
    p = tmp_path / "cfg.toml"
    p.write_text(text)
    p.chmod(0o600)
    return str(p)


def errors_of(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load(write(tmp_path, text), load_factories(), {})
    return e.value.errors


def test_the_keys_load(tmp_path: Path) -> None:
    text = cfg_text(kmers='also_read = ["#PKM", "zettel"]',
                    questions=QUESTIONS.format(offset="10m", text="Q1: what do you read?")
                    + QUESTIONS.format(offset="90s", text="Q2 and then?"))
    cfg = load(write(tmp_path, text), load_factories(), {})
    kmers = cfg.communities[0].settings
    assert kmers.also_read == ["PKM", "zettel"]
    [ev] = kmers.events
    assert ev.guest == "pkmchat"
    assert [(q.seconds, q.text) for q in ev.questions] == [
        (600.0, "Q1: what do you read?"), (90.0, "Q2 and then?")]
    assert cfg.communities[1].settings.also_read == []


def test_an_unknown_guest_is_refused_with_a_suggestion(tmp_path: Path) -> None:
    errs = errors_of(tmp_path, cfg_text(event='guest = "pkmchta"'))
    assert errs == ["communities[0].events[0].guest: no community named 'pkmchta' (did you "
                    "mean 'pkmchat'?); a guest is the name of another [[communities]] entry "
                    "in this file"]


def test_a_guest_that_is_the_events_own_community_is_refused(tmp_path: Path) -> None:
    errs = errors_of(tmp_path, cfg_text(event='guest = "kmers"'))
    assert errs == ["communities[0].events[0].guest: 'kmers' is this event's own community; "
                    "a guest is another [[communities]] entry to blend in"]


def test_a_question_after_the_end_is_refused(tmp_path: Path) -> None:
    errs = errors_of(tmp_path, cfg_text(questions=QUESTIONS.format(offset="75m",
                                                                   text="Q1: late")))
    assert errs == ["communities[0].events[0]: questions[0].offset: '75m' is not before the "
                    "event's end (duration_minutes = 60)"]


def test_a_question_without_its_number_is_refused(tmp_path: Path) -> None:
    errs = errors_of(tmp_path, cfg_text(questions=QUESTIONS.format(offset="5m",
                                                                   text="What is PKM?")))
    assert len(errs) == 1
    assert errs[0].startswith("communities[0].events[0].questions[0].text: 'What is PKM?' "
                              "does not start with its question number")


def test_a_bad_offset_is_refused(tmp_path: Path) -> None:
    errs = errors_of(tmp_path, cfg_text(questions=QUESTIONS.format(offset="soon",
                                                                   text="Q1: x")))
    assert errs == ["communities[0].events[0].questions[0].offset: 'soon' is not a time "
                    "after the start; write minutes like \"10m\", or \"90s\", \"1h\""]


def test_questions_need_a_host(tmp_path: Path) -> None:
    text = cfg_text(questions=QUESTIONS.format(offset="5m", text="Q1: x")).replace(
        'hosts = ["sandbox:alice"]', "hosts = []")
    [err] = errors_of(tmp_path, text)
    assert err.startswith("communities[0].events[0]: questions: the bridge posts them as the "
                          "event's first host, and hosts is empty")


def test_also_read_takes_hashtags_not_the_communitys_own(tmp_path: Path) -> None:
    errs = errors_of(tmp_path, cfg_text(kmers='also_read = ["kmers", "two words"]'))
    assert errs == ["communities[0].also_read: also_read[1] = 'two words' is not a hashtag; "
                    "write also_read = [\"pkmchat\"]"]
    errs = errors_of(tmp_path, cfg_text(kmers='also_read = ["#kmers"]'))
    assert errs == ["communities[0].also_read[0]: 'kmers' is the community's own hashtag; "
                    "list related hashtags only"]


def test_check_says_how_also_read_is_read_per_channel(tmp_path: Path) -> None:
    path = write(tmp_path, cfg_text(kmers='also_read = ["pkm"]'))
    out = subprocess.run([sys.executable, "-m", "bridge.cli", "check", "-c", path],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": os.getcwd()}, check=False)
    assert out.returncode == 0, out.stderr
    assert "reads the whole network: also_read (#pkm) needs nothing more here" in out.stdout


def test_check_refuses_a_bad_guest(tmp_path: Path) -> None:
    path = write(tmp_path, cfg_text(event='guest = "nobody"'))
    out = subprocess.run([sys.executable, "-m", "bridge.cli", "check", "-c", path],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": os.getcwd()}, check=False)
    assert out.returncode == 78
    assert "communities[0].events[0].guest: no community named 'nobody'" in out.stderr


def test_check_says_to_put_also_read_in_the_x_query(tmp_path: Path) -> None:
    text = cfg_text(kmers='also_read = ["pkm"]').replace(
        '[accounts.b]\nplatform = "sandbox"\ndir = "nets"',
        '[accounts.b]\nplatform = "twitter"\nconsumer_key = "${X_CK}"\n'
        'consumer_secret = "${X_CS}"\naccess_token = "${X_AT}"\n'
        'access_token_secret = "${X_ATS}"').replace(
        'account = "b"\nnetwork = "garden"', 'account = "b"\nquery = "#kmers -is:retweet"')
    path = write(tmp_path, text.replace('account = "b"\nnetwork = "porch"',
                                        'account = "a"\nnetwork = "porch"'))
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "X_CK": "ck-1", "X_CS": "cs-1",
           "X_AT": "at-1", "X_ATS": "ats-1"}
    out = subprocess.run([sys.executable, "-m", "bridge.cli", "check", "-c", path],
                         capture_output=True, text=True, timeout=120, env=env, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert ("note: also_read is not read here: each read is billed, so it is not added for "
            "you; to read #pkm too, put it in this channel's query, e.g. "
            "query = \"(#kmers OR #pkm) -is:retweet\"") in out.stdout
