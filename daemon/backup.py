"""Backup and restore of the library: SQLite's online backup API, plus the audio files.

A backup is a directory:

    DEST/dgx-music.db     a consistent copy of the database (taken with the online
                          backup API in one step: one read transaction, so it is a
                          snapshot even while the daemon writes; WAL readers do not
                          block the daemon's writers)
    DEST/library/...      with --with-audio: every file the copied database refers to
    DEST/melodies/...     with --with-audio: the stored copies jobs refer to by key, the
    DEST/sources/...      melodies that jobs follow and the source audio of operations on
                          tracks (so a queued job, a retry or a remix still runs after a
                          restore); content-addressed, checked and restored the same way
    DEST/styles/NAME/...  the styles (LoRAs trained on your tracks: daemon/jobs/train.py), always:
                          they are small and cannot be made again without the time they took
    DEST/manifest.json    what was copied, when, from where, and what was missing

The audio is read from (and restored into) the storage root (`store.storage`, by default the
data dir); restored files are written atomically (a temporary file of this host, then a rename),
since other hosts may be reading a shared root.

Backing up is safe while the daemon runs. Restoring is not: `restore` refuses while
any process has the database open, and keeps the old database (and its WAL) aside.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable

try:
    from dgx_music.daemon.components import DB_NAME
except Exception:  # pragma: no cover - keep backup usable if the daemon's components cannot import
    DB_NAME = "dgx-music.db"
from dgx_music.common.fmt import plural
from dgx_music.common.paths import OutsideRoot, resolve_under
from dgx_music.daemon.audio_store import STORES
from dgx_music.daemon.datalock import RESTORE, DataDirLock, DataDirLocked
from dgx_music.daemon.libfiles import copy_atomic
from dgx_music.daemon.store import StoreError
from dgx_music.daemon.store import snapshot as db_copy

MANIFEST = "manifest.json"
LIBRARY = "library"
STYLES = "styles"  # daemon/jobs/train.py's folder (not imported: backup stays usable without the job kinds)
# Keyed stored copies: <folder>/<key>.wav, content-addressed, never changed once written: the
# folders of daemon/audio_store.py's stores (it imports no audio library).
KEYED = tuple(store.folder for store in STORES)  # each is also the name of the Report field that counts its copies


class BackupError(RuntimeError):
    """A backup or restore could not be made safely; nothing was changed."""


@dataclass
class Report:
    dest: Path | str  # a directory; for a restore into PostgreSQL, the database (its URL, no password)
    tracks: int = 0
    jobs: int = 0
    files: int = 0
    melodies: int = 0
    sources: int = 0
    styles: int = 0
    bytes: int = 0
    missing: list[str] = field(default_factory=list)
    schema_version: int = 0
    seconds: float = 0.0
    kept_aside: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"dest": str(self.dest), "tracks": self.tracks, "jobs": self.jobs, "files": self.files,
                "melodies": self.melodies, "sources": self.sources, "styles": self.styles, "bytes": self.bytes, "missing": self.missing,
                "schema_version": self.schema_version,
                "seconds": round(self.seconds, 3), "kept_aside": self.kept_aside,
                "refused": self.refused}


def db_path(data_dir: Path) -> Path:
    return Path(data_dir) / DB_NAME


def _is_database_file(rel: str) -> bool:
    """The database, its WAL and shared memory, and the copies restore and migrations keep."""
    first = PurePosixPath(rel.replace("\\", "/")).parts[:1]
    return bool(first) and first[0].startswith(DB_NAME)


def _member(root: Path, rel: str) -> Path:
    """Where track path ``rel`` lies in ``root`` (a backup, or the data dir being restored
    into), refusing a path that leaves ``root``, lands on the database files, or goes
    through a symlink (a backup holds none, and restore must not write through one)."""
    try:
        path = resolve_under(root, rel)
    except OutsideRoot as exc:
        raise BackupError(str(exc)) from None
    if _is_database_file(rel):
        raise BackupError(f"{rel!r} would land on the database files")
    if path != Path(root).resolve() / PurePosixPath(rel.replace("\\", "/")):
        raise BackupError(f"{rel!r} goes through a symlink in {root}")
    return path


def _plain_file(path: Path) -> bool:
    """True for a regular file with one link; False if absent; BackupError for a symlink,
    a hard link or anything else (what a hostile backup would use to read elsewhere)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode):
        raise BackupError(f"{path} is a symlink")
    if not stat.S_ISREG(st.st_mode):
        raise BackupError(f"{path} is not a regular file")
    if st.st_nlink > 1:
        raise BackupError(f"{path} is a hard link (copy the backup with `cp -r` first)")
    return True


