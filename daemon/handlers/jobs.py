"""job.*: submit, list, inspect, cancel, retry, reorder and prune jobs."""

from __future__ import annotations

from typing import Any

from dgx_music.common import protocol
from dgx_music.daemon.handlers import Context, HandlerError, method
from dgx_music.daemon.handlers.args import Args

FINISHED = ("done", "failed", "cancelled")
MAX_DAYS = 1_000_000.0  # job.prune older_than_days: anything larger keeps every job anyway


@method("job.submit")
async def submit(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Validate, commit and queue a generation job."""
    return await ctx.daemon.scheduler.submit(params)


@method("job.list")
async def list_jobs(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Active jobs in queue order; finished ones too with all=true."""
    args = Args(params)
    include = args.bool("all", False)
    limit = args.int("limit", 200, lo=1, hi=1000)
    sched = ctx.daemon.scheduler
    jobs = await ctx.daemon.store.list_jobs(include_finished=include, limit=limit)
    return {"jobs": [sched.with_progress(j) for j in jobs]}


@method("job.get")
async def get(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """One job with its live progress."""
    job_id = Args(params).int("id")
    return ctx.daemon.scheduler.with_progress(await ctx.daemon.store.get_job(job_id))


@method("job.cancel")
async def cancel(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Cancel a queued job at once, a running one at its next decode step.

    A job that already ended is `not_cancellable` (naming its state): answering success for a
    cancel that changed nothing would tell a script its job was stopped when it had finished."""
    job_id = Args(params).only("id").int("id")
    before = await ctx.daemon.store.get_job(job_id)
    job = before if before["state"] in FINISHED else await ctx.daemon.scheduler.cancel(job_id)
    # Ended before this request, or (a race) done or failed while it was being cancelled.
    if before["state"] in FINISHED or job["state"] in ("done", "failed"):
        raise HandlerError(protocol.NOT_CANCELLABLE, f"job {job_id} has already ended ({job['state']}); "
                           "nothing to cancel", state=job["state"])
    return job


@method("job.retry")
async def retry(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Queue a failed or cancelled job again, at the end."""
    return await ctx.daemon.scheduler.retry(Args(params).int("id"))


@method("job.move")
async def move(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Move a queued job to the top, or one place up or down."""
    args = Args(params)
    return await ctx.daemon.scheduler.move(args.int("id"), args.str("to", choices=("top", "up", "down")))


@method("job.prune")
async def prune(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Delete finished jobs older than N days that no longer own a track."""
    args = Args(params).only("older_than_days", "dry_run")
    pruner = ctx.daemon.pruner
    days = args.float("older_than_days", pruner.default_days(), lo=0.0, hi=MAX_DAYS)
    dry_run = args.bool("dry_run", False)
    res = await pruner.prune(days, dry_run=dry_run)
    out = {"removed": res["removed"], "kept_with_tracks": res["kept_with_tracks"], "dry_run": dry_run,
           "older_than_days": days, "cutoff": res["cutoff"]}
    for k in ("melodies_removed", "sources_removed"):  # not with dry_run: nothing was deleted
        if k in res:
            out[k] = res[k]
    return out
