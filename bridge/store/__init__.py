"""Persistence behind one narrow interface.

A :class:`Store` runs *units of work* (plain functions taking a :class:`Tx`) in a
transaction; units that arrive together may be committed together (group commit),
each in its own savepoint so one failing unit never takes its neighbours down.
Callers never write SQL: the pipeline, the workers, the web view and the command
line call ``Tx`` methods, typed against the protocols in :mod:`bridge.store.api`.

* :mod:`.api`       the ``Store``/``Tx`` protocols and their row types;
* :mod:`.errors`    the store's exceptions, whatever the backend;
* :mod:`.space`     the data dir's filesystem (free space, what a failed write means);
* :mod:`.archive`   read queries for pages and exports, built on ``Tx``;
* :mod:`.backends`  ``[bridge] database`` to an open store;
* :mod:`.sqlite`    the SQLite backend, the only place with SQL.

May import: ``bridge.contract``, ``bridge.runtime``.
"""

from bridge.store.api import NEW_POST, CopyRow, DeliveryRow, PostState, Store, Tx
from bridge.store.errors import DiskFullError, SchemaError, StoreError, TransientStoreError
from bridge.store.space import MIN_FREE_BYTES, StorageState

__all__ = ["MIN_FREE_BYTES", "NEW_POST", "CopyRow", "DeliveryRow", "DiskFullError", "PostState",
           "SchemaError", "StorageState", "Store", "StoreError", "TransientStoreError", "Tx"]
