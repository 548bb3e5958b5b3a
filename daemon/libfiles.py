"""Files in the storage root: safe library paths, trash, orphans. Nothing here leaves it.

The storage root (`store.storage`, `Storage`) holds the library's audio, the stored melodies and
operation sources, the trash and the orphans; track rows hold paths relative to it. By default it
is the data dir; it may be a directory other hosts mount too (NFS), and then it is *shared*:
another host may be between writing a file and committing its row at any time, so nothing here
moves or deletes a file it cannot prove is this host's own abandoned temporary file
(`sweep_stale_temp`). The data dir keeps the local state (database, lock). The functions below
take the root as their first argument (named `data_dir` where it was that before storage existed).

Every place the daemon writes or deletes goes through `plain` first: no directory or file on
the way below the data dir may be a symlink (what `restore` checks of a backup, daemon/backup.py),
so one planted in the data dir (`trash -> ~`, `sources -> /elsewhere`) cannot lead a write or
a delete outside it. Reads go through `library_file`, which follows symlinks but refuses one
that leads out. `check_layout` runs the same check over the daemon's folders at start.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from dgx_music.common.paths import TEMP_RE, OutsideRoot, host_tag, resolve_under, temp_prefix
from dgx_music.daemon.datalock import LOCK_NAME

LIBRARY = "library"
ORPHANS = "orphans"
TRASH = "trash"
#: The folders the daemon writes in (sources/ and melodies/ are the stores of daemon/audio_store.py).
#: midi/ holds the MIDI of uploaded files (a track's MIDI is a library file beside its audio).
FOLDERS = (LIBRARY, TRASH, ORPHANS, "sources", "melodies", "midi")
#: Folders where other hosts' writes may be in flight on a shared storage root.
WRITTEN = (LIBRARY, "sources", "melodies", "midi")
STYLES = "styles"  # styles' adapter directories (daemon/jobs/train.py)
#: A temporary file of this host in shared storage is swept at start only once it is this old:
#: no write takes an hour, so one that old was abandoned by a crash.
TEMP_GRACE = 3600.0


class UnsafePath(OutsideRoot):
    """A folder or file the daemon would write or delete in is a symlink (or a file where a
    folder should be): answered `forbidden`, nothing is written or deleted."""


def plain(data_dir: Path, rel: str | PurePosixPath) -> Path:
    """``data_dir / rel``, after checking that no part of it below the data dir that exists is a
    symlink, and that the parts on the way are directories. UnsafePath otherwise."""
    root = Path(data_dir)
    parts = PurePosixPath(str(rel)).parts
    if not parts or parts[0] == "/" or ".." in parts:
        raise UnsafePath(f"{rel!r} is not a path inside the data directory")
    p = root
    for i, part in enumerate(parts):
        p = p / part
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            return root.joinpath(*parts)  # created by the caller, as a plain directory or file
        if stat.S_ISLNK(st.st_mode):
            raise UnsafePath(f"{p} is a symlink: the daemon writes and deletes only inside its data (or storage) "
                             f"directory {root}, never through a link (replace it with a plain directory)")
        if i < len(parts) - 1 and not stat.S_ISDIR(st.st_mode):
            raise UnsafePath(f"{p} is not a directory")
    return p


def check_layout(data_dir: Path) -> list[str]:
    """Why the data dir is unsafe to start on: its folders (and library/YYYY/MM) checked by `plain`."""
    problems: list[str] = []
    for folder in FOLDERS:
        try:
            plain(data_dir, folder)
        except UnsafePath as exc:
            problems.append(str(exc))
    lib = Path(data_dir) / LIBRARY
    if not problems and lib.is_dir():
        for year in sorted(lib.iterdir()):
            months = [year] + (sorted(year.iterdir()) if year.is_dir() and not year.is_symlink() else [])
            for d in months:
                if d.is_symlink():
                    problems.append(f"{d} is a symlink: the daemon writes only inside its data (or storage) directory")
    return problems


def new_track_file(data_dir: Path, track_id: int | str, title: str, created: datetime) -> Path:
    """Where a new track's file goes (library/YYYY/MM/...), checked by `plain` before it is written."""
    from dgx_music.common.audio.files import library_path

    path = library_path(data_dir, track_id, title, created)
    return plain(data_dir, path.relative_to(data_dir))


def write_bytes_atomic(data_dir: Path, rel: str, data: bytes) -> Path:
    """Write a small file (a MIDI file) so that it is either absent or complete: a temp file in the
    same folder, fsync, rename, fsync the folder; the path is checked by `plain` first."""
    path = plain(data_dir, rel)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(path.stem), suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)  # named for this host and process: a shared root's start-up sweep knows whose it is
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def library_file(data_dir: Path, rel: str) -> Path:
    """The real path of a track's file; OutsideRoot (a ValueError) for a stored path that
    would leave the data dir (absolute, '..', a symlink leading out)."""
    try:
        return resolve_under(data_dir, rel)
    except OutsideRoot as exc:
        raise OutsideRoot(f"the track's stored path is refused: {exc}") from None


def with_file(data_dir: Path, track: dict[str, Any]) -> dict[str, Any]:
    """The track map with `file`, the absolute path on the daemon's machine, beside `path`
    (relative to the data dir): one shape on every surface. No file-system access."""
    if isinstance(track.get("path"), str) and "file" not in track:
        track = {**track, "file": os.path.join(str(data_dir), track["path"])}
    return track


def trash_dir(data_dir: Path) -> Path:
    return plain(data_dir, TRASH)


