"""The SQLite backend's connection (aiosqlite): opening, integrity check, migration,
and the primitives StoreBase asks for.  The default backend (``store.url`` empty).

One aiosqlite connection (its own thread, so the event loop never blocks on disk).
Writes run in ``BEGIN IMMEDIATE`` .. ``COMMIT``: SQLite's one writer at a time.
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Sequence, TypeVar

import aiosqlite

from .base import StoreBase
from .errors import StoreError
from .schema import migrate
from .validate import _int, _invalid

T = TypeVar("T")
S = TypeVar("S", bound="SqliteBase")


class SqliteBase(StoreBase):
    """Connection to one SQLite file.  Create a Store with ``await Store.open(path)``."""

    backend = "sqlite"

    def __init__(self, conn: aiosqlite.Connection, path: Path, queue_limit: int) -> None:
        super().__init__(queue_limit)
        self._conn = conn
        self.path = path

    @property
    def location(self) -> str:
        """Where the data lives, for messages."""
        return str(self.path)

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

    async def _disconnect(self) -> None:
        try:
            await self._conn.execute("PRAGMA optimize")
        except sqlite3.Error:
            pass
        await self._conn.close()

    # ------------------------------------------------------------ primitives

    async def _transaction(self, fn: Callable[[], Awaitable[T]]) -> T:
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

    async def _exec(self, sql: str, params: Sequence[Any] = ()) -> None:
        await (await self._conn.execute(sql, tuple(params))).close()

    async def _scalar(self, sql: str, params: Iterable[Any] = ()) -> Any:
        async with self._conn.execute(sql, tuple(params)) as cur:
            row = await cur.fetchone()
        return None if row is None else row[0]

    async def _all(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        return list(await self._conn.execute_fetchall(sql, tuple(params)))

    async def _one(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        async with self._conn.execute(sql, tuple(params)) as cur:
            return await cur.fetchone()

    def _is_unique_violation(self, exc: BaseException, table: str, column: str) -> bool:
        return isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc) \
            and f"{table}.{column}" in str(exc)

    def _json_text(self, column: str, key: str) -> str:
        return f"json_extract({column}, '$.{key}')"
