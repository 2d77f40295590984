"""The PostgreSQL backend: one database server shared by any number of hashbridge
processes.

Every SQL statement hashbridge runs on PostgreSQL is in this package: the schema
(:mod:`.migrations`, the same numbered steps as SQLite's), the statements
(:mod:`.tx`), the writer with group commit, held writes and reconnection
(:mod:`.store`), and the driver's errors mapped to the core's (:mod:`.conn`).
:mod:`.testserver` runs a private server for tests and is never imported by the rest.

Driver: psycopg 3, because units of work are plain synchronous functions run in a
writer thread (as on SQLite) and psycopg offers a blocking connection for them plus
``LISTEN``/``NOTIFY``; asyncpg is asyncio-only.

Import the modules by name (``bridge.store.postgresql.store``): this package's
``__init__`` imports nothing, so :mod:`.testserver` needs no driver installed.

May import: ``bridge.contract``, ``bridge.store`` (its interface, errors and space).
"""
