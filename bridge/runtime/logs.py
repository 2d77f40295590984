"""Logging set-up: human-readable or JSON lines, with secrets redacted.

Redaction happens in a filter on the root handler, on the fully formatted
message and traceback, so a secret can leak neither through a log argument nor
through an exception's text.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import sys
import time
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

REDACTED = "***"
MIN_SECRET = 4
"""Shorter values are not redacted: they would blank out ordinary words."""

_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{6,}={0,2}")
"""A run that may be base64 (SASL PLAIN/LOGIN exchanges, Basic auth headers)."""


def secret_forms(secret: str) -> set[str]:
    """Every way a library may print *secret* in a log line: as written; quoted
    as an IMAP string (aioimaplib's LOGIN); escaped as a JSON string (request
    bodies); inside a Python ``repr`` of a str or of bytes, with either quote
    character the enclosing string chose (``'Sending : %s' % data``);
    percent-encoded (URLs, OAuth headers, form bodies); and the combinations of
    the three layers (a JSON body's repr, an IMAP command's bytes repr)."""
    quoted_imap = secret.replace("\\", "\\\\").replace('"', '\\"')
    layer1 = {secret, quoted_imap}
    layer2: set[str] = set()
    for s in layer1:
        layer2 |= {s, json.dumps(s)[1:-1], json.dumps(s, ensure_ascii=False)[1:-1]}
    forms: set[str] = set()
    for s in layer2:
        forms |= {s, quote(s, safe=""), quote(s), quote_plus(s), quote_plus(s, safe="/")}
        forms |= _repr_forms(s)
    return {f for f in forms if f}


def _repr_forms(s: str) -> set[str]:
    """The inside of ``repr()`` of a str or bytes containing *s*, for both quote
    characters (the enclosing value decides which one repr picks)."""
    out: set[str] = set()
    b = s.encode("utf-8", "surrogatepass")
    # With both quote marks in the value, repr quotes with ' and escapes it.
    out.add(repr(s + "'\"")[1:-4])
    out.add(repr(b + b"'\"")[2:-4])
    if '"' not in s:  # the value has ' only: repr quotes with " and escapes nothing
        out.add(repr(s + "'")[1:-2])
        out.add(repr(b + b"'")[2:-2])
    return out


class Redactor(logging.Filter):
    """Replaces every form of every secret (see :func:`secret_forms`) and any
    base64 run that decodes to something containing a secret (a SASL ``AUTH
    PLAIN``/``AUTH LOGIN`` exchange or a Basic auth header) with ``***``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        forms: set[str] = set()
        raw: set[bytes] = set()
        for s in secrets:
            if s and len(s) >= MIN_SECRET:
                forms |= secret_forms(s)
                raw.add(s.encode("utf-8", "surrogatepass"))
                if max(map(ord, s)) < 256:  # HTTP Basic auth's default charset
                    raw.add(s.encode("latin-1"))
        # Longest first so a secret containing another is replaced whole.
        self.secrets = sorted(forms, key=len, reverse=True)
        self._raw = sorted(raw, key=len, reverse=True)
        self._pattern = (re.compile("|".join(re.escape(f) for f in self.secrets))
                         if self.secrets else None)

    def scrub(self, text: str) -> str:
        if self._pattern is None:
            return text
        # Again until none is left: a marker next to a secret's neighbours can
        # spell a secret anew (a secret made of stars and the text around it).
        while self._pattern.search(text):
            text = self._pattern.sub(REDACTED, text)
        return _BASE64_RUN.sub(self._base64, text)

    def _base64(self, m: re.Match[str]) -> str:
        token = m.group(0)
        padded = token.rstrip("=")
        padded += "=" * (-len(padded) % 4)
        for altchars in (b"+/", b"-_"):
            try:
                data = base64.b64decode(padded, altchars=altchars, validate=True)
            except ValueError:
                continue
            if any(s in data for s in self._raw):
                return REDACTED
        return token

    def filter(self, record: logging.LogRecord) -> bool:
        if self._pattern is None:
            return True
        record.msg = self.scrub(record.getMessage())
        record.args = None
        if record.exc_info:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = self.scrub(text)
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out, ensure_ascii=False)


def setup(level: str = "info", fmt: str = "text", secrets: Iterable[str] = (),
          stream: object = None) -> Redactor:
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                                               "%H:%M:%S"))
    redactor = Redactor(secrets)
    handler.addFilter(redactor)
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Libraries' chatter stays at warning unless we debug.
    for noisy in ("aiohttp.access", "nio", "asyncio", "urllib3", "mastodon", "oauthlib",
                  "requests_oauthlib", "tweepy", "httpx", "httpcore", "atproto", "aioimaplib"):
        logging.getLogger(noisy).setLevel(logging.WARNING if level != "debug" else logging.DEBUG)
    return redactor
