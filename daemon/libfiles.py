"""Files in the data dir: safe library paths, trash, orphans. Nothing here leaves it.

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
import time
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from dgx_music.common.paths import OutsideRoot, resolve_under

LIBRARY = "library"
ORPHANS = "orphans"
TRASH = "trash"
#: The folders the daemon writes in (sources/ and melodies/ are the stores of daemon/audio_store.py).
#: midi/ holds the MIDI of uploaded files (a track's MIDI is a library file beside its audio).
FOLDERS = (LIBRARY, TRASH, ORPHANS, "sources", "melodies", "midi")


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
            raise UnsafePath(f"{p} is a symlink: the daemon writes and deletes only inside its data directory "
                             f"{root}, never through a link (replace it with a plain directory)")
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
                    problems.append(f"{d} is a symlink: the daemon writes only inside its data directory")
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
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        with open(tmp, "wb") as f:
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
