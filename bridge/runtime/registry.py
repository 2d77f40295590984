"""Adapters are found through the ``hashbridge.adapters`` entry-point group."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points

from bridge.contract.adapter import AdapterFactory

GROUP = "hashbridge.adapters"
log = logging.getLogger("hashbridge.registry")


class RegistryError(Exception):
    pass


@dataclass(frozen=True)
class Registry:
    factories: dict[str, AdapterFactory]
    broken: dict[str, str] = field(default_factory=dict)
    """Why an entry point could not be loaded (config errors show it)."""


def load_factories(extra: dict[str, AdapterFactory] | None = None) -> Registry:
    """Every installed adapter factory by platform name.

    A name offered twice is an error (two packages fighting over ``mastodon``
    would otherwise depend on install order).  An entry point that fails to
    import is logged and left out, so one broken third-party adapter does not
    stop the others; using it in config then reports it as unavailable.
    """
    found: dict[str, list[EntryPoint]] = {}
    for ep in entry_points(group=GROUP):
        found.setdefault(ep.name, []).append(ep)
    dupes = {n: eps for n, eps in found.items() if len({e.value for e in eps}) > 1}
    if dupes:
        names = "; ".join(f"{n}: {', '.join(e.value for e in eps)}" for n, eps in dupes.items())
        raise RegistryError(f"adapter names offered by more than one package: {names}")
    out: dict[str, AdapterFactory] = {}
    broken: dict[str, str] = {}
    for name, eps in sorted(found.items()):
        try:
            cls = eps[0].load()
            factory = cls() if isinstance(cls, type) else cls
        except Exception as e:  # an extra not installed, a broken plugin
            log.debug("adapter %s unavailable: %s", name, e)
            broken[name] = f"{type(e).__name__}: {e}"
            continue
        if not isinstance(factory, AdapterFactory):
            broken[name] = f"{eps[0].value} is not an AdapterFactory"
            continue
        out[name] = factory
    for name, factory in (extra or {}).items():
        if name in out:
            raise RegistryError(f"adapter name {name!r} offered twice")
        out[name] = factory
    return Registry(out, broken)
