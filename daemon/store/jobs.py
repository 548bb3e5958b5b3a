"""The durable job queue: submit, state transitions, order, recovery after a crash, pruning."""

from __future__ import annotations

import math
from typing import Iterable

from . import clock
from .base import Row, StoreBase
from .codecs import _job_dict
from .errors import StoreError
from .validate import (MAX_COUNT, MAX_PROMPT_CHARS, MAX_SEED, _bool, _float, _int, _invalid,
                       _job_id, _json_dict, _text)

JOB_STATES = ("queued", "running", "processing", "done", "failed", "cancelled")
ACTIVE_STATES = ("queued", "running", "processing")
FINISHED_STATES = ("done", "failed", "cancelled")

# set_job_state transitions.  queued->running is mark_running, back to queued is
# requeue_job / retry_job, ->done is finish_job (a done job always has its tracks).
_TRANSITIONS = {
    "queued": {"cancelled", "failed"},
    "running": {"processing", "failed", "cancelled"},
    "processing": {"failed", "cancelled"},
    "done": set(),
    "failed": set(),
    "cancelled": set(),
}

# `host`: the daemon that claimed the job last (a shared queue: which box runs or ran it); null on
# one box, and again once a job is queued anew.
_JOB_COLS = (
    "id, state, prompt, params, count, seed, model, backend, position, attempts,"
    " max_attempts, error, created, started, finished, claimed_by AS host"
)


