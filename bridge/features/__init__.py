"""What is built on the relayed conversation.

``chatevents``: the Q1/A1 convention, transcripts and the start/end announcements of a
community's chat events; ``preview``: how one text would look on every target.

May import: ``bridge.contract``, ``bridge.runtime``, ``bridge.store``, ``bridge.inbound``,
``bridge.outbound``, ``bridge.daemon``.
"""
