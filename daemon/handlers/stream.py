"""job.listen: a running MusicGen job's audio, streamed to this connection as it is made."""

from __future__ import annotations

from typing import Any

from dgx_music.common import protocol
from dgx_music.common import families
from dgx_music.common.fmt import plural, with_article
from dgx_music.daemon.handlers import Context, HandlerError, method
from dgx_music.daemon.handlers.args import Args
from dgx_music.daemon.stream_relay import FORMATS


@method("job.listen")
async def listen(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Stream a queued or running MusicGen job's audio: what is made so far, then each new chunk."""
    if ctx.conn is None:
        raise HandlerError(protocol.BAD_REQUEST, "job.listen needs a socket connection (the audio is pushed "
                                                 "to it as job.audio events)")
    args = Args(params)
    job_id = args.int("id")
    variation = args.int("variation", 0, lo=0)
    fmt = args.str("format", "f32", choices=FORMATS)
    job = await check_streamable(ctx, job_id, variation, field="id")
    relay = ctx.daemon.scheduler.streams
    return {**relay.listen(ctx.conn, job_id, variation, fmt), "state": job["state"]}


async def check_streamable(ctx: Context, job_id: int, variation: int, *, field: str) -> dict[str, Any]:
    """The job, if it streams (MusicGen, transformers backend, that variation, still running or its stream
    kept); else the error a listener should see. `field` names the job id in the caller's params."""
    job = await ctx.daemon.store.get_job(job_id)
    stored = job.get("params") or {}
    family = families.family(stored.get("family"))  # operations store theirs too
    if not family.streaming_backends:
        streaming = ", ".join(f.title for f in families.REGISTRY.values() if f.streaming_backends)
        raise HandlerError(protocol.INVALID_PARAMS, f"{field}: job {job_id} is {with_article(family.name)} job; only {streaming} "
                                                    f"streams ({family.why_no_stream})", field=field)
    if job.get("backend") is not None and job["backend"] not in family.streaming_backends:
        raise HandlerError(protocol.INVALID_PARAMS, f"{field}: job {job_id} runs on the {job['backend']} backend, "
                                                    f"which does not stream; the {' or '.join(family.streaming_backends)} "
                                                    "backend does", field=field)
    if variation >= int(job.get("count") or 1):
        raise HandlerError(protocol.INVALID_PARAMS, f"variation: job {job_id} makes "
                                                    f"{plural(job.get('count') or 1, 'variation')}, numbered from 0",
                           field="variation")
    if job["state"] not in ("queued", "running") and not ctx.daemon.scheduler.streams.has(job_id):
        raise HandlerError(protocol.CONFLICT, f"job {job_id} is {job['state']} and its stream is gone; "
                                              "play its track instead")
    return job
