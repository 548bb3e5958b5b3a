"""The store's connection: opening, integrity check, migration, and the one lock,
transaction and read helpers every concern's mixin builds on.

Concurrency
    One aiosqlite connection (its own thread, so the event loop never blocks on
    disk).  Every public method runs under one asyncio.Lock (``_run``), so a
    multi-statement transaction is never interleaved with another coroutine's
    statements, and it runs shielded from cancellation: a caller that is
    cancelled (a client hangs up) cannot leave a transaction half-open; the
    operation completes or rolls back as a whole.  Every write goes through
    ``_write`` (``BEGIN IMMEDIATE`` .. ``COMMIT``): the one place where a failed
    write is turned into a StoreError.
"""

from __future__ import annotations

import asyncio
import errno
import sqlite3
from collections import OrderedDict
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, TypeVar

import aiosqlite

from .errors import StoreError
from .schema import migrate
from .validate import _int, _invalid

T = TypeVar("T")
S = TypeVar("S", bound="StoreBase")


class StoreBase:
    """Connection, lifecycle and plumbing.  Create a Store with ``await Store.open(path)``."""

    def __init__(self, conn: aiosqlite.Connection, path: Path, queue_limit: int) -> None:
        self._conn = conn
        self.path = path
        self.queue_limit = queue_limit
        self._lock = asyncio.Lock()
        self._closed = False
        # relevance rankings kept for their next pages: id -> search._Ranking (list_tracks)
        self._rankings: OrderedDict[str, Any] = OrderedDict()

    # ------------------------------------------------------------ lifecycle

    @classmethod
    async def open(cls: type[S], path: Path | str, *, queue_limit: int = 1000,
                   synchronous: str = "FULL", check: str = "quick") -> S:
        """Open (creating if needed), check integrity, migrate to the latest schema.

        ``check``: "quick" (PRAGMA quick_check, default), "full" (integrity_check)
        or "none".  Raises StoreError("corrupt") naming the problem.
        """
        path = Path(path)
        if sqlite3.sqlite_version_info < (3, 35, 0):
            raise StoreError("invalid", f"SQLite {sqlite3.sqlite_version} is too old; "
                                        "dgx-music needs 3.35 or newer")
        queue_limit = _int("queue_limit", queue_limit, 1)
        if synchronous not in ("FULL", "NORMAL"):
            raise _invalid("synchronous", "must be 'FULL' or 'NORMAL'")
        if check not in ("quick", "full", "none"):
            raise _invalid("check", "must be 'quick', 'full' or 'none'")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = await aiosqlite.connect(str(path), isolation_level=None)
        except sqlite3.Error as e:
            raise StoreError("corrupt", f"cannot open database {path}: {e}") from e
        conn.row_factory = sqlite3.Row
        store = cls(conn, path, queue_limit)
        try:
            await store._setup(synchronous, check)
        except BaseException:
            await conn.close()
            raise
        return store

    async def _setup(self, synchronous: str, check: str) -> None:
        c = self._conn
        try:
            await c.execute("PRAGMA busy_timeout = 5000")
            mode = await self._scalar("PRAGMA journal_mode = WAL")
            if str(mode).lower() != "wal":
                raise StoreError("corrupt", f"{self.path}: could not enable WAL (journal_mode={mode})")
            await c.execute(f"PRAGMA synchronous = {synchronous}")
            await c.execute("PRAGMA foreign_keys = ON")
            # Reads of a large library stay in memory: 64 MiB page cache + mmap.
            await c.execute("PRAGMA cache_size = -65536")
            await c.execute("PRAGMA mmap_size = 1073741824")
            if check != "none":
                pragma = "quick_check" if check == "quick" else "integrity_check"
                rows = await c.execute_fetchall(f"PRAGMA {pragma}(20)")
                problems = [r[0] for r in rows]
                if problems != ["ok"]:
                    raise StoreError("corrupt", f"{self.path} failed {pragma}: "
                                                + "; ".join(map(str, problems)))
            version = await self._scalar("PRAGMA user_version")
        except sqlite3.DatabaseError as e:
            raise StoreError("corrupt", f"{self.path} is not a usable database: {e}") from e
        await migrate(c, self.path, version)

    async def close(self) -> None:
        if self._closed:
            return
        async with self._lock:
            self._closed = True
            try:
                await self._conn.execute("PRAGMA optimize")
            except sqlite3.Error:
                pass
            await self._conn.close()

    async def __aenter__(self: S) -> S:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # ------------------------------------------------------------ plumbing

    async def _run(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run one operation under the lock, shielded from the caller's cancellation."""
        if self._closed:
            raise StoreError("conflict", "store is closed")

        async def locked() -> T:
            async with self._lock:
                if self._closed:
                    raise StoreError("conflict", "store is closed")
                return await fn()

        task = asyncio.ensure_future(locked())
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return await asyncio.shield(task)

    async def _write(self, fn: Callable[[], Awaitable[T]]) -> T:
        """THE write path: ``fn`` under the lock, inside BEGIN IMMEDIATE .. COMMIT
        (ROLLBACK on any error).  Every store method that changes the database goes
        through here, so a write failure (e.g. a full disk) is handled in one place."""

        async def tx() -> T:
            c = self._conn
            await c.execute("BEGIN IMMEDIATE")
            try:
                result = await fn()
                await c.execute("COMMIT")
                return result
            except BaseException as exc:
                if c.in_transaction:
                    await c.execute("ROLLBACK")
                # SQLITE_FULL or ENOSPC/EDQUOT: one error the queue can pause on, not `internal`.
                if isinstance(exc, (sqlite3.Error, OSError)) and (
                        getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
                        or "database or disk is full" in str(exc)
                        or getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT)):
                    raise StoreError("disk_full", f"the disk holding {self.path} is full ({exc}); "
                                                  "free some space") from exc
                raise

        return await self._run(tx)

    async def _scalar(self, sql: str, params: Iterable[Any] = ()) -> Any:
        async with self._conn.execute(sql, tuple(params)) as cur:
            row = await cur.fetchone()
        return None if row is None else row[0]

    async def _all(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        return list(await self._conn.execute_fetchall(sql, tuple(params)))

    async def _one(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        async with self._conn.execute(sql, tuple(params)) as cur:
            return await cur.fetchone()
