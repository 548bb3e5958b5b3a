"""job.*: submit, list, inspect, cancel, retry and reorder jobs."""

from __future__ import annotations

from typing import Any

from dgx_music.daemon.handlers import Context, method
from dgx_music.daemon.handlers.args import Args


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
    """Cancel a queued job at once, a running one at its next decode step."""
    return await ctx.daemon.scheduler.cancel(Args(params).int("id"))


@method("job.retry")
async def retry(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Queue a failed or cancelled job again, at the end."""
    return await ctx.daemon.scheduler.retry(Args(params).int("id"))


@method("job.move")
async def move(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Move a queued job to the top, or one place up or down."""
    args = Args(params)
    return await ctx.daemon.scheduler.move(args.int("id"), args.str("to", choices=("top", "up", "down")))
