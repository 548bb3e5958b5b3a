"""Whole-library copies between the two backends, table by table (migrate, backup, restore).

The unit of exchange is a SQLite database file at the latest schema: ``store migrate`` reads
one (a snapshot of the live library), a PostgreSQL backup writes one, and restoring into
PostgreSQL reads one.  So a backup of either backend has one format and restores into
either.  Why not pg_dump: it must be at least the server's version and is often not
installed where the CLI runs, its archive is not SQLite's backup format (so no
cross-backend restore), and a table copy can be verified row by row with the same code.

Rows are copied with their keys (job ids, track seqs, tag ids) so references hold; PostgreSQL's
identity sequences are then moved past the copied keys.  The copy into PostgreSQL is one
transaction: a failure leaves the target empty, so a rerun starts afresh.
Synchronous sqlite3 on the SQLite side (the CLI runs this, never the daemon's loop).
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from dgx_music.common.fmt import plural

from .errors import StoreError
from .snapshot import readonly_uri

#: Every table of the library, in an order that respects its foreign keys, with its key.
#: The search indexes (SQLite's tracks_fts, PostgreSQL's tracks.fts / tags_text) are not
#: copied: each backend's triggers write them from the copied rows.
TABLES: tuple[tuple[str, str], ...] = (
    ("jobs", "id"), ("tracks", "seq"), ("track_peaks", "seq"), ("tags", "id"),
    ("track_tags", "track_seq, tag_id"), ("track_lineage", "track_seq"), ("styles", "name"))
#: Columns of PostgreSQL's tables that SQLite has not (derived; written by triggers).
_PG_ONLY = {"tracks": {"tags_text", "fts"}}
#: Rows compared field by field per table after a copy (spread evenly over the keys).
SAMPLE = 200
_BATCH = 2000

Progress = Callable[[str], None]


@dataclass
class CopyReport:
    """Row counts per table, and how many rows were compared field by field."""

    rows: dict[str, int] = field(default_factory=dict)
    sampled: int = 0
    schema_version: int = 0


def _sqlite_columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]


def open_sqlite_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection to the database file ``path``; StoreError("corrupt") if unusable."""
    try:
        conn = sqlite3.connect(readonly_uri(path), uri=True, timeout=30.0)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.Error as exc:
        raise StoreError("corrupt", f"{path} is not a usable database: {exc}") from None


def sqlite_counts(conn: sqlite3.Connection) -> dict[str, int]:
    return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t, _ in TABLES}


def sqlite_files(conn: sqlite3.Connection) -> list[str]:
    """Every library file the database refers to (track audio, then MIDI), relative to the storage root."""
    paths = [r[0] for r in conn.execute("SELECT path FROM tracks ORDER BY seq")]
    return paths + [r[0] for r in conn.execute("SELECT midi_path FROM tracks WHERE midi_path IS NOT NULL ORDER BY seq")]


# ----------------------------------------------------------------------------- PostgreSQL side

async def pg_counts(pg: Any) -> dict[str, int]:
    """Rows per table of the PostgreSQL store ``pg`` (an open PgStore)."""
    async def op() -> dict[str, int]:
        return {t: int(await pg._scalar(f"SELECT count(*) FROM {t}")) for t, _ in TABLES}
    return await pg._run(op)


async def _pg_types(pg: Any, table: str) -> dict[str, str]:
    rows = await pg._all("SELECT column_name, data_type FROM information_schema.columns "
                         "WHERE table_name = ? AND table_schema = current_schema()", (table,))
    return {r["column_name"]: r["data_type"] for r in rows}


def _coerce(kind: str, value: Any) -> Any:
    """A SQLite value as PostgreSQL's column type takes it (SQLite's REAL may hold an integer)."""
    if value is None:
        return None
    if kind == "double precision":
        return float(value)
    if kind in ("bigint", "integer"):
        return int(value)
    if kind == "bytea":
        return bytes(value)
    return value


