"""The PostgreSQL backend's connection (asyncpg): opening, migration, and the
primitives StoreBase asks for.

One connection per store, as with SQLite, under the store's lock.  Every write
transaction first takes one transaction-scoped advisory lock (WRITE_LOCK), so
writers are serialised across every daemon that shares the database, exactly as
SQLite's ``BEGIN IMMEDIATE`` serialises them on one box: the read-then-write
logic of the mixins (queue room, next position, state checks) stays correct.
Writes are human-rate, so the one lock costs nothing that matters.
"""

from __future__ import annotations

import functools
import re
import time
from typing import Any, Awaitable, Callable, Iterable, Sequence, TypeVar
from urllib.parse import urlsplit, urlunsplit

from ..base import StoreBase
from ..errors import StoreError
from ..validate import _int, _invalid
from .schema import LATEST_VERSION, MIGRATIONS

try:
    import asyncpg
except ImportError:  # pragma: no cover - the daemon extra installs it
    asyncpg = None  # type: ignore[assignment]

T = TypeVar("T")
S = TypeVar("S", bound="PgBase")

#: pg_advisory_xact_lock keys: every write transaction, and schema migration.
WRITE_LOCK = 0x64677800  # "dgx\0"
MIGRATE_LOCK = 0x64677801

_SCHEMES = ("postgresql", "postgres")

#: What a lost connection or a stopping server raises: the store answers "unavailable".
_LOST: tuple[type[BaseException], ...] = (
    (asyncpg.PostgresConnectionError, asyncpg.OperatorInterventionError,
     asyncpg.ConnectionDoesNotExistError, ConnectionError) if asyncpg is not None else ())


def is_pg_url(url: str) -> bool:
    return urlsplit(url).scheme in _SCHEMES


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


@functools.lru_cache(maxsize=1024)
def pg_sql(sql: str) -> str:
    """``?`` placeholders (the mixins' one style) -> PostgreSQL's ``$1, $2, ...``.

    Quoted text ('...') is left alone; the store's SQL never puts ``?`` anywhere else."""
    out, n, quoted = [], 0, False
    for ch in sql:
        if ch == "'":
            quoted = not quoted
        elif ch == "?" and not quoted:
            n += 1
            out.append(f"${n}")
            continue
        out.append(ch)
    return "".join(out)


class PgBase(StoreBase):
    """Connection to one PostgreSQL database.  Create with ``await PgStore.open(url)``."""

    backend = "postgresql"

    def __init__(self, conn: Any, url: str, queue_limit: int) -> None:
        super().__init__(queue_limit)
        self._conn = conn
        self.url = url
        #: When an operation last reached the server (Unix time): a stale read says since when.
        self.last_reached: float | None = time.time()

    @property
    def location(self) -> str:
        return redact(self.url)

    @classmethod
    async def open(cls: type[S], url: str, *, queue_limit: int = 1000, timeout: float = 10.0) -> S:
        """Connect, migrate to the latest schema.  StoreError("unavailable") when the
        server cannot be reached, ("invalid", field "store.url") for a URL it refuses."""
        if asyncpg is None:
            raise _invalid("store.url", "names PostgreSQL but asyncpg is not installed; "
                                        "pip install 'dgx-music[daemon]'")
        if not isinstance(url, str) or not is_pg_url(url):
            raise _invalid("store.url", "must start with postgresql://")
        queue_limit = _int("queue_limit", queue_limit, 1)
        where = redact(url)
        try:
            conn = await asyncpg.connect(url, timeout=timeout)
        except (OSError, TimeoutError, asyncpg.CannotConnectNowError,
                asyncpg.TooManyConnectionsError) as exc:
            raise StoreError("unavailable", f"cannot reach the database at {where}: {exc}") from None
        except (asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
            raise _invalid("store.url", f"the database {where} refused the connection: {exc}") from None
        store = cls(conn, url, queue_limit)
        try:
            await store._migrate()
        except BaseException:
            await conn.close()
            raise
        return store

    async def _migrate(self) -> None:
        c = self._conn
        async with c.transaction():
            await c.execute("SELECT pg_advisory_xact_lock($1)", MIGRATE_LOCK)
            await c.execute("CREATE TABLE IF NOT EXISTS dgx_schema (version INTEGER NOT NULL)")
            version = await c.fetchval("SELECT version FROM dgx_schema")
            if version is None:
                version = 0
                await c.execute("INSERT INTO dgx_schema (version) VALUES (0)")
            if version > LATEST_VERSION:
                raise StoreError("invalid", f"{self.location} has schema version {version}, newer than "
                                            f"this dgx-music supports ({LATEST_VERSION}); upgrade dgx-music")
            for v in range(version, LATEST_VERSION):
                try:
                    for stmt in MIGRATIONS[v]:
                        await c.execute(stmt)
                except asyncpg.PostgresError as e:
                    raise StoreError("corrupt", f"{self.location}: migration to schema v{v + 1} "
                                                f"failed: {e}") from e
                await c.execute("UPDATE dgx_schema SET version = $1", v + 1)

    async def schema_version(self) -> int:
        return int(await self._run(lambda: self._scalar("SELECT version FROM dgx_schema")))

    async def _disconnect(self) -> None:
        await self._conn.close(timeout=5)

    async def _connect(self) -> Any:
        try:
            return await asyncpg.connect(self.url, timeout=10.0)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreError("unavailable", f"cannot reach the database at {self.location}: {exc}") from None

    async def _ensure_connected(self) -> None:
        # A lost connection failed the operation that found it (unavailable); the next one
        # connects again, so the daemon carries on once the server is back.
        if self._conn.is_closed():
            self._conn = await self._connect()

    async def _run(self, fn: Callable[[], Awaitable[T]]) -> T:
        try:
            out = await super()._run(fn)
        except _LOST as exc:
            self._conn.terminate()  # never reused: the next operation connects afresh
            raise StoreError("unavailable", f"lost the database {self.location}: {exc}") from exc
        self.last_reached = time.time()
        return out

    # ------------------------------------------------------------ primitives

    async def _transaction(self, fn: Callable[[], Awaitable[T]]) -> T:
        try:
            async with self._conn.transaction():
                await self._conn.execute("SELECT pg_advisory_xact_lock($1)", WRITE_LOCK)
                return await fn()
        except asyncpg.DiskFullError as exc:
            raise StoreError("disk_full", f"the database {self.location} is out of disk ({exc}); "
                                          "free some space on its server") from exc

    async def _exec(self, sql: str, params: Sequence[Any] = ()) -> None:
        await self._conn.execute(pg_sql(sql), *params)

    async def _scalar(self, sql: str, params: Iterable[Any] = ()) -> Any:
        return await self._conn.fetchval(pg_sql(sql), *params)

    async def _all(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        return await self._conn.fetch(pg_sql(sql), *params)

    async def _one(self, sql: str, params: Iterable[Any] = ()) -> Any:
        return await self._conn.fetchrow(pg_sql(sql), *params)

    def _is_unique_violation(self, exc: BaseException, table: str, column: str) -> bool:
        return isinstance(exc, asyncpg.UniqueViolationError) and \
            getattr(exc, "constraint_name", None) == f"{table}_{column}_key"

    def _json_text(self, column: str, key: str) -> str:
        if not re.fullmatch(r"[a-z_]+", key):  # pragma: no cover - keys are the code's own
            raise ValueError(key)
        return f"({column}::jsonb ->> '{key}')"
