"""Adapters are found through the ``hashbridge.adapters`` entry-point group.

Listing the group reads package metadata only; an adapter's package (and its
third-party SDK: tweepy, matrix-nio, Mastodon.py...) is imported the first time
its factory is asked for, which a config does for the platforms it names.  A
process that relays two sandbox networks never imports the X adapter.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points

from bridge.contract.adapter import AdapterFactory

GROUP = "hashbridge.adapters"
log = logging.getLogger("hashbridge.registry")


class RegistryError(Exception):
    pass


class LazyFactories(Mapping[str, AdapterFactory]):
    """Platform name -> factory, importing an entry point's module the first time
    its name is looked up.

    It reads like the plain dict it replaces: ``get``, ``[]`` and ``in`` import
    (at most) the one adapter asked for; iterating (``items()``, ``len``...)
    imports every adapter, as a caller that walks them all needs (the demo).
    An entry point that fails to import is not in the mapping; why is kept in
    the ``broken`` dict shared with the :class:`Registry`.  :meth:`names` lists
    every offered name without importing any.
    """

    def __init__(self, offered: Mapping[str, EntryPoint],
                 extra: Mapping[str, AdapterFactory], broken: dict[str, str]) -> None:
        self._offered = dict(offered)
        self._loaded: dict[str, AdapterFactory] = dict(extra)
        self._broken = broken

    def names(self) -> list[str]:
        """Every platform offered (installed entry points and extras), sorted; no import."""
        return sorted(self._offered.keys() | self._loaded.keys())

    def loaded(self) -> list[str]:
        """The platforms whose factory has been imported so far."""
        return sorted(self._loaded)

    def _load(self, name: str) -> AdapterFactory | None:
        if name in self._loaded:
            return self._loaded[name]
        ep = self._offered.get(name)
        if ep is None or name in self._broken:
            return None
        try:
            cls = ep.load()
            factory = cls() if isinstance(cls, type) else cls
        except Exception as e:  # an extra not installed, a broken plugin
            log.debug("adapter %s unavailable: %s", name, e)
            self._broken[name] = f"{type(e).__name__}: {e}"
            return None
        if not isinstance(factory, AdapterFactory):
            self._broken[name] = f"{ep.value} is not an AdapterFactory"
            return None
        self._loaded[name] = factory
        return factory

    def __getitem__(self, name: str) -> AdapterFactory:
        factory = self._load(name)
        if factory is None:
            raise KeyError(name)
        return factory

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._load(name) is not None

    def __iter__(self) -> Iterator[str]:
        return iter([n for n in self.names() if self._load(n) is not None])

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"LazyFactories(offered={self.names()}, loaded={self.loaded()})"


@dataclass(frozen=True)
class Registry:
    factories: Mapping[str, AdapterFactory]
    """Platform name -> factory (a :class:`LazyFactories` from :func:`load_factories`;
    any mapping, say a test's dict with a fake added)."""
    broken: dict[str, str] = field(default_factory=dict)
    """Why an entry point could not be loaded (config errors show it)."""

    def names(self) -> list[str]:
        """Every platform name offered, sorted, without importing any adapter."""
        if isinstance(self.factories, LazyFactories):
            return self.factories.names()
        return sorted(self.factories)


def load_factories(extra: Mapping[str, AdapterFactory] | None = None) -> Registry:
    """Every installed adapter factory by platform name, each imported when first used.

    A name offered twice is an error (two packages fighting over ``mastodon``
    would otherwise depend on install order); this needs the metadata only.
    An entry point that fails to import is logged and left out when it is
    first asked for, so one broken third-party adapter does not stop the
    others; using it in config then reports it as unavailable.
    """
    found: dict[str, list[EntryPoint]] = {}
    for ep in entry_points(group=GROUP):
        found.setdefault(ep.name, []).append(ep)
    dupes = {n: eps for n, eps in found.items() if len({e.value for e in eps}) > 1}
    if dupes:
        names = "; ".join(f"{n}: {', '.join(e.value for e in eps)}" for n, eps in dupes.items())
        raise RegistryError(f"adapter names offered by more than one package: {names}")
    for name in extra or {}:
        if name in found:
            raise RegistryError(f"adapter name {name!r} offered twice")
    broken: dict[str, str] = {}
    lazy = LazyFactories({n: eps[0] for n, eps in found.items()}, dict(extra or {}), broken)
    return Registry(lazy, broken)
