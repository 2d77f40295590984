"""The networks, one package each, all shaped alike (``bridge`` never imports them: each
is found through the ``hashbridge.adapters`` entry point its ``__init__`` names, and
imported only when a config uses its platform).

Every package has, with the same meaning:

``__init__.py``  the :class:`~bridge.contract.adapter.AdapterFactory` the entry point
                 names, and a map of the package in its docstring.
``config.py``    the pydantic models of its ``[accounts.NAME]`` and channel keys.
``convert.py``   inbound, pure: platform payloads -> canonical events, or the shared
                 :class:`~bridge.contract.adapter.Unsupported` value; no I/O, never raises.
``compose.py``   outbound, pure: a send operation -> the platform's payload; no I/O.
``client.py``    the I/O shell around the platform's SDK: session, error mapping onto
                 the core's three kinds of failure.
``adapter.py``   the adapter itself (``run``, ``send``, ``capabilities``): the I/O that
                 drives the pure halves.  When it is too long for one module, its
                 reading or sending half is a mixin in ``inbound.py`` / ``outbound.py``.
``sandbox.py``   the local stand-in ``hashbridge demo`` and the conformance kit drive,
                 over ``emulator/`` (an emulated API: X, Mastodon) or ``testserver.py``
                 (a real server run locally: Synapse, Dovecot).

What is particular to one network sits next to these under a name that says what it is
(X's budget and digest, Matrix's appservice...).  ``sandbox`` is the exception: the
demo's own local network, one module and its store.

May import: ``bridge.contract`` and ``bridge.runtime`` (``tests/core/test_layout.py``).
"""
