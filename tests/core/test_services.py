"""What every adapter factory receives is a typed ``Services``: a misspelt or mistyped
use is a mypy error (and a misspelt attribute an error at run time too)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.contract.services import MediaSources, Services

ROOT = Path(__file__).resolve().parents[2]

MISUSE = """\
from bridge.contract.adapter import AdapterFactory, StrictModel
from bridge.contract.services import Services


def use(services: Services, factory: AdapterFactory, account: StrictModel) -> None:
    url: str = services["web_url"]
    services.web_ulr = "x"
    factory.create(account, (), {})
    services.web_url = 8080
    fine: str = services.web_url
    factory.create(account, (), services).capabilities
    services.media_sources.source_for("kmers/a")
"""


def test_mypy_catches_misuse_of_services(tmp_path: Path) -> None:
    api = pytest.importorskip("mypy.api")
    path = tmp_path / "misuse.py"
    path.write_text(MISUSE)
    out, _, _ = api.run(["--strict", "--no-incremental", "--follow-imports=silent",
                         "--config-file", str(ROOT / "pyproject.toml"), str(path)])
    found = sorted((int(line.split(":")[1]), line.rsplit("[", 1)[1].rstrip("]"))
                   for line in out.splitlines() if ": error: " in line)
    # the string key, the misspelt name, a dict for services, a port for the URL;
    # nothing on the lines that use it right
    assert found == [(6, "index"), (7, "attr-defined"), (8, "arg-type"), (9, "assignment")], out


def test_a_misspelt_service_is_an_error_at_run_time_too() -> None:
    services = Services()
    with pytest.raises(AttributeError):
        services.web_ulr = "http://x"  # type: ignore[attr-defined]
    assert services.web_url == "" and isinstance(services.media_sources, MediaSources)
    assert Services().media_sources is not services.media_sources
