"""The queue's pause on a full disk, a part of the Scheduler (scheduler.py) in its own module.

A job is only started when its estimated output plus `daemon.min_free_mb` fits on the
fullest of the data directory's and the storage root's filesystems; a job that hits a
full disk goes back to the queue once it can be recorded, and the runner resumes by
itself (see daemon/diskspace.py). The state (`disk_full`, `disk`, `_stuck`, ...) lives
on the Scheduler, which sets it up in its __init__.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dgx_music.common import protocol
from dgx_music.daemon import diskspace
from dgx_music.daemon.handlers import HandlerError
from dgx_music.daemon.store import StoreError

if TYPE_CHECKING:
    from dgx_music.daemon.app import Daemon

log = logging.getLogger("dgx_music.queue")


class DiskPauseMixin:
    """The Scheduler's full-disk handling (its attributes are the Scheduler's)."""

    daemon: "Daemon"
    store: Any
    disk_full: bool
    disk: dict[str, Any]
    min_free: int
    disk_delay: tuple[float, float]
    _disk_wait: float
    _disk_path: Path
    _stuck: int | None
    _wake: asyncio.Event

    def publish(self, name: str, data: dict[str, Any]) -> None:
        raise NotImplementedError

    async def refresh_counts(self) -> None:
        raise NotImplementedError

    def with_progress(self, job: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def disk_status(self) -> dict[str, Any]:
        """Free bytes at the last check and what the next job needed, with the configured margin."""
        return {"full": self.disk_full, **self.disk, "min_free": self.min_free}

    async def _refuse_if_disk_full(self) -> None:
        """A submission is `disk_full` while less than the margin is free (statvfs, off the loop: a
        SQLite write may still fit in the WAL, but the job could not run). If the queue was paused
        and space is back, the runner is woken to resume at once."""
        free = await self._free()
        if free is None or free >= self.min_free:
            if self.disk_full:
                self._wake.set()
            return
        raise HandlerError(protocol.DISK_FULL, self._disk_message(free, self.min_free))

    def _disk_message(self, free: int | None, needed: int) -> str:
        have = "unknown" if free is None else f"{free / diskspace.MB:.0f} MiB"
        return (f"the disk holding {self._disk_path} is full: {have} free, {needed / diskspace.MB:.0f} MiB "
                "needed (daemon.min_free_mb plus the job's output); free some space: the queue resumes by itself")

    async def _free(self) -> int | None:
        """Free bytes on the fullest of the filesystems of the data directory (the database) and
        the storage root (the audio), statvfs off the event loop; `_disk_path` names that one."""
        loop = asyncio.get_running_loop()
        free: int | None = None
        for path in dict.fromkeys((self.daemon.data_dir, self.daemon.storage.root)):
            try:
                n = await loop.run_in_executor(None, diskspace.free_bytes, path)
            except OSError as exc:
                log.warning("cannot read the free space of %s: %s", path, exc)
                continue
            if free is None or n < free:
                free, self._disk_path = n, path
        return free

    def _needed(self, job: dict[str, Any] | None) -> int:
        if job is None:
            return self.min_free
        duration = float((job.get("params") or {}).get("duration") or 0.0)
        return self.min_free + diskspace.job_bytes(duration, int(job.get("count") or 1))

    async def _room_for(self, job: dict[str, Any]) -> bool:
        """Whether the job's estimated output plus the margin fits; if not, the queue pauses
        (the job stays queued, no attempt is used)."""
        needed = self._needed(job)
        free = await self._free()
        self.disk.update(free=free, needed=needed)
        if free is None or free >= needed:
            return True
        self._set_disk_full(True, f"{free / diskspace.MB:.0f} MiB free, job {job['id']} needs "
                                  f"{needed / diskspace.MB:.0f} MiB with the margin")
        return False

    async def _below_margin(self) -> bool:
        """A failure while free space is under the margin is taken for a full disk (libsndfile, for
        one, reports a failed write without its errno)."""
        free = await self._free()
        return free is not None and free < self.min_free

    def _stall(self, job_id: int, exc: BaseException) -> None:
        """A job hit the full disk: its state may not be recordable now, so it is requeued later."""
        self._stuck = job_id
        self._set_disk_full(True, f"job {job_id} could not be written ({exc}); it will run again")
        self.publish("job.failed", {"id": job_id, "error": "the disk is full", "reason": protocol.DISK_FULL,
                                    "retrying": True})

    def _set_disk_full(self, full: bool, why: str) -> None:
        """One log line and one `daemon.disk` event per change of state, never one per retry."""
        if full == self.disk_full:
            return
        self.disk_full = full
        self._disk_wait = self.disk_delay[0]
        if full:
            log.warning("disk full at %s: %s; the queue is paused until there is room", self._disk_path, why)
        else:
            log.info("disk space is back at %s: %s; the queue resumes", self._disk_path, why)
        self.publish("daemon.disk", self.disk_status())

    async def _wait_for_space(self) -> None:
        """Paused: check again after a growing delay (or at once when a submit or retry wakes us);
        requeue the job the full disk interrupted, then resume when the next job fits."""
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), self._disk_wait)
        except asyncio.TimeoutError:
            pass
        self._disk_wait = min(self._disk_wait * 2, self.disk_delay[1])
        free = await self._free()
        self.disk["free"] = free
        if free is not None and free < self.min_free:
            return
        requeued = ""
        if self._stuck is not None:
            try:
                job = await self.store.release_job(self._stuck)
            except StoreError as exc:
                if exc.code == "disk_full":
                    return
                job = None  # finished or gone meanwhile: nothing to requeue
            if job is not None:
                requeued = f"job {self._stuck} is queued again, "
                self.publish("job.queued", self.with_progress(job))
            self._stuck = None
            await self.refresh_counts()
        nxt = await self.store.next_queued_job()
        needed = self._needed(nxt)
        self.disk["needed"] = needed
        if free is None or free >= needed:
            self._set_disk_full(False, f"{requeued}{'?' if free is None else round(free / diskspace.MB)} MiB free")
