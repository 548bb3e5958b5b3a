"""Continuing a library track (`job.submit` with `extend`): the track, then more that carries it on.

A generation job whose engine call also gets the track as a prefix. The track is read
when the job runs (the library keeps it); if it was deleted since the job was queued,
the job fails saying so.
"""

from __future__ import annotations

import asyncio
from typing import Any, Mapping

from dgx_music.common.params import MAX_DURATION, MAX_JOB_AUDIO, GenerationParams, ParamError
from dgx_music.common.audio.melody import read_mono
from dgx_music.daemon import libfiles
from dgx_music.daemon.engine.errors import EngineError
from dgx_music.daemon.jobs.generate import EXTEND, GenerateKind, is_melody_model
from dgx_music.daemon.jobs.kinds import JobContext, Work
from dgx_music.daemon.store import StoreError


class ExtendKind(GenerateKind):
    name = EXTEND

    def owns(self, job: Mapping[str, Any]) -> bool:
        p = job.get("params") or {}
        return not p.get("operation") and p.get("extend") is not None

    async def check_more(self, ctx: JobContext, params: GenerationParams, model: str) -> None:
        """Continuing a track: a mono text model, a track that exists, a result within the limits."""
        if params.extend is None:
            raise ParamError("extend", "name the track to continue")
        if ctx.settings["engine.backend"] != "transformers":
            raise ParamError("extend", "continuing a track needs the transformers backend")
        if params.melody is not None or is_melody_model(model):
            raise ParamError("extend", "melody models cannot continue a track; use small, medium or large")
        track = await ctx.library_track("extend", str(params.extend))
        total = float(track["duration"]) + params.duration
        if total > MAX_DURATION:
            raise ParamError("duration", f"{track['id']} is {track['duration']:.1f} s long; with {params.duration:g} s "
                                         f"more it would be {total:.1f} s, past the {MAX_DURATION:g} s limit")
        if params.count * total > MAX_JOB_AUDIO:
            raise ParamError("count", f"{params.count} x {total:.1f} s is more audio than one job makes "
                                      f"(at most {MAX_JOB_AUDIO:g} s in all)")

    async def prepare(self, ctx: JobContext, job: dict[str, Any]) -> Work:
        work = await super().prepare(ctx, job)
        work.inputs["prefix"] = await _load_prefix(ctx, work.params)
        return work


async def _load_prefix(ctx: JobContext, params: GenerationParams) -> Any:
    loop = asyncio.get_running_loop()
    try:
        track = await ctx.store.get_track(str(params.extend))
        path = libfiles.library_file(ctx.storage, track["path"])
        return await loop.run_in_executor(ctx.pool, read_mono, path)
    except StoreError:
        raise EngineError("bad_request", f"the track this job continues ({params.extend}) was deleted") from None
    except (OSError, RuntimeError, ValueError) as exc:
        raise EngineError("bad_request", f"the track this job continues ({params.extend}) cannot be read: "
                                         f"{exc}") from None
