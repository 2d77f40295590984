"""The inbound path: an adapter's event becomes a stored post and outbox rows.

``relay.ingest`` takes a page of events with the cursor that covers them and, in one
store transaction, runs each event through the policy steps (``policy``), the member
commands (``links``: ``!link``/``!unlink``), and records posts, rejections and the
deliveries the outbound side will send.

May import: ``bridge.contract``, ``bridge.runtime``, ``bridge.store``.
"""
