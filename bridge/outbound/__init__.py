"""The outbound path: outbox rows become posts on each target network.

One ``worker.ChannelWorker`` per target channel reads its deliveries in order and what
they need from the store, asks the pure ``planner`` what each one sends (which renders
each post for the target with ``render``, a poll and a quote with ``extras``: attribution,
mentions neutralised, the length
fit and split; and keeps a split copy's parts matching an edit), and calls
``adapter.send`` under the rate limits (``ratelimit``).

May import: ``bridge.contract``, ``bridge.runtime``, ``bridge.store``.
"""