async def sqlite_to_pg(src: sqlite3.Connection, pg: Any, progress: Progress | None = None) -> CopyReport:
    """Copy every table of the SQLite database ``src`` into the EMPTY PostgreSQL store ``pg``, in
    one transaction, then verify (counts per table, a sample of rows field by field).
    StoreError("conflict") if ``pg`` holds a library already; ("corrupt") if verification fails."""
    version = src.execute("PRAGMA user_version").fetchone()[0]
    from . import LATEST_VERSION as SQLITE_LATEST
    if version != SQLITE_LATEST:
        raise StoreError("invalid", f"the SQLite database is at schema v{version}, this dgx-music copies v{SQLITE_LATEST}; "
                                    "start this version's daemon on it once (it migrates), then copy")
    report = CopyReport(schema_version=version)

    async def op() -> None:
        held = {t: int(await pg._scalar(f"SELECT count(*) FROM {t}")) for t in ("jobs", "tracks", "tags")}
        if any(held.values()):
            raise StoreError("conflict", f"the database {pg.location} already holds a library "
                                         f"({plural(held['tracks'], 'track')}, {plural(held['jobs'], 'job')}, {plural(held['tags'], 'tag')}); "
                                         "name an empty database (or schema)")
        for table, _key in TABLES:
            types = await _pg_types(pg, table)
            cols = [c for c in _sqlite_columns(src, table) if c in types]
            missing = set(types) - set(cols) - _PG_ONLY.get(table, set())
            if missing:
                raise StoreError("invalid", f"{table}: the SQLite database lacks columns {sorted(missing)}")
            sql = (f"INSERT INTO {table} ({', '.join(cols)}) VALUES "
                   f"({', '.join('$' + str(i + 1) for i in range(len(cols)))})")
            kinds = [types[c] for c in cols]
            cur = src.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY {_key}")
            n = 0
            while batch := cur.fetchmany(_BATCH):
                await pg._conn.executemany(sql, [tuple(_coerce(k, v) for k, v in zip(kinds, row)) for row in batch])
                n += len(batch)
            report.rows[table] = n
            if progress:
                progress(f"{table}: {plural(n, 'row')}")
        for table, key in (("jobs", "id"), ("tracks", "seq"), ("tags", "id")):
            await pg._exec(f"SELECT setval(pg_get_serial_sequence('{table}', '{key}'), "
                           f"(SELECT coalesce(max({key}), 0) + 1 FROM {table}), false)")
        got = {t: int(await pg._scalar(f"SELECT count(*) FROM {t}")) for t, _ in TABLES}
        want = sqlite_counts(src)
        if got != want:
            raise StoreError("corrupt", f"row counts differ after the copy: SQLite {want}, PostgreSQL {got}")
        report.sampled = await _compare_sample(src, pg)

    import asyncpg  # only ever here with a PostgreSQL store open
    try:
        await pg._write(op)
    except (asyncpg.PostgresError, asyncpg.DataError) as exc:
        raise StoreError("corrupt", f"the copy into {pg.location} failed and was rolled back, nothing was "
                                    f"written: {type(exc).__name__}: {exc}") from None
    return report


def _sample_keys(keys: Sequence[Any], n: int = SAMPLE) -> list[Any]:
    if len(keys) <= n:
        return list(keys)
    step = len(keys) / n
    return [keys[int(i * step)] for i in range(n)] + [keys[-1]]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    if isinstance(a, (bytes, memoryview)) or isinstance(b, (bytes, memoryview)):
        return a is not None and b is not None and bytes(a) == bytes(b)
    return a == b


async def _compare_sample(src: sqlite3.Connection, pg: Any) -> int:
    """Compare a spread of rows of every table field by field; StoreError("corrupt") naming the first difference."""
    compared = 0
    for table, key in TABLES:
        types = await _pg_types(pg, table)
        cols = [c for c in _sqlite_columns(src, table) if c in types]
        first = key.split(",")[0].strip()
        keys = [r[0] for r in src.execute(f"SELECT DISTINCT {first} FROM {table} ORDER BY {first}")]
        for k in _sample_keys(keys):
            order = f" ORDER BY {key}"
            a = src.execute(f"SELECT {', '.join(cols)} FROM {table} WHERE {first} = ?{order}", (k,)).fetchall()
            b = await pg._all(f"SELECT {', '.join(cols)} FROM {table} WHERE {first} = ?{order}", (k,))
            if len(a) != len(b):
                raise StoreError("corrupt", f"{table} {first}={k}: {len(a)} rows in SQLite, {len(b)} in PostgreSQL")
            for ra, rb in zip(a, b):
                for i, c in enumerate(cols):
                    if not _same(ra[i], rb[i]):
                        raise StoreError("corrupt", f"{table} {first}={k}: {c} is {ra[i]!r} in SQLite, "
                                                    f"{rb[i]!r} in PostgreSQL")
                compared += 1
    return compared


async def pg_to_sqlite(pg: Any, dest: Path, progress: Progress | None = None) -> CopyReport:
    """Write the PostgreSQL store ``pg`` into the NEW SQLite database file ``dest`` (the backup
    format), in one PostgreSQL read transaction (REPEATABLE READ: one snapshot while daemons
    write), then verify counts and a sample as ``sqlite_to_pg`` does."""
    from . import Store
    if Path(dest).exists():
        raise StoreError("conflict", f"{dest} exists already")
    store = await Store.open(Path(dest))  # the latest SQLite schema, empty
    await store.close()
    out = sqlite3.connect(str(dest))
    report = CopyReport(schema_version=out.execute("PRAGMA user_version").fetchone()[0])
    try:
        out.execute("PRAGMA journal_mode = DELETE")  # a self-contained single file, like snapshot's

        async def op() -> None:
            async with pg._conn.transaction(isolation="repeatable_read", readonly=True):
                for table, key in TABLES:
                    cols = [c for c in _sqlite_columns(out, table)]
                    sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
                    n = 0
                    async for row in pg._conn.cursor(f"SELECT {', '.join(cols)} FROM {table} ORDER BY {key}",
                                                     prefetch=_BATCH):
                        out.execute(sql, tuple(row))
                        n += 1
                    report.rows[table] = n
                    if progress:
                        progress(f"{table}: {plural(n, 'row')}")
                out.commit()
                got = sqlite_counts(out)
                if got != report.rows:
                    raise StoreError("corrupt", f"row counts differ after the copy: PostgreSQL {report.rows}, SQLite {got}")
                report.sampled = await _compare_sample(out, pg)

        await pg._run(op)
        rows = [r[0] for r in out.execute("PRAGMA integrity_check(20)")]
        if rows != ["ok"]:
            raise StoreError("corrupt", f"the copy failed integrity_check: {rows}")
    finally:
        out.close()
    return report
