"""Secrets never reach the log, in whatever form a library prints them.

The redactor is checked against the libraries' own encoders (aioimaplib's IMAP
quoting and its debug line, aiosmtplib's SASL encodings, aiohttp's Basic auth,
json, repr, urllib), over arbitrary secrets: any string the config accepts
(TOML escapes and environment variables allow quotes, backslashes, control
characters, spaces and any unicode).  And end to end: a real Dovecot login at
DEBUG level with a password full of quotes and backslashes.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, quote_plus, urlencode

import aiohttp
import aioimaplib
import pytest
from aiosmtplib.auth import auth_login_encode, auth_plain_encode
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bridge.runtime import logs

# How libraries put a secret into a log line, each with some text around it.
ENCODERS: dict[str, Callable[[str], str]] = {
    "raw": lambda s: f"password is {s}.",
    # exactly aioimaplib's debug line: 'Sending : %s' % data
    "aioimaplib LOGIN": lambda s: "Sending : %s" % (  # noqa: UP031
        "A1 LOGIN bridge " + aioimaplib.quoted(s) + "\r\n").encode(),
    "IMAP quoted, in a str": lambda s: f"C: A1 LOGIN bridge {aioimaplib.quoted(s)}",
    "json body": lambda s: json.dumps({"user": "bridge", "password": s}),
    "json body, utf-8": lambda s: json.dumps({"password": s}, ensure_ascii=False),
    "json body's bytes repr": lambda s: f"POST {json.dumps({'password': s}).encode()!r}",
    "repr": lambda s: f"login({s!r})",
    "repr in a dict": lambda s: str({"password": s, "note": "it's"}),
    "repr with both quotes around": lambda s: repr(f"it's \"{s}\""),
    "bytes repr": lambda s: f"sent {s.encode()!r}",
    "bytes repr with ' around": lambda s: f"sent {('it' + chr(39) + 's ' + s).encode()!r}",
    "url query": lambda s: "GET /login?" + urlencode({"u": "bridge", "p": s}),
    "url path": lambda s: f"https://host/{quote(s)}/x",
    "url plus": lambda s: f"token={quote_plus(s)}&x=1",
    "SASL PLAIN": lambda s: "AUTH PLAIN " + auth_plain_encode("bridge", s).decode(),
    "SASL LOGIN": lambda s: "send: " + auth_login_encode("bridge", s)[1].decode(),
    "SASL PLAIN bytes repr": lambda s: f"{b'AUTH PLAIN ' + auth_plain_encode('u', s)!r}",
    "HTTP Basic": lambda s: "Authorization: " + aiohttp.encode_basic_auth("bridge", s),
    "HTTP Basic, latin-1": lambda s: "Authorization: " + aiohttp.encode_basic_auth(
        "bridge", s, "latin-1" if max(map(ord, s), default=0) < 256 else "utf-8"),
}


def leaks(secret: str, line: str) -> list[str]:
    """The encodings of *secret* still present in *line* (each encoder applied
    alone, without its surrounding text)."""
    out = []
    for name, enc in ENCODERS.items():
        bare = enc(secret)
        for around in (enc("\x00\x01\x02\x03"), enc("")):
            # what the encoder adds around the secret is not the secret
            common = _strip_common(bare, around)
            if common and common in line and name != "raw":
                out.append(name)
                break
    if secret in line:
        out.append("raw")
    return out


def _strip_common(a: str, b: str) -> str:
    """*a* without the prefix and suffix it shares with *b*."""
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    j = 0
    while j < min(len(a), len(b)) - i and a[-1 - j] == b[-1 - j]:
        j += 1
    return a[i:len(a) - j]


SECRETS = st.text(min_size=logs.MIN_SECRET, max_size=40) | st.text(
    alphabet='"\\\' \t\n%+/=:@é€😀\x00\x7f', min_size=logs.MIN_SECRET, max_size=24)


@settings(max_examples=300, deadline=None)
@given(secret=SECRETS, encoder=st.sampled_from(sorted(ENCODERS)))
@example(secret='p"w\\d', encoder="aioimaplib LOGIN")
@example(secret="it's \\ \"x\"", encoder="repr with both quotes around")
@example(secret="a***", encoder="raw")
@example(secret="pässwörd", encoder="bytes repr")
@example(secret="0000", encoder="SASL LOGIN")  # the shortest base64: 6 characters and ==
def test_no_encoding_of_any_secret_survives(secret: str, encoder: str) -> None:
    line = ENCODERS[encoder](secret)
    scrubbed = logs.Redactor([secret]).scrub(line)
    assert not leaks(secret, scrubbed), (line, scrubbed)


@settings(max_examples=100, deadline=None)
@given(secrets=st.lists(SECRETS, min_size=1, max_size=3))
def test_several_secrets_in_one_json_line(secrets: list[str]) -> None:
    line = json.dumps({f"k{i}": s for i, s in enumerate(secrets)})
    scrubbed = logs.Redactor(secrets).scrub(line)
    for s in secrets:
        assert s not in scrubbed and json.dumps(s)[1:-1] not in scrubbed


def test_ordinary_text_is_left_alone() -> None:
    r = logs.Redactor(['p"w\\d-secret'])
    line = "delivery 18f3 to kmers/mastodon deferred 2.0s: connection-lost YWJjZGVmZ2g="
    assert r.scrub(line) == line


def test_short_values_are_not_secrets() -> None:
    # Three characters would blank out ordinary words all over the log.
    assert logs.Redactor(["abc"]).scrub("abcabc") == "abcabc"


async def test_real_dovecot_login_at_debug_level_leaks_no_password(tmp_path: Path) -> None:
    from adapters.email.client import imap_connect
    from adapters.email.config import MailServer
    from adapters.email.testserver import Dovecot, dovecot_binary

    if dovecot_binary() is None:
        pytest.skip("dovecot is not installed")
    password = 'p"a\\ss w\\"ord é'
    dove = Dovecot(tmp_path / "dovecot", {"bridge": password})
    dove.start()
    out = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logging.getLogger("aioimaplib").level)
    try:
        logs.setup("debug", "text", [password], stream=out)
        logging.getLogger("aioimaplib").setLevel(logging.DEBUG)
        server = MailServer.model_validate({"host": "127.0.0.1", "port": dove.imap_port,
                                            "username": "bridge", "password": password,
                                            "security": "none"})
        client = await imap_connect(server)  # the password was accepted: it was sent
        await client.logout()
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])
        logging.getLogger("aioimaplib").setLevel(saved[2])
        dove.stop()
    text = out.getvalue()
    assert "LOGIN bridge" in text  # aioimaplib logged the command at DEBUG
    assert not leaks(password, text), text
    for fragment in ("p\\\\\"a", "ss w", "ord \\xc3"):
        assert fragment not in text, fragment
