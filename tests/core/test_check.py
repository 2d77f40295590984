"""``hashbridge check`` can be trusted (issue 16 §2): one root cause gives one message,
typos are caught at every level, people entries are parsed, messages are plain,
default channel names come from the target."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bridge.contract.model import Author
from bridge.inbound.policy import _blocked
from bridge.runtime.config import ConfigError, load
from bridge.runtime.registry import load_factories

REPO = Path(__file__).resolve().parents[2]

ACCOUNTS = """
[accounts.a]
platform = "sandbox"
dir = "nets"

[accounts.mx]
platform = "matrix"
homeserver = "https://matrix.example"
user_id = "@bot:matrix.example"
access_token = "${MATRIX_TOKEN}"
"""

ENV = {"MATRIX_TOKEN": "syt_real"}


def cfg_text(community: str = "", channels: str = "", top: str = "") -> str:
    return (top + ACCOUNTS + '\n[[communities]]\nname = "kmers"\nhashtag = "kmers"\n'
            + community + '\n[[communities.channels]]\naccount = "a"\nnetwork = "lobby"\n'
            + channels)


def write(tmp_path: Path, text: str) -> str:
    p = tmp_path / "cfg.toml"
    p.write_text(text)
    p.chmod(0o600)
    return str(p)


def errors_of(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load(write(tmp_path, text), load_factories(), ENV if env is None else env)
    return e.value.errors


MX = '\n[[communities.channels]]\naccount = "mx"\nroom = "#kmers:matrix.example"\n'


def test_example_config_with_empty_env_gives_exactly_the_missing_variables(
        tmp_path: Path) -> None:
    text = (REPO / "config" / "example.toml").read_text()
    wanted = sorted(set(re.findall(r"^[^#\n]*\$\{([A-Z_][A-Z0-9_]*)\}", text, re.M)))
    errors = errors_of(tmp_path, text, env={})
    assert len(errors) == len(wanted), errors
    assert sorted(re.search(r"variable (\w+) is not set", e).group(1)  # type: ignore[union-attr]
                  for e in errors) == wanted


def test_channel_keys_are_judged_by_its_accounts_platform_even_when_the_account_fails(
        tmp_path: Path) -> None:
    bad_account = ACCOUNTS.replace('homeserver = "https://matrix.example"\n', "")
    text = (bad_account + '\n[[communities]]\nname = "kmers"\nhashtag = "kmers"\n'
            '[[communities.channels]]\naccount = "a"\nnetwork = "lobby"\n'
            '[[communities.channels]]\naccount = "mx"\nroom = "#kmers:matrix.example"\n'
            'threads = true\nrooom = "x"\n')
    errors = errors_of(tmp_path, text)
    assert errors == ["accounts.mx.homeserver: required",
                      "communities[0].channels[1].rooom: unknown key (did you mean 'room'?)"]


@pytest.mark.parametrize(("where", "typo", "fix"), [
    ("top", '[bridge]\ndata_dri = "d"\n', "bridge.data_dri: unknown key (did you mean "
                                          "'data_dir'?)"),
    ("top", '[bridge.web]\nlisten = "127.0.0.1:1"\npublik_url = "x"\n',
     "bridge.web.publik_url: unknown key (did you mean 'public_url'?)"),
    ("community", 'blocklst = ["troll"]\n',
     "communities[0].blocklst: unknown key (did you mean 'blocklist'?)"),
    ("community", 'consnt = "opt-in"\n',
     "communities[0].consnt: unknown key (did you mean 'consent'?)"),
    ("channels", MX.replace("room =", "rom ="),
     "communities[0].channels[1].rom: unknown key (did you mean 'room'?)"),
    ("channels", MX + 'direcion = "in"\n',
     "communities[0].channels[1].direcion: unknown key (did you mean 'direction'?)"),
    ("community", '[[communities.events]]\nid = "q"\ntitel = "x"\nday = "monday"\n'
                  'time = "19:00"\n',
     "communities[0].events[0].titel: unknown key (did you mean 'title'?)"),
])
def test_typos_are_caught_at_every_level(tmp_path: Path, where: str, typo: str,
                                         fix: str) -> None:
    text = cfg_text(**{where: typo}) if where != "channels" else cfg_text(channels=typo)
    if where != "channels":
        text += MX
    assert fix in errors_of(tmp_path, text)


def test_people_entries_take_platform_aliases_and_refuse_unknown_platforms(
        tmp_path: Path) -> None:
    event = ('[[communities.events]]\nid = "chat"\ntitle = "chat"\nday = "monday"\n'
             'time = "19:00"\ntimezone = "Europe/Paris"\nhosts = ["x:kmershost", '
             '"matrix:@h:matrix.example", "@anyone"]\n')
    cfg = load(write(tmp_path, cfg_text('blocklist = ["X:troll", "@plain"]\n' + event)
                     + MX), load_factories(), ENV)
    settings = cfg.communities[0].settings
    assert settings.blocklist == ["twitter:troll", "@plain"]
    assert settings.events[0].hosts == ["twitter:kmershost", "matrix:@h:matrix.example",
                                        "@anyone"]
    assert _blocked("twitter", Author(platform="twitter", handle="troll").handle,
                    settings.blocklist)
    errors = errors_of(tmp_path, cfg_text('blocklist = ["twiter:troll"]\n') + MX)
    assert len(errors) == 1
    assert errors[0].startswith("communities[0].blocklist[0]: 'twiter:troll' names no "
                                "platform 'twiter' (did you mean 'twitter'?)")


def test_messages_are_plain_with_the_key_path_and_a_fix(tmp_path: Path) -> None:
    text = cfg_text().replace('name = "kmers"', 'name = "Kmers!"') + MX.replace(
        "#kmers:matrix.example", "kmers") + 'name = "two words"\n'
    errors = errors_of(tmp_path, text)
    joined = "\n".join(errors)
    assert "should match pattern" not in joined and "^" not in joined, joined
    assert ("communities[0].name: 'Kmers!' is not allowed here: lower-case letters, digits, "
            "'_' and '-', starting with a letter or digit") in errors
    assert any(e.startswith("communities[0].channels[1].room: 'kmers' is neither a room id "
                            "nor an alias: write the alias with its '#'") for e in errors)
    assert ("communities[0].channels[1].name: 'two words' is not allowed here: letters, "
            "digits, '_', '.' and '-' only") in errors


def test_hash_sign_is_accepted_the_same_everywhere(tmp_path: Path) -> None:
    text = cfg_text().replace('hashtag = "kmers"', 'hashtag = "#kmers"') + MX
    cfg = load(write(tmp_path, text), load_factories(), ENV)
    assert cfg.communities[0].settings.hashtag == "kmers"


def test_only_iana_time_zones(tmp_path: Path) -> None:
    event = ('[[communities.events]]\nid = "chat"\ntitle = "chat"\nday = "monday"\n'
             'time = "19:00"\ntimezone = "{}"\n')
    for legacy in ("EST", "CET", "Etc/GMT+5"):
        errors = errors_of(tmp_path, cfg_text(event.format(legacy)) + MX)
        assert len(errors) == 1 and errors[0].startswith(
            f"communities[0].events[0].timezone: '{legacy}' is not an IANA zone name"), errors
    for fine in ("UTC", "America/New_York"):
        load(write(tmp_path, cfg_text(event.format(fine)) + MX), load_factories(), ENV)


def test_default_channel_names_come_from_the_target(tmp_path: Path) -> None:
    two = (MX.replace("#kmers:", "#a:") + MX.replace("#kmers:", "#b:"))
    cfg = load(write(tmp_path, cfg_text(channels=two)), load_factories(), ENV)
    assert [c.key for c in cfg.all_channels()] == ["kmers/a", "kmers/mx-a", "kmers/mx-b"]
    clash = two + '\n[[communities.channels]]\naccount = "a"\nnetwork = "x"\nname = "mx-a"\n'
    errors = errors_of(tmp_path, cfg_text(channels=clash))
    assert errors == ["communities[0].channels[3].name: channel 'kmers/mx-a' is already "
                      "communities[0].channels[1]; give one of them a distinct name = \"...\""]


def test_start_announcement_shows_hosts_as_members_see_them(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from bridge.features.chatevents import start_text
    from bridge.runtime.schedule import Occurrence

    event = ('[[communities.events]]\nid = "chat"\ntitle = "chat"\nday = "monday"\n'
             'time = "19:00"\nhosts = ["x:kmershost", "mastodon:@al@m.example", "@bare"]\n')
    cfg = load(write(tmp_path, cfg_text(event) + MX), load_factories(), ENV)
    ev = cfg.communities[0].settings.events[0]
    s = datetime(2026, 1, 5, 19, tzinfo=UTC)
    text = start_text(Occurrence(ev, s, s + timedelta(hours=1)), "kmers", "https://x.example")
    assert "Hosted by @kmershost on X, @al@m.example on Mastodon, @bare." in text
    assert "x:" not in text and "twitter:" not in text


def test_a_refused_file_shows_none_of_its_secrets(tmp_path: Path) -> None:
    """`check` prints a refused file's messages before any log redaction is set up: a
    secret written with the wrong type, or repeated by a check's own message, is hidden
    there too, while the key path and the fix stay."""
    text = cfg_text(channels=MX).replace('access_token = "${MATRIX_TOKEN}"',
                                         "access_token = 918273645546372819") + """
[accounts.mail]
platform = "email"
address = "list-bridge@example.org"
list_address = "kmers@example.org"
[accounts.mail.imap]
host = "imap.example.org"
user = "bridge"
password = "hunter2-Zq9-wV7x"
port = "hunter2-Zq9-wV7x"
[accounts.mail.smtp]
host = "smtp.example.org"
user = "bridge"
password = "placeholder-ok"
"""
    errors = errors_of(tmp_path, text)
    joined = "\n".join(errors)
    assert "918273645546372819" not in joined and "hunter2-Zq9-wV7x" not in joined, joined
    assert any(e.startswith("accounts.mx.access_token: must be text in quotes") for e in errors), \
        joined
    assert any(e.startswith("accounts.mail.imap.port: must be a whole number") for e in errors), \
        joined
