"""Files in the data dir: safe library paths, trash, orphans. Nothing here leaves it."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from dgx_music.common.paths import OutsideRoot, resolve_under

LIBRARY = "library"
ORPHANS = "orphans"


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
    return data_dir / "trash"


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
    lib = data_dir / LIBRARY
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
            dest = data_dir / ORPHANS / stamp / p.relative_to(lib)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(p, dest)
            moved.append(dest)
    return moved
