"""Whole-database copies for backup and restore (daemon/backup.py handles the files).

Synchronous sqlite3 on purpose: the CLI runs these, never the daemon's event loop.
A copy is taken with SQLite's online backup API in one step (one read transaction,
so it is a snapshot even while the daemon writes) through a read-only connection,
which never writes to or checkpoints the live database.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from .errors import StoreError


@dataclass(frozen=True)
class DatabaseSummary:
    """What a database copy holds: its schema version, row counts, and track paths."""

    schema_version: int
    tracks: int
    jobs: int
    paths: list[str]


def readonly_uri(path: Path) -> str:
    """A read-only SQLite URI for ``path``, percent-encoded so that a directory named
    with '?', '#', '%' or spaces is still that directory, not a URI query."""
    return Path(path).absolute().as_uri() + "?mode=ro"


def _readonly(path: Path, timeout: float = 5.0) -> sqlite3.Connection:
    return sqlite3.connect(readonly_uri(path), uri=True, timeout=timeout)


def _check(conn: sqlite3.Connection, what: str) -> None:
    rows = [r[0] for r in conn.execute("PRAGMA integrity_check(20)")]
    if rows != ["ok"]:
        raise StoreError("corrupt", f"{what} failed integrity_check: " + "; ".join(map(str, rows)))


def _summary(conn: sqlite3.Connection) -> DatabaseSummary:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    tracks = conn.execute("SELECT count(*) FROM tracks").fetchone()[0] if "tracks" in tables else 0
    jobs = conn.execute("SELECT count(*) FROM jobs").fetchone()[0] if "jobs" in tables else 0
    paths = [r[0] for r in conn.execute("SELECT path FROM tracks ORDER BY seq")] if "tracks" in tables else []
    cols = {r[1] for r in conn.execute("PRAGMA table_info(tracks)")} if "tracks" in tables else set()
    if "midi_path" in cols:  # v5: a track's MIDI is a library file too
        paths += [r[0] for r in conn.execute("SELECT midi_path FROM tracks WHERE midi_path IS NOT NULL ORDER BY seq")]
    return DatabaseSummary(version, tracks, jobs, paths)


def snapshot(src: Path, dest: Path) -> DatabaseSummary:
    """Copy the (possibly live) database ``src`` into the new single-file database
    ``dest``, check the copy's integrity and summarise it.  StoreError("corrupt")
    if the copy fails or is damaged; ``dest`` may then hold a partial copy."""
    try:
        source = _readonly(src, timeout=30.0)
    except sqlite3.Error as exc:
        raise StoreError("corrupt", f"backup of {src} failed: {exc}") from None
    try:
        source.execute("PRAGMA busy_timeout = 30000")
        target = sqlite3.connect(str(dest))
        try:
            source.backup(target, pages=-1)  # one step: one consistent snapshot
            target.execute("PRAGMA journal_mode = DELETE")  # a self-contained single file
            _check(target, "the backup copy")
            return _summary(target)
        finally:
            target.close()
    except sqlite3.Error as exc:
        raise StoreError("corrupt", f"backup of {src} failed: {exc}") from None
    finally:
        source.close()


def inspect(path: Path) -> DatabaseSummary:
    """Check a database copy (read-only) and summarise it; StoreError("corrupt") if unusable."""
    try:
        conn = _readonly(path)
        try:
            _check(conn, str(path))
            return _summary(conn)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StoreError("corrupt", f"{path} is not a usable database: {exc}") from None
