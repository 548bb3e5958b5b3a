"""The daemon's database: durable job queue and track library (aiosqlite).

This module (with store_schema.py) is the ONLY place that writes SQL.

Concurrency
    One aiosqlite connection (its own thread, so the event loop never blocks on
    disk).  Every public method runs under one asyncio.Lock, so a multi-statement
    transaction is never interleaved with another coroutine's statements, and it
    runs shielded from cancellation: a caller that is cancelled (a client hangs
    up) cannot leave a transaction half-open; the operation completes or rolls
    back as a whole.  Writes use ``BEGIN IMMEDIATE``.

Durability
    WAL journal, ``synchronous=FULL`` by default: every commit fsyncs the WAL, so
    a job that ``add_job`` returned survives kill -9 AND power loss.  (NORMAL
    would survive kill -9 too; only power loss could drop the last commits.)
    Writes here are human-rate (submits, state changes, one ``finish_job`` per
    job, edits; progress is never stored), so the fsync per commit costs
    nothing that matters; see docs/benchmarks.md for the measured cost.
    ``Store.open(..., synchronous="NORMAL")`` is available for throwaway data.

Crash-safety contract for files (the caller's side)
    * generation: write the audio files first, then ``finish_job`` (one
      transaction: all tracks + tags + FTS + job done).  A crash in between
      leaves files with no row: found at start by comparing the files on disk
      with ``track_paths()``, reported and moved aside; the job is requeued by
      ``recover()`` and runs again.  Never a row without its file.
    * deletion: ``delete_track`` first (commits), THEN move the file to trash.
      A crash in between leaves an orphan file (kept aside at next start), never
      a row pointing at a missing file.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import hashlib
import json
import math
import numbers
import re
import secrets
import sqlite3
import struct
import time
import unicodedata
from array import array
from collections import OrderedDict
from pathlib import Path, PurePosixPath
from typing import Any, Awaitable, Callable, Iterable, TypeVar

import aiosqlite

from .store_schema import LATEST_VERSION, MIGRATIONS

try:  # one source of truth for generation limits when the package is installed
    from dgx_music.common.params import MAX_COUNT, MAX_PROMPT_CHARS, MAX_SEED
except Exception:  # pragma: no cover - store used stand-alone
    MAX_COUNT, MAX_PROMPT_CHARS, MAX_SEED = 16, 2000, 2**32 - 1

__all__ = [
    "Store",
    "StoreError",
    "JOB_STATES",
    "ACTIVE_STATES",
    "FINISHED_STATES",
    "SORT_FIELDS",
    "RELEVANCE",
    "LIST_SORTS",
    "fts_query",
]

T = TypeVar("T")

JOB_STATES = ("queued", "running", "processing", "done", "failed", "cancelled")
ACTIVE_STATES = ("queued", "running", "processing")
FINISHED_STATES = ("done", "failed", "cancelled")

# set_job_state transitions.  queued->running is mark_running, back to queued is
# requeue_job / retry_job, ->done is finish_job (a done job always has its tracks).
_TRANSITIONS = {
    "queued": {"cancelled", "failed"},
    "running": {"processing", "failed", "cancelled"},
    "processing": {"failed", "cancelled"},
    "done": set(),
    "failed": set(),
    "cancelled": set(),
}

MAX_TITLE_CHARS = 200
MAX_NOTES_CHARS = 10_000
MAX_TAG_CHARS = 48
MAX_TAGS_PER_TRACK = 64
MAX_PEAK_PAIRS = 100_000
MAX_LIST_LIMIT = 1000
MAX_SEARCH_TOKENS = 32
_DRIVE_MAX = 2000  # list_tracks: at most this many matches -> the filter drives the query
TITLE_FROM_PROMPT_CHARS = 60

# sort field -> SQL expression.  Each has a matching index (store_schema), and
# the expression is NOT NULL so that keyset pagination needs no NULL cases.
SORT_FIELDS = {
    "created": "t.created",
    "duration": "t.duration",
    "bpm": "ifnull(t.bpm, -1.0)",  # unknown BPM sorts below every real tempo
    "rating": "t.rating",
    "title": "t.title COLLATE NOCASE",
}

# sort=relevance: best match first, only with a search.  FTS5's bm25() with a
# weight per tracks_fts column (prompt, title, tags, notes, the table's order): a
# word in the title or a tag counts most, in the prompt less, in the notes least.
# bm25() is lower for better matches; the sort key is its negation, so "desc" is
# best first like every other sort, and ties go by seq.  No index can serve it:
# every match is scored and sorted (~1.7 us a match end to end, docs/benchmarks.md).
RELEVANCE = "relevance"
RELEVANCE_WEIGHTS = {"prompt": 4.0, "title": 10.0, "tags": 10.0, "notes": 2.0}
_RELEVANCE_EXPR = f"-bm25(tracks_fts, {', '.join(map(str, RELEVANCE_WEIGHTS.values()))})"
LIST_SORTS = (*SORT_FIELDS, RELEVANCE)
# bm25 scores move whenever the library changes (they depend on how many tracks
# hold each word and on the average length), so relevance pages come from the
# ranking made for the first page, kept in memory: the last _RANKINGS_MAX of them,
# at most _RANKING_ROWS_MAX rows in all (16 bytes a row).
_RANKINGS_MAX = 64
_RANKING_ROWS_MAX = 1_000_000
# A ranking keeps the best _RANKING_CAP matches: SQLite's top-N sort is ~40% cheaper than
# sorting and fetching every match of a broad search (48k: 69 -> 42 ms). Pages past the cap
# go on by keyset from the last kept row, as when a ranking is no longer kept.
_RANKING_CAP = 2000

_ANALYSIS_FLOATS = (
    "lufs_before",
    "lufs",
    "true_peak",
    "gain_db",
    "bpm",
    "bpm_confidence",
    "key_confidence",
)
_ANALYSIS_TEXT = ("loudness_note", "key")
ANALYSIS_FIELDS = _ANALYSIS_FLOATS + _ANALYSIS_TEXT

_PEAKS_COL = "(SELECT p.peaks FROM track_peaks p WHERE p.seq = t.seq) AS peaks"
_TRACK_COLS = (
    "seq, id, job_id, path, prompt, title, model, backend, seed, idx, params, duration,"
    " sample_rate, channels, created, lufs_before, lufs, true_peak, gain_db,"
    " loudness_note, bpm, bpm_confidence, key, key_confidence, rating, favorite, notes"
)
_JOB_COLS = (
    "id, state, prompt, params, count, seed, model, backend, position, attempts,"
    " max_attempts, error, created, started, finished"
)

_PEAKS_MAGIC = b"P1"  # version tag: float16 little-endian (min, max) pairs follow


class StoreError(Exception):
    """A refused or failed store operation.

    ``code`` is one of: not_found, invalid, conflict, queue_full, corrupt, disk_full.
    ``field`` names the offending input for ``invalid`` when there is one.
    """

    CODES = ("not_found", "invalid", "conflict", "queue_full", "corrupt", "disk_full")

    def __init__(self, code: str, message: str, *, field: str | None = None) -> None:
        assert code in self.CODES, code
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    def __repr__(self) -> str:
        return f"StoreError({self.code!r}, {self.message!r})"


# ---------------------------------------------------------------- validation


def _invalid(field: str, message: str) -> StoreError:
    return StoreError("invalid", f"{field}: {message}", field=field)


def _int(field: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise _invalid(field, f"must be an integer, got {type(value).__name__}")
    value = int(value)  # numpy integers too
    if lo is not None and value < lo:
        raise _invalid(field, f"must be >= {lo}, got {value}")
    if hi is not None and value > hi:
        raise _invalid(field, f"must be <= {hi}, got {value}")
    return value


def _float(field: str, value: Any, *, lo: float | None = None, hi: float | None = None,
           optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _invalid(field, f"must be a number, got {type(value).__name__}")
    value = float(value)  # numpy floats too
    if not math.isfinite(value):
        raise _invalid(field, "must be a finite number")
    if lo is not None and value < lo:
        raise _invalid(field, f"must be >= {lo}, got {value}")
    if hi is not None and value > hi:
        raise _invalid(field, f"must be <= {hi}, got {value}")
    return value


def _text(field: str, value: Any, *, max_chars: int, optional: bool = False,
          allow_empty: bool = True) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise _invalid(field, f"must be a string, got {type(value).__name__}")
    if "\x00" in value:
        raise _invalid(field, "must not contain NUL characters")
    if len(value) > max_chars:
        raise _invalid(field, f"is too long ({len(value)} chars, max {max_chars})")
    if not allow_empty and not value.strip():
        raise _invalid(field, "must not be empty")
    return value


def _job_id(value: Any) -> int:
    return _int("job_id", value, 1)


def _track_id(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > 64:
        raise _invalid("track_id", f"must be a non-empty string id, got {value!r}")
    return value


def _json_dict(field: str, value: Any) -> str:
    if not isinstance(value, dict):
        raise _invalid(field, f"must be a dict, got {type(value).__name__}")
    try:
        return json.dumps(value, allow_nan=False, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise _invalid(field, f"must be JSON-serialisable ({e})") from None


_TAG_SPACE = re.compile(r"\s+")


def normalise_tag(value: Any) -> str:
    """Lowercase, trimmed, inner whitespace -> '-'.  ``"Lo Fi "`` -> ``"lo-fi"``."""
    if not isinstance(value, str):
        raise _invalid("tag", f"must be a string, got {type(value).__name__}")
    tag = _TAG_SPACE.sub("-", unicodedata.normalize("NFC", value).strip().lower())
    if not tag:
        raise _invalid("tag", "must not be empty")
    if len(tag) > MAX_TAG_CHARS:
        raise _invalid("tag", f"{tag[:20]!r}... is too long (max {MAX_TAG_CHARS} chars)")
    if any(unicodedata.category(c).startswith("C") for c in tag):
        raise _invalid("tag", f"{tag!r} contains control characters")
    if tag.startswith(("+", "-")):
        # `dgx-music tag TRACK +a -b` uses the sign as the operation.
        raise _invalid("tag", f"{tag!r} must not start with '+' or '-'")
    return tag


def _tag_list(field: str, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):  # a bare string is one tag, not its characters
        value = [value]
    try:
        items = list(value)
    except TypeError:
        raise _invalid(field, f"must be a list of strings, got {type(value).__name__}") from None
    out: list[str] = []
    for item in items:
        tag = normalise_tag(item)
        if tag not in out:
            out.append(tag)
    return out


def _rel_path(value: Any) -> str:
    path = _text("path", value, max_chars=4096, allow_empty=False)
    assert path is not None
    p = PurePosixPath(path.replace("\\", "/"))
    if p.is_absolute() or re.match(r"^[A-Za-z]:", path):
        raise _invalid("path", f"must be relative to the data dir, got {path!r}")
    if ".." in p.parts:
        raise _invalid("path", f"must not contain '..', got {path!r}")
    return str(p)


def pack_peaks(peaks: Any) -> bytes | None:
    """[[min, max], ...] -> compact BLOB (float16 pairs, 4 bytes per pair)."""
    if peaks is None:
        return None
    if isinstance(peaks, (str, bytes)):
        raise _invalid("peaks", "must be a list of [min, max] pairs")
    if hasattr(peaks, "tolist"):  # a numpy array of shape (n, 2)
        peaks = peaks.tolist()
    try:
        pairs = list(peaks)
    except TypeError:
        raise _invalid("peaks", "must be a list of [min, max] pairs") from None
    if len(pairs) > MAX_PEAK_PAIRS:
        raise _invalid("peaks", f"too many pairs ({len(pairs)}, max {MAX_PEAK_PAIRS})")
    flat: list[float] = []
    for i, pair in enumerate(pairs):
        try:
            lo, hi = pair
        except (TypeError, ValueError):
            raise _invalid("peaks", f"item {i} must be a [min, max] pair") from None
        for v in (lo, hi):
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) \
                    or abs(v) > 65504.0:
                raise _invalid("peaks", f"item {i} has a non-finite or out-of-range value {v!r}")
        flat += (float(lo), float(hi))  # type: ignore[arg-type]
    return _PEAKS_MAGIC + struct.pack(f"<{len(flat)}e", *flat)


def unpack_peaks(blob: bytes | None) -> list[list[float]] | None:
    if blob is None:
        return None
    if not blob.startswith(_PEAKS_MAGIC) or (len(blob) - 2) % 4:
        raise StoreError("corrupt", "peaks blob has an unknown format")
    vals = struct.unpack(f"<{(len(blob) - 2) // 2}e", blob[2:])
    return [[vals[i], vals[i + 1]] for i in range(0, len(vals), 2)]


# ---------------------------------------------------------------- full-text


def fts_query(text: str | None) -> str | None:
    """Turn ANY user text into a safe FTS5 MATCH expression, or None for "no search".

    Each whitespace-separated token becomes an FTS5 string ("..." with inner
    quotes doubled), so operators (AND, OR, NOT, NEAR), `*`, `-`, `:`, `^`,
    parentheses and quotes are plain text, never syntax.  Tokens are ANDed;
    the last one is a prefix match ("tok"*) so search-as-you-type works.
    Control characters (NUL would end the FTS string early) become spaces;
    tokens with no letter or digit are dropped (the tokenizer would index
    nothing for them).  At most MAX_SEARCH_TOKENS tokens are used.
    """
    if text is None:
        return None
    if not isinstance(text, str):
        raise _invalid("search", f"must be a string, got {type(text).__name__}")
    cleaned = "".join(" " if unicodedata.category(c) in ("Cc", "Cs") else c for c in text)
    tokens = [tok for tok in cleaned.split() if any(c.isalnum() for c in tok)]
    tokens = tokens[:MAX_SEARCH_TOKENS]
    if not tokens:
        return None
    parts = ['"' + tok.replace('"', '""') + '"' for tok in tokens]
    parts[-1] += "*"
    return " ".join(parts)


# ---------------------------------------------------------------- cursors


def _encode_cursor(sort: str, order: str, fingerprint: str, value: Any, seq: int,
                   drive: bool, *extra: Any) -> str:
    raw = json.dumps([1, sort, order, fingerprint, value, seq, int(drive), *extra],
                     separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: Any, sort: str, order: str,
                   fingerprint: str) -> tuple[Any, int, bool, list[Any]]:
    """(value, seq, drive, extra); extra is [ranking id or None, position] for relevance."""
    if not isinstance(cursor, str) or not cursor or len(cursor) > 2000:
        raise _invalid("cursor", "is not a cursor returned by list_tracks")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        version, c_sort, c_order, c_fp, value, seq, drive, *extra = json.loads(raw)
    except Exception:
        raise _invalid("cursor", "is not a cursor returned by list_tracks") from None
    if version != 1 or isinstance(seq, bool) or not isinstance(seq, int):
        raise _invalid("cursor", "is not a cursor returned by list_tracks")
    if (c_sort, c_order) != (sort, order):
        raise _invalid("cursor", f"was made for sort={c_sort} order={c_order}, "
                                 f"not sort={sort} order={order}")
    if c_fp != fingerprint:
        raise _invalid("cursor", "was made for different search/filters; start from the first page")
    want = str if sort == "title" else (int, float)
    if isinstance(value, bool) or not isinstance(value, want):
        raise _invalid("cursor", "is not a cursor returned by list_tracks")
    if sort == RELEVANCE:
        ok = (len(extra) == 2 and (extra[0] is None or isinstance(extra[0], str) and len(extra[0]) <= 32)
              and type(extra[1]) is int and extra[1] >= 0)
    else:
        ok = not extra
    if not ok:
        raise _invalid("cursor", "is not a cursor returned by list_tracks")
    return value, seq, bool(drive), extra


class _Ranking:
    """A relevance ranking kept for later pages: track seqs best first, and their scores."""

    __slots__ = ("capped", "fingerprint", "order", "scores", "seqs")

    def __init__(self, fingerprint: str, order: str, seqs: array, scores: array, capped: bool = False) -> None:
        self.fingerprint, self.order, self.seqs, self.scores = fingerprint, order, seqs, scores
        self.capped = capped  # more matches than the ranking holds (_RANKING_CAP)


# ---------------------------------------------------------------- rows -> dicts


def _job_dict(row: sqlite3.Row, track_ids: list[str]) -> dict:
    d = dict(row)
    d["params"] = json.loads(d["params"]) if d["params"] else {}
    d["track_ids"] = track_ids
    return d


def _track_dict(row: sqlite3.Row, tags: list[str], peaks: bytes | None | bool = False) -> dict:
    d = dict(row)
    d.pop("seq", None)
    d.pop("peaks", None)
    d["index"] = d.pop("idx")
    d["params"] = json.loads(d["params"]) if d["params"] else {}
    d["favorite"] = bool(d["favorite"])
    d["tags"] = tags
    if peaks is not False:
        d["peaks"] = unpack_peaks(peaks)  # type: ignore[arg-type]
    return d


# ---------------------------------------------------------------- the store


class Store:
    """Async facade over the database.  Create with ``await Store.open(path)``."""

    def __init__(self, conn: aiosqlite.Connection, path: Path, queue_limit: int) -> None:
        self._conn = conn
        self.path = path
        self.queue_limit = queue_limit
        self._lock = asyncio.Lock()
        self._closed = False
        # relevance rankings kept for their next pages: id -> _Ranking (list_tracks)
        self._rankings: OrderedDict[str, _Ranking] = OrderedDict()

    # ------------------------------------------------------------ lifecycle

    @classmethod
    async def open(cls, path: Path | str, *, queue_limit: int = 1000,
                   synchronous: str = "FULL", check: str = "quick") -> "Store":
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
        if version > LATEST_VERSION:
            raise StoreError("invalid", f"{self.path} has schema version {version}, newer than "
                                        f"this dgx-music supports ({LATEST_VERSION}); upgrade dgx-music")
        if 0 < version < LATEST_VERSION:
            await self._backup_before_migration(version)
        for v in range(version, LATEST_VERSION):
            await self._migrate(v)
        if 0 < version < LATEST_VERSION:
            # Migrations rewrite tables (v2 moves peaks out of tracks) and leave
            # pages half empty; compact once (the file had doubled at 100k tracks).
            await c.execute("VACUUM")

    async def _backup_before_migration(self, version: int) -> None:
        backup = self.path.with_name(f"{self.path.name}.v{version}.bak")
        if backup.exists():
            return
        dst = await aiosqlite.connect(str(backup))
        try:
            await self._conn.backup(dst)
        finally:
            await dst.close()

    async def _migrate(self, version: int) -> None:
        c = self._conn
        await c.execute("BEGIN IMMEDIATE")
        try:
            for stmt in MIGRATIONS[version]:
                await c.execute(stmt)
            await c.execute(f"PRAGMA user_version = {version + 1}")
            await c.execute("COMMIT")
        except BaseException as e:
            await c.execute("ROLLBACK")
            if isinstance(e, sqlite3.Error):
                raise StoreError("corrupt", f"{self.path}: migration to schema v{version + 1} "
                                            f"failed: {e}") from e
            raise

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

    async def __aenter__(self) -> "Store":
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
        try:
            return await asyncio.shield(task)
        except (sqlite3.Error, OSError) as exc:
            # SQLITE_FULL or ENOSPC/EDQUOT: one error the queue can pause on, not `internal`.
            full = (getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
                    or "database or disk is full" in str(exc)
                    or getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT))
            if full:
                raise StoreError("disk_full", f"the disk holding {self.path} is full ({exc}); "
                                              "free some space") from exc
            raise

    async def _write(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Like _run, inside BEGIN IMMEDIATE .. COMMIT (ROLLBACK on any error)."""

        async def tx() -> T:
            c = self._conn
            await c.execute("BEGIN IMMEDIATE")
            try:
                result = await fn()
                await c.execute("COMMIT")
                return result
            except BaseException:
                if c.in_transaction:
                    await c.execute("ROLLBACK")
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

    # ------------------------------------------------------------ jobs: reads

    async def _job_row(self, job_id: int) -> sqlite3.Row:
        row = await self._one(f"SELECT {_JOB_COLS} FROM jobs WHERE id = ?", (job_id,))
        if row is None:
            raise StoreError("not_found", f"no job {job_id}")
        return row

    async def _job(self, job_id: int) -> dict:
        row = await self._job_row(job_id)
        ids = await self._all("SELECT id FROM tracks WHERE job_id = ? ORDER BY idx, id", (job_id,))
        return _job_dict(row, [r[0] for r in ids])

    async def _jobs(self, rows: list[sqlite3.Row]) -> list[dict]:
        if not rows:
            return []
        ids = [r["id"] for r in rows]
        by_job: dict[int, list[str]] = {i: [] for i in ids}
        for chunk in range(0, len(ids), 500):
            part = ids[chunk:chunk + 500]
            q = ",".join("?" * len(part))
            for r in await self._all(
                    f"SELECT job_id, id FROM tracks WHERE job_id IN ({q}) ORDER BY job_id, idx, id",
                    part):
                by_job[r[0]].append(r[1])
        return [_job_dict(r, by_job[r["id"]]) for r in rows]

    async def get_job(self, job_id: int) -> dict:
        job_id = _job_id(job_id)
        return await self._run(lambda: self._job(job_id))

    async def list_jobs(self, *, include_finished: bool = False, limit: int = 200) -> list[dict]:
        """Running/processing (by start), then queued (queue order); with
        ``include_finished`` then done/failed/cancelled, most recently finished first."""
        limit = _int("limit", limit, 1, 10_000)
        where = "" if include_finished else "WHERE state IN ('queued','running','processing')"
        sql = (f"SELECT {_JOB_COLS} FROM jobs {where} ORDER BY "
               "CASE state WHEN 'running' THEN 0 WHEN 'processing' THEN 0 "
               "WHEN 'queued' THEN 1 ELSE 2 END, "
               "CASE WHEN state IN ('running','processing') THEN started END, "
               "CASE WHEN state = 'queued' THEN position END, "
               "finished DESC, id DESC LIMIT ?")

        async def op() -> list[dict]:
            return await self._jobs(await self._all(sql, (limit,)))

        return await self._run(op)

    async def next_queued_job(self) -> dict | None:
        async def op() -> dict | None:
            row = await self._one(f"SELECT {_JOB_COLS} FROM jobs WHERE state = 'queued' "
                                  "ORDER BY position, id LIMIT 1")
            return None if row is None else _job_dict(row, [])

        return await self._run(op)

    async def _depth(self) -> dict:
        counts = {s: 0 for s in JOB_STATES}
        for r in await self._all("SELECT state, count(*) FROM jobs GROUP BY state"):
            counts[r[0]] = r[1]
        counts["active"] = sum(counts[s] for s in ACTIVE_STATES)
        counts["limit"] = self.queue_limit
        return counts

    async def queue_depth(self) -> dict:
        """Counts by state, plus "active" (queued+running+processing) and "limit"."""
        return await self._run(self._depth)

    async def melody_keys(self) -> set[str]:
        """The stored melodies (daemon/melodies.py) that some job still refers to."""
        async def op() -> set[str]:
            rows = await self._all("SELECT DISTINCT json_extract(params, '$.melody') FROM jobs "
                                   "WHERE json_extract(params, '$.melody') IS NOT NULL")
            return {str(r[0]) for r in rows}

        return await self._run(op)

    async def prompt_history(self, limit: int = 100) -> list[str]:
        """Distinct prompts, most recently submitted first."""
        limit = _int("limit", limit, 1, 10_000)

        async def op() -> list[str]:
            rows = await self._all("SELECT prompt FROM jobs GROUP BY prompt "
                                   "ORDER BY max(id) DESC LIMIT ?", (limit,))
            return [r[0] for r in rows]

        return await self._run(op)

    # ------------------------------------------------------------ jobs: writes

    async def _check_room(self, adding: int = 1) -> None:
        active = await self._scalar("SELECT count(*) FROM jobs WHERE state IN "
                                    "('queued','running','processing')")
        if active + adding > self.queue_limit:
            raise StoreError("queue_full", f"the queue is full ({active} active jobs, limit "
                                           f"{self.queue_limit}); wait for jobs to finish or "
                                           "cancel some")

    async def _next_position(self) -> int:
        top = await self._scalar("SELECT max(position) FROM jobs")
        return 1 if top is None else top + 1

    async def add_job(self, *, prompt: str, params: dict, count: int, seed: int,
                      model: str | None, backend: str | None = None,
                      max_attempts: int = 3) -> dict:
        """Queue a job at the end.  Committed (fsynced) before it returns."""
        prompt = _text("prompt", prompt, max_chars=MAX_PROMPT_CHARS, allow_empty=False)
        params_json = _json_dict("params", params)
        count = _int("count", count, 1, MAX_COUNT)
        seed = _int("seed", seed, 0, MAX_SEED)
        model = _text("model", model, max_chars=500, optional=True)
        backend = _text("backend", backend, max_chars=100, optional=True)
        max_attempts = _int("max_attempts", max_attempts, 1, 100)

        async def op() -> dict:
            await self._check_room()
            position = await self._next_position()
            cur = await self._conn.execute(
                "INSERT INTO jobs (state, prompt, params, count, seed, model, backend, position,"
                " max_attempts, created) VALUES ('queued', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (prompt, params_json, count, seed, model, backend, position, max_attempts,
                 time.time()))
            job_id = cur.lastrowid
            await cur.close()
            return await self._job(job_id)

        return await self._write(op)

    async def _state_of(self, job_id: int) -> str:
        return (await self._job_row(job_id))["state"]

    async def mark_running(self, job_id: int, *, backend: str | None = None) -> dict:
        """queued -> running; attempts += 1 (counted now, so a crash counts), started = now."""
        job_id = _job_id(job_id)
        backend = _text("backend", backend, max_chars=100, optional=True)

        async def op() -> dict:
            state = await self._state_of(job_id)
            if state != "queued":
                raise StoreError("conflict", f"job {job_id} is {state}, only a queued job can start")
            await self._conn.execute(
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, started = ?,"
                " finished = NULL, backend = coalesce(?, backend) WHERE id = ?",
                (time.time(), backend, job_id))
            return await self._job(job_id)

        return await self._write(op)

    async def set_job_state(self, job_id: int, state: str, *, error: str | None = None) -> dict:
        """Allowed: queued -> cancelled|failed; running -> processing|failed|cancelled;
        processing -> failed|cancelled.  (Start: mark_running; back to the queue:
        requeue_job/retry_job; done: finish_job, which stores the tracks.)"""
        job_id = _job_id(job_id)
        if state not in JOB_STATES:
            raise _invalid("state", f"unknown state {state!r}; one of {', '.join(JOB_STATES)}")
        hint = {"done": "use finish_job (it stores the tracks)", "running": "use mark_running",
                "queued": "use requeue_job or retry_job"}
        if state in hint:
            raise _invalid("state", f"cannot set {state!r} directly: {hint[state]}")
        error = _text("error", error, max_chars=10_000, optional=True)

        async def op() -> dict:
            current = await self._state_of(job_id)
            if state == current:
                return await self._job(job_id)
            if state not in _TRANSITIONS[current]:
                raise StoreError("conflict", f"job {job_id} is {current}, cannot become {state}")
            finished = time.time() if state in FINISHED_STATES else None
            await self._conn.execute(
                "UPDATE jobs SET state = ?, error = coalesce(?, error),"
                " finished = coalesce(?, finished) WHERE id = ?",
                (state, error, finished, job_id))
            return await self._job(job_id)

        return await self._write(op)

    async def requeue_job(self, job_id: int, *, error: str) -> dict:
        """Transient failure of a running/processing job: back to queued at its old
        position, or failed if attempts >= max_attempts (reason kept in ``error``)."""
        job_id = _job_id(job_id)
        error = _text("error", error, max_chars=10_000, allow_empty=False)

        async def op() -> dict:
            row = await self._job_row(job_id)
            if row["state"] not in ("running", "processing"):
                raise StoreError("conflict", f"job {job_id} is {row['state']}, only a running "
                                             "job can be requeued")
            await self._requeue_or_fail(row, error)
            return await self._job(job_id)

        return await self._write(op)

    async def release_job(self, job_id: int) -> dict:
        """A running job interrupted by an orderly daemon shutdown goes back to the queue at
        its old position, and the attempt is not counted: only crashes use up attempts."""
        job_id = _job_id(job_id)

        async def op() -> dict:
            row = await self._job_row(job_id)
            if row["state"] not in ("running", "processing"):
                raise StoreError("conflict", f"job {job_id} is {row['state']}, not running")
            await self._conn.execute(
                "UPDATE jobs SET state = 'queued', started = NULL, attempts = max(attempts - 1, 0)"
                " WHERE id = ?", (job_id,))
            return await self._job(job_id)

        return await self._write(op)

    async def _requeue_or_fail(self, row: sqlite3.Row, error: str,
                               max_attempts: int | None = None) -> str:
        cap = row["max_attempts"] if max_attempts is None else max_attempts
        if row["attempts"] >= cap:
            await self._conn.execute(
                "UPDATE jobs SET state = 'failed', finished = ?, error = ? WHERE id = ?",
                (time.time(), f"{error} (gave up after {row['attempts']} attempts)", row["id"]))
            return "failed"
        await self._conn.execute(
            "UPDATE jobs SET state = 'queued', started = NULL, error = ? WHERE id = ?",
            (error, row["id"]))
        return "queued"

    async def retry_job(self, job_id: int) -> dict:
        """failed|cancelled -> queued at the END, attempts reset, error cleared."""
        job_id = _job_id(job_id)

        async def op() -> dict:
            state = await self._state_of(job_id)
            if state not in ("failed", "cancelled"):
                raise StoreError("conflict", f"job {job_id} is {state}; only a failed or "
                                             "cancelled job can be retried")
            await self._check_room()
            await self._conn.execute(
                "UPDATE jobs SET state = 'queued', position = ?, attempts = 0, error = NULL,"
                " started = NULL, finished = NULL WHERE id = ?",
                (await self._next_position(), job_id))
            return await self._job(job_id)

        return await self._write(op)

    async def cancel_queued(self, job_id: int) -> dict:
        """Cancel a queued job at once (a running one is cancelled by the runner)."""
        job_id = _job_id(job_id)

        async def op() -> dict:
            state = await self._state_of(job_id)
            if state != "queued":
                raise StoreError("conflict", f"job {job_id} is {state}, not queued")
            await self._conn.execute(
                "UPDATE jobs SET state = 'cancelled', finished = ? WHERE id = ?",
                (time.time(), job_id))
            return await self._job(job_id)

        return await self._write(op)

    async def move_job(self, job_id: int, where: str) -> dict:
        """Move a queued job: "top", "up" or "down" (no-op at either end)."""
        job_id = _job_id(job_id)
        if where not in ("top", "up", "down"):
            raise _invalid("where", f"must be 'top', 'up' or 'down', got {where!r}")

        async def op() -> dict:
            row = await self._job_row(job_id)
            if row["state"] != "queued":
                raise StoreError("conflict", f"job {job_id} is {row['state']}; only queued "
                                             "jobs can be moved")
            pos = row["position"]
            if where == "top":
                first = await self._scalar("SELECT min(position) FROM jobs WHERE state = 'queued'")
                if first < pos:
                    await self._conn.execute("UPDATE jobs SET position = ? WHERE id = ?",
                                             (first - 1, job_id))
            else:
                cmp, direction = ("<", "DESC") if where == "up" else (">", "ASC")
                other = await self._one(
                    f"SELECT id, position FROM jobs WHERE state = 'queued' AND position {cmp} ? "
                    f"ORDER BY position {direction} LIMIT 1", (pos,))
                if other is not None:
                    await self._conn.execute("UPDATE jobs SET position = ? WHERE id = ?",
                                             (other["position"], job_id))
                    await self._conn.execute("UPDATE jobs SET position = ? WHERE id = ?",
                                             (pos, other["id"]))
            return await self._job(job_id)

        return await self._write(op)

    async def recover(self, *, max_attempts: int | None = None) -> dict:
        """At daemon start: jobs left running/processing by a crash go back to the
        queue (their attempt was counted by mark_running), or fail past the cap.
        The cap is ``max_attempts`` if given, else each job's own (default 3).
        Returns {"requeued": [ids], "failed": [ids]}."""
        if max_attempts is not None:
            max_attempts = _int("max_attempts", max_attempts, 1, 100)

        async def op() -> dict:
            out: dict[str, list[int]] = {"requeued": [], "failed": []}
            rows = await self._all(f"SELECT {_JOB_COLS} FROM jobs WHERE state IN "
                                   "('running','processing') ORDER BY position, id")
            for row in rows:
                result = await self._requeue_or_fail(
                    row, f"interrupted: the daemon stopped while the job was {row['state']}",
                    max_attempts)
                out["requeued" if result == "queued" else "failed"].append(row["id"])
            return out

        return await self._write(op)

    async def prune_jobs(self, *, older_than: float, states: Iterable[str] = FINISHED_STATES,
                         dry_run: bool = False, now: float | None = None) -> dict:
        """Delete finished jobs that ended more than ``older_than`` seconds before
        ``now`` (default: the current time) and that no track belongs to.

        Only jobs in ``states`` (a non-empty subset of FINISHED_STATES) are
        considered: a queued, running or processing job is never touched, and
        neither is a finished job without a ``finished`` time.  A job that any
        track row still references is KEPT (tracks are the library; the
        ``tracks.job_id`` foreign key would refuse the delete anyway) and
        counted in ``kept_with_tracks``; once its tracks are deleted, a later
        prune removes it.  Job ids are AUTOINCREMENT, so a pruned id is never
        given to a new job.  One transaction; with ``dry_run`` nothing is
        deleted and ``removed`` counts what would be.

        Returns {"removed": n, "kept_with_tracks": n, "ids": [removed ids,
        ascending], "cutoff": Unix time (jobs finished before it were eligible)}.
        """
        older_than = _float("older_than", older_than, lo=0.0)
        now = _float("now", now, optional=True)
        if isinstance(states, str):
            states = [states]
        states = tuple(dict.fromkeys(states))
        if not states:
            raise _invalid("states", "must name at least one finished state")
        for s in states:
            if s not in FINISHED_STATES:
                raise _invalid("states", f"{s!r} is not a finished state; one of "
                                         f"{', '.join(FINISHED_STATES)}")
        dry_run = _bool("dry_run", dry_run)
        cutoff = (time.time() if now is None else now) - older_than
        if not math.isfinite(cutoff):
            raise _invalid("older_than", "is too large")
        q = ",".join("?" * len(states))
        old = f"state IN ({q}) AND finished IS NOT NULL AND finished < ?"
        owns = "EXISTS (SELECT 1 FROM tracks t WHERE t.job_id = jobs.id)"
        args = (*states, cutoff)

        async def op() -> dict:
            kept = await self._scalar(f"SELECT count(*) FROM jobs WHERE {old} AND {owns}", args)
            if dry_run:
                rows = await self._all(f"SELECT id FROM jobs WHERE {old} AND NOT {owns}", args)
            else:
                rows = await self._all(f"DELETE FROM jobs WHERE {old} AND NOT {owns} RETURNING id",
                                       args)
            ids = sorted(r[0] for r in rows)
            return {"removed": len(ids), "kept_with_tracks": kept, "ids": ids, "cutoff": cutoff}

        return await (self._run(op) if dry_run else self._write(op))

    # ------------------------------------------------------------ tracks: writes

    _TRACK_KEYS = frozenset({"path", "duration", "sample_rate", "channels", "index", "title",
                             "model", "backend", "peaks", "tags", *ANALYSIS_FIELDS})
    _IMPORT_KEYS = _TRACK_KEYS | {"id", "job_id", "prompt", "seed", "params", "created",
                                  "rating", "favorite", "notes"}

    def _track_row(self, t: Any, *, allowed: frozenset, pos: int) -> dict:
        if not isinstance(t, dict):
            raise _invalid(f"tracks[{pos}]", f"must be a dict, got {type(t).__name__}")
        unknown = set(t) - allowed
        if unknown:
            raise _invalid(f"tracks[{pos}]", f"unknown field(s): {', '.join(sorted(unknown))}")
        missing = {"path", "duration", "sample_rate", "channels"} - set(t)
        if missing:
            raise _invalid(f"tracks[{pos}]", f"missing field(s): {', '.join(sorted(missing))}")
        r: dict[str, Any] = {
            "path": _rel_path(t["path"]),
            "duration": _float("duration", t["duration"], lo=0.0, hi=86_400.0),
            "sample_rate": _int("sample_rate", t["sample_rate"], 1, 1_000_000),
            "channels": _int("channels", t["channels"], 1, 64),
            "title": _text("title", t.get("title"), max_chars=MAX_TITLE_CHARS, optional=True),
            "model": _text("model", t.get("model"), max_chars=500, optional=True),
            "backend": _text("backend", t.get("backend"), max_chars=100, optional=True),
            "peaks": pack_peaks(t.get("peaks")),
            "tags": _tag_list("tags", t.get("tags")),
        }
        if len(r["tags"]) > MAX_TAGS_PER_TRACK:
            raise _invalid("tags", f"at most {MAX_TAGS_PER_TRACK} tags per track")
        for f in _ANALYSIS_FLOATS:
            r[f] = _analysis_float(f, t.get(f))
        for f in _ANALYSIS_TEXT:
            r[f] = _text(f, t.get(f), max_chars=1000, optional=True)
        return r

    async def _insert_track(self, r: dict) -> None:
        try:
            cur = await self._conn.execute(
                "INSERT INTO tracks (id, job_id, path, prompt, title, model, backend, seed, idx,"
                " params, duration, sample_rate, channels, created, lufs_before, lufs, true_peak,"
                " gain_db, loudness_note, bpm, bpm_confidence, key, key_confidence, rating,"
                " favorite, notes) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (r["id"], r["job_id"], r["path"], r["prompt"], r["title"], r["model"],
                 r["backend"], r["seed"], r["idx"], r["params"], r["duration"],
                 r["sample_rate"], r["channels"], r["created"], r["lufs_before"], r["lufs"],
                 r["true_peak"], r["gain_db"], r["loudness_note"], r["bpm"],
                 r["bpm_confidence"], r["key"], r["key_confidence"],
                 r.get("rating", 0), int(r.get("favorite", False)), r.get("notes", "")))
        except sqlite3.IntegrityError as e:
            if "UNIQUE" in str(e) and "tracks.id" in str(e):
                raise StoreError("conflict", f"track {r['id']} already exists") from None
            raise
        seq = cur.lastrowid
        await cur.close()
        if r["peaks"] is not None:
            await self._conn.execute("INSERT INTO track_peaks (seq, peaks) VALUES (?, ?)",
                                     (seq, r["peaks"]))
        await self._add_tags(seq, r["tags"])

    async def _add_tags(self, seq: int, tags: list[str]) -> None:
        for tag in tags:
            await self._conn.execute("INSERT OR IGNORE INTO tags (name) VALUES (?)", (tag,))
            await self._conn.execute(
                "INSERT OR IGNORE INTO track_tags (tag_id, track_seq) "
                "SELECT id, ? FROM tags WHERE name = ?", (seq, tag))

    async def finish_job(self, job_id: int, tracks: list[dict]) -> list[dict]:
        """ONE transaction: insert every track (+ tags + FTS) and mark the job done.

        ``tracks``: 1..count dicts with path (relative to the data dir), duration,
        sample_rate, channels; optional index (default: position in the list),
        title (default: the prompt's first 60 chars), model/backend (default: the
        job's), tags, peaks ([[min, max], ...]) and the analysis fields.  Prompt,
        seed and params come from the job.  Track ids are "<job_id>-<index>", so a
        second finish_job for the same job is a conflict and writes nothing.
        """
        job_id = _job_id(job_id)
        if not isinstance(tracks, (list, tuple)) or not tracks:
            raise _invalid("tracks", "must be a non-empty list of track dicts")
        rows = [self._track_row(t, allowed=self._TRACK_KEYS, pos=i) for i, t in enumerate(tracks)]
        indexes = [_int("index", t.get("index", i), 0, MAX_COUNT * 64)
                   for i, t in enumerate(tracks)]
        if len(set(indexes)) != len(indexes):
            raise _invalid("tracks", f"duplicate track index in {indexes}")

        async def op() -> list[dict]:
            job = await self._job_row(job_id)
            if job["state"] == "done":
                raise StoreError("conflict", f"job {job_id} is already done; its tracks exist")
            if job["state"] not in ("running", "processing"):
                raise StoreError("conflict", f"job {job_id} is {job['state']}, not running")
            if len(rows) > job["count"] or max(indexes) >= job["count"]:
                raise _invalid("tracks", f"job {job_id} has count {job['count']}: got "
                                         f"{len(rows)} track(s) with indexes {indexes}")
            now = time.time()
            for r, idx in zip(rows, indexes):
                r.update(id=f"{job_id}-{idx}", job_id=job_id, prompt=job["prompt"],
                         seed=job["seed"], idx=idx, params=job["params"], created=now,
                         title=r["title"] or default_title(job["prompt"]),
                         model=r["model"] or job["model"], backend=r["backend"] or job["backend"])
                await self._insert_track(r)
            await self._conn.execute(
                "UPDATE jobs SET state = 'done', finished = ?, error = NULL WHERE id = ?",
                (now, job_id))
            return await self._tracks_by_ids([r["id"] for r in rows], with_peaks=False)

        return await self._write(op)

    async def import_tracks(self, tracks: list[dict]) -> int:
        """Bulk insert of complete track rows in one transaction (library import,
        benchmarks).  Each dict has finish_job's fields plus id, prompt and
        optionally job_id, seed, params, created, rating, favorite, notes."""
        if not isinstance(tracks, (list, tuple)):
            raise _invalid("tracks", "must be a list of track dicts")
        rows = []
        for i, t in enumerate(tracks):
            r = self._track_row(t, allowed=self._IMPORT_KEYS, pos=i)
            prompt = _text("prompt", t.get("prompt"), max_chars=MAX_PROMPT_CHARS, allow_empty=False)
            r.update(
                id=_track_id(t.get("id")),
                job_id=None if t.get("job_id") is None else _job_id(t["job_id"]),
                prompt=prompt,
                title=r["title"] or default_title(prompt),
                seed=None if t.get("seed") is None else _int("seed", t["seed"], 0, MAX_SEED),
                idx=_int("index", t.get("index", 0), 0),
                params=_json_dict("params", t.get("params", {})),
                created=_float("created", t.get("created", time.time())),
                rating=_int("rating", t.get("rating", 0), 0, 5),
                favorite=_bool("favorite", t.get("favorite", False)),
                notes=_text("notes", t.get("notes", ""), max_chars=MAX_NOTES_CHARS),
            )
            rows.append(r)

        async def op() -> int:
            for r in rows:
                await self._insert_track(r)
            return len(rows)

        return await self._write(op)

    async def update_track(self, track_id: str, *, title: str | None = None,
                           rating: int | None = None, favorite: bool | None = None,
                           notes: str | None = None, tags_add: Iterable[str] = (),
                           tags_remove: Iterable[str] = ()) -> dict:
        """Change user fields; None/empty leaves a field alone.  Returns the track."""
        track_id = _track_id(track_id)
        sets: dict[str, Any] = {}
        if title is not None:
            sets["title"] = _text("title", title, max_chars=MAX_TITLE_CHARS,
                                  allow_empty=False).strip()  # type: ignore[union-attr]
        if rating is not None:
            sets["rating"] = _int("rating", rating, 0, 5)
        if favorite is not None:
            sets["favorite"] = int(_bool("favorite", favorite))
        if notes is not None:
            sets["notes"] = _text("notes", notes, max_chars=MAX_NOTES_CHARS)
        add = _tag_list("tags_add", tags_add)
        remove = _tag_list("tags_remove", tags_remove)
        both = set(add) & set(remove)
        if both:
            raise _invalid("tags", f"both added and removed: {', '.join(sorted(both))}")

        async def op() -> dict:
            seq = await self._seq(track_id)
            if sets:
                cols = ", ".join(f"{k} = ?" for k in sets)
                await self._conn.execute(f"UPDATE tracks SET {cols} WHERE seq = ?",
                                         (*sets.values(), seq))
            if add:
                have = await self._scalar("SELECT count(*) FROM track_tags WHERE track_seq = ?",
                                          (seq,))
                if have + len(add) > MAX_TAGS_PER_TRACK:
                    raise _invalid("tags", f"at most {MAX_TAGS_PER_TRACK} tags per track")
                await self._add_tags(seq, add)
            for tag in remove:
                await self._conn.execute(
                    "DELETE FROM track_tags WHERE track_seq = ? AND tag_id = "
                    "(SELECT id FROM tags WHERE name = ?)", (seq, tag))
            if remove:
                await self._drop_unused_tags()
            return await self._track(track_id, with_peaks=False)

        return await self._write(op)

    async def set_analysis(self, track_id: str, **fields: Any) -> dict:
        """Store (re-)analysis results: any of ANALYSIS_FIELDS and ``peaks``."""
        track_id = _track_id(track_id)
        unknown = set(fields) - set(ANALYSIS_FIELDS) - {"peaks"}
        if unknown:
            raise _invalid("fields", f"unknown analysis field(s): {', '.join(sorted(unknown))}")
        sets: dict[str, Any] = {}
        for f, v in fields.items():
            if f == "peaks":
                sets[f] = pack_peaks(v)
            elif f in _ANALYSIS_FLOATS:
                sets[f] = _analysis_float(f, v)
            else:
                sets[f] = _text(f, v, max_chars=1000, optional=True)

        async def op() -> dict:
            seq = await self._seq(track_id)
            if "peaks" in sets:
                peaks = sets.pop("peaks")
                if peaks is None:
                    await self._conn.execute("DELETE FROM track_peaks WHERE seq = ?", (seq,))
                else:
                    await self._conn.execute(
                        "INSERT INTO track_peaks (seq, peaks) VALUES (?, ?) "
                        "ON CONFLICT (seq) DO UPDATE SET peaks = excluded.peaks", (seq, peaks))
            if sets:
                cols = ", ".join(f"{k} = ?" for k in sets)
                await self._conn.execute(f"UPDATE tracks SET {cols} WHERE seq = ?",
                                         (*sets.values(), seq))
            return await self._track(track_id, with_peaks=False)

        return await self._write(op)

    async def delete_track(self, track_id: str) -> dict:
        """Delete the row (and its tag links and FTS entry); returns it as it was.

        Recommended order: call this FIRST, then move the file to trash.  A crash
        in between leaves an orphan file (detected at start via track_paths() and
        kept aside), never a row whose file is gone."""
        track_id = _track_id(track_id)

        async def op() -> dict:
            track = await self._track(track_id, with_peaks=False)
            await self._conn.execute("DELETE FROM tracks WHERE id = ?", (track_id,))
            await self._drop_unused_tags()
            return track

        return await self._write(op)

    async def _drop_unused_tags(self) -> None:
        await self._conn.execute(
            "DELETE FROM tags WHERE NOT EXISTS (SELECT 1 FROM track_tags WHERE tag_id = tags.id)")

    # ------------------------------------------------------------ tracks: reads

    async def _seq(self, track_id: str) -> int:
        seq = await self._scalar("SELECT seq FROM tracks WHERE id = ?", (track_id,))
        if seq is None:
            raise StoreError("not_found", f"no track {track_id!r}")
        return seq

    async def _tags_for(self, seqs: list[int]) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {s: [] for s in seqs}
        if not seqs:
            return out
        q = ",".join("?" * len(seqs))
        for r in await self._all(
                f"SELECT tt.track_seq, g.name FROM track_tags tt JOIN tags g ON g.id = tt.tag_id "
                f"WHERE tt.track_seq IN ({q}) ORDER BY g.name", seqs):
            out[r[0]].append(r[1])
        return out

    async def _track(self, track_id: str, *, with_peaks: bool = True) -> dict:
        cols = _TRACK_COLS + (", " + _PEAKS_COL if with_peaks else "")
        row = await self._one(f"SELECT {cols} FROM tracks t WHERE id = ?", (track_id,))
        if row is None:
            raise StoreError("not_found", f"no track {track_id!r}")
        tags = (await self._tags_for([row["seq"]]))[row["seq"]]
        return _track_dict(row, tags, row["peaks"] if with_peaks else False)

    async def _tracks_by_ids(self, ids: list[str], *, with_peaks: bool) -> list[dict]:
        return [await self._track(i, with_peaks=with_peaks) for i in ids]

    async def get_track(self, track_id: str) -> dict:
        """One track by exact id, with tags and peaks."""
        track_id = _track_id(track_id)
        return await self._run(lambda: self._track(track_id, with_peaks=True))

    async def track_paths(self) -> set[str]:
        async def op() -> set[str]:
            return {r[0] for r in await self._all("SELECT path FROM tracks")}

        return await self._run(op)

    async def list_tracks(self, *, search: str | None = None, tag: str | None = None,
                          favorite: bool | None = None, model: str | None = None,
                          bpm_min: float | None = None, bpm_max: float | None = None,
                          key: str | None = None, sort: str = "created", order: str = "desc",
                          limit: int = 50, cursor: str | None = None,
                          with_peaks: bool = False) -> dict:
        """One page of tracks: {"tracks": [...], "next_cursor": str | None, "total": int | None}.

        ``search`` is free text (any text is safe, see fts_query) matched against
        prompt, title, tags and notes; the filters AND together.  Keyset
        pagination on (sort key, insertion seq): pages never repeat or skip a row
        that existed when the first page was read, whatever is added or removed
        in between.  ``sort="relevance"`` (best match first; needs a search)
        pages through the ranking made for the first page instead, see
        _list_by_relevance.  ``total`` counts all matches and is given on the
        first page (cursor None); it is None on later pages.  A cursor only works with the
        same sort, order, search and filters (StoreError "invalid" otherwise).

        Plan choice (the planner alone gets it wrong in both directions): with
        few matches (<= _DRIVE_MAX) the filter drives and the page is sorted in
        memory; with many, the sort index is walked and rows are filtered, which
        finds a page after about limit * N / total index entries.  The choice is
        made from the first page's count and carried in the cursor.
        """
        if sort not in LIST_SORTS:
            raise _invalid("sort", f"unknown sort field {sort!r}; one of {', '.join(LIST_SORTS)}")
        if order not in ("asc", "desc"):
            raise _invalid("order", f"must be 'asc' or 'desc', got {order!r}")
        limit = _int("limit", limit, 1, MAX_LIST_LIMIT)
        match = fts_query(search)
        if sort == RELEVANCE and match is None:
            raise _invalid("sort", "relevance needs a search with at least one letter or digit; "
                                   "sort by created, duration, bpm, rating or title without one")
        tag_n = None if tag is None else normalise_tag(tag)
        if favorite is not None:
            favorite = _bool("favorite", favorite)
        model = _text("model", model, max_chars=500, optional=True)
        bpm_min = _float("bpm_min", bpm_min, lo=0.0, optional=True)
        bpm_max = _float("bpm_max", bpm_max, lo=0.0, optional=True)
        if bpm_min is not None and bpm_max is not None and bpm_min > bpm_max:
            raise _invalid("bpm_min", f"{bpm_min} is above bpm_max {bpm_max}")
        key = _text("key", key, max_chars=100, optional=True)
        with_peaks = _bool("with_peaks", with_peaks)

        # Each filter as (SQL with "{p}" where a unary + may go to keep the
        # planner from driving the query by that filter's index, args).
        filters: list[tuple[str, list[Any]]] = []
        if match is not None:
            filters.append(("{p}t.seq IN (SELECT rowid FROM tracks_fts WHERE tracks_fts MATCH ?)",
                            [match]))
        if tag_n is not None:
            filters.append(("{p}t.seq IN (SELECT tt.track_seq FROM track_tags tt JOIN tags g "
                            "ON g.id = tt.tag_id WHERE g.name = ?)", [tag_n]))
        if favorite is not None:  # a literal, so the partial index on favourites applies
            filters.append((f"{{p}}t.favorite = {int(favorite)}", []))
        if model is not None:
            filters.append(("{p}t.model = ?", [model]))
        if bpm_min is not None or bpm_max is not None:
            # On the indexed expression; a lower bound >= 0 also drops unknown BPM (-1).
            filters.append(("{p}ifnull(t.bpm, -1.0) >= ?", [bpm_min or 0.0]))
        if bpm_max is not None:
            filters.append(("{p}ifnull(t.bpm, -1.0) <= ?", [bpm_max]))
        if key is not None:
            filters.append(("{p}t.key = ? COLLATE NOCASE", [key.strip()]))

        def where_sql(plus: str, extra: list[str] = ()) -> tuple[str, list[Any]]:
            terms = [f.format(p=plus) for f, _ in filters] + list(extra)
            params = [a for _, fa in filters for a in fa]
            return (" WHERE " + " AND ".join(terms)) if terms else "", params

        fingerprint = hashlib.sha1(json.dumps(
            [match, tag_n, favorite, model, bpm_min, bpm_max, key]).encode()).hexdigest()[:12]
        if sort == RELEVANCE:
            return await self._list_by_relevance(match, filters[1:], order, limit, cursor,  # type: ignore[arg-type]
                                                 fingerprint, with_peaks)
        expr = SORT_FIELDS[sort]
        keyset: list[str] = []
        keyset_args: list[Any] = []
        drive = None
        if cursor is not None:
            value, seq, drive, _ = _decode_cursor(cursor, sort, order, fingerprint)
            cmp = "<" if order == "desc" else ">"
            # The single-column bound is redundant but lets SQLite use an
            # expression index as a range (it does not for the row value alone).
            keyset = [f"{expr} {cmp}= ?", f"({expr}, t.seq) {cmp} (?, ?)"]
            keyset_args = [value, value, seq]
        direction = order.upper()
        cols = _TRACK_COLS + (", " + _PEAKS_COL if with_peaks else "")
        if match is not None and len(filters) == 1:
            count_sql, count_args = ("SELECT count(*) FROM tracks_fts WHERE tracks_fts MATCH ?",
                                     [match])
        else:
            w, count_args = where_sql("")
            count_sql = "SELECT count(*) FROM tracks t" + w

        async def op() -> dict:
            nonlocal drive
            total = None
            if cursor is None:
                total = await self._scalar(count_sql, count_args)
                drive = total <= _DRIVE_MAX
            w, params = where_sql("" if drive else "+", keyset)
            sql = (f"SELECT {cols}, {expr} AS sort_value FROM tracks t{w} "
                   f"ORDER BY {expr} {direction}, t.seq {direction} LIMIT ?")
            rows = await self._all(sql, (*params, *keyset_args, limit + 1))
            more = len(rows) > limit
            rows = rows[:limit]
            tags = await self._tags_for([r["seq"] for r in rows])
            tracks = []
            for r in rows:
                t = _track_dict(r, tags[r["seq"]], r["peaks"] if with_peaks else False)
                del t["sort_value"]
                tracks.append(t)
            next_cursor = None
            if more:
                last = rows[-1]
                next_cursor = _encode_cursor(sort, order, fingerprint, last["sort_value"],
                                             last["seq"], bool(drive))
            return {"tracks": tracks, "next_cursor": next_cursor, "total": total}

        return await self._run(op)

    async def _list_by_relevance(self, match: str, filters: list[tuple[str, list[Any]]], order: str,
                                 limit: int, cursor: str | None, fingerprint: str,
                                 with_peaks: bool) -> dict:
        """list_tracks for sort=relevance; ``filters`` are the ones besides the search.

        The first page scores every match (bm25 needs them all anyway) and keeps
        the best _RANKING_CAP of the ranking in memory under a random id that the
        cursor carries; past its end, pages go on by keyset as described below.
        Later pages walk that ranking, so they cannot shift when scores move
        (any added, edited or removed track changes every bm25 score): no track
        that matched at the first page is repeated or skipped.  Each page checks
        that its tracks still exist and still match; tracks added since are not
        in the ranking.  A cursor whose ranking is gone (daemon restarted, or
        _RANKINGS_MAX newer rankings since) goes on by keyset on (score, seq)
        under the current scores: exact only if the library has not changed.
        """
        ranking_id, pos, after = None, 0, None
        if cursor is not None:
            value, seq, _, (ranking_id, pos) = _decode_cursor(cursor, RELEVANCE, order, fingerprint)
            after = [value, seq]
        direction = order.upper()
        cmp = "<" if order == "desc" else ">"
        cols = _TRACK_COLS + (", " + _PEAKS_COL if with_peaks else "")
        # The search drives (CROSS JOIN keeps the FTS table outer, "+" keeps the
        # filters off their indexes): every match has to be scored anyway.
        join = " CROSS JOIN tracks t ON t.seq = tracks_fts.rowid" if filters else ""
        terms = ["tracks_fts MATCH ?", *(f.format(p="+") for f, _ in filters)]
        args = [match, *(a for _, fa in filters for a in fa)]

        async def rank() -> _Ranking:
            t, a = terms, args
            if after is not None:
                t = [*terms, f"({_RELEVANCE_EXPR}, tracks_fts.rowid) {cmp} (?, ?)"]
                a = [*args, *after]
            rows = await self._all(
                f"SELECT tracks_fts.rowid, {_RELEVANCE_EXPR} AS score FROM tracks_fts{join} "
                f"WHERE {' AND '.join(t)} ORDER BY score {direction}, tracks_fts.rowid {direction} "
                f"LIMIT {_RANKING_CAP}", a)
            return _Ranking(fingerprint, order, array("q", [r[0] for r in rows]),
                            array("d", [r[1] for r in rows]), capped=len(rows) == _RANKING_CAP)

        async def count() -> int:
            return int(await self._scalar(f"SELECT count(*) FROM tracks_fts{join} WHERE {' AND '.join(terms)}",
                                          args))

        async def rows_of(seqs: Iterable[int], recheck: bool) -> dict[int, sqlite3.Row]:
            seqs = list(seqs)
            if not seqs:
                return {}
            sql = f"SELECT {cols} FROM tracks t WHERE t.seq IN ({','.join('?' * len(seqs))})"
            a: list[Any] = seqs
            if recheck:  # a kept ranking: drop tracks deleted or edited out of the match since
                sql += " AND t.seq IN (SELECT rowid FROM tracks_fts WHERE tracks_fts MATCH ?)"
                sql += "".join(" AND " + f.format(p="") for f, _ in filters)
                a = [*seqs, *args]
            return {r["seq"]: r for r in await self._all(sql, a)}

        async def op() -> dict:
            total = None
            ranking = self._rankings.get(ranking_id) if ranking_id is not None else None
            if ranking is not None and (ranking.fingerprint, ranking.order) == (fingerprint, order) \
                    and pos <= len(ranking.seqs):
                self._rankings.move_to_end(ranking_id)  # type: ignore[arg-type]
                rid = ranking_id
                page: list[tuple[int, sqlite3.Row]] = []  # (position in the ranking, row)
                i = pos
                while len(page) <= limit and i < len(ranking.seqs):
                    chunk = ranking.seqs[i:i + limit + 1 - len(page)]
                    found = await rows_of(chunk, recheck=True)
                    page += [(j, found[s]) for j, s in enumerate(chunk, i) if s in found]
                    i += len(chunk)
                # Past a capped ranking's end there are more matches: the cursor goes on by keyset.
                more = len(page) > limit or (ranking.capped and i >= len(ranking.seqs) and bool(page))
            else:  # the first page, or a ranking no longer kept: rank (after the cursor's point)
                ranking = await rank()
                if cursor is None:
                    total = await count() if ranking.capped else len(ranking.seqs)
                more = len(ranking.seqs) > limit or ranking.capped
                rid = self._keep_ranking(ranking) if len(ranking.seqs) > limit else None
                found = await rows_of(ranking.seqs[:limit], recheck=False)
                page = [(j, found[s]) for j, s in enumerate(ranking.seqs[:limit]) if s in found]
            page = page[:limit]
            tags = await self._tags_for([r["seq"] for _, r in page])
            tracks = [_track_dict(r, tags[r["seq"]], r["peaks"] if with_peaks else False) for _, r in page]
            next_cursor = None
            if more and page:
                j, last = page[-1]
                next_cursor = _encode_cursor(RELEVANCE, order, fingerprint, ranking.scores[j], last["seq"],
                                             False, rid if j + 1 < len(ranking.seqs) else None, j + 1)
            return {"tracks": tracks, "next_cursor": next_cursor, "total": total}

        return await self._run(op)

    def _keep_ranking(self, ranking: _Ranking) -> str:
        """Keep a relevance ranking for its next pages; the least recently used go first."""
        rid = secrets.token_urlsafe(9)
        self._rankings[rid] = ranking
        rows = sum(len(r.seqs) for r in self._rankings.values())
        while self._rankings and (len(self._rankings) > _RANKINGS_MAX or rows > _RANKING_ROWS_MAX):
            rows -= len(self._rankings.popitem(last=False)[1].seqs)
        return rid


def _analysis_float(field: str, value: Any) -> float | None:
    """Analysis numbers: a non-finite value (-inf LUFS of silence, NaN) or a
    tempo outside (0, 1000] means "unknown" and is stored as NULL, so a finished
    generation is never refused over its analysis.  A non-number is an error."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _invalid(field, f"must be a number or None, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or (field == "bpm" and not 0 < value <= 1000):
        return None
    return value


def _bool(field: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise _invalid(field, f"must be true or false, got {value!r}")


def default_title(prompt: str) -> str:
    """A track's title when the user gave none: the prompt's start, cut at a word."""
    text = " ".join(prompt.split())
    if len(text) <= TITLE_FROM_PROMPT_CHARS:
        return text
    cut = text[:TITLE_FROM_PROMPT_CHARS]
    if " " in cut[TITLE_FROM_PROMPT_CHARS // 2:]:
        cut = cut[:cut.rindex(" ")]
    return cut.rstrip(" ,.;:-") + "…"
