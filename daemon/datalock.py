"""One user of a data directory at a time: an exclusive flock on the directory itself.

Two daemons on one data directory would each requeue the other's running job as
interrupted and generate it twice; a daemon started (say, by socket activation) while
`restore` replaces the database would open it half-written. Both take this lock for as
long as they use the directory. The kernel drops it when the process dies, kill -9
included, so a crash never leaves a stale lock behind.

The lock is on an fd of the directory, not on a file in it: a lock file can be deleted
while it is held (`rm DATA/daemon.lock`), and the next process would lock a new file of
the same name and run beside the first. The directory cannot be deleted while it holds
the library. `daemon.lock` remains as a note of who holds the lock (pid and role), read
only to name the holder in the refusal.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = "daemon.lock"
DAEMON, RESTORE = "daemon", "restore"  # who holds the lock, as the note names it


class DataDirLocked(RuntimeError):
    """Another process holds the data directory's lock; the message names its pid and role."""


def _holder(data_dir: Path) -> tuple[str, str]:
    """(pid, role) from the note the holder wrote; ('unknown', 'daemon') if there is none."""
    try:
        fd = os.open(data_dir / LOCK_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return "unknown", DAEMON
    try:
        words = os.read(fd, 64).decode("ascii", "replace").split()
    except OSError:
        words = []
    finally:
        os.close(fd)
    return (words[0] if words else "unknown"), (words[1] if len(words) > 1 else DAEMON)


class DataDirLock:
    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path  # the note naming the holder

    @classmethod
    def acquire(cls, data_dir: Path, role: str = DAEMON) -> "DataDirLock":
        """Take the lock without waiting and note our pid and role for the next one to name;
        DataDirLocked if another process holds it."""
        data_dir = Path(data_dir)
        # O_CLOEXEC (Python's default) keeps the lock out of the worker process.
        fd = os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            pid, held_by = _holder(data_dir)
            if held_by == RESTORE:
                raise DataDirLocked(f"a restore (pid {pid}) is replacing the library in the data directory "
                                    f"{data_dir}; wait for it to finish") from None
            raise DataDirLocked(f"another dgx-music daemon (pid {pid}) is using the data directory {data_dir}; "
                                "stop it first or pass another --data-dir") from None
        except BaseException:
            os.close(fd)
            raise
        path = data_dir / LOCK_NAME
        try:
            note = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            try:
                os.write(note, f"{os.getpid()} {role}\n".encode())
            finally:
                os.close(note)
        except OSError:
            pass  # only a note: the lock is held either way
        return cls(fd, path)

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:  # no stale pid for the next reader; the lock itself goes with the fd
            note = os.open(self.path, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW)
            os.close(note)
        except OSError:
            pass
        os.close(fd)

    def __enter__(self) -> "DataDirLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
