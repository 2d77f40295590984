"""Helpers shared by the Mastodon tests: cassettes, the OpenAPI spec, exchanges."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import yaml

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "mastodon"
SPEC = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "mastodon" / "openapi" \
    / "mastodon-openapi-4.7.0.json"


@cache
def cassettes() -> dict[str, list[dict[str, Any]]]:
    """Every recorded interaction, by cassette name."""
    return {p.stem: yaml.safe_load(p.read_text())["interactions"]
            for p in sorted(FIXTURES.glob("*.yaml"))}


def recorded_bodies(method: str, path_part: str) -> list[Any]:
    """Parsed JSON bodies of recorded successful responses to *method* on a URI containing
    *path_part*."""
    out = []
    for inters in cassettes().values():
        for it in inters:
            req, resp = it["request"], it["response"]
            if req["method"] == method and path_part in req["uri"] \
                    and resp["status"]["code"] == 200:
                body = resp["body"]["string"]
                if isinstance(body, str) and body.startswith(("{", "[")):
                    out.append(json.loads(body))
    return out


def sse_events() -> list[tuple[str, str]]:
    """(event, data) of every SSE event in the streaming cassettes."""
    out = []
    for name, inters in cassettes().items():
        if not name.startswith("test_stream"):
            continue
        for it in inters:
            if "/streaming/" not in it["request"]["uri"]:
                continue
            body = it["response"]["body"]["string"]
            event = None
            for line in body.splitlines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event:
                    out.append((event, line[6:]))
                    event = None
    return out


def recorded_statuses() -> list[dict[str, Any]]:
    """Every Status object in the recordings: REST bodies (also inside arrays and
    notifications) and SSE ``update``/``status.update`` payloads."""
    found: list[dict[str, Any]] = []

    def walk(obj: Any) -> None:
        if isinstance(obj, dict):
            if "visibility" in obj and "account" in obj and "id" in obj:
                found.append(obj)
            for v in obj.values():
                walk(v)
        elif isinstance(obj, list):
            for v in obj:
                walk(v)

    for inters in cassettes().values():
        for it in inters:
            body = it["response"]["body"]["string"]
            if isinstance(body, str) and body.startswith(("{", "[")):
                walk(json.loads(body))
    for _event, data in sse_events():
        if data.startswith("{"):
            walk(json.loads(data))
    return found


def key_types(obj: dict[str, Any]) -> dict[str, str]:
    """Key -> JSON type name (null counted apart) for golden shape comparisons."""
    return {k: type(v).__name__ for k, v in obj.items()}


def load_openapi() -> Any:
    """The Mastodon spec as an openapi-core object, its known errors patched in memory."""
    from openapi_core import OpenAPI

    spec = json.loads(SPEC.read_text())
    # The spec's only validator error: ``default: 'null'`` on an integer (oEmbed maxheight).
    for op in spec["paths"].get("/api/oembed", {}).values():
        for param in op.get("parameters", []):
            if param.get("schema", {}).get("default") == "null":
                del param["schema"]["default"]
    spec["servers"] = [{"url": "http://localhost"}]
    return OpenAPI.from_dict(spec)


def client(emu: Any, token: str = "bridge-token") -> Any:
    """Mastodon.py pointed at the emulator, never sleeping on its own."""
    from mastodon import Mastodon

    return Mastodon(api_base_url=emu.url, access_token=token, ratelimit_method="throw",
                    version_check_mode="none", request_timeout=10)
