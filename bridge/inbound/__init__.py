"""The inbound path: an adapter's event becomes a stored post and outbox rows.

``relay.ingest`` takes a page of events with the cursor that covers them and, in one
store transaction, runs each event through the steps declared for its kind in
``steps`` (read it first: it is the data path, in order).  The machinery is in
``pipeline`` (``Step``, ``DropReason``, the loop); the steps themselves in
``persist`` (the id map: echoes, duplicates, storing), ``commands`` (``!join``,
``!link``, with ``links``) and ``policy`` (the community's rules, with ``rate``).

May import: ``bridge.contract``, ``bridge.runtime``, ``bridge.store``.
"""
