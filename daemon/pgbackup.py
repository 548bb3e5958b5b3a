"""Backup and restore when the library is in PostgreSQL (``store.url``): the same backup format.

A backup of PostgreSQL is the directory daemon/backup.py writes for SQLite: ``dgx-music.db`` (a
SQLite database at the latest schema, written table by table from one REPEATABLE READ snapshot of
PostgreSQL, so it is consistent while daemons write), the audio with --with-audio, a manifest.
So either backend's backup restores into either: into SQLite with daemon/backup.restore, into
PostgreSQL here.  Why not pg_dump: see daemon/store/transfer.py.

Restoring into PostgreSQL needs an EMPTY database (or schema): a database shared by several hosts
cannot be swapped aside the way SQLite's file is, so one that holds a library is refused, naming
it.  Files are restored first, then the rows in one transaction (never a row without its file).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Callable

from dgx_music.common.fmt import plural
from dgx_music.daemon.backup import (DB_NAME, MANIFEST, BackupError, Report, _copy_keyed, _copy_styles, _restore_plan,
                                     copy_audio)
from dgx_music.daemon.libfiles import copy_atomic
from dgx_music.daemon.migrate import copy_rows, held_rows
from dgx_music.daemon.store import StoreError
from dgx_music.daemon.store import snapshot as db_copy
from dgx_music.daemon.store import transfer

Progress = Callable[[str], None]


async def _dump(url: str, out: Path, progress: Progress | None) -> transfer.CopyReport:
    from dgx_music.daemon.store.pg import PgStore
    pg = await PgStore.open(url)
    try:
        return await transfer.pg_to_sqlite(pg, out, progress)
    finally:
        await pg.close()


def backup_pg(url: str, dest: Path, *, storage: Path, with_audio: bool = False,
              progress: Progress | None = None) -> Report:
    """Write the PostgreSQL library ``url`` (and with ``with_audio`` its files under ``storage``)
    into the new directory ``dest``, in the SQLite backup format."""
    from dgx_music.daemon.store.pg import redact
    t0 = time.monotonic()
    dest, root = Path(dest).expanduser(), Path(storage).expanduser()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BackupError(f"{dest} already exists and is not an empty directory; choose a new one")
    made = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(dest, 0o700)
    tmp, out = dest / (DB_NAME + ".part"), dest / DB_NAME
    report = Report(dest)
    try:
        asyncio.run(_dump(url, tmp, None))
        summary = db_copy.inspect(tmp)
    except StoreError as exc:
        tmp.unlink(missing_ok=True)
        if made:  # an unreachable database leaves no empty backup directory behind
            dest.rmdir()
        raise BackupError(exc.message) from None
    os.replace(tmp, out)
    report.schema_version, report.tracks, report.jobs = summary.schema_version, summary.tracks, summary.jobs
    report.bytes += out.stat().st_size
    if progress:
        progress(f"database: {plural(report.tracks, 'track')}, {plural(report.jobs, 'job')} "
                 f"(from PostgreSQL, schema v{report.schema_version} in SQLite's format)")
    _copy_styles(root, dest, report)  # small, and not in the database: always, as a SQLite backup
    if with_audio:
        copy_audio(summary.paths, root, dest, report, progress)
    report.seconds = time.monotonic() - t0
    manifest = {"format": 1, "created": time.time(), "backend": "postgresql", "source": redact(url),
                "storage": str(root), "database": DB_NAME, "with_audio": with_audio, **report.as_dict()}
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return report


def restore_pg(src: Path, url: str, *, storage: Path, progress: Progress | None = None) -> Report:
    """Restore the backup at ``src`` (of either backend) into the EMPTY PostgreSQL database ``url``
    and its files into ``storage``."""
    t0 = time.monotonic()
    src, root = Path(src).expanduser(), Path(storage).expanduser()
    backup_db = src / DB_NAME if src.is_dir() else src
    if not backup_db.is_file():
        raise BackupError(f"{src} is not a dgx-music backup (no {DB_NAME} in it)")
    if not root.is_dir():
        raise BackupError(f"store.storage {root} is not a directory (is the shared directory mounted?)")
    try:
        summary = db_copy.inspect(backup_db)
        location, held = asyncio.run(held_rows(url))
    except StoreError as exc:
        raise BackupError(exc.message) from None
    if held["tracks"] or held["jobs"] or held["tags"]:
        raise BackupError(f"the database {location} already holds a library ({plural(held['tracks'], 'track')}, "
                          f"{plural(held['jobs'], 'job')}); restore into an empty database (or schema) and point "
                          "store.url at it; nothing was changed")
    report = Report(location)  # restored into: the database, not a directory
    report.schema_version, report.tracks, report.jobs = summary.schema_version, summary.tracks, summary.jobs
    plan = _restore_plan(src if src.is_dir() else None, root, summary.paths)
    for rel, source, target in plan:
        if source is None:
            if not target.is_file():
                report.missing.append(rel)
            continue
        copy_atomic(source, target)
        report.files += 1
        report.bytes += target.stat().st_size
    if src.is_dir():
        _copy_keyed(src, root, report)
        _copy_styles(src, root, report, check=True)
    try:
        copied = asyncio.run(copy_rows(backup_db, url))
    except StoreError as exc:
        raise BackupError(exc.message) from None
    if progress:
        progress(f"database: {plural(copied.rows['tracks'], 'track')}, {plural(copied.rows['jobs'], 'job')} "
                 f"into {location}; verified ({plural(copied.sampled, 'row')} compared field by field)")
        progress(f"audio: {plural(report.files, 'file')}, {plural(report.melodies, 'melody', 'melodies')}, "
                 f"{plural(report.sources, 'source')} restored"
                 + (f"; {plural(len(report.missing), 'track')} without an audio file" if report.missing else ""))
    report.seconds = time.monotonic() - t0
    return report