def backup(data_dir: Path, dest: Path, *, with_audio: bool = False,
           progress: Callable[[str], None] | None = None, storage: Path | None = None) -> Report:
    """Copy the database (and optionally its audio, from `storage`, by default the data dir) into
    the new directory `dest`."""
    t0 = time.monotonic()
    data_dir, dest = Path(data_dir).expanduser(), Path(dest).expanduser()
    root = Path(storage).expanduser() if storage is not None else data_dir
    src = db_path(data_dir)
    if not src.is_file():
        raise BackupError(f"no database at {src}; is daemon.data_dir right? (`dgx-music config show`)")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BackupError(f"{dest} already exists and is not an empty directory; choose a new one")
    dest.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(dest, 0o700)
    out = dest / DB_NAME
    tmp = dest / (DB_NAME + ".part")
    report = Report(dest)
    try:
        summary = db_copy.snapshot(src, tmp)
    except StoreError as exc:
        tmp.unlink(missing_ok=True)
        raise BackupError(exc.message) from None
    report.schema_version, report.tracks, report.jobs = summary.schema_version, summary.tracks, summary.jobs
    paths = summary.paths
    os.replace(tmp, out)
    report.bytes += out.stat().st_size
    if progress:
        progress(f"database: {plural(report.tracks, 'track')}, {plural(report.jobs, 'job')} (schema v{report.schema_version})")
    _copy_styles(root, dest, report)  # styles live under the storage root (daemon/jobs/train.py)
    if with_audio:
        copy_audio(paths, root, dest, report, progress)
    report.seconds = time.monotonic() - t0
    manifest = {"format": 1, "created": time.time(), "source": str(data_dir), "storage": str(root), "database": DB_NAME,
                "with_audio": with_audio, **report.as_dict()}
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return report


def copy_audio(paths: list[str], root: Path, dest: Path, report: Report,
               progress: Callable[[str], None] | None = None) -> None:
    """Copy the library files ``paths`` (relative to the storage ``root``) and the keyed stored
    copies into the backup ``dest``, counting them in ``report``."""
    for rel in paths:
        try:  # a tampered row must not copy a file from outside the storage root into the backup
            s = resolve_under(root, rel)
        except OutsideRoot:
            report.refused.append(rel)
            continue
        d = dest / PurePosixPath(rel)
        d.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copy2(s, d)
        except FileNotFoundError:
            # Deleted after the snapshot (rows go first, then files go to the trash).
            report.missing.append(rel)
            continue
        report.files += 1
        report.bytes += d.stat().st_size
    _copy_keyed(root, dest, report)
    if progress:
        progress(f"audio: {plural(report.files, 'file')}, {plural(report.melodies, 'melody', 'melodies')}, "
                 f"{plural(report.sources, 'source')}"
                 + (f", {len(report.missing)} missing" if report.missing else "")
                 + (f", {len(report.refused)} refused (paths outside the data dir)" if report.refused else ""))