def move_to_trash(data_dir: Path, rel: str) -> Path | None:
    """Move a library file into the trash (inside the data dir); None if it was already gone."""
    src = library_file(data_dir, rel)
    if not src.exists():
        return None
    dest_dir = trash_dir(data_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"{int(time.time())}-{src.name}"
    os.replace(src, dest)
    return dest


def empty_trash(data_dir: Path) -> int:
    d = trash_dir(data_dir)
    if not d.is_dir():
        return 0
    n = 0
    for p in d.iterdir():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
        n += 1
    return n


def discard(data_dir: Path, rendered: list[dict[str, Any]]) -> None:
    """Remove files of a job cancelled during post-processing (they never had rows)."""
    for t in rendered:
        library_file(data_dir, t["path"]).unlink(missing_ok=True)


def set_aside_orphans(data_dir: Path, known: set[str]) -> list[Path]:
    """Move library files that no row mentions (a crash between write and commit) aside.

    Never deletes: they go to <data>/orphans/<timestamp>/ with their relative path.
    """
    lib = plain(data_dir, LIBRARY)  # os.walk would walk a symlinked library/ (and move its files here)
    plain(data_dir, ORPHANS)
    if not lib.is_dir():
        return []
    moved: list[Path] = []
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for root, _dirs, names in os.walk(lib):
        for name in names:
            p = Path(root) / name
            rel = str(p.relative_to(data_dir))
            if rel in known:
                continue
            dest = plain(data_dir, PurePosixPath(ORPHANS, stamp, p.relative_to(lib)))
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(p, dest)
            moved.append(dest)
    return moved


class StorageError(RuntimeError):
    """The storage root cannot be used (missing, not writable, a symlinked folder in it): the
    message names `store.storage`; the daemon refuses to start."""


@dataclass(frozen=True)
class Storage:
    """The root every audio path resolves against. `shared`: a root other than the data dir,
    which other hosts may write in too (see the module docstring)."""

    root: Path
    shared: bool = False

    @classmethod
    def from_settings(cls, settings: Any) -> "Storage":
        data, root = Path(settings.data_dir), Path(settings.storage)
        return cls(root, shared=os.path.realpath(root) != os.path.realpath(data))

    def check(self) -> None:
        """StorageError unless the root is usable: it exists (a shared root is never created, so an
        unmounted NFS share is not silently replaced by a local folder), is a directory and not some
        daemon's data dir (that daemon treats its storage as unshared), is writable
        (a temporary file named for this host is created there and removed), and its folders are
        plain (`check_layout`)."""
        where = f"store.storage {self.root}"
        if not self.root.exists():
            raise StorageError(f"{where} does not exist (is the shared directory mounted?)")
        if not self.root.is_dir():
            raise StorageError(f"{where} is not a directory")
        if (self.root / LOCK_NAME).exists():
            raise StorageError(f"{where} is the data directory of a daemon (it holds {LOCK_NAME}), which would set "
                               "the other hosts' files aside as its own orphans: give the shared audio a "
                               "directory of its own")
        try:
            fd, probe = tempfile.mkstemp(prefix=temp_prefix("probe"), suffix=".tmp", dir=self.root)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise StorageError(f"{where} is not writable: {exc.strerror or exc}") from None
        problems = check_layout(self.root)
        if problems:
            raise StorageError(f"{where}: " + "; ".join(problems))

    def library_file(self, rel: str) -> Path:
        return library_file(self.root, rel)

    def plain(self, rel: str | PurePosixPath) -> Path:
        return plain(self.root, rel)

    def with_file(self, track: dict[str, Any]) -> dict[str, Any]:
        return with_file(self.root, track)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_temp(root: Path, grace: float = TEMP_GRACE) -> list[Path]:
    """On a shared root, instead of `set_aside_orphans`: delete only this host's abandoned
    temporary files (TEMP_RE names this host, its process is gone, older than `grace` s) in the
    folders daemons write in. Every other file stays where it is: a file no row of this host's
    store names may be another host's, written and not committed yet; a temporary file of
    another host may still be being written."""
    me, cutoff, removed = host_tag(), time.time() - grace, []
    for folder in WRITTEN:
        top = plain(root, folder)  # never walk through a symlinked folder
        if not top.is_dir():
            continue
        for dirpath, _dirs, names in os.walk(top):
            for name in names:
                m = TEMP_RE.search(name)
                if m is None or m["host"] != me:
                    continue
                pid = int(m["pid"])
                p = Path(dirpath) / name
                try:
                    if pid == os.getpid() or _pid_alive(pid) or p.lstat().st_mtime >= cutoff:
                        continue
                    p.unlink()
                except FileNotFoundError:
                    continue
                removed.append(p)
    styles = plain(root, STYLES)  # a style is copied in as a temporary directory (daemon/jobs/train.py)
    for p in sorted(styles.iterdir()) if styles.is_dir() else []:
        m = TEMP_RE.search(p.name)
        if m is None or m["host"] != me or not p.is_dir() or p.is_symlink():
            continue
        pid = int(m["pid"])
        if pid == os.getpid() or _pid_alive(pid) or p.lstat().st_mtime >= cutoff:
            continue
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


def copy_atomic(src: Path, dest: Path) -> None:
    """Copy `src` to `dest` so that `dest` is either as before or complete: a temporary file of
    this host next to it, fsync, rename (a reader on another host never sees half a file)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(dest.stem), suffix=".tmp", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
            shutil.copyfileobj(inp, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        shutil.copystat(src, tmp)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
