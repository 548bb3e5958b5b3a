"""Disk space for the queue: what a job will write, what the data directory has, what a full disk looks like.

A full disk must pause the queue, not fail its jobs one after another: the runner
checks free space before it starts a job (the job's estimated output plus a
margin, `daemon.min_free_mb`) and treats any write that fails for want of space,
in SQLite or in a file, as "the disk is full" (`is_disk_full`).
"""

from __future__ import annotations

import errno
import math
import os
from pathlib import Path

from dgx_music.daemon.store import StoreError

#: Upper bounds for the estimate: the models make at most 48 kHz stereo.
SAMPLE_RATE = 48_000
CHANNELS = 2
BYTES_PER_SAMPLE = 4  # float32 while post-processing
COPIES = 2  # the temporary file and the final one exist at once
MB = 1024 * 1024

_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


def job_bytes(duration: float, count: int) -> int:
    """A generous estimate of what one job writes: duration x count x rate x channels x 4 bytes x 2."""
    return int(math.ceil(max(0.0, float(duration)) * max(1, int(count)) * SAMPLE_RATE * CHANNELS
                         * BYTES_PER_SAMPLE * COPIES))


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the filesystem holding `path` (blocking: call it
    in an executor)."""
    st = os.statvfs(path)
    return int(st.f_bavail) * int(st.f_frsize)


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether `exc` (or an exception it was raised from) means the disk or the quota is full."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, StoreError) and exc.code == "disk_full":
            return True
        if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
            return True
        exc = exc.__cause__ or exc.__context__
    return False
