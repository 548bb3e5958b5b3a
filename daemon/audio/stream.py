"""Bounded reads of a track's encoded file for clients (the TUI plays a track over a socket by
fetching the WAV in chunks and reassembling it)."""

from __future__ import annotations

import os
from pathlib import Path

MAX_CHUNK = 256 * 1024


def file_size(path: str | Path) -> int:
    return os.stat(path).st_size


def read_chunk(path: str | Path, offset: int, size: int = MAX_CHUNK) -> bytes:
    """Up to ``min(size, MAX_CHUNK)`` bytes of the file at ``offset``; b"" at or past the end.

    Raises ValueError for a negative offset or a non-positive size."""
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    if size <= 0:
        raise ValueError(f"size must be > 0, got {size}")
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read(min(size, MAX_CHUNK))
