"""Canary secrets: unique values put in every credential field, then searched for.

A canary is found in its plain form and in the encodings a careless line would write it
in: URL-quoted, JSON-escaped is the same for our alphabet, and base64 (a Basic auth
header, an OAuth signature base string) at each of the three byte alignments.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote


def canary(label: str, *, plain: bool = False) -> str:
    """A unique value; with characters URL quoting changes (so a quoted leak has its own
    form) unless *plain* (the X emulator's OAuth check refuses ``/`` and ``+`` in keys)."""
    if plain:
        return f"hbCanary{label.replace('.', '').replace('_', '')}{secrets.token_hex(10)}"
    return f"hbCanary-{label.replace('.', '-')}/{secrets.token_hex(10)}+"


def forms(secret: str) -> set[str]:
    """The plain secret and its encodings worth searching for."""
    out = {secret, quote(secret, safe=""), quote(secret)}
    raw = secret.encode()
    for pad in range(3):
        enc = base64.b64encode(b"x" * pad + raw).decode()
        # Drop the characters that mix with the padding bytes and the tail.
        start = (pad * 4 + 2) // 3 + 1
        inner = enc[start:-4]
        if len(inner) >= 12:
            out.add(inner)
    return out


def find_leaks(text: str | bytes, secrets_: Iterable[str], where: str) -> list[str]:
    """``where: secret-label`` for every canary form found in *text*."""
    hay = text if isinstance(text, bytes) else text.encode("utf-8", "replace")
    found = []
    for s in secrets_:
        for f in forms(s):
            if f.encode() in hay:
                i = hay.index(f.encode())
                ctx = hay[max(0, i - 60): i + len(f) + 20].decode("utf-8", "replace")
                found.append(f"{where}: {s[:20]}... as {f[:16]!r} in ...{ctx!r}")
                break
    return found


def scan_dir(root: str | Path, secrets_: Iterable[str], skip: Iterable[str] = ()) -> list[str]:
    """Leaks in every file under *root* (the store, its WAL, adapters' own files)."""
    found: list[str] = []
    skip_paths = [str(Path(s)) for s in skip]
    secrets_ = list(secrets_)
    for dirpath, _, files in os.walk(root):
        if any(dirpath.startswith(s) for s in skip_paths):
            continue
        for name in files:
            p = os.path.join(dirpath, name)
            try:
                data = Path(p).read_bytes()
            except OSError:
                continue
            found += find_leaks(data, secrets_, p)
    return found


def secret_values(accounts: Mapping[str, Mapping[str, Any]],
                  fields_of: Mapping[str, Iterable[str]]) -> dict[str, str]:
    """``account.field -> value`` for every non-empty credential in the raw account
    tables; dotted fields (``imap.password``) are looked up in nested tables."""
    out: dict[str, str] = {}
    for name, table in accounts.items():
        for f in fields_of.get(str(table["platform"]), ()):
            node: Any = table
            for part in f.split("."):
                node = node.get(part) if isinstance(node, Mapping) else None
            if isinstance(node, str) and node:
                out[f"{name}.{f}"] = node
    return out


def to_toml(value: Mapping[str, Any]) -> str:
    """Enough TOML for a config dict (tables, arrays of tables, scalars, lists)."""
    lines: list[str] = []

    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        if isinstance(v, Mapping):
            return "{" + ", ".join(f'"{k}" = {scalar(x)}' for k, x in v.items()) + "}"
        raise TypeError(type(v))

    def table(path: str, t: Mapping[str, Any], array: bool = False) -> None:
        if path:
            lines.append(f"[[{path}]]" if array else f"[{path}]")
        subs = []
        for k, v in t.items():
            if isinstance(v, Mapping):
                subs.append((k, v, False))
            elif isinstance(v, list) and v and all(isinstance(x, Mapping) for x in v):
                subs.append((k, v, True))
            else:
                lines.append(f'"{k}" = {scalar(v)}')
        for k, v, is_array in subs:
            sub = f'{path}."{k}"' if path else f'"{k}"'
            if is_array:
                for item in v:
                    table(sub, item, True)
            else:
                table(sub, v)

    table("", value)
    return "\n".join(lines) + "\n"
