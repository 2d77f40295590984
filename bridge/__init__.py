"""hashbridge: one community's hashtag conversation on every network at once.

The packages, in the order a message travels (and the order they may import: a package
imports only the ones above it, never one below; ``tests/core/test_layout.py`` checks it):

``contract``   what an adapter sees: the adapter interface, the canonical model, rich text
               and its conversions, media, mention rules, the sandbox protocol and fakes.
``runtime``    what a process is told and what it reports: config, the adapter registry,
               the chat-event schedule, logs and metrics.
``store``      persistence behind ``Store``/``Tx``: posts, the id map, the outbox, cursors.
``inbound``    adapter event -> ``relay.ingest`` -> policy steps -> posts and outbox rows.
``outbound``   outbox -> planner -> worker -> render -> ``adapter.send``, under rate limits.
``daemon``     the supervisor that runs adapters, the relay and the workers together.
``conformance`` the kit every network must pass over its sandbox: shared end-to-end
               scenarios, a real process to kill, fault proxies with each platform's errors.
``features``   what is built on the relayed conversation: chat events, previews.
``web``        the web view, feeds, exports and the admin page.
``cli``        the ``hashbridge`` command and the demo.
"""
