"""Persistence behind one narrow interface.

:class:`Store` owns a connection in a dedicated thread and runs *units of work*
(plain functions taking a :class:`~bridge.store.tx.Tx`) there.  Units that
arrive together are committed together (group commit), each inside its own
savepoint so one failing unit never takes its neighbours down.  Callers never
write SQL: the pipeline and the workers call ``Tx`` methods.

May import: ``bridge.contract``.
"""

from bridge.store.space import MIN_FREE_BYTES, StorageState
from bridge.store.sqlite import DiskFullError, SchemaError, Store, StoreError
from bridge.store.tx import DeliveryRow, Tx

__all__ = ["MIN_FREE_BYTES", "DeliveryRow", "DiskFullError", "SchemaError", "StorageState",
           "Store", "StoreError", "Tx"]
