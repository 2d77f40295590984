"""The running bridge: adapters, the relay and the workers under one supervisor.

``supervisor.Bridge`` starts one adapter per account with restart budgets, feeds their
events to ``bridge.inbound.relay`` and runs a ``bridge.outbound.worker`` per channel.
``reload`` re-reads the config on SIGHUP and applies the difference without a restart.
``harness`` runs a whole bridge in-process on a generated config (the demo, tests,
benchmarks) and waits for it to be quiet.

May import: ``bridge.contract``, ``bridge.runtime``, ``bridge.store``, ``bridge.inbound``,
``bridge.outbound``.
"""
