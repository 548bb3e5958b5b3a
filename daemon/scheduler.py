"""The queue runner: takes jobs from the store in order, generates, post-processes, files.

It runs every job the same way and knows no kind of job: what a kind checks at submit,
asks the model worker for and writes as files is its `JobKind` (daemon/jobs/); here are
the flow and its policy (order, cancel, retries, a full disk, events).

Durability rules (see daemon/store.py): a job row is committed before `submit`
answers; audio files are written atomically before `finish_job` commits the
track rows and marks the job done in one transaction. A crash anywhere leaves
either a queued/running job (recovered at start) or a done job with all its
files, never a row without a file. Files without a row are moved aside at start.

The runner is supervised: if it raises (a bug, a database that went away), it is
logged and restarted with backoff, and `status`/`/healthz` say it is down meanwhile.
A full disk pauses it (see daemon/diskspace.py): a job is only started when its
estimated output plus `daemon.min_free_mb` fits; a job that hits a full disk goes
back to the queue once it can be recorded, and the runner resumes by itself.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from dgx_music.common import protocol
from dgx_music.common.fmt import plural
from dgx_music.common.families import DEFAULT_FAMILY, family_for_name, is_builtin_name
from dgx_music.common.params import ParamError
from dgx_music.daemon.engine.errors import EngineError
from dgx_music.daemon.engine.supervisor import GenerateResult
from dgx_music.daemon.engine.models import resolve_model
from dgx_music.daemon.handlers import HandlerError
from dgx_music.daemon.store import StoreError
from dgx_music.daemon import diskspace, failpoints, jobs, libfiles, render
from dgx_music.daemon.diskqueue import DiskPauseMixin
from dgx_music.daemon.hosts import Hosts
from dgx_music.daemon.stream_relay import StreamRelay

if TYPE_CHECKING:
    from dgx_music.daemon.app import Daemon

log = logging.getLogger("dgx_music.queue")


def _warm_audio() -> None:
    try:
        from dgx_music.common.audio import pipeline

        pipeline.warm_up()
    except Exception:  # warming is an optimisation; a failure shows up on the first real job
        log.exception("audio warm-up failed")


class Scheduler(DiskPauseMixin):
    #: Backoff (seconds) between restarts of a runner that raised, and between free-space checks
    #: while the disk is full. Instance attributes copy them, so a test can shorten its own.
    RESTART_DELAY = (0.5, 30.0)
    DISK_DELAY = (1.0, 30.0)

    def __init__(self, daemon: "Daemon") -> None:
        self.daemon = daemon
        self.store = daemon.store
        self.engine = daemon.engine
        s = daemon.settings
        self.max_count = int(s["engine.max_count"])
        self.max_attempts = int(s["daemon.max_attempts"])
        self.target_lufs = float(s["audio.target_lufs"])
        self.ceiling = float(s["audio.ceiling_dbtp"])
        self.bit_depth = int(s["audio.bit_depth"])
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dgx-audio")
        # Submit-time decoding, storing and look-ups get their own thread: an upload must not wait
        # behind a render of minutes in `pool`. One thread, so pruning (history.py, also here) and a
        # submit storing or re-using a copy never interleave.
        self.submit_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dgx-submit")
        self.progress: dict[int, dict[str, Any]] = {}
        self.streams = StreamRelay(daemon)  # streamed audio of running MusicGen jobs (stream_relay.py)
        self.running: int | None = None
        self._cancel_requested: set[int] = set()
        self._compute_cancel: dict[int, threading.Event] = {}  # running Work.compute jobs' cancel flags
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._counts: dict[str, int] = {}
        self.warmup: asyncio.Future[None] | None = None  # the audio stack's warm-up, started by the first job
        self.min_free = int(s["daemon.min_free_mb"]) * diskspace.MB
        self.restart_delay = self.RESTART_DELAY
        self.disk_delay = self.DISK_DELAY
        self.runner_up = False  # False while the runner waits to be restarted (or before start/after close)
        self.runner_restarts = 0
        self.runner_error: str | None = None
        self.disk_full = False
        self.disk: dict[str, Any] = {"free": None, "needed": None}
        self._stuck: int | None = None  # a job the full disk left `running`: requeued when space returns
        self._disk_wait = self.DISK_DELAY[0]
        self._disk_path: Path = daemon.data_dir  # the filesystem `_free` found fullest
        self.hosts = Hosts(daemon, self)  # claims, leases and events across hosts on a shared store (hosts.py)

    @property
    def data_dir(self) -> Path:
        return self.daemon.data_dir

    @property
    def storage(self) -> Path:
        return self.daemon.storage.root

    @property
    def settings(self) -> Any:
        return self.daemon.settings

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> dict[str, Any]:
        """Recover after a crash, set orphan files aside, then start taking jobs."""
        await self.hosts.start()  # on a shared store: act as this host, so recovery touches only its jobs
        recovered = await self.store.recover(max_attempts=self.max_attempts)
        if recovered.get("requeued") or recovered.get("failed"):
            log.warning("recovered after an unclean stop: requeued jobs %s, failed jobs %s",
                        recovered.get("requeued"), recovered.get("failed"))
        loop = asyncio.get_running_loop()
        storage = self.daemon.storage
        orphans: list[Path] = []
        if storage.shared:  # another host may be between writing a file and committing its row
            swept = await loop.run_in_executor(self.pool, libfiles.sweep_stale_temp, storage.root)
            for path in swept:
                log.warning("removed an abandoned temporary file of this host: %s", path)
        else:
            known = await self.store.track_paths()
            orphans = await loop.run_in_executor(self.pool, libfiles.set_aside_orphans, storage.root, known)
            swept = []
        for path in orphans:
            log.warning("orphan audio file with no library row kept aside: %s", path)
        await self.refresh_counts()
        self._task = asyncio.create_task(self._supervise(), name="queue-runner")
        self.hosts.touch()  # taking jobs now: other hosts' `status` shows it at once
        return {**recovered, "orphans": [str(p) for p in orphans], "swept": [str(p) for p in swept]}

    async def close(self) -> None:
        """Stop taking jobs; a job cut short by the shutdown goes back to the queue uncounted."""
        interrupted = self.running if self.running is not None else self._stuck
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        # The audio thread may be mid-render (seconds): wait for it in another thread, not on the loop.
        for pool in (self.submit_pool, self.pool):
            await asyncio.get_running_loop().run_in_executor(
                None, functools.partial(pool.shutdown, wait=True, cancel_futures=True))
        if interrupted is not None:
            try:
                released = await self.store.release_job(interrupted)
                if released["state"] == "cancelled":  # a cancel was on its way: it does not run again
                    log.info("job %d cancelled (stopped by the shutdown)", interrupted)
                    self.publish("job.cancelled", {"id": interrupted})
                else:
                    log.info("job %d interrupted by shutdown; it will run again at the next start", interrupted)
            except StoreError:
                pass  # it finished or failed just before the shutdown (or another host holds it now)
        await self.hosts.close()

    def summary(self) -> dict[str, int]:
        return dict(self._counts)

    def runner_status(self) -> dict[str, Any]:
        """What `status` and `/healthz` report about the runner: `alive` is false while it is down."""
        if self._task is None or self._task.done():
            state = "stopped"
        elif not self.runner_up:
            state = "restarting"
        elif self.disk_full:
            state = "paused"
        else:
            state = "working" if self.running is not None else "idle"
        return {"state": state, "alive": state not in ("stopped", "restarting"), "restarts": self.runner_restarts,
                "error": self.runner_error, "reason": "disk_full" if state == "paused" else None}

    async def refresh_counts(self) -> None:
        """Re-read the counts by state that `status` reports (after any change to the jobs)."""
        self._counts = await self.store.queue_depth()

    def publish(self, name: str, data: dict[str, Any]) -> None:
        self.daemon.publish(name, data)

    def wake(self) -> None:
        """Look at the queue now (a job was queued here or on another host)."""
        self._wake.set()

    def with_progress(self, job: dict[str, Any]) -> dict[str, Any]:
        job["progress"] = self.progress.get(job["id"]) if job.get("state") == "running" else None
        job["stream_seconds"] = self.streams.ready_seconds(job["id"]) if job.get("state") == "running" else None
        return job

    # -- requests ------------------------------------------------------------------------------
    def check_model(self, name: str | None) -> str:
        """The model a request may use: a named or hub model, the configured one, or a directory
        under <data>/models. Any other local path is refused: no request makes the daemon read
        outside its data directory."""
        configured = self.daemon.settings["engine.model"]
        if not name or name == configured:
            return configured
        if is_builtin_name(name):
            return name  # built-in names, never a path (whether or not this engine version lists them yet)
        try:
            spec = resolve_model(name)
        except EngineError as exc:
            raise ParamError("model", exc.message) from None
        if spec.kind == "local":
            allowed = (self.daemon.data_dir / "models").resolve()
            try:
                same_as_configured = resolve_model(configured).ref == spec.ref
            except EngineError:
                same_as_configured = False
            if not same_as_configured and allowed not in Path(spec.ref).parents:
                raise HandlerError(protocol.FORBIDDEN,
                                   f"model: local model directories must be under {allowed} "
                                   "(or be the daemon's configured --model)", field="model")
        return name

    def family_of(self, model: str) -> str:
        """The family of a checked model name: from the name when it tells, else from the model itself."""
        family = family_for_name(model)
        if family is not None:
            return family
        try:
            spec = resolve_model(model)
        except EngineError as exc:
            raise ParamError("model", exc.message) from None
        return str(getattr(spec, "family", DEFAULT_FAMILY))

    async def submit(self, raw: dict[str, Any], kind: str | None = None) -> dict[str, Any]:
        """Check a request as its kind says, commit the job row, queue it; returns the job.

        `kind` None: a `job.submit` request (generation, or extend when it names a track)."""
        job_kind = jobs.named(kind or jobs.submit_kind(raw))
        await self._refuse_if_disk_full()
        row = await job_kind.check(self, dict(raw))
        job = await self.store.add_job(prompt=row.prompt, params=row.params, count=row.count, seed=row.seed,
                                       model=row.model, backend=self.daemon.settings["engine.backend"],
                                       max_attempts=self.max_attempts)
        log.info("job %d queued: %s", job["id"], row.summary)
        await self.refresh_counts()
        self.publish("job.queued", self.with_progress(job))
        self._wake.set()
        return self.with_progress(job)

    async def library_track(self, field: str, track_id: str) -> dict[str, Any]:
        """A track a request names in `field`; a missing one is `not_found` naming that field, as
        track.get answers it: a missing track has one error code (and one CLI exit code) everywhere."""
        try:
            return await self.store.get_track(track_id)
        except StoreError as exc:
            if exc.code == "not_found":
                raise HandlerError(protocol.NOT_FOUND, f"{field}: there is no track {track_id} in the library",
                                   field=field) from None
            raise

    async def cancel(self, job_id: int) -> dict[str, Any]:
        for _ in range(5):  # the runner may take the job between our read and our write
            job = await self.store.get_job(job_id)
            if job["state"] == "queued":
                try:
                    job = await self.store.cancel_queued(job_id)
                except StoreError as exc:
                    if exc.code == "conflict":
                        continue
                    raise
                log.info("job %d cancelled while queued", job_id)
                await self.refresh_counts()
                self.publish("job.cancelled", {"id": job_id})
            elif job["state"] in ("running", "processing"):
                try:
                    if self.hosts.enabled and self.running != job_id:
                        job = await self.hosts.ask_cancel(job_id)  # another host runs it: recorded, and told
                    else:
                        job = await self.store.request_cancel(job_id)  # recorded: a crash now cannot run it again
                        await self.stop_running(job_id)
                except StoreError as exc:
                    if exc.code == "conflict":
                        continue
                    raise
                job["cancel_requested"] = True
            return self.with_progress(job)
        raise StoreError("conflict", f"job {job_id} changed state while being cancelled; try again")

    async def stop_running(self, job_id: int, *, cancel: bool = True) -> None:
        """Stop a job this host runs: cancelled by a request (here or at another host), or lost to
        another host (hosts.py; then nothing of it is recorded). Recorded here as well as in the
        engine: the job may not have reached it yet, and post-processing checks this set before
        anything is committed."""
        if self.hosts.enabled and self.running != job_id:
            return
        self._cancel_requested.add(job_id)
        flag = self._compute_cancel.get(job_id)
        if flag is not None:
            flag.set()
        else:
            await self.engine.cancel(job_id)

    async def retry(self, job_id: int) -> dict[str, Any]:
        job = await self.store.retry_job(job_id)
        await self.refresh_counts()
        self.publish("job.queued", self.with_progress(job))
        self._wake.set()
        return job

    async def move(self, job_id: int, where: str) -> dict[str, Any]:
        job = await self.store.move_job(job_id, where)
        self.publish("job.moved", {"id": job_id, "position": job["position"]})
        return self.with_progress(job)

    # -- the runner ----------------------------------------------------------------------------
    async def _supervise(self) -> None:
        """Keep the runner going: one that raises is logged and restarted, with backoff."""
        delay: float | None = None
        while True:
            began = time.monotonic()
            self.runner_up = True
            try:
                await self._run()
            except asyncio.CancelledError:
                self.runner_up = False
                raise
            except Exception as exc:
                self.runner_up = False
                self.runner_restarts += 1
                self.runner_error = f"{type(exc).__name__}: {exc}"
                first, most = self.restart_delay
                if delay is None or time.monotonic() - began > 2 * most:
                    delay = first  # the first failure, or it ran well for a while since the last one
                log.error("the queue runner stopped (%s); restarting it in %.1f s", self.runner_error, delay,
                          exc_info=exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, most)
                log.info("the queue runner is running again (restart %d)", self.runner_restarts)

    async def _run(self) -> None:
        while True:
            if self.disk_full:
                await self._wait_for_space()
                continue
            job = await self.store.next_queued_job()
            if job is None:
                self._wake.clear()
                if self.hosts.enabled:  # a poll as well: a notification from another host may be lost
                    try:
                        await asyncio.wait_for(self._wake.wait(), self.hosts.poll_s)
                    except asyncio.TimeoutError:
                        pass
                else:
                    await self._wake.wait()
                continue
            if not await self._room_for(job):
                continue
            if self.hosts.enabled:  # claim: another host may have taken that one; the loaded model's first
                job = await self.hosts.claim()
                if job is None:
                    continue
            try:
                if self.hosts.enabled:
                    async with self.hosts.holding(job["id"]):
                        await self._run_job(job, claimed=True)
                else:
                    await self._run_job(job)
                self._disk_wait = self.disk_delay[0]  # a job went through: the disk is fine again
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug must cost one job, not the queue
                if self.hosts.enabled and (job["id"] in self.hosts.lost or
                                           (isinstance(exc, StoreError) and exc.code == "conflict")):
                    log.warning("job %d: not recorded here, this host no longer holds it (%s)", job["id"], exc)
                elif diskspace.is_disk_full(exc) or await self._below_margin():
                    self._stall(job["id"], exc)
                else:
                    log.exception("job %d: unexpected failure", job["id"])
                    try:
                        await self.store.set_job_state(job["id"], "failed", error=f"internal error: {exc}")
                        self.publish("job.failed", {"id": job["id"], "error": str(exc), "retrying": False})
                    except Exception as record:
                        if diskspace.is_disk_full(record):
                            self._stall(job["id"], record)
                        else:
                            log.exception("job %d: could not record the failure", job["id"])
            finally:
                self.running = None
                self.progress.pop(job["id"], None)
                self._cancel_requested.discard(job["id"])
                self.hosts.lost.discard(job["id"])
                self.hosts.touch()  # idle again: other hosts' `status` shows it now
                await self.refresh_counts()

    def warm_audio(self) -> None:
        """Import and prime the audio stack (~1 s, holding the GIL) in the audio thread, once.

        Started with the first job, while the model loads or generates in its own process, so
        neither start-up requests nor the first job's post-processing pay for it."""
        if self.warmup is None:
            self.warmup = asyncio.get_running_loop().run_in_executor(self.pool, _warm_audio)

    async def _run_job(self, job: dict[str, Any], *, claimed: bool = False) -> None:
        """One job, whatever its kind: start, the kind's engine call, render, commit, events.
        `claimed`: the job is already running, claimed by this host (hosts.py)."""
        kind = jobs.kind_of(job)
        job_id = job["id"]
        started = await self.start_job(job, claimed=claimed)
        if started is None:
            return
        job = started
        log.info("job %d started: %s (attempt %d/%d)", job_id, kind.describe(job), job["attempts"],
                 job["max_attempts"])
        self.publish("job.started", {"id": job_id, "attempt": job["attempts"],
                                     **({"host": self.hosts.name} if self.hosts.enabled else {})})
        failpoints.hit("after_start")
        t0 = time.monotonic()
        try:
            if job_id in self._cancel_requested:
                raise EngineError("cancelled", f"job {job_id} was cancelled")
            work = await kind.prepare(self, job)
            if work.compute is not None:
                result = await self._compute(job_id, work)
            else:
                result = await self.engine.generate(job_id, work.prompts, work.params,
                                                    lambda p: self._on_progress(job_id, p),
                                                    on_audio=self.streams.on_audio if work.stream else None,
                                                    **work.inputs)
        except EngineError as exc:
            await self._engine_failed(job, exc)
            return
        log.info("job %d generated %s in %.1fs", job_id, plural(len(work.prompts), "output"), time.monotonic() - t0)
        await self.store.set_job_state(job_id, "processing")
        self.publish("job.processing", {"id": job_id})
        await self.refresh_counts()
        opts = render.RenderOptions(
            target_lufs=work.target_lufs if work.target_lufs is not None else self.target_lufs,
            ceiling_dbtp=self.ceiling, bit_depth=self.bit_depth, model=result.model, backend=result.backend)
        rendered = await asyncio.get_running_loop().run_in_executor(
            self.pool, work.render, self.daemon.storage.root, job, result.audio, result.sample_rate, opts)
        await self.commit_rendered(job_id, rendered, work.finish)

    async def _compute(self, job_id: int, work: jobs.Work) -> GenerateResult:
        """A kind's own computation (Work.compute) in place of the worker's: the same progress
        events, and a cancel that sets the flag it checks between steps."""
        assert work.compute is not None
        loop = asyncio.get_running_loop()
        flag = threading.Event()
        self._compute_cancel[job_id] = flag
        if job_id in self._cancel_requested:
            flag.set()
        t0 = time.monotonic()

        def progress(step: int, total: int, **extra: Any) -> None:
            p = {"step": step, "total": total, "elapsed": time.monotonic() - t0, **extra}
            loop.call_soon_threadsafe(self._on_progress, job_id, p)

        try:
            return await work.compute(progress, flag)
        finally:
            self._compute_cancel.pop(job_id, None)

    async def start_job(self, job: dict[str, Any], *, claimed: bool = False) -> dict[str, Any] | None:
        """queued -> running for the job the runner just read; None when it is no longer queued.

        A cancel (or a prune, a move to another state) may land between `next_queued_job` and
        this write: the store then refuses with `conflict`, and the job is simply not run (the
        canceller already recorded and announced its end). That is not a failure to record."""
        self.warm_audio()
        if claimed:
            self.running = job["id"]
            await self.refresh_counts()
            return job
        try:
            job = await self.store.mark_running(job["id"])
        except StoreError as exc:
            if exc.code not in ("conflict", "not_found"):
                raise
            log.info("job %d was not started: %s", job["id"], exc.message)
            return None
        self.running = job["id"]
        await self.refresh_counts()
        return job

    async def commit_rendered(self, job_id: int, rendered: list[dict[str, Any]],
                              finish: jobs.kinds.Finish | None = None) -> None:
        """The last step of every job: its files are on disk; commit their rows and announce them,
        unless the job was cancelled meanwhile (then its files go). `finish` is the kind's own
        commit (Work.finish), by default the rows become library tracks."""
        loop = asyncio.get_running_loop()
        if job_id in self._cancel_requested:
            await loop.run_in_executor(self.pool, libfiles.discard, self.daemon.storage.root, rendered)
            if job_id in self.hosts.lost:
                log.warning("job %d: its files are discarded, another host runs it now", job_id)
                return
            await self.store.set_job_state(job_id, "cancelled", error="cancelled by request")
            self.publish("job.cancelled", {"id": job_id})
            return
        failpoints.hit("after_files")
        try:
            tracks = await (finish or self.store.finish_job)(job_id, rendered)
        except StoreError as exc:
            lost = exc.code == "conflict" and self.hosts.enabled  # the store says another host holds it now
            if exc.code == "disk_full" or lost:  # the job runs again: no orphan files meanwhile
                await loop.run_in_executor(self.pool, libfiles.discard, self.daemon.storage.root, rendered)
            if lost:
                self.hosts.lost.add(job_id)
            raise
        log.info("job %d done: tracks %s", job_id, ", ".join(t["id"] for t in tracks))
        for t in tracks:
            self.publish("track.added", t)
        self.publish("job.finished", {"id": job_id, "track_ids": [t["id"] for t in tracks]})

    def _on_progress(self, job_id: int, p: dict[str, Any]) -> None:
        step, total, elapsed = int(p.get("step", 0)), int(p.get("total", 0)), float(p.get("elapsed", 0.0))
        eta = elapsed / step * (total - step) if step > 0 and total >= step else None
        if "eta" in p:  # a kind that knows better (training resumed mid-way)
            eta = p["eta"]
        data = {"id": job_id, "step": step, "total": total, "elapsed": round(elapsed, 3),
                "eta": None if eta is None else round(eta, 3)}
        data.update({k: p[k] for k in ("loss", "rate", "phase") if k in p})  # training's extras
        self.progress[job_id] = data
        self.publish("job.progress", data)

    async def _engine_failed(self, job: dict[str, Any], exc: EngineError) -> None:
        job_id = job["id"]
        if job_id in self.hosts.lost:
            log.warning("job %d: stopped, another host runs it now", job_id)
            return
        if exc.code == "cancelled":
            await self.store.set_job_state(job_id, "cancelled", error="cancelled by request")
            log.info("job %d cancelled while running", job_id)
            self.publish("job.cancelled", {"id": job_id})
            return
        if exc.transient:
            after = await self.store.requeue_job(job_id, error=f"{exc.code}: {exc.message}")
            retrying = after["state"] == "queued"
        else:
            await self.store.set_job_state(job_id, "failed", error=f"{exc.code}: {exc.message}")
            retrying = False
        log.warning("job %d failed (%s): %s%s", job_id, exc.code, exc.message,
                    " - will retry" if retrying else "")
        self.publish("job.failed", {"id": job_id, "error": exc.message, "reason": exc.code,
                                    "retrying": retrying})
        if retrying:
            self._wake.set()
