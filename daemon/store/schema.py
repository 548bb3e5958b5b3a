"""Schema of the DGX Music database, as forward migrations.

``MIGRATIONS[n]`` takes a database at ``PRAGMA user_version = n`` to ``n + 1``.
A fresh database runs all of them in order, so a new install and an old install
that was migrated up end with the same schema (tests/store/test_migrations.py
checks this against a frozen copy of every earlier schema).

Rules for changing the schema:
  * never edit a migration that has shipped; append a new one;
  * freeze the schema you are leaving as tests/store/fixtures/schema_vN.sql
    (with a few rows) so the migration from it stays tested;
  * each migration is a list of single SQL statements, run in ONE transaction
    together with the ``user_version`` bump (SQLite DDL is transactional), so a
    crash mid-migration leaves the previous version intact.

Only the daemon/store/ package may contain SQL.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiosqlite

from .errors import StoreError

# --- v1: jobs, tracks, tags, full-text index ------------------------------------
#
# tracks.seq is an explicit INTEGER PRIMARY KEY (a rowid alias, so VACUUM cannot
# renumber it): it is the FTS rowid and the tie-breaker of keyset pagination.
# tracks.id is the public id "<job>-<index>", UNIQUE, so a job can never produce
# its tracks twice.
#
# tracks_fts is a regular FTS5 table (it keeps its own copy of the text) kept in
# sync by triggers, so no code path can forget it: insert/update/delete of a
# track and insert/delete of a tag link each rewrite the affected FTS row.
V1 = [
    """
    CREATE TABLE jobs (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        state        TEXT    NOT NULL
                     CHECK (state IN ('queued','running','processing','done','failed','cancelled')),
        prompt       TEXT    NOT NULL,
        params       TEXT    NOT NULL DEFAULT '{}',
        count        INTEGER NOT NULL CHECK (count >= 1),
        seed         INTEGER NOT NULL,
        model        TEXT,
        backend      TEXT,
        position     INTEGER NOT NULL,
        attempts     INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL DEFAULT 3,
        error        TEXT,
        created      REAL    NOT NULL,
        started      REAL,
        finished     REAL
    )
    """,
    "CREATE INDEX jobs_state_position ON jobs (state, position)",
    """
    CREATE TABLE tracks (
        seq            INTEGER PRIMARY KEY AUTOINCREMENT,
        id             TEXT    NOT NULL UNIQUE,
        job_id         INTEGER REFERENCES jobs (id),
        path           TEXT    NOT NULL,
        prompt         TEXT    NOT NULL,
        title          TEXT    NOT NULL,
        model          TEXT,
        backend        TEXT,
        seed           INTEGER,
        idx            INTEGER NOT NULL DEFAULT 0,
        params         TEXT    NOT NULL DEFAULT '{}',
        duration       REAL    NOT NULL,
        sample_rate    INTEGER NOT NULL,
        channels       INTEGER NOT NULL,
        created        REAL    NOT NULL,
        lufs_before    REAL,
        lufs           REAL,
        true_peak      REAL,
        gain_db        REAL,
        loudness_note  TEXT,
        bpm            REAL,
        bpm_confidence REAL,
        key            TEXT,
        key_confidence REAL,
        peaks          BLOB,
        rating         INTEGER NOT NULL DEFAULT 0 CHECK (rating BETWEEN 0 AND 5),
        favorite       INTEGER NOT NULL DEFAULT 0 CHECK (favorite IN (0, 1)),
        notes          TEXT    NOT NULL DEFAULT ''
    )
    """,
    "CREATE INDEX tracks_job ON tracks (job_id)",
    "CREATE INDEX tracks_created ON tracks (created)",
    """
    CREATE TABLE tags (
        id   INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE
    )
    """,
    """
    CREATE TABLE track_tags (
        tag_id    INTEGER NOT NULL REFERENCES tags (id) ON DELETE CASCADE,
        track_seq INTEGER NOT NULL REFERENCES tracks (seq) ON DELETE CASCADE,
        PRIMARY KEY (tag_id, track_seq)
    ) WITHOUT ROWID
    """,
    "CREATE INDEX track_tags_track ON track_tags (track_seq)",
    """
    CREATE VIRTUAL TABLE tracks_fts USING fts5 (
        prompt, title, tags, notes,
        tokenize = 'unicode61 remove_diacritics 2',
        prefix = '2 3'
    )
    """,
    """
    CREATE TRIGGER tracks_fts_insert AFTER INSERT ON tracks BEGIN
        INSERT INTO tracks_fts (rowid, prompt, title, tags, notes)
        VALUES (new.seq, new.prompt, new.title, '', new.notes);
    END
    """,
    """
    CREATE TRIGGER tracks_fts_update AFTER UPDATE OF prompt, title, notes ON tracks BEGIN
        UPDATE tracks_fts SET prompt = new.prompt, title = new.title, notes = new.notes
        WHERE rowid = new.seq;
    END
    """,
    """
    CREATE TRIGGER tracks_fts_delete AFTER DELETE ON tracks BEGIN
        DELETE FROM tracks_fts WHERE rowid = old.seq;
    END
    """,
    """
    CREATE TRIGGER track_tags_fts_insert AFTER INSERT ON track_tags BEGIN
        UPDATE tracks_fts SET tags = (
            SELECT ifnull(group_concat(g.name, ' '), '')
            FROM track_tags tt JOIN tags g ON g.id = tt.tag_id
            WHERE tt.track_seq = new.track_seq)
        WHERE rowid = new.track_seq;
    END
    """,
    """
    CREATE TRIGGER track_tags_fts_delete AFTER DELETE ON track_tags BEGIN
        UPDATE tracks_fts SET tags = (
            SELECT ifnull(group_concat(g.name, ' '), '')
            FROM track_tags tt JOIN tags g ON g.id = tt.tag_id
            WHERE tt.track_seq = old.track_seq)
        WHERE rowid = old.track_seq;
    END
    """,
]

# --- v2: library at scale (from bench/bench_library.py at 100,000 tracks) ----------
#
# * peaks move to their own table: a ~2-4 KB BLOB in the middle of every tracks
#   row pushed the user columns after it onto overflow pages, so every list/sort
#   touched several pages per row.  Track rows are now ~0.5 KB.
# * one index per sort field, on the exact expression list_tracks sorts by, so a
#   first page or a keyset page is an index range scan, not a sort of the table;
#   plus indexes for the filters (model, key, favourites) so counts stay cheap.
V2 = [
    """
    CREATE TABLE track_peaks (
        seq   INTEGER PRIMARY KEY REFERENCES tracks (seq) ON DELETE CASCADE,
        peaks BLOB NOT NULL
    )
    """,
    "INSERT INTO track_peaks (seq, peaks) SELECT seq, peaks FROM tracks WHERE peaks IS NOT NULL",
    "ALTER TABLE tracks DROP COLUMN peaks",
    "CREATE INDEX tracks_duration ON tracks (duration)",
    "CREATE INDEX tracks_bpm ON tracks (ifnull(bpm, -1.0))",
    "CREATE INDEX tracks_rating ON tracks (rating)",
    "CREATE INDEX tracks_title ON tracks (title COLLATE NOCASE)",
    "CREATE INDEX tracks_model ON tracks (model)",
    "CREATE INDEX tracks_key ON tracks (key COLLATE NOCASE)",
    "CREATE INDEX tracks_favorite ON tracks (created) WHERE favorite = 1",
]

# --- v3: song families (ACE-Step beside MusicGen) ------------------------------------
#
# * tracks keep the model family that made them (existing rows are MusicGen's), the
#   lyrics and vocal language, and what was asked of the tempo, key and time
#   signature (req_*; the detected bpm/key stay in bpm/key beside them).
# * lyrics are searchable: an FTS5 table cannot gain a column, so tracks_fts is made
#   again with lyrics as its LAST column (bm25 weights go by column order), filled
#   from the tracks and their tags, and the triggers on tracks that write it are
#   made again to carry lyrics.  The tag triggers are unchanged (they name the table
#   and column, which both still exist).
V3 = [
    "ALTER TABLE tracks ADD COLUMN family TEXT NOT NULL DEFAULT 'musicgen'",
    "ALTER TABLE tracks ADD COLUMN lyrics TEXT",
    "ALTER TABLE tracks ADD COLUMN language TEXT",
    "ALTER TABLE tracks ADD COLUMN req_bpm REAL",
    "ALTER TABLE tracks ADD COLUMN req_key TEXT",
    "ALTER TABLE tracks ADD COLUMN req_time_signature INTEGER",
    "DROP TRIGGER tracks_fts_insert",
    "DROP TRIGGER tracks_fts_update",
    "DROP TABLE tracks_fts",
    """
    CREATE VIRTUAL TABLE tracks_fts USING fts5 (
        prompt, title, tags, notes, lyrics,
        tokenize = 'unicode61 remove_diacritics 2',
        prefix = '2 3'
    )
    """,
    """
    INSERT INTO tracks_fts (rowid, prompt, title, tags, notes, lyrics)
    SELECT t.seq, t.prompt, t.title,
           (SELECT ifnull(group_concat(g.name, ' '), '')
            FROM track_tags tt JOIN tags g ON g.id = tt.tag_id WHERE tt.track_seq = t.seq),
           t.notes, ifnull(t.lyrics, '')
    FROM tracks t
    """,
    """
    CREATE TRIGGER tracks_fts_insert AFTER INSERT ON tracks BEGIN
        INSERT INTO tracks_fts (rowid, prompt, title, tags, notes, lyrics)
        VALUES (new.seq, new.prompt, new.title, '', new.notes, ifnull(new.lyrics, ''));
    END
    """,
    """
    CREATE TRIGGER tracks_fts_update AFTER UPDATE OF prompt, title, notes, lyrics ON tracks BEGIN
        UPDATE tracks_fts SET prompt = new.prompt, title = new.title, notes = new.notes,
                              lyrics = ifnull(new.lyrics, '')
        WHERE rowid = new.seq;
    END
    """,
]

# --- v4: lineage (operations on tracks: repaint, cover, stems, add a part) -------------
#
# * one row per derived track: where it came from (a source track id, kept as text so
#   deleting the source keeps the row and the derived track can say its source is gone;
#   or NULL for an uploaded file, named in source_name), the operation, the part (stems,
#   add a part) and the operation's parameters as JSON.  The row goes with its track.
V4 = [
    """
    CREATE TABLE track_lineage (
        track_seq   INTEGER PRIMARY KEY REFERENCES tracks (seq) ON DELETE CASCADE,
        source_id   TEXT,
        source_name TEXT    NOT NULL,
        operation   TEXT    NOT NULL,
        part        TEXT,
        params      TEXT    NOT NULL DEFAULT '{}'
    )
    """,
    "CREATE INDEX track_lineage_source ON track_lineage (source_id)",
]

# --- v5: a track's MIDI transcription (`dgx-music midi`, daemon/jobs/midi.py) ---------------
#
# * the .mid file's path (relative to the data dir, under library/ like the audio), NULL until
#   transcribed; a new transcription replaces it.  It is a library file: the orphan scan, backup,
#   restore and deletion treat it as the track's audio.
V5 = [
    "ALTER TABLE tracks ADD COLUMN midi_path TEXT",
]

# --- v6: claims (issue 21: several daemons on one queue) -------------------------------
#
# * a running job may be held by a host under a lease (claims.py): claimed_by names the
#   host, lease_until (Unix time) is when it goes back to the queue unless renewed.  Both
#   NULL for a job run by mark_running (one box: its lease never ends).  The partial index
#   keeps the search for expired leases off the finished history.
V6 = [
    "ALTER TABLE jobs ADD COLUMN claimed_by TEXT",
    "ALTER TABLE jobs ADD COLUMN lease_until REAL",
    "CREATE INDEX jobs_lease ON jobs (lease_until) WHERE lease_until IS NOT NULL",
]

# --- v7: styles (LoRAs trained on your own tracks: daemon/jobs/train.py) ---------------
#
# * one row per finished style: its unique name, the model it was trained on, how (steps,
#   rank), on what (track ids or file names, JSON), the final smoothed loss, the adapter's
#   size and directory (relative to the data dir), the job that made it.
V7 = [
    """
    CREATE TABLE styles (
        name        TEXT    PRIMARY KEY,
        base_model  TEXT    NOT NULL,
        steps       INTEGER NOT NULL,
        rank        INTEGER NOT NULL,
        tracks      TEXT    NOT NULL DEFAULT '[]',
        final_loss  REAL,
        size        INTEGER NOT NULL,
        path        TEXT    NOT NULL,
        job_id      INTEGER,
        created     REAL    NOT NULL
    )
    """,
]

# --- v8: durable cancel across hosts (issue 21) ------------------------------------------
#
# * a cancel of a running job is recorded on its row (1), so the host that runs it finds it at
#   its next lease renewal even when the notification was lost (claims.py request_cancel).
V8 = [
    "ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0",
]

# --- v9: four-letter prefix index for search as you type (issue 21) ------------------------
#
# * the last word of a search is a prefix query ('with' -> with*); FTS5 keeps a prefix index only
#   for the lengths in its ``prefix`` option, and without one a 4-letter prefix merges the doclist
#   of every term that starts with it on each query (relevance on 'with' at 100k tracks: p99 over
#   20 ms).  FTS5 options cannot be altered: tracks_fts is made again with prefix = '2 3 4' and
#   filled as v3 filled it.  The triggers name the table and its columns, which all still exist,
#   so they are kept.  Cost at 100k tracks: docs/benchmarks.md.
V9 = [
    "DROP TABLE tracks_fts",
    """
    CREATE VIRTUAL TABLE tracks_fts USING fts5 (
        prompt, title, tags, notes, lyrics,
        tokenize = 'unicode61 remove_diacritics 2',
        prefix = '2 3 4'
    )
    """,
    """
    INSERT INTO tracks_fts (rowid, prompt, title, tags, notes, lyrics)
    SELECT t.seq, t.prompt, t.title,
           (SELECT ifnull(group_concat(g.name, ' '), '')
            FROM track_tags tt JOIN tags g ON g.id = tt.tag_id WHERE tt.track_seq = t.seq),
           t.notes, ifnull(t.lyrics, '')
    FROM tracks t
    """,
]

MIGRATIONS: list[list[str]] = [V1, V2, V3, V4, V5, V6, V7, V8, V9]

LATEST_VERSION = len(MIGRATIONS)


async def migrate(conn: aiosqlite.Connection, path: Path, version: int) -> None:
    """Take the database at schema ``version`` to LATEST_VERSION.

    An existing library (version > 0) is copied to ``<db>.v<version>.bak`` first
    (once), each step runs in its own transaction with its version bump, and the
    file is compacted at the end."""
    if version > LATEST_VERSION:
        raise StoreError("invalid", f"{path} has schema version {version}, newer than "
                                    f"this dgx-music supports ({LATEST_VERSION}); upgrade dgx-music")
    if 0 < version < LATEST_VERSION:
        await _backup_before_migration(conn, path, version)
    for v in range(version, LATEST_VERSION):
        await _migrate_one(conn, path, v)
    if 0 < version < LATEST_VERSION:
        # Migrations rewrite tables (v2 moves peaks out of tracks, v3 the FTS index) and leave
        # pages half empty; compact once (the file had doubled at 100k tracks).
        await conn.execute("VACUUM")


async def _backup_before_migration(conn: aiosqlite.Connection, path: Path, version: int) -> None:
    backup = path.with_name(f"{path.name}.v{version}.bak")
    if backup.exists():
        return
    dst = await aiosqlite.connect(str(backup))
    try:
        await conn.backup(dst)
    finally:
        await dst.close()


async def _migrate_one(conn: aiosqlite.Connection, path: Path, version: int) -> None:
    await conn.execute("BEGIN IMMEDIATE")
    try:
        for stmt in MIGRATIONS[version]:
            await conn.execute(stmt)
        await conn.execute(f"PRAGMA user_version = {version + 1}")
        await conn.execute("COMMIT")
    except BaseException as e:
        await conn.execute("ROLLBACK")
        if isinstance(e, sqlite3.Error):
            raise StoreError("corrupt", f"{path}: migration to schema v{version + 1} "
                                        f"failed: {e}") from e
        raise
