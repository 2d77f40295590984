"""The outbound path: outbox rows become posts on each target network.

One ``worker.ChannelWorker`` per target channel claims its deliveries in order, renders
each post for the target (``render``: attribution, mentions neutralised, the length fit
and split) and calls ``adapter.send`` under the rate limits (``ratelimit``).

May import: ``bridge.contract``, ``bridge.runtime``, ``bridge.store``.
"""
