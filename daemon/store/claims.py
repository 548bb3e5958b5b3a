"""Claiming queued jobs under a lease: several daemons (hosts) sharing one queue.

A host claims the next queued job it can run (``claim_next_job``): queued -> running,
held by the host until ``lease_until``, which the host pushes on while the job runs
(``renew_lease``).  A host that dies stops renewing; once its lease has run out
``requeue_expired`` (any host may call it) puts the job back in the queue at its old
position, or fails it once its attempts are used up, so a dead host's job runs again
at most ``max_attempts`` times in all.  A host that lost its lease finds out at its
next renewal (conflict) and must stop the job.

The claim is one write transaction: SQLite's BEGIN IMMEDIATE, PostgreSQL's write lock
plus ``FOR UPDATE SKIP LOCKED`` on the row, so two hosts never claim the same job.
Times come from the store's clock (clock.py): hosts sharing a queue keep their clocks
in step (NTP); leases are tens of seconds, far above any such skew.

The scheduler claims when the store is shared (PostgreSQL; daemon/hosts.py): it calls
``hold_as(host)`` first, after which a running job can only be changed (finished, failed,
requeued, released) by the host that holds it, and ``recover`` touches only its jobs.
On SQLite (one box) it keeps next_queued_job + mark_running.
"""

from __future__ import annotations

import math

from . import clock
from .errors import StoreError
from .jobs import _JOB_COLS, JobsMixin
from .validate import _float, _invalid, _job_id, _text

MAX_LEASE_S = 24 * 3600.0


def _host(value: object) -> str:
    host = (_text("host", value, max_chars=255, allow_empty=False) or "").strip()
    if not host:
        raise _invalid("host", "must name the daemon's host, got blanks")
    return host


def _lease(value: object) -> float:
    lease = _float("lease_s", value, lo=0.001, hi=MAX_LEASE_S)
    assert lease is not None
    return lease


