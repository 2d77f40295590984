"""The adapter registry imports an adapter only when a config (or the demo) uses it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from sandboxconfig import two_sandboxes

import bridge.runtime.registry as registry
from bridge.contract.testing import FakeFactory
from bridge.runtime.registry import GROUP, LazyFactories, RegistryError, load_factories

ADAPTER_PACKAGES = ("adapters.mastodon", "adapters.matrix", "adapters.email",
                    "adapters.twitter")
SDKS = ("mastodon", "nio", "tweepy", "aioimaplib", "aiosmtplib")

SANDBOX_ONLY = two_sandboxes(data="{tmp}/data", nets="{tmp}/nets", platform="{platform}")


def _imported_after(code: str) -> tuple[list[str], str]:
    """Run *code* in a fresh interpreter; the adapter and SDK modules it left
    imported, and what it printed before."""
    probe = code + textwrap.dedent(f"""
        import json, sys
        print(json.dumps(sorted(m for m in sys.modules
                                if m.split(".")[0] in {list(SDKS)!r}
                                or m.startswith({ADAPTER_PACKAGES!r}))))
        """)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    return json.loads(out[-1]), "\n".join(out[:-1])


def test_a_sandbox_config_imports_no_other_adapter(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(SANDBOX_ONLY.format(tmp=tmp_path, platform="sandbox"))
    imported, _ = _imported_after(textwrap.dedent(f"""
        from bridge.runtime.config import load
        from bridge.runtime.registry import load_factories
        cfg = load({str(cfg)!r}, load_factories(), {{}})
        assert cfg.accounts["a"].platform == "sandbox"
        """))
    assert imported == []


def test_the_cli_imports_no_unused_adapter(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(SANDBOX_ONLY.format(tmp=tmp_path, platform="sandbox"))
    cfg.chmod(0o600)
    imported, printed = _imported_after(textwrap.dedent(f"""
        from bridge.cli.main import main
        print("exit", main(["check", "-c", {str(cfg)!r}]))
        """))
    assert "exit 0" in printed
    assert imported == []


def test_help_still_lists_the_adapters_own_commands() -> None:
    out = subprocess.run([sys.executable, "-m", "bridge.cli.main", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "matrix-registration" in out


def test_an_unknown_platform_suggests_a_name_without_importing_them(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(SANDBOX_ONLY.format(tmp=tmp_path, platform="mastadon"))
    imported, printed = _imported_after(textwrap.dedent(f"""
        from bridge.runtime.config import ConfigError, load
        from bridge.runtime.registry import load_factories
        try:
            load({str(cfg)!r}, load_factories(), {{}})
        except ConfigError as e:
            print("\\n".join(e.errors))
        """))
    installed = ", ".join(load_factories().names())  # every entry point, none imported
    assert ("accounts.a.platform: no adapter named 'mastadon' (did you mean 'mastodon'?); "
            f"installed adapters: {installed}") in printed
    assert {"email", "mastodon", "matrix", "sandbox", "twitter"} <= set(installed.split(", "))
    assert imported == []


def test_factories_load_on_first_lookup_and_a_broken_one_says_why() -> None:
    broken: dict[str, str] = {}
    lazy = LazyFactories({
        "sandbox": EntryPoint("sandbox", "adapters.sandbox:SandboxFactory", GROUP),
        "gone": EntryPoint("gone", "hashbridge_no_such_module:Factory", GROUP),
        "odd": EntryPoint("odd", "bridge.runtime.registry:GROUP", GROUP),
    }, {"fake": FakeFactory()}, broken)
    assert lazy.names() == ["fake", "gone", "odd", "sandbox"]
    assert lazy.loaded() == ["fake"]
    assert lazy["sandbox"].platform == "sandbox"
    assert lazy.loaded() == ["fake", "sandbox"]
    assert lazy.get("gone") is None and "gone" not in lazy
    assert broken["gone"].startswith("ModuleNotFoundError")
    with pytest.raises(KeyError):
        lazy["odd"]
    assert broken["odd"] == "bridge.runtime.registry:GROUP is not an AdapterFactory"
    assert sorted(lazy) == ["fake", "sandbox"] and len(lazy) == 2


def test_an_extra_factory_may_not_take_an_installed_name() -> None:
    with pytest.raises(RegistryError, match="'sandbox' offered twice"):
        load_factories(extra={"sandbox": FakeFactory()})


def test_broken_adapter_is_reported_in_config_errors(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    from bridge.runtime.config import ConfigError, load

    eps = [EntryPoint("sandbox", "hashbridge_no_such_module:Factory", GROUP)]
    monkeypatch.setattr(registry, "entry_points", lambda group: eps)
    cfg = tmp_path / "c.toml"
    cfg.write_text(SANDBOX_ONLY.format(tmp=tmp_path, platform="sandbox"))
    with pytest.raises(ConfigError) as e:
        load(str(cfg), load_factories(), {})
    assert any("its package failed to load: ModuleNotFoundError" in err
               for err in e.value.errors), e.value.errors
