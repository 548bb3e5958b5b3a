"""Job history pruning: old finished jobs that no longer own a track are deleted.

Finished jobs (done, failed, cancelled) would otherwise pile up forever in the
database and in `job.list all=true`. A job is pruned once it finished more than
``daemon.keep_finished_days`` days ago AND no track belongs to it: tracks are
the user's library and are never deleted or orphaned here, so a done job keeps
its history entry for as long as one of its tracks exists (see
``Store.prune_jobs``). Queued, running and processing jobs are never touched.

The daemon prunes once at start (in the background: startup never waits for
it) and then once a day; ``keep_finished_days`` of 0 or less turns that off.
`job.prune` (`dgx-music prune`) does the same on request, with its own age and
a dry run. Every prune that removed something publishes ``job.pruned``. A real (not dry)
prune then deletes the stored melodies and operation sources no job refers to any more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dgx_music.common.config import BY_KEY
from dgx_music.common.fmt import plural
from dgx_music.daemon import libfiles
from dgx_music.daemon.audio_store import MELODIES, SOURCES

if TYPE_CHECKING:
    from dgx_music.daemon.app import Daemon

log = logging.getLogger("dgx_music.history")

DAY = 86400.0
KEY = "daemon.keep_finished_days"


class HistoryPruner:
    def __init__(self, daemon: Daemon, *, interval: float = DAY) -> None:
        self.daemon = daemon
        self.keep_days = float(daemon.settings[KEY])
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    @property
    def automatic(self) -> bool:
        """Whether the daemon prunes by itself (keep_finished_days is a positive number)."""
        return math.isfinite(self.keep_days) and self.keep_days > 0

    def default_days(self) -> float:
        """The age `job.prune` uses when none is given: the configured one, or the option's
        default when automatic pruning is off (0 would otherwise mean "every finished job")."""
        return self.keep_days if self.automatic else float(BY_KEY[KEY].default_value())

    async def prune(self, older_than_days: float, *, dry_run: bool = False) -> dict[str, Any]:
        """Prune (or with dry_run count) finished jobs older than `older_than_days` days."""
        res = await self.daemon.store.prune_jobs(older_than=older_than_days * DAY, dry_run=dry_run)
        if res["removed"] and not dry_run:
            log.info("pruned %s older than %g days; kept %d that still own tracks",
                     plural(res["removed"], "finished job"), older_than_days, res["kept_with_tracks"])
            scheduler = self.daemon.scheduler
            if scheduler is not None:
                # `status` reports the scheduler's counts by state: bring them up to date.
                await scheduler.refresh_counts()
            self.daemon.publish("job.pruned", {"ids": res["ids"], "removed": res["removed"],
                                               "kept_with_tracks": res["kept_with_tracks"]})
        if not dry_run and self._may_forget_copies():
            store = self.daemon.store
            res["melodies_removed"] = await self._forget(
                await store.melody_keys(), MELODIES.remove_unreferenced, "stored melodies")
            res["sources_removed"] = await self._forget(
                await store.source_keys(), SOURCES.remove_unreferenced, "stored operation sources")
        if not dry_run and res.get("ids"):  # an uploaded file's MIDI is its job's result: it goes with the job
            await asyncio.get_running_loop().run_in_executor(None, _remove_job_midi, self.daemon.storage.root,
                                                             list(res["ids"]))
        return res

    def _may_forget_copies(self) -> bool:
        """Stored copies on a shared storage root may be another host's: they are pruned only when
        this daemon's store is that of every host sharing it (a store with `shared` true)."""
        if not self.daemon.storage.shared or getattr(self.daemon.store, "shared", False):
            return True
        log.debug("stored copies are not pruned: the storage is shared and this store is not")
        return False

    async def _forget(self, keys: set[str], remove: Callable[[Path, set[str], float], int], what: str) -> int:
        """Delete the stored copies (melodies, operation sources) that no job refers to any more
        (their jobs were pruned); `keys` are the ones jobs still refer to.

        Only files older than a day: a copy is written before its job row is committed, so a
        younger unreferenced file may belong to a submit in progress."""
        loop = asyncio.get_running_loop()
        # In the scheduler's one submit thread, where submits store copies: one stored (or re-used,
        # which refreshes its time) after `keys` was read is young, so it is spared.
        pool = self.daemon.scheduler.submit_pool if self.daemon.scheduler is not None else None
        removed = await loop.run_in_executor(pool, remove, self.daemon.storage.root, keys, DAY)
        if removed:
            log.info("removed %d %s that no job uses any more", removed, what)
        return removed

    def start(self) -> None:
        if self.automatic and self._task is None:
            self._task = asyncio.create_task(self._run(), name="history-pruner")

    async def _run(self) -> None:
        while True:
            try:
                await self.prune(self.keep_days)
            except asyncio.CancelledError:
                raise
            except Exception:  # never fatal: the history just stays a day longer
                log.exception("pruning the job history failed; trying again in %g s", self.interval)
            await asyncio.sleep(self.interval)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task  # _run handles every other exception itself


def _remove_job_midi(data_dir: Path, job_ids: list[int]) -> None:
    from dgx_music.daemon.jobs.midi import upload_midi_path

    for job_id in job_ids:
        try:
            libfiles.plain(data_dir, upload_midi_path(job_id)).unlink(missing_ok=True)
        except (OSError, libfiles.UnsafePath):
            log.warning("could not remove the MIDI of pruned job %s", job_id)
