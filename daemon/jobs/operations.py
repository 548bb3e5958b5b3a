"""Operations on tracks (repaint, cover, stems, add a part, extend) as durable jobs in the queue.

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
from dgx_music.common.operations import (ADD_PART, DEFAULT_STEM_PARTS, EXTEND, GENERATE, MAX_SOURCE_SECONDS,
                                         OPERATIONS, REPAINT, SEPARATE, SEPARATION_PARTS, STEMS, TASKS,
                                         ExtendRequest, OperationRequest, stored_params, validate_operation)
from dgx_music.common.schemas import MAX_SEED, MELODY_KEY_RE, AceStepParams, ParamError, check_model_name
from dgx_music.daemon import libfiles, op_render, render
from dgx_music.daemon.audio_store import SOURCES
from dgx_music.daemon.engine.errors import EngineError
from dgx_music.daemon.handlers import HandlerError
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
#: Kind names that differ from the operation's: `extend` is MusicGen's continuation (jobs/extend.py).
KIND_NAMES = {EXTEND: "extend_by_repaint"}


class OperationKind(JobKind):
    """One operation (its `name` is the operation's: repaint, cover, stems, add_part; see KIND_NAMES)."""

    def __init__(self, operation: str) -> None:
        self.operation = operation
        self.name = KIND_NAMES.get(operation, operation)

    def owns(self, job: Mapping[str, Any]) -> bool:
        return (job.get("params") or {}).get("operation") == self.operation

    def describe(self, job: Mapping[str, Any]) -> str:
        return self.operation

    async def check(self, ctx: JobContext, raw: dict[str, Any]) -> JobRow:
        """Check the request, then store the source: on disk before the job row is committed."""
        operation = self.operation
        req = validate_operation(operation, raw)
        separate = getattr(req, "method", None) == SEPARATE
        task = task_of(operation, req)
        if separate:
            model = _separator(ctx, req.model)
        else:
            model = ctx.check_model(check_model_name(req.model) if req.model is not None else None)
        family = ctx.family_of(model)
        fam = families.family(family)
        if not fam.does(task):
            able = [families.family(f) for f in families.with_task(task)]
            titles = " or ".join(f.title for f in able)
            names = ", ".join(m for f in able for m in f.operation_models)  # the models each family suggests
            how = "stems --method separate" if separate else operation
            raise ParamError("model", f"{how} needs {with_article(titles)} model ({names}); {model} is "
                                      f"{with_article(family)} model")
        if fam.needs_base(task, model):
            if req.model is not None:
                raise ParamError("model", f"{operation} runs on {fam.base_model} only: upstream trains {task} on "
                                          f"the base model, not on {model} (turbo); leave --model out or name "
                                          f"{fam.base_model}")
            model = fam.base_model  # the daemon's turbo default: the base model is loaded for this job
        parts = _stem_parts(req, model) if operation == STEMS else None
        loop = asyncio.get_running_loop()
        data_dir = ctx.storage  # the stored copies and the library's audio
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
        native: dict[str, Any] = {}
        if separate:  # separated stems are written back at the source's own rate, channels and length
            origin = track
            if origin is None and audio is None and source_id:  # a stored key: the track it came from
                try:
                    origin = await ctx.library_track("source", str(source_id))
                except HandlerError:
                    origin = None  # deleted since: the stems stay at the stored copy's 48 kHz stereo
            native = await loop.run_in_executor(ctx.submit_pool, _native_format, req.source_audio, origin, data_dir)
        if operation == REPAINT:
            _check_span(req, seconds)
        total = seconds
        if operation == EXTEND:
            total = seconds + req.by
            if total > MAX_SOURCE_SECONDS + 1e-3:
                raise ParamError("by", f"{source_id or source_name} is {seconds:.1f} s long; with {req.by:g} s more "
                                       f"it would be {total:.1f} s, past the {MAX_SOURCE_SECONDS:g} s limit")
        if audio is not None:  # on disk before the job row is committed
            key = await loop.run_in_executor(ctx.submit_pool, SOURCES.save, data_dir, audio)
        style = None
        if req.lora is not None:  # a style's name or a LoRA directory, resolved as generation does
            from dgx_music.daemon.jobs.generate import _check_lora

            lora, style = await _check_lora(ctx, req.lora)
            req = msgspec.structs.replace(req, lora=lora)
        prompt = getattr(req, "prompt", None) or (track or {}).get("prompt") or _default_prompt(operation, req, parts)
        stored = stored_params(req)
        if stored.get("lora") is None:
            stored.pop("lora", None)
            stored.pop("lora_scale", None)
        if style is not None:
            stored["style"] = style  # lineage: the new tracks name the style they were made with
        stored.pop("prompt", None)
        if track is not None and not stored.get("lyrics") and operation in (REPAINT, EXTEND) and track.get("lyrics"):
            stored["lyrics"] = track["lyrics"]  # a repaint sings the source's words unless told otherwise
        if parts is not None:
            stored.update(method=req.method, parts=list(parts), **native)
        # duration: the result's (an extension's is the source's plus the time added)
        params = {"family": family, "operation": operation, "source_key": key, "source_id": source_id,
                  "source_name": source_name, "duration": round(total, 3), **stored}
        seed = req.seed if req.seed is not None else secrets.randbelow(MAX_SEED + 1)
        return JobRow(prompt=prompt, params=params, count=len(parts) if parts else req.outputs(),
                      seed=seed, model=model,
                      summary=f"{operation} of {source_id or source_name} ({seconds:.1f} s), seed {seed}")

    async def prepare(self, ctx: JobContext, job: dict[str, Any]) -> Work:
        try:
            req = request_of(job)
        except ParamError as exc:
            raise EngineError("bad_request", f"the stored request is not valid: {exc}") from None
        try:
            source = await asyncio.get_running_loop().run_in_executor(
                ctx.pool, SOURCES.load, ctx.storage, job["params"]["source_key"])
        except (OSError, RuntimeError, ValueError) as exc:
            raise EngineError("bad_request", f"the job's source audio cannot be read: {exc}") from None
        span = None
        if isinstance(req, ExtendRequest):  # the model repaints silence added past the source's end (or start)
            pad, s, e = op_render.extend_span(source.shape[1], req.by, req.before, SOURCES.sample_rate)
            source = op_render.pad_source(source, pad, req.before)
            span = op_render.model_window(s, e, SOURCES.sample_rate)

        def render_with_source(data_dir: Path, job: dict[str, Any], audio: Any, sr: int,
                               opts: render.RenderOptions) -> list[dict[str, Any]]:
            return op_render.render_operation(data_dir, job, source, audio, sr, opts)

        return Work(prompts=[job["prompt"]] * generations(job), params=wire_params(job, req, span),
                    render=render_with_source, inputs={"audio_in": {"source": source}},
                    target_lufs=getattr(req, "target_lufs", None))


KINDS = {op: OperationKind(op) for op in OPERATIONS}


def _check_span(req: Any, seconds: float) -> None:
    if req.start >= seconds:
        raise ParamError("start", f"{req.start:g} s is past the end of the source ({seconds:.2f} s)")
    if req.end > seconds + 1e-3:
        raise ParamError("end", f"{req.end:g} s is past the end of the source ({seconds:.2f} s)")


def _native_format(upload: bytes | None, track: dict[str, Any] | None, data_dir: Path) -> dict[str, Any]:
    """The source file's rate, channels and frames (common.audio.source.native_format): of the upload,
    else of the library track ({} when neither: the stems stay at the stored copy's 48 kHz stereo)."""
    import io

    from dgx_music.common.audio.source import native_format

    try:
        if upload is not None:
            return native_format(io.BytesIO(upload), "source_audio")
        if track is not None:
            return native_format(libfiles.library_file(data_dir, track["path"]), "source")
    except (ParamError, OSError):
        return {}
    return {}


def task_of(operation: str, req: Any) -> str:
    """The family task an operation's request runs (stems: separation or ACE-Step's extract)."""
    return families.SEPARATE_TASK if getattr(req, "method", None) == SEPARATE else TASKS[operation]


def _separator(ctx: JobContext, asked: str | None) -> str:
    """The separation model of a stems job: the request's (a named one, or a directory under the data
    directory's models/), else the daemon's configured `engine.separator` (any directory)."""
    try:
        configured = str(ctx.settings["engine.separator"] or families.DEFAULT_SEPARATOR)
    except KeyError:
        configured = families.DEFAULT_SEPARATOR
    if asked is None or asked.strip() == configured:
        return configured
    return ctx.check_model(check_model_name(asked))


def _stem_parts(req: Any, model: str) -> tuple[str, ...]:
    """The stems a stems job makes: the request's, else the method's default (separate: all the
    model's stems); a separation model is asked only for stems it makes."""
    if req.method == GENERATE:
        return tuple(req.parts or DEFAULT_STEM_PARTS)
    from dgx_music.daemon.engine.models import resolve_model
    from dgx_music.daemon.engine.separation_models import sources_of

    made = sources_of(model if model in families.SEPARATION_ALIASES else resolve_model(model).ref)
    order = [p for p in SEPARATION_PARTS if p in made]  # vocals first, as people list them
    order += [p for p in made if p not in order]
    if not req.parts:
        return tuple(order)
    missing = [p for p in req.parts if p not in made]
    if missing:
        six = [n for n, s in families.SEPARATION_ALIASES.items() if all(p in s for p in missing)]
        hint = f"; {six[0]} makes {', '.join(missing)}" if six else ""
        raise ParamError("parts", f"{model} makes no {', '.join(missing)} stem; it makes {', '.join(order)}{hint}")
    return tuple(req.parts)


def _default_prompt(operation: str, req: Any, parts: tuple[str, ...] | None = None) -> str:
    if operation == STEMS:
        return "stems: " + ", ".join(parts or req.parts or ())
    if operation == ADD_PART:
        return f"add {req.part}"
    return operation


# ------------------------------------------------------------------------------------ run
def request_of(job: dict[str, Any]) -> OperationRequest:
    """The job's stored request, checked again (a row written by another version stays safe)."""
    p = job["params"]
    raw = {k: v for k, v in p.items() if k not in op_render.INTERNAL_KEYS}
    raw.update(source=p["source_key"], seed=job["seed"], model=job.get("model"), prompt=job["prompt"])
    if p["operation"] == STEMS:
        raw.setdefault("method", GENERATE)  # rows stored before separation came: ACE-Step's extract
    return validate_operation(p["operation"], raw)


def wire_params(job: dict[str, Any], req: OperationRequest,
                span: tuple[float, float] | None = None) -> OperationParams:
    """The worker's parameters; `span` (seconds) is the window to repaint when the request does not
    name one (an extension's, in the padded source)."""
    p = job["params"]
    part = getattr(req, "part", None)
    start, end = span if span is not None else (getattr(req, "start", None), getattr(req, "end", None))
    return OperationParams(
        prompt=job["prompt"], lyrics=getattr(req, "lyrics", ""), language=getattr(req, "language", "en"),
        duration=float(p["duration"]), count=1, seed=job["seed"], model=job.get("model"), steps=req.steps,
        guidance=req.guidance, shift=req.shift, task=task_of(p["operation"], req),
        repaint_start=start, repaint_end=end,
        strength=getattr(req, "strength", None), lora=req.lora,
        lora_scale=1.0 if req.lora_scale is None else req.lora_scale,
        parts=tuple(getattr(req, "parts", None) or ([part] if part else [])))


def generations(job: dict[str, Any]) -> int:
    """Pipeline outputs the job needs (a stems job: one per part; a mix is made here, not by the model)."""
    p = job["params"]
    if p["operation"] == STEMS and p.get("method") == SEPARATE:
        return 1  # one pass of the separation model makes every stem
    return len(p["parts"]) if p["operation"] == STEMS else 1
