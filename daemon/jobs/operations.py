"""Operations on tracks (repaint, cover, stems, add a part) as durable jobs in the queue.

Submitting: the request is checked with its typed schema (common/operations.py), then
against what only the daemon knows (the model's family, the source track, the source's
length and the span), and the source audio is stored (daemon/audio_store.py) BEFORE the job
row is committed, so deleting the source never breaks the queued job, a retry or a
remix. The job row keeps the operation, the stored source's key, where it came from and
the request; `count` is the number of tracks it makes.

Running: each operation is a job kind (daemon/jobs/kinds.py) owning the jobs whose params
carry its name as `operation`; the scheduler runs it as every job (files written
atomically before `finish_job` commits the tracks, their lineage rows and the job's end
in one transaction; cancel, transient failures and a full disk are its own paths).
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any, Mapping

import msgspec

from dgx_music.common import families
from dgx_music.common.fmt import with_article
from dgx_music.common.operations import (ADD_PART, OPERATIONS, REPAINT, STEMS, TASKS, OperationRequest,
                                         stored_params, validate_operation)
from dgx_music.common.schemas import MAX_SEED, MELODY_KEY_RE, AceStepParams, ParamError, check_model_name
from dgx_music.daemon import libfiles, op_render, render
from dgx_music.daemon.audio_store import SOURCES
from dgx_music.daemon.engine.errors import EngineError
from dgx_music.daemon.jobs.kinds import JobContext, JobKind, JobRow, Work


class OperationParams(AceStepParams, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What the worker receives for an operation: ACE-Step's parameters plus the task's."""

    task: str = "text2music"
    repaint_start: float | None = None
    repaint_end: float | None = None
    strength: float | None = None
    parts: tuple[str, ...] = ()

    def wire(self) -> dict[str, Any]:
        w = super().wire()
        w.update(task=self.task, parts=list(self.parts))
        if self.repaint_start is not None:
            w.update(repaint_start=self.repaint_start, repaint_end=self.repaint_end)
        if self.strength is not None:
            w["strength"] = self.strength
        return w

    def from_variation(self, offset: int) -> "OperationParams":
        """The half of a split batch from output `offset`: its own seed and parts (see supervisor)."""
        return msgspec.structs.replace(self, seed=(self.seed or 0) + offset, parts=self.parts[offset:])


