"""Getting a track's audio file to the client: read it in place, or stream it over the socket.

Over a forwarded socket the daemon's files are on another machine, so clients
fetch them with `track.audio` in bounded chunks into a local cache.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dgx_music.common.client import Client
from dgx_music.common.paths import resolve_under

CHUNK = 256 * 1024


class UnsafeTrackPath(ValueError):
    """A track's stored path leads outside the daemon's data directory (a tampered database or
    backup): the client reads nothing for it."""


def checked_path(data_dir: str | Path, track: dict[str, Any]) -> Path:
    """`data_dir/track["path"]`, or UnsafeTrackPath if that is not inside `data_dir`."""
    try:
        return resolve_under(data_dir, str(track.get("path") or ""))
    except ValueError as exc:
        raise UnsafeTrackPath(f"track {track.get('id')}: {exc}; not reading it") from None


def local_path(data_dir: str | Path, track: dict[str, Any]) -> Path | None:
    """The track's file when this process can read it directly (same machine), else None.
    UnsafeTrackPath when the daemon names a file outside its data directory."""
    p = checked_path(data_dir, track)
    return p if p.is_file() and os.access(p, os.R_OK) else None


async def fetch(client: Client, track: dict[str, Any], dest: Path) -> Path:
    """Stream the file into `dest` atomically (temp name, then rename)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    offset = 0
    with open(tmp, "wb") as f:
        while True:
            part = await client.call("track.audio", {"id": track["id"], "offset": offset, "size": CHUNK})
            f.write(part["data"])
            offset += len(part["data"])
            if part["eof"] or not part["data"]:
                break
    os.replace(tmp, dest)
    return dest


async def obtain(client: Client, track: dict[str, Any], data_dir: str | Path, cache: Path) -> Path:
    """A readable local file for the track: the library file itself, or a cached copy.
    UnsafeTrackPath (before anything is read) when its stored path leads outside `data_dir`."""
    here = local_path(data_dir, track)
    if here is not None:
        return here
    cached = cache / Path(track["path"]).name  # a plain name: checked_path accepted the path
    if cached.is_file():  # track files never change once written
        return cached
    return await fetch(client, track, cached)
