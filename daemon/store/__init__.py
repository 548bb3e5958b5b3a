"""The daemon's database: durable job queue and track library.

Two backends behind one interface (the public async methods of ``Store``):
SQLite (aiosqlite, one file in the data directory: the default) and PostgreSQL
(asyncpg, ``store.url = "postgresql://..."``), chosen by ``open_store``.  The
logic lives once, in the mixins; only the connection and a few SQL fragments
differ, so the two cannot drift (tests/store runs against both).

This package is the ONLY place that holds SQL, one module per concern:

    errors.py     StoreError, the one exception type
    validate.py   every value the store accepts (invalid -> StoreError naming the field)
    codecs.py     peaks BLOBs, FTS5 queries from user text, list cursors, rows -> dicts
    schema.py     the SQLite schema as forward migrations, and running them
    base.py       backend-neutral plumbing: lock, THE write path (_write), primitives
    sqlite_base.py  the SQLite connection: open, integrity check, transactions
    pg/           the PostgreSQL backend: connection, schema, search dialect
    factory.py    open_store(settings): the backend ``store.url`` names
    jobs.py       the job queue (JobsMixin)
    claims.py     jobs held by a host under a lease: several daemons on one queue (ClaimsMixin)
    tracks.py     track rows (TracksMixin)
    lineage.py    where derived tracks came from (LineageMixin)
    styles.py     LoRAs trained on your tracks (StylesMixin)
    search.py     listing and searching the library (SearchMixin)
    snapshot.py   whole-database copies for backup and restore (synchronous)
    transfer.py   table-by-table copies between the backends (store migrate, PostgreSQL backup/restore)
    clock.py      the store's clock

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

from .codecs import MAX_PEAK_PAIRS, MAX_SEARCH_TOKENS, RELEVANCE, fts_query, pack_peaks, unpack_peaks
from .claims import MAX_LEASE_S, ClaimsMixin
from .errors import StoreError
from .factory import DB_NAME, open_store, open_url, store_kind
from .lineage import LINEAGE_OPERATIONS, LineageMixin
from .jobs import ACTIVE_STATES, FINISHED_STATES, JOB_STATES, JobsMixin
from .schema import LATEST_VERSION, MIGRATIONS
from .sqlite_base import SqliteBase
from .styles import STYLE_NAME_RE, StylesMixin, check_style_name
from .search import LIST_SORTS, MAX_LIST_LIMIT, RELEVANCE_WEIGHTS, SORT_FIELDS, SearchMixin
from .tracks import ANALYSIS_FIELDS, MAX_LYRICS_CHARS, SONG_FIELDS, TracksMixin
from .validate import (MAX_NOTES_CHARS, MAX_TAG_CHARS, MAX_TAGS_PER_TRACK, MAX_TITLE_CHARS,
                       TITLE_FROM_PROMPT_CHARS, default_title, normalise_tag)

__all__ = [
    "Store",
    "DB_NAME",
    "MAX_LEASE_S",
    "open_store",
    "open_url",
    "store_kind",
    "STYLE_NAME_RE",
    "check_style_name",
    "StoreError",
    "JOB_STATES",
    "ACTIVE_STATES",
    "FINISHED_STATES",
    "SORT_FIELDS",
    "RELEVANCE",
    "RELEVANCE_WEIGHTS",
    "LIST_SORTS",
    "ANALYSIS_FIELDS",
    "SONG_FIELDS",
    "MAX_LYRICS_CHARS",
    "LATEST_VERSION",
    "MIGRATIONS",
    "MAX_LIST_LIMIT",
    "MAX_NOTES_CHARS",
    "MAX_PEAK_PAIRS",
    "MAX_SEARCH_TOKENS",
    "MAX_TAG_CHARS",
    "MAX_TAGS_PER_TRACK",
    "MAX_TITLE_CHARS",
    "TITLE_FROM_PROMPT_CHARS",
    "default_title",
    "fts_query",
    "normalise_tag",
    "pack_peaks",
    "unpack_peaks",
]


class Store(ClaimsMixin, JobsMixin, SearchMixin, TracksMixin, LineageMixin, StylesMixin, SqliteBase):
    """The SQLite store.  Create with ``await Store.open(path)`` (or ``open_store``)."""