# ------------------------------------------------------------------------------------ the kind
class OperationKind(JobKind):
    """One operation (its `name` is the operation's: repaint, cover, stems, add_part)."""

    def __init__(self, operation: str) -> None:
        self.name = operation

    def owns(self, job: Mapping[str, Any]) -> bool:
        return (job.get("params") or {}).get("operation") == self.name

    def describe(self, job: Mapping[str, Any]) -> str:
        return self.name

    async def check(self, ctx: JobContext, raw: dict[str, Any]) -> JobRow:
        """Check the request, then store the source: on disk before the job row is committed."""
        operation = self.name
        req = validate_operation(operation, raw)
        model = ctx.check_model(check_model_name(req.model) if req.model is not None else None)
        family = ctx.family_of(model)
        if not families.family(family).does(TASKS[operation]):
            able = [families.family(f) for f in families.with_task(TASKS[operation])]
            titles = " or ".join(f.title for f in able)
            names = ", ".join(m for f in able for m in f.operation_models)  # the models each family suggests
            raise ParamError("model", f"{operation} needs {with_article(titles)} model ({names}); {model} is "
                                      f"{with_article(family)} model")
        loop = asyncio.get_running_loop()
        data_dir = ctx.data_dir
        track: dict[str, Any] | None = None
        audio = None  # decoded and checked, stored only once the whole request is accepted
        if req.source_audio is not None:
            audio = await loop.run_in_executor(ctx.submit_pool, SOURCES.from_bytes, req.source_audio, "source_audio")
            key, seconds = "", SOURCES.seconds(audio)
            source_id, source_name = None, (req.source_name or "uploaded audio")[:200]
        elif MELODY_KEY_RE.match(req.source or ""):  # a retry or remix: the daemon's own stored copy
            key = str(req.source)
            if not await loop.run_in_executor(ctx.submit_pool, SOURCES.refresh, data_dir, key):
                raise ParamError("source", f"no stored source {key}; give a track id instead")
            seconds = await loop.run_in_executor(ctx.submit_pool, SOURCES.seconds_of, data_dir, key)
            # The key came from a library track when an earlier operation stored it from one: the new
            # tracks' lineage names that track (it may be deleted since: then they say it is gone).
            source_id = await ctx.store.source_of_key(key)
            source_name = req.source_name or f"source {key}"
        else:
            track = await ctx.library_track("source", str(req.source))
            path = libfiles.library_file(data_dir, track["path"])
            audio = await loop.run_in_executor(ctx.submit_pool, SOURCES.from_file, path, "source")
            key, seconds = "", SOURCES.seconds(audio)
            source_id, source_name = track["id"], track["title"]
        if operation == REPAINT:
            _check_span(req, seconds)
        if audio is not None:  # on disk before the job row is committed
            key = await loop.run_in_executor(ctx.submit_pool, SOURCES.save, data_dir, audio)
        style = None
        if req.lora is not None:  # a style's name or a LoRA directory, resolved as generation does
            from dgx_music.daemon.jobs.generate import _check_lora

            lora, style = await _check_lora(ctx, req.lora)
            req = msgspec.structs.replace(req, lora=lora)
        prompt = getattr(req, "prompt", None) or (track or {}).get("prompt") or _default_prompt(operation, req)
        stored = stored_params(req)
        if stored.get("lora") is None:
            stored.pop("lora", None)
            stored.pop("lora_scale", None)
        if style is not None:
            stored["style"] = style  # lineage: the new tracks name the style they were made with
        stored.pop("prompt", None)
        if track is not None and not stored.get("lyrics") and operation == REPAINT and track.get("lyrics"):
            stored["lyrics"] = track["lyrics"]  # a repaint sings the source's words unless told otherwise
        params = {"family": family, "operation": operation, "source_key": key, "source_id": source_id,
                  "source_name": source_name, "duration": round(seconds, 3), **stored}
        seed = req.seed if req.seed is not None else secrets.randbelow(MAX_SEED + 1)
        return JobRow(prompt=prompt, params=params, count=req.outputs(), seed=seed, model=model,
                      summary=f"{operation} of {source_id or source_name} ({seconds:.1f} s), seed {seed}")

    async def prepare(self, ctx: JobContext, job: dict[str, Any]) -> Work:
        try:
            req = request_of(job)
        except ParamError as exc:
            raise EngineError("bad_request", f"the stored request is not valid: {exc}") from None
        try:
            source = await asyncio.get_running_loop().run_in_executor(
                ctx.pool, SOURCES.load, ctx.data_dir, job["params"]["source_key"])
        except (OSError, RuntimeError, ValueError) as exc:
            raise EngineError("bad_request", f"the job's source audio cannot be read: {exc}") from None

        def render_with_source(data_dir: Path, job: dict[str, Any], audio: Any, sr: int,
                               opts: render.RenderOptions) -> list[dict[str, Any]]:
            return op_render.render_operation(data_dir, job, source, audio, sr, opts)

        return Work(prompts=[job["prompt"]] * generations(job), params=wire_params(job, req),
                    render=render_with_source, inputs={"audio_in": {"source": source}},
                    target_lufs=getattr(req, "target_lufs", None))


KINDS = {op: OperationKind(op) for op in OPERATIONS}


def _check_span(req: Any, seconds: float) -> None:
    if req.start >= seconds:
        raise ParamError("start", f"{req.start:g} s is past the end of the source ({seconds:.2f} s)")
    if req.end > seconds + 1e-3:
        raise ParamError("end", f"{req.end:g} s is past the end of the source ({seconds:.2f} s)")


def _default_prompt(operation: str, req: Any) -> str:
    if operation == STEMS:
        return "stems: " + ", ".join(req.parts)
    if operation == ADD_PART:
        return f"add {req.part}"
    return operation


# ------------------------------------------------------------------------------------ run
def request_of(job: dict[str, Any]) -> OperationRequest:
    """The job's stored request, checked again (a row written by another version stays safe)."""
    p = job["params"]
    raw = {k: v for k, v in p.items() if k not in op_render.INTERNAL_KEYS}
    raw.update(source=p["source_key"], seed=job["seed"], model=job.get("model"), prompt=job["prompt"])
    return validate_operation(p["operation"], raw)


def wire_params(job: dict[str, Any], req: OperationRequest) -> OperationParams:
    p = job["params"]
    part = getattr(req, "part", None)
    return OperationParams(
        prompt=job["prompt"], lyrics=getattr(req, "lyrics", ""), language=getattr(req, "language", "en"),
        duration=float(p["duration"]), count=1, seed=job["seed"], model=job.get("model"), steps=req.steps,
        guidance=req.guidance, shift=req.shift, task=TASKS[p["operation"]],
        repaint_start=getattr(req, "start", None), repaint_end=getattr(req, "end", None),
        strength=getattr(req, "strength", None), lora=req.lora,
        lora_scale=1.0 if req.lora_scale is None else req.lora_scale,
        parts=tuple(getattr(req, "parts", None) or ([part] if part else [])))


def generations(job: dict[str, Any]) -> int:
    """Pipeline outputs the job needs (a stems job: one per part; a mix is made here, not by the model)."""
    p = job["params"]
    return len(p["parts"]) if p["operation"] == STEMS else 1