class JobsMixin(StoreBase):
    """Jobs: the queue's reads and writes."""

    # ------------------------------------------------------------ jobs: reads

    async def _job_row(self, job_id: int) -> Row:
        row = await self._one(f"SELECT {_JOB_COLS} FROM jobs WHERE id = ?", (job_id,))
        if row is None:
            raise StoreError("not_found", f"no job {job_id}")
        return row

    async def _job(self, job_id: int) -> dict:
        row = await self._job_row(job_id)
        ids = await self._all("SELECT id FROM tracks WHERE job_id = ? ORDER BY idx, id", (job_id,))
        return _job_dict(row, [r[0] for r in ids])

    async def _jobs(self, rows: list[Row]) -> list[dict]:
        if not rows:
            return []
        ids = [r["id"] for r in rows]
        by_job: dict[int, list[str]] = {i: [] for i in ids}
        for chunk in range(0, len(ids), 500):
            part = ids[chunk:chunk + 500]
            q = ",".join("?" * len(part))
            for r in await self._all(
                    f"SELECT job_id, id FROM tracks WHERE job_id IN ({q}) ORDER BY job_id, idx, id",
                    part):
                by_job[r[0]].append(r[1])
        return [_job_dict(r, by_job[r["id"]]) for r in rows]

    async def get_job(self, job_id: int) -> dict:
        job_id = _job_id(job_id)
        return await self._run(lambda: self._job(job_id))

    async def list_jobs(self, *, include_finished: bool = False, limit: int = 200) -> list[dict]:
        """Running/processing (by start), then queued (queue order); with
        ``include_finished`` then done/failed/cancelled, most recently finished first."""
        limit = _int("limit", limit, 1, 10_000)
        where = "" if include_finished else "WHERE state IN ('queued','running','processing')"
        sql = (f"SELECT {_JOB_COLS} FROM jobs {where} ORDER BY "
               "CASE state WHEN 'running' THEN 0 WHEN 'processing' THEN 0 "
               "WHEN 'queued' THEN 1 ELSE 2 END, "
               "CASE WHEN state IN ('running','processing') THEN started END, "
               "CASE WHEN state = 'queued' THEN position END, "
               "finished DESC, id DESC LIMIT ?")

        async def op() -> list[dict]:
            return await self._jobs(await self._all(sql, (limit,)))

        return await self._run(op)

    async def next_queued_job(self) -> dict | None:
        async def op() -> dict | None:
            row = await self._one(f"SELECT {_JOB_COLS} FROM jobs WHERE state = 'queued' "
                                  "ORDER BY position, id LIMIT 1")
            return None if row is None else _job_dict(row, [])

        return await self._run(op)

    async def _depth(self) -> dict:
        counts = {s: 0 for s in JOB_STATES}
        for r in await self._all("SELECT state, count(*) FROM jobs GROUP BY state"):
            counts[r[0]] = r[1]
        counts["active"] = sum(counts[s] for s in ACTIVE_STATES)
        counts["limit"] = self.queue_limit
        return counts

    async def queue_depth(self) -> dict:
        """Counts by state, plus "active" (queued+running+processing) and "limit"."""
        return await self._run(self._depth)

    async def melody_keys(self) -> set[str]:
        """The stored melodies (daemon/audio_store.py) that some job still refers to."""
        async def op() -> set[str]:
            melody = self._json_text("params", "melody")
            rows = await self._all(f"SELECT DISTINCT {melody} FROM jobs WHERE {melody} IS NOT NULL")
            return {str(r[0]) for r in rows}

        return await self._run(op)

    async def source_keys(self) -> set[str]:
        """The stored operation sources (daemon/audio_store.py) that some job still refers to: an
        operation job keeps its copy's key as `source_key` (a retry or remix names the same key)."""
        async def op() -> set[str]:
            key = self._json_text("params", "source_key")
            rows = await self._all(f"SELECT DISTINCT {key} FROM jobs WHERE {key} IS NOT NULL")
            return {str(r[0]) for r in rows if r[0]}

        return await self._run(op)

    async def prompt_history(self, limit: int = 100) -> list[str]:
        """Distinct prompts, most recently submitted first."""
        limit = _int("limit", limit, 1, 10_000)

        async def op() -> list[str]:
            rows = await self._all("SELECT prompt FROM jobs GROUP BY prompt "
                                   "ORDER BY max(id) DESC LIMIT ?", (limit,))
            return [r[0] for r in rows]

        return await self._run(op)

    # ------------------------------------------------------------ jobs: writes

    async def _check_room(self, adding: int = 1) -> None:
        active = await self._scalar("SELECT count(*) FROM jobs WHERE state IN "
                                    "('queued','running','processing')")
        if active + adding > self.queue_limit:
            raise StoreError("queue_full", f"the queue is full ({active} active jobs, limit "
                                           f"{self.queue_limit}); wait for jobs to finish or "
                                           "cancel some")

    async def _next_position(self) -> int:
        top = await self._scalar("SELECT max(position) FROM jobs")
        return 1 if top is None else top + 1

    async def add_job(self, *, prompt: str, params: dict, count: int, seed: int,
                      model: str | None, backend: str | None = None,
                      max_attempts: int = 3) -> dict:
        """Queue a job at the end.  Committed (fsynced) before it returns."""
        prompt = _text("prompt", prompt, max_chars=MAX_PROMPT_CHARS, allow_empty=False)
        params_json = _json_dict("params", params)
        count = _int("count", count, 1, MAX_COUNT)
        seed = _int("seed", seed, 0, MAX_SEED)
        model = _text("model", model, max_chars=500, optional=True)
        backend = _text("backend", backend, max_chars=100, optional=True)
        max_attempts = _int("max_attempts", max_attempts, 1, 100)

        async def op() -> dict:
            await self._check_room()
            position = await self._next_position()
            job_id = await self._scalar(
                "INSERT INTO jobs (state, prompt, params, count, seed, model, backend, position,"
                " max_attempts, created) VALUES ('queued', ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (prompt, params_json, count, seed, model, backend, position, max_attempts,
                 clock.now()))
            return await self._job(job_id)

        return await self._write(op)

    async def _state_of(self, job_id: int) -> str:
        return (await self._job_row(job_id))["state"]

    #: The host this store's daemon claims jobs as (claims.py's ``hold_as``); None on one box,
    #: where no host check is made.
    host: str | None = None

    async def _check_held(self, job_id: int, state: str) -> None:
        """Inside a write: with a host set, a running/processing job may only be changed by the
        host that holds it; another host (its lease ran out and the job moved on) gets a
        conflict, so a lost job's result is never recorded."""
        if self.host is None or state not in ("running", "processing"):
            return
        holder = await self._scalar("SELECT claimed_by FROM jobs WHERE id = ?", (job_id,))
        if holder != self.host:
            raise StoreError("conflict", f"job {job_id} is {state}, held by {holder or 'no host'}: "
                                         f"{self.host} no longer holds it")

    async def mark_running(self, job_id: int, *, backend: str | None = None) -> dict:
        """queued -> running; attempts += 1 (counted now, so a crash counts), started = now."""
        job_id = _job_id(job_id)
        backend = _text("backend", backend, max_chars=100, optional=True)

        async def op() -> dict:
            state = await self._state_of(job_id)
            if state != "queued":
                raise StoreError("conflict", f"job {job_id} is {state}, only a queued job can start")
            await self._exec(
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, started = ?,"
                " finished = NULL, backend = coalesce(?, backend) WHERE id = ?",
                (clock.now(), backend, job_id))
            return await self._job(job_id)

        return await self._write(op)

    async def set_job_state(self, job_id: int, state: str, *, error: str | None = None) -> dict:
        """Allowed: queued -> cancelled|failed; running -> processing|failed|cancelled;
        processing -> failed|cancelled.  (Start: mark_running; back to the queue:
        requeue_job/retry_job; done: finish_job, which stores the tracks.)"""
        job_id = _job_id(job_id)
        if state not in JOB_STATES:
            raise _invalid("state", f"unknown state {state!r}; one of {', '.join(JOB_STATES)}")
        hint = {"done": "use finish_job (it stores the tracks)", "running": "use mark_running",
                "queued": "use requeue_job or retry_job"}
        if state in hint:
            raise _invalid("state", f"cannot set {state!r} directly: {hint[state]}")
        error = _text("error", error, max_chars=10_000, optional=True)

        async def op() -> dict:
            current = await self._state_of(job_id)
            await self._check_held(job_id, current)
            if state == current:
                return await self._job(job_id)
            if state not in _TRANSITIONS[current]:
                raise StoreError("conflict", f"job {job_id} is {current}, cannot become {state}")
            finished = clock.now() if state in FINISHED_STATES else None
            await self._exec(
                "UPDATE jobs SET state = ?, error = coalesce(?, error),"
                " finished = coalesce(?, finished),"
                " lease_until = CASE WHEN ? THEN NULL ELSE lease_until END WHERE id = ?",
                (state, error, finished, finished is not None, job_id))
            return await self._job(job_id)

        return await self._write(op)

    async def requeue_job(self, job_id: int, *, error: str) -> dict:
        """Transient failure of a running/processing job: back to queued at its old
        position, or failed if attempts >= max_attempts (reason kept in ``error``)."""
        job_id = _job_id(job_id)
        error = _text("error", error, max_chars=10_000, allow_empty=False)

        async def op() -> dict:
            row = await self._job_row(job_id)
            if row["state"] not in ("running", "processing"):
                raise StoreError("conflict", f"job {job_id} is {row['state']}, only a running "
                                             "job can be requeued")
            await self._check_held(job_id, row["state"])
            await self._requeue_or_fail(row, error)
            return await self._job(job_id)

        return await self._write(op)

    async def release_job(self, job_id: int) -> dict:
        """A running job interrupted by an orderly daemon shutdown goes back to the queue at
        its old position, and the attempt is not counted: only crashes use up attempts.  One
        whose cancel was recorded (claims.py request_cancel) ends cancelled instead."""
        job_id = _job_id(job_id)

        async def op() -> dict:
            row = await self._job_row(job_id)
            if row["state"] not in ("running", "processing"):
                raise StoreError("conflict", f"job {job_id} is {row['state']}, not running")
            await self._check_held(job_id, row["state"])
            if await self._scalar("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)):
                await self._exec("UPDATE jobs SET state = 'cancelled', finished = ?, error = 'cancelled by request',"
                                 " lease_until = NULL WHERE id = ?", (clock.now(), job_id))
                return await self._job(job_id)
            await self._exec(
                "UPDATE jobs SET state = 'queued', started = NULL, attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END,"
                " claimed_by = NULL, lease_until = NULL WHERE id = ?", (job_id,))
            return await self._job(job_id)

        return await self._write(op)

    async def _requeue_or_fail(self, row: Row, error: str,
                               max_attempts: int | None = None) -> str:
        cap = row["max_attempts"] if max_attempts is None else max_attempts
        if await self._scalar("SELECT cancel_requested FROM jobs WHERE id = ?", (row["id"],)):
            await self._exec(  # its host stopped before it saw the cancel: it does not run again
                "UPDATE jobs SET state = 'cancelled', finished = ?, error = 'cancelled by request',"
                " lease_until = NULL WHERE id = ?", (clock.now(), row["id"]))
            return "cancelled"
        if row["attempts"] >= cap:
            await self._exec(
                "UPDATE jobs SET state = 'failed', finished = ?, error = ?, lease_until = NULL WHERE id = ?",
                (clock.now(), f"{error} (gave up after {row['attempts']} attempts)", row["id"]))
            return "failed"
        await self._exec(
            "UPDATE jobs SET state = 'queued', started = NULL, error = ?, claimed_by = NULL,"
            " lease_until = NULL WHERE id = ?",
            (error, row["id"]))
        return "queued"

    async def retry_job(self, job_id: int) -> dict:
        """failed|cancelled -> queued at the END, attempts reset, error cleared."""
        job_id = _job_id(job_id)

        async def op() -> dict:
            state = await self._state_of(job_id)
            if state not in ("failed", "cancelled"):
                raise StoreError("conflict", f"job {job_id} is {state}; only a failed or "
                                             "cancelled job can be retried")
            await self._check_room()
            await self._exec(
                "UPDATE jobs SET state = 'queued', position = ?, attempts = 0, error = NULL,"
                " started = NULL, finished = NULL, claimed_by = NULL, lease_until = NULL, cancel_requested = 0"
                " WHERE id = ?", (await self._next_position(), job_id))
            return await self._job(job_id)

        return await self._write(op)

    async def cancel_queued(self, job_id: int) -> dict:
        """Cancel a queued job at once (a running one is cancelled by the runner)."""
        job_id = _job_id(job_id)

        async def op() -> dict:
            state = await self._state_of(job_id)
            if state != "queued":
                raise StoreError("conflict", f"job {job_id} is {state}, not queued")
            await self._exec(
                "UPDATE jobs SET state = 'cancelled', finished = ? WHERE id = ?",
                (clock.now(), job_id))
            return await self._job(job_id)

        return await self._write(op)

    async def move_job(self, job_id: int, where: str) -> dict:
        """Move a queued job: "top", "up" or "down" (no-op at either end)."""
        job_id = _job_id(job_id)
        if where not in ("top", "up", "down"):
            raise _invalid("where", f"must be 'top', 'up' or 'down', got {where!r}")

        async def op() -> dict:
            row = await self._job_row(job_id)
            if row["state"] != "queued":
                raise StoreError("conflict", f"job {job_id} is {row['state']}; only queued "
                                             "jobs can be moved")
            pos = row["position"]
            if where == "top":
                first = await self._scalar("SELECT min(position) FROM jobs WHERE state = 'queued'")
                if first < pos:
                    await self._exec("UPDATE jobs SET position = ? WHERE id = ?",
                                             (first - 1, job_id))
            else:
                cmp, direction = ("<", "DESC") if where == "up" else (">", "ASC")
                other = await self._one(
                    f"SELECT id, position FROM jobs WHERE state = 'queued' AND position {cmp} ? "
                    f"ORDER BY position {direction} LIMIT 1", (pos,))
                if other is not None:
                    await self._exec("UPDATE jobs SET position = ? WHERE id = ?",
                                             (other["position"], job_id))
                    await self._exec("UPDATE jobs SET position = ? WHERE id = ?",
                                             (pos, other["id"]))
            return await self._job(job_id)

        return await self._write(op)

    async def recover(self, *, max_attempts: int | None = None) -> dict:
        """At daemon start: jobs left running/processing by a crash go back to the
        queue (their attempt was counted by mark_running), or fail past the cap.
        The cap is ``max_attempts`` if given, else each job's own (default 3).
        With a host set (``hold_as``), only the jobs this host held: another host's running
        job is that host's, or ``requeue_expired``'s once its lease runs out.
        Returns {"requeued": [ids], "failed": [ids]}."""
        if max_attempts is not None:
            max_attempts = _int("max_attempts", max_attempts, 1, 100)

        async def op() -> dict:
            out: dict[str, list[int]] = {"requeued": [], "failed": []}
            mine, args = ("", ()) if self.host is None else (" AND claimed_by = ?", (self.host,))
            rows = await self._all(f"SELECT {_JOB_COLS} FROM jobs WHERE state IN "
                                   f"('running','processing'){mine} ORDER BY position, id", args)
            for row in rows:
                result = await self._requeue_or_fail(
                    row, f"interrupted: the daemon stopped while the job was {row['state']}",
                    max_attempts)
                if result != "cancelled":  # a cancel recorded before the stop: it just ends
                    out["requeued" if result == "queued" else "failed"].append(row["id"])
            return out

        return await self._write(op)

    async def prune_jobs(self, *, older_than: float, states: Iterable[str] = FINISHED_STATES,
                         dry_run: bool = False, now: float | None = None) -> dict:
        """Delete finished jobs that ended more than ``older_than`` seconds before
        ``now`` (default: the current time) and that no track belongs to.

        Only jobs in ``states`` (a non-empty subset of FINISHED_STATES) are
        considered: a queued, running or processing job is never touched, and
        neither is a finished job without a ``finished`` time.  A job that any
        track row still references is KEPT (tracks are the library; the
        ``tracks.job_id`` foreign key would refuse the delete anyway) and
        counted in ``kept_with_tracks``; once its tracks are deleted, a later
        prune removes it.  Job ids are AUTOINCREMENT, so a pruned id is never
        given to a new job.  One transaction; with ``dry_run`` nothing is
        deleted and ``removed`` counts what would be.

        Returns {"removed": n, "kept_with_tracks": n, "ids": [removed ids,
        ascending], "cutoff": Unix time (jobs finished before it were eligible)}.
        """
        older_than = _float("older_than", older_than, lo=0.0)
        now = _float("now", now, optional=True)
        if isinstance(states, str):
            states = [states]
        states = tuple(dict.fromkeys(states))
        if not states:
            raise _invalid("states", "must name at least one finished state")
        for s in states:
            if s not in FINISHED_STATES:
                raise _invalid("states", f"{s!r} is not a finished state; one of "
                                         f"{', '.join(FINISHED_STATES)}")
        dry_run = _bool("dry_run", dry_run)
        cutoff = (clock.now() if now is None else now) - older_than
        if not math.isfinite(cutoff):
            raise _invalid("older_than", "is too large")
        q = ",".join("?" * len(states))
        old = f"state IN ({q}) AND finished IS NOT NULL AND finished < ?"
        owns = "EXISTS (SELECT 1 FROM tracks t WHERE t.job_id = jobs.id)"
        args = (*states, cutoff)

        async def op() -> dict:
            kept = await self._scalar(f"SELECT count(*) FROM jobs WHERE {old} AND {owns}", args)
            if dry_run:
                rows = await self._all(f"SELECT id FROM jobs WHERE {old} AND NOT {owns}", args)
            else:
                rows = await self._all(f"DELETE FROM jobs WHERE {old} AND NOT {owns} RETURNING id",
                                       args)
            ids = sorted(r[0] for r in rows)
            return {"removed": len(ids), "kept_with_tracks": kept, "ids": ids, "cutoff": cutoff}

        return await (self._run(op) if dry_run else self._write(op))

