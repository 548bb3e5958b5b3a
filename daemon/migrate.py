"""`dgx-music store migrate`: move a SQLite library into PostgreSQL and a shared storage directory.

The source is never changed: the database is read from a snapshot taken with SQLite's online
backup API through a read-only connection (consistent even while a daemon writes), and files
are only read.  Order, so that a failure at any point can be rerun:

1. refuse a target database that already holds a library (naming it), before anything is written;
2. copy every file (library audio and MIDI, stored melodies and operation sources) atomically,
   checking the sha256 of each copy against its source; a file already at the target with the
   same checksum is kept (a rerun), one that differs is refused (never overwritten);
3. copy every table in one PostgreSQL transaction and verify it (daemon/store/transfer.py):
   a failure leaves the database empty.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from dgx_music.common.fmt import plural
from dgx_music.common.paths import OutsideRoot, resolve_under
from dgx_music.daemon.backup import KEYED, STYLES, _style_dirs, db_path
from dgx_music.daemon.libfiles import copy_atomic
from dgx_music.daemon.store import StoreError
from dgx_music.daemon.store import snapshot as db_copy
from dgx_music.daemon.store import transfer

Progress = Callable[[str], None]


class MigrateError(RuntimeError):
    """The library could not be moved; what was written (if anything) is safe to rerun over."""


@dataclass
class MigrateReport:
    target: str
    storage: str
    rows: dict[str, int] = field(default_factory=dict)
    sampled_rows: int = 0
    files: int = 0
    files_kept: int = 0
    bytes: int = 0
    missing: list[str] = field(default_factory=list)
    schema_version: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "storage": self.storage, "rows": self.rows,
                "sampled_rows": self.sampled_rows, "files": self.files, "files_kept": self.files_kept,
                "bytes": self.bytes, "missing": self.missing, "schema_version": self.schema_version,
                "seconds": round(self.seconds, 3)}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def library_files(db: Path, src_root: Path) -> list[str]:
    """Every file of the library in database copy ``db`` and the keyed stores under ``src_root``,
    relative to the storage root."""
    conn = transfer.open_sqlite_readonly(db)
    try:
        rels = transfer.sqlite_files(conn)
    finally:
        conn.close()
    for folder in KEYED:
        d = src_root / folder
        if d.is_dir():
            rels += [f"{folder}/{f.name}" for f in sorted(d.glob("*.wav"))]
    for d in _style_dirs(src_root):  # styles' adapters: every host resolves them under the storage
        rels += [f"{STYLES}/{d.name}/{f.name}" for f in sorted(d.iterdir()) if f.is_file() and not f.is_symlink()]
    return rels


def copy_files(rels: list[str], src_root: Path, dest_root: Path, report: MigrateReport,
               progress: Progress | None = None) -> None:
    """Copy ``rels`` from ``src_root`` to ``dest_root``, each checked by sha256.  Refuses (before
    copying anything) a path outside either root and a differing file already at the target."""
    plan: list[tuple[str, Path, Path, str]] = []
    for rel in dict.fromkeys(rels):  # a path named twice is copied once
        try:
            s, d = resolve_under(src_root, rel), resolve_under(dest_root, rel)
        except OutsideRoot as exc:
            raise MigrateError(str(exc)) from None
        if not s.is_file():
            report.missing.append(rel)
            continue
        digest = sha256(s)
        if d.exists():
            if not d.is_file() or sha256(d) != digest:
                raise MigrateError(f"{d} exists in --storage and differs from {s}; move it away or "
                                   "choose an empty storage directory (nothing was copied)")
            report.files_kept += 1
            continue
        plan.append((rel, s, d, digest))
    for i, (rel, s, d, digest) in enumerate(plan, 1):
        copy_atomic(s, d)
        if sha256(d) != digest:
            raise MigrateError(f"{d}: the copy's sha256 differs from {s}'s (a failing disk?); rerun to retry")
        report.files += 1
        report.bytes += d.stat().st_size
        if progress and (i % 100 == 0 or i == len(plan)):
            progress(f"files: {i}/{len(plan)} copied")


async def held_rows(url: str) -> tuple[str, dict[str, int]]:
    """Where ``url`` points (no password) and its rows per table (the schema is created if new)."""
    from dgx_music.daemon.store.pg import PgStore
    pg = await PgStore.open(url)
    try:
        return pg.location, await transfer.pg_counts(pg)
    finally:
        await pg.close()


async def copy_rows(db: Path, url: str, progress: Progress | None = None) -> transfer.CopyReport:
    """Every table of the SQLite file ``db`` into the empty PostgreSQL database ``url``, verified."""
    from dgx_music.daemon.store.pg import PgStore
    conn = transfer.open_sqlite_readonly(db)
    try:
        pg = await PgStore.open(url)
        try:
            return await transfer.sqlite_to_pg(conn, pg, progress)
        finally:
            await pg.close()
    finally:
        conn.close()


def import_database(db: Path, src_root: Path | None, url: str, storage: Path,
                    progress: Progress | None = None) -> MigrateReport:
    """Copy the SQLite database file ``db`` (a snapshot or a backup's copy, never a live file) and,
    when ``src_root`` is given, its files into the empty PostgreSQL database ``url`` and ``storage``."""
    from dgx_music.daemon.store.pg import redact
    t0 = time.monotonic()
    report = MigrateReport(redact(url), str(storage))
    try:
        location, held = asyncio.run(held_rows(url))
        if held["jobs"] or held["tracks"] or held["tags"]:
            raise MigrateError(f"the database {location} already holds a library ({plural(held['tracks'], 'track')}, "
                               f"{plural(held['jobs'], 'job')}); name an empty database (or schema)")
        if src_root is not None:
            rels = library_files(db, src_root)
            if progress:
                progress(f"files: {plural(len(rels), 'file')} to copy into {storage}")
            copy_files(rels, src_root, storage, report, progress)
        copied = asyncio.run(copy_rows(db, url, progress))
    except StoreError as exc:
        raise MigrateError(exc.message) from None
    report.rows, report.sampled_rows, report.schema_version = copied.rows, copied.sampled, copied.schema_version
    if progress:
        progress(f"verified: row counts of {plural(len(report.rows), 'table')}, {plural(report.sampled_rows, 'row')} "
                 "field by field, "
                 f"sha256 of {plural(report.files, 'file')}")
    report.seconds = time.monotonic() - t0
    return report


def migrate(data_dir: Path, url: str, storage: Path, *, src_storage: Path | None = None,
            progress: Progress | None = None) -> MigrateReport:
    """Move the SQLite library in ``data_dir`` (files under ``src_storage``, default the data dir)
    into PostgreSQL ``url`` and the directory ``storage``; the source is left as it was."""
    data_dir, storage = Path(data_dir).expanduser(), Path(storage).expanduser()
    src_root = Path(src_storage).expanduser() if src_storage is not None else data_dir
    src = db_path(data_dir)
    if not src.is_file():
        raise MigrateError(f"no database at {src}; is daemon.data_dir right? (`dgx-music config show`)")
    if not storage.is_dir():  # a shared root is never created here: an unmounted share is not a folder to fill
        raise MigrateError(f"--storage {storage} is not a directory (is the shared directory mounted?)")
    if storage.resolve() == src_root.resolve():
        raise MigrateError(f"--storage {storage} is where the library's files are already; name the shared directory")
    with tempfile.TemporaryDirectory(prefix="dgx-migrate-") as tmp:
        snap = Path(tmp) / "snapshot.db"
        try:
            db_copy.snapshot(src, snap)  # read-only, one consistent read even while a daemon writes
        except StoreError as exc:
            raise MigrateError(exc.message) from None
        if progress:
            progress(f"snapshot of {src} taken")
        return import_database(snap, src_root, url, storage, progress)