def _copy_keyed(src_root: Path, dest_root: Path, report: Report) -> None:
    """Keyed stored copies (melodies, operation sources) are content-addressed and never
    change: copy the ones not there yet, counting them in the Report field of their folder."""
    for folder in KEYED:
        src = src_root / folder
        if not src.is_dir():
            continue
        (dest_root / folder).mkdir(parents=True, exist_ok=True)
        for f in sorted(src.glob("*.wav")):
            d = dest_root / folder / f.name
            if not os.path.lexists(d):  # never write through a (dangling) symlink
                copy_atomic(f, d)
                setattr(report, folder, getattr(report, folder) + 1)
                report.bytes += d.stat().st_size


def _style_dirs(root: Path) -> list[Path]:
    """The styles' directories under root/styles (not the work directories of running trainings)."""
    from dgx_music.daemon.store import STYLE_NAME_RE

    base = root / STYLES
    if not base.is_dir() or base.is_symlink():
        return []
    return [d for d in sorted(base.iterdir()) if STYLE_NAME_RE.match(d.name) and d.is_dir() and not d.is_symlink()]


def _copy_styles(src_root: Path, dest_root: Path, report: Report, check: bool = False) -> None:
    """Every style's files (plain files only), replacing what the destination holds under that name."""
    for d in _style_dirs(src_root):
        files = [f for f in sorted(d.iterdir()) if _plain_file(f)] if check else \
            [f for f in sorted(d.iterdir()) if f.is_file() and not f.is_symlink()]
        target = _member(dest_root, f"{STYLES}/{d.name}") if check else dest_root / STYLES / d.name
        target.mkdir(parents=True, exist_ok=True)
        for f in files:
            out = target / f.name
            if out.is_symlink():
                out.unlink()
            shutil.copy2(f, out)
            report.bytes += out.stat().st_size
        report.styles += 1


def _check_keyed(src: Path, data_dir: Path) -> list[str]:
    """Why the keyed stored copies in backup `src` are refused: a folder that is a symlink
    (or not a directory), a member that is a symlink, a hard link or not a regular file, or
    a folder in the data dir they would be written through a symlink into."""
    refused: list[str] = []
    for folder in KEYED:
        path = src / folder
        try:
            if path.is_symlink():
                raise BackupError(f"{path} is a symlink")
            if not path.exists():
                continue
            _member(data_dir, folder)
            if not path.is_dir():
                raise BackupError(f"{path} is not a directory")
            for f in sorted(path.glob("*.wav")):
                _plain_file(f)
        except BackupError as exc:
            refused.append(str(exc))
    return refused


def _open_by_processes(paths: list[Path]) -> list[int]:
    """Pids (that we can see) holding any of `paths` open, from /proc/*/fd."""
    want = set()
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            continue
        want.add((st.st_dev, st.st_ino))
    if not want:
        return []
    pids = []
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            fds = os.scandir(f"/proc/{entry.name}/fd")
        except OSError:
            continue
        with fds:
            for fd in fds:
                try:
                    st = os.stat(fd.path)
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) in want:
                    pids.append(int(entry.name))
                    break
    return pids


def daemon_answers(sock_path: Path) -> bool:
    """True if something accepts connections on the daemon's socket."""
    if not Path(sock_path).exists():
        return False
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2.0)
    try:
        s.connect(str(sock_path))
        return True
    except OSError:
        return False
    finally:
        s.close()


def _restore_plan(src: Path | None, data_dir: Path,
                  paths: list[str]) -> list[tuple[str, Path | None, Path]]:
    """(track path, file in the backup or None, where it goes) for every track, checked
    before anything changes: a backup whose database or files would write outside the data
    dir, onto the database files, or read through symlinks or hard links is refused whole."""
    plan: list[tuple[str, Path | None, Path]] = []
    refused: list[str] = []
    for rel in paths:
        try:
            target = _member(data_dir, rel)
            source = _member(src, rel) if src is not None else None
            if source is not None and not _plain_file(source):
                source = None
        except BackupError as exc:
            refused.append(str(exc))
            continue
        plan.append((rel, source, target))
    if src is not None:
        refused += _check_keyed(src, data_dir)
        for d in _style_dirs(src):
            try:
                _member(data_dir, f"{STYLES}/{d.name}")
                for f in d.iterdir():
                    _plain_file(f)
            except BackupError as exc:
                refused.append(str(exc))
    if refused:
        more = f" (and {len(refused) - 5} more)" if len(refused) > 5 else ""
        raise BackupError("this backup is refused, nothing was changed: " + "; ".join(refused[:5]) + more)
    return plan


