"""The ``hashbridge`` command (``main``) and the demo on a local sandbox of every network.

May import: anything in ``bridge``.
"""
