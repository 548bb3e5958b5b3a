"""One daemon per data directory: an exclusive flock held for the daemon's lifetime.

Two daemons on one data directory would each requeue the other's running job as
interrupted and generate it twice. The kernel drops the lock when the process
dies, kill -9 included, so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = "daemon.lock"


class DataDirLocked(RuntimeError):
    """Another process holds the data directory's lock; the message names its pid."""


class DataDirLock:
    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path

    @classmethod
    def acquire(cls, data_dir: Path) -> "DataDirLock":
        """Take the lock without waiting, and record our pid in the file for the next one to name."""
        path = data_dir / LOCK_NAME
        # O_CLOEXEC (Python's default) keeps the lock out of the worker process.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise DataDirLocked(f"another dgx-music daemon (pid {holder}) is using the data directory "
                                f"{data_dir}; stop it first or pass another --data-dir") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(fd, path)

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # no stale pid for the next reader; the lock itself goes with the fd
        except OSError:
            pass
        os.close(fd)