def restore(src: Path, data_dir: Path, *, socket_path: Path | None = None,
            progress: Callable[[str], None] | None = None, storage: Path | None = None) -> Report:
    """Replace the database (and library files the backup holds, written under `storage`, by
    default the data dir) with the backup at `src`."""
    t0 = time.monotonic()
    src, data_dir = Path(src).expanduser(), Path(data_dir).expanduser()
    backup_db = src / DB_NAME if src.is_dir() else src
    if not backup_db.is_file():
        raise BackupError(f"{src} is not a dgx-music backup (no {DB_NAME} in it)")
    live = db_path(data_dir)
    holders = _open_by_processes([live, live.with_name(live.name + "-wal")])
    if holders:
        raise BackupError(f"the database is in use by pid {', '.join(map(str, holders))}; stop the daemon first "
                          "(systemctl --user stop dgx-music.socket dgx-music.service)")
    if socket_path is not None and daemon_answers(socket_path):
        raise BackupError(f"a daemon answers on {socket_path}; stop it first "
                          "(systemctl --user stop dgx-music.socket dgx-music.service)")
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    # The daemon's own lock: a daemon started meanwhile (socket activation) refuses to start
    # until the restore is done, and one that runs already (or another restore) stops us here.
    try:
        lock = DataDirLock.acquire(data_dir, RESTORE)
    except DataDirLocked as exc:
        raise BackupError(str(exc)) from None
    with lock:
        root = Path(storage).expanduser() if storage is not None else data_dir
        return _restore_locked(src, backup_db, data_dir, t0, progress, root)


def _restore_locked(src: Path, backup_db: Path, data_dir: Path, t0: float,
                    progress: Callable[[str], None] | None, root: Path) -> Report:
    """`restore` once it holds the data directory's lock: check the backup whole, then replace."""
    live = db_path(data_dir)
    report = Report(data_dir)
    try:
        summary = db_copy.inspect(backup_db)
    except StoreError as exc:
        raise BackupError(exc.message) from None
    report.schema_version, report.tracks, report.jobs = summary.schema_version, summary.tracks, summary.jobs
    if not root.is_dir():  # a shared root is never created here: an unmounted share is not a folder to fill
        raise BackupError(f"store.storage {root} is not a directory (is the shared directory mounted?)")
    plan = _restore_plan(src if src.is_dir() else None, root, summary.paths)
    # Keep the old database (with its WAL and shared memory, which may hold committed data) aside.
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for suffix in ("", "-wal", "-shm"):
        old = live.with_name(live.name + suffix)
        if old.exists():
            aside = live.with_name(f"{live.name}.before-restore-{stamp}{suffix}")
            os.replace(old, aside)
            report.kept_aside.append(str(aside))
    tmp = live.with_name(live.name + ".restoring")
    shutil.copyfile(backup_db, tmp)
    os.chmod(tmp, 0o600)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, live)
    if progress:
        progress(f"database: {plural(report.tracks, 'track')}, {plural(report.jobs, 'job')} (schema v{report.schema_version})"
                 + (f"; the old one is kept as {report.kept_aside[0]}" if report.kept_aside else ""))
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
    if progress:
        progress(f"audio: {plural(report.files, 'file')}, {plural(report.melodies, 'melody', 'melodies')}, "
                 f"{plural(report.sources, 'source')} restored"
                 + (f"; {plural(len(report.missing), 'track')} without an audio file" if report.missing else ""))
    report.seconds = time.monotonic() - t0
    return report
