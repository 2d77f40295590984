"""An adapter's :class:`~bridge.contract.adapter.AccountState`, kept in the store."""

from __future__ import annotations

from bridge.store.api import Store, Tx


class StoredAccountState:
    """:class:`~bridge.contract.adapter.AccountState` of account *account*: each call
    one unit of work on *store* (so one transaction, group-committed with others)."""

    def __init__(self, store: Store, account: str) -> None:
        self._store = store
        self._account = account

    async def get(self, namespace: str, key: str) -> str | None:
        return await self._store.run(lambda tx: tx.state_get(self._account, namespace, key))

    async def put(self, namespace: str, key: str, value: str) -> None:
        await self._store.run(lambda tx: tx.state_put(self._account, namespace, key, value))

    async def add(self, namespace: str, key: str, value: str) -> bool:
        return await self._store.run(
            lambda tx: tx.state_add(self._account, namespace, key, value))

    async def put_many(self, namespace: str, items: list[tuple[str, str]], *,
                       only_new: bool = False) -> int:
        account = self._account

        def unit(tx: Tx) -> int:
            if only_new:
                return sum(tx.state_add(account, namespace, k, v) for k, v in items)
            for k, v in items:
                tx.state_put(account, namespace, k, v)
            return len(items)

        return await self._store.run(unit)

    async def items(self, namespace: str) -> list[tuple[str, str]]:
        return await self._store.run(lambda tx: tx.state_items(self._account, namespace))

    async def delete(self, namespace: str, keys: list[str]) -> int:
        return await self._store.run(lambda tx: tx.state_delete(self._account, namespace, keys))
