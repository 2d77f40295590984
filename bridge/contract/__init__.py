"""The adapter contract: everything a network's package needs from the core.

Owns the adapter interface and its capabilities (``adapter``), the canonical model of
posts and events (``model``), rich text and its conversion to and from each format
(``richtext``, ``textconv``), mention rules (``mentions``), media fetching behind the
network guard (``media``, ``netguard``), the typed process-wide services every adapter
factory receives (``services``), the sandbox protocol the demo and the conformance
kit drive (``sandbox``) and in-memory fakes for tests (``testing``).

May import: nothing else in ``bridge``. Adapters import only this package.
"""
