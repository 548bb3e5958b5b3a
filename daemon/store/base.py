"""The store's backend-neutral plumbing: the one lock, cancellation shielding, THE
write path, and the small set of primitives (``_exec``, ``_scalar``, ``_all``,
``_one``) and dialect hooks every concern's mixin builds on.

Two backends implement the primitives: SQLite (sqlite_base.py, aiosqlite, the
default, one box) and PostgreSQL (pg/conn.py, asyncpg, ``store.url``).  The
mixins (jobs, tracks, lineage, search) hold the logic once, so the backends
cannot drift; only SQL fragments that differ are asked of the backend.

Concurrency
    One connection per store.  Every public method runs under one
    asyncio.Lock (``_run``), so a multi-statement transaction is never
    interleaved with another coroutine's statements, and it runs shielded from
    cancellation: a caller that is cancelled (a client hangs up) cannot leave a
    transaction half-open; the operation completes or rolls back as a whole.
    Every write goes through ``_write``: the one place where a failed write is
    turned into a StoreError.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any, Awaitable, Callable, Iterable, Sequence, TypeVar

from .errors import StoreError

T = TypeVar("T")
S = TypeVar("S", bound="StoreBase")

Row = Any  # sqlite3.Row or asyncpg.Record: both index by position and by column name


class StoreBase:
    """Lifecycle and plumbing common to both backends."""

    #: "sqlite" or "postgresql": for messages and tests only; code asks the hooks below.
    backend = ""

    def __init__(self, queue_limit: int) -> None:
        self.queue_limit = queue_limit
        self._lock = asyncio.Lock()
        self._closed = False
        # relevance rankings kept for their next pages: id -> search._Ranking (list_tracks)
        self._rankings: OrderedDict[str, Any] = OrderedDict()

    # ------------------------------------------------------------ lifecycle

    async def close(self) -> None:
        if self._closed:
            return
        async with self._lock:
            self._closed = True
            await self._disconnect()

    async def __aenter__(self: S) -> S:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # ------------------------------------------------------------ backend primitives

    async def _disconnect(self) -> None:
        raise NotImplementedError

    async def _ensure_connected(self) -> None:
        """Before each operation, under the lock: a backend whose connection can be lost
        (PostgreSQL) connects again here."""

    async def _exec(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement (``?`` placeholders in both backends), no result."""
        raise NotImplementedError

    async def _scalar(self, sql: str, params: Iterable[Any] = ()) -> Any:
        raise NotImplementedError

    async def _all(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        raise NotImplementedError

    async def _one(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        raise NotImplementedError

    async def _transaction(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn`` inside one write transaction, serialised with every other writer of
        the database (also other processes or hosts); ROLLBACK on any error."""
        raise NotImplementedError

    def _is_unique_violation(self, exc: BaseException, table: str, column: str) -> bool:
        raise NotImplementedError

    # ------------------------------------------------------------ dialect hooks

    def _json_text(self, column: str, key: str) -> str:
        """SQL for the text at top-level ``key`` of the JSON object in ``column``."""
        raise NotImplementedError

    # ------------------------------------------------------------ plumbing

    async def _run(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run one operation under the lock, shielded from the caller's cancellation."""
        if self._closed:
            raise StoreError("conflict", "store is closed")

        async def locked() -> T:
            async with self._lock:
                if self._closed:
                    raise StoreError("conflict", "store is closed")
                await self._ensure_connected()
                return await fn()

        task = asyncio.ensure_future(locked())
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return await asyncio.shield(task)

    async def _write(self, fn: Callable[[], Awaitable[T]]) -> T:
        """THE write path: ``fn`` under the lock, in one transaction (ROLLBACK on any
        error).  Every store method that changes the database goes through here, so a
        write failure (e.g. a full disk) is handled in one place."""
        return await self._run(lambda: self._transaction(fn))
