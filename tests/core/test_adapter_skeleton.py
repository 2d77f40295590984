"""Every network's package has the same skeleton (``adapters/__init__`` says what each
module is for), and its ``__init__`` docstring maps every module it holds."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NETWORKS = sorted(p.name for p in (ROOT / "adapters").iterdir()
                  if (p / "__init__.py").exists() and p.name != "sandbox")
SKELETON = ("config.py", "convert.py", "compose.py", "client.py", "adapter.py", "sandbox.py")


def test_the_networks_are_found() -> None:
    assert {"email", "mastodon", "matrix", "twitter"} <= set(NETWORKS)


@pytest.mark.parametrize("network", NETWORKS)
def test_each_network_has_the_skeleton(network: str) -> None:
    pkg = ROOT / "adapters" / network
    missing = [f for f in SKELETON if not (pkg / f).is_file()]
    assert missing == []
    assert (pkg / "emulator" / "__init__.py").is_file() or (pkg / "testserver.py").is_file()


@pytest.mark.parametrize("network", NETWORKS)
def test_the_package_docstring_maps_every_module(network: str) -> None:
    pkg = ROOT / "adapters" / network
    doc = ast.get_docstring(ast.parse((pkg / "__init__.py").read_text())) or ""
    modules = {p.stem for p in pkg.glob("*.py") if p.name != "__init__.py"}
    modules |= {p.name for p in pkg.iterdir() if (p / "__init__.py").exists()}
    unmapped = sorted(m for m in modules if f"``{m}``" not in doc and f"``{m}/``" not in doc)
    assert unmapped == [], f"adapters/{network}/__init__.py does not say what these are"


@pytest.mark.parametrize("network", NETWORKS)
def test_the_pure_halves_do_no_io(network: str) -> None:
    """``convert`` and ``compose`` import no client, no SDK session, no asyncio."""
    io = {"asyncio", "aiohttp", "nio", "tweepy", "mastodon", "aioimaplib", "aiosmtplib",
          f"adapters.{network}.client", f"adapters.{network}.adapter"}
    for name in ("convert.py", "compose.py"):
        tree = ast.parse((ROOT / "adapters" / network / name).read_text())
        found = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        found |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not {m for m in found if m in io or m.split(".")[0] in io}, (name, found)


@pytest.mark.parametrize("network", [*NETWORKS, "sandbox"])
def test_each_network_says_how_to_join(network: str) -> None:
    """Every adapter implements the contract's ``join_facts`` (the about page and
    the join panel read it), not the default that says nothing."""
    import importlib

    from bridge.contract.adapter import AdapterFactory

    module = importlib.import_module(f"adapters.{network}")
    factories = [v for v in vars(module).values() if isinstance(v, type)
                 and issubclass(v, AdapterFactory) and v is not AdapterFactory]
    assert factories, f"adapters/{network} has no AdapterFactory"
    for factory in factories:
        assert factory.join_facts is not AdapterFactory.join_facts, factory.__name__