class ClaimsMixin(JobsMixin):
    """Jobs held by a host under a lease (see the module docstring)."""

    #: Row locking of the claim's SELECT: PostgreSQL's FOR UPDATE SKIP LOCKED ("" in SQLite,
    #: whose one writer at a time needs none).
    _skip_locked = ""

    def hold_as(self, host: str) -> None:
        """From now on this store acts for ``host``: changes to a running job check that the
        host holds it (a conflict if not), and ``recover`` touches only the host's own jobs."""
        self.host = _host(host)

    async def claim_next_job(self, host: str, *, lease_s: float, prefer_model: str | None = None,
                             backend: str | None = None) -> dict | None:
        """Claim the first queued job (queue order), or, when ``prefer_model`` is given, the
        first queued job for that model if there is one (a loaded model is not swapped
        for the queue's head).  queued -> running, attempts += 1, held by ``host`` until
        now + ``lease_s``.  None when nothing is queued."""
        host = _host(host)
        lease_s = _lease(lease_s)
        prefer_model = _text("prefer_model", prefer_model, max_chars=500, optional=True)
        backend = _text("backend", backend, max_chars=100, optional=True)

        async def op() -> dict | None:
            picked = await self._scalar(
                "SELECT id FROM jobs WHERE state = 'queued' "
                "ORDER BY CASE WHEN model = ? THEN 0 ELSE 1 END, position, id LIMIT 1" + self._skip_locked,
                (prefer_model,))
            if picked is None:
                return None
            now = clock.now()
            await self._exec(
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, started = ?, finished = NULL,"
                " backend = coalesce(?, backend), claimed_by = ?, lease_until = ? WHERE id = ?",
                (now, backend, host, now + lease_s, picked))
            return await self._job(picked)

        return await self._write(op)

    async def renew_lease(self, job_id: int, host: str, *, lease_s: float) -> float:
        """Push the lease of a job ``host`` holds to now + ``lease_s``; returns the new end.
        StoreError("conflict") when the host no longer holds it (its lease ran out and the
        job went back to the queue, or it was cancelled or finished): stop the job."""
        return (await self.renew(job_id, host, lease_s=lease_s))["lease_until"]

    async def renew(self, job_id: int, host: str, *, lease_s: float) -> dict:
        """``renew_lease`` that also says whether a cancel of the job was recorded
        (``request_cancel``): {"lease_until", "cancel_requested"}.  The running host renews
        every third of a lease, so a cancel whose notification was lost still stops the job."""
        job_id = _job_id(job_id)
        host = _host(host)
        lease_s = _lease(lease_s)

        async def op() -> dict:
            row = await self._one("SELECT state, claimed_by, lease_until FROM jobs WHERE id = ?", (job_id,))
            if row is None:
                raise StoreError("not_found", f"no job {job_id}")
            if row["state"] not in ("running", "processing") or row["claimed_by"] != host \
                    or row["lease_until"] is None:
                held = f"held by {row['claimed_by']}" if row["claimed_by"] else "held by no host"
                raise StoreError("conflict", f"job {job_id} is {row['state']}, {held}: {host} no longer "
                                             "holds it; stop running it")
            until = clock.now() + lease_s
            asked = await self._scalar("UPDATE jobs SET lease_until = ? WHERE id = ? RETURNING cancel_requested",
                                       (until, job_id))
            return {"lease_until": until, "cancel_requested": bool(asked)}

        return await self._write(op)

    async def request_cancel(self, job_id: int, *, notify: tuple[str, str] | None = None) -> dict:
        """Record a cancel of a running job on its row, for the host that runs it (``renew``,
        ``cancel_requested``); a cancel survives a lost notification that way.  On PostgreSQL
        ``notify`` = (channel, payload) goes out in the same transaction (the quick path).
        StoreError("conflict") when the job is not running (a queued one: ``cancel_queued``)."""
        job_id = _job_id(job_id)

        async def op() -> dict:
            state = await self._state_of(job_id)
            if state not in ("running", "processing"):
                raise StoreError("conflict", f"job {job_id} is {state}, not running")
            await self._exec("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
            if notify is not None and getattr(self, "backend", "sqlite") == "postgresql":
                await self._exec("SELECT pg_notify(?, ?)", notify)
            return await self._job(job_id)

        return await self._write(op)

    async def cancel_requested(self, job_id: int) -> bool:
        """Whether a cancel of ``job_id`` was recorded (a host checks after it missed notifications)."""
        job_id = _job_id(job_id)

        async def op() -> bool:
            return bool(await self._scalar("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)))

        return await self._run(op)

    async def requeue_expired(self, *, now: float | None = None) -> dict:
        """Running jobs whose lease ended before ``now`` (default: the clock) go back to the
        queue at their old position, or fail once their attempts are used up (the attempt
        was counted at the claim), or end cancelled when a cancel was recorded for them.
        Returns {"requeued": [ids], "failed": [ids], "cancelled": [ids]}."""
        now = _float("now", now, optional=True)
        cutoff = clock.now() if now is None else now
        if not math.isfinite(cutoff):
            raise _invalid("now", "must be a finite time")

        async def op() -> dict:
            out: dict[str, list[int]] = {"requeued": [], "failed": [], "cancelled": []}
            rows = await self._all(
                f"SELECT {_JOB_COLS} FROM jobs WHERE state IN ('running','processing') "
                "AND lease_until IS NOT NULL AND lease_until < ? ORDER BY position, id", (cutoff,))
            for row in rows:
                result = await self._requeue_or_fail(
                    row, f"interrupted: {row['host']} stopped renewing its lease while the job "
                         f"was {row['state']}")
                out["requeued" if result == "queued" else result].append(row["id"])
            return out

        return await self._write(op)

    async def claims(self) -> list[dict]:
        """Running jobs and who holds them: [{id, state, claimed_by, lease_until}], by id."""
        async def op() -> list[dict]:
            rows = await self._all("SELECT id, state, claimed_by, lease_until FROM jobs "
                                   "WHERE state IN ('running','processing') ORDER BY id")
            return [dict(r) for r in rows]

        return await self._run(op)
