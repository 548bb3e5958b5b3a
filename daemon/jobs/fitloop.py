"""Fit to a project (tempo, key) and bar-exact loops as durable jobs (common/fitloop.py has the requests).

fit, `loop TRACK`:  compute kinds (Work.compute): no model worker; the daemon's stored copy of
                    the source (daemon/audio_store.py, on disk before the job row commits, as for
                    the operations) is stretched by Rubber Band in a child process (cancel kills it).
`loop PROMPT`:      a generation job of the daemon's model (any family), asked for the tempo (ACE-Step
                    takes bpm, key and metre; MusicGen reads them in its prompt) and a few bars longer;
                    its render reads the tempo, cuts the bars, crossfades the wrap and stretches to
                    the exact tempo. One durable job either way (queue, progress, cancel, retry).
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from pathlib import Path
from typing import Any, Mapping

from dgx_music.common import families
from dgx_music.common.families import DEFAULT_FAMILY
from dgx_music.common.fitloop import (FIT, LOOP, LOOP_SPARE_BARS, MAX_STRETCH, FitRequest, LoopRequest,
                                      semitone_shift, stored_params, validate)
from dgx_music.common.operations import MAX_SOURCE_NAME
from dgx_music.common.schemas import ACE_MIN_DURATION, MAX_SEED, MELODY_KEY_RE, ParamError, check_model_name
from dgx_music.daemon import fit_render, libfiles, render
from dgx_music.daemon.audio_store import SOURCES
from dgx_music.daemon.engine.errors import EngineError
from dgx_music.daemon.engine.supervisor import GenerateResult
from dgx_music.daemon.jobs.generate import GenerateKind
from dgx_music.daemon.jobs.kinds import JobContext, JobKind, JobRow, StepProgress, Work

#: The tracks' model and backend for audio the daemon made itself.
TOOL_MODEL, TOOL_BACKEND = "rubberband", "rubberband-r3"
#: A stem's tempo and key are its song's (a drum stem has no key; each stem's own reading may differ).
_STEM_OPERATIONS = ("stems", "add_part")


async def _source(ctx: JobContext, req: FitRequest | LoopRequest) -> dict[str, Any]:
    """Check and store the request's source before the row commits: its key, where it came from,
    its length, and the tempo and key the library knows for it (None: read at run time)."""
    loop = asyncio.get_running_loop()
    data_dir = ctx.storage  # the stored copies and the library's audio
    audio = None
    bpm = key = None
    if req.source_audio is not None:
        audio = await loop.run_in_executor(ctx.submit_pool, SOURCES.from_bytes, req.source_audio, "source_audio")
        key_, seconds = "", SOURCES.seconds(audio)
        source_id, source_name = None, (req.source_name or "uploaded audio")[:MAX_SOURCE_NAME]
    elif MELODY_KEY_RE.match(req.source or ""):  # a retry: the daemon's own stored copy
        key_ = str(req.source)
        if not await loop.run_in_executor(ctx.submit_pool, SOURCES.refresh, data_dir, key_):
            raise ParamError("source", f"no stored source {key_}; give a track id instead")
        seconds = await loop.run_in_executor(ctx.submit_pool, SOURCES.seconds_of, data_dir, key_)
        source_id = await ctx.store.source_of_key(key_)
        source_name = req.source_name or f"source {key_}"
    else:
        track = await ctx.library_track("source", str(req.source))
        path = libfiles.library_file(data_dir, track["path"])
        audio = await loop.run_in_executor(ctx.submit_pool, SOURCES.from_file, path, "source")
        key_, seconds = "", SOURCES.seconds(audio)
        source_id, source_name = track["id"], track["title"]
        bpm, key = track.get("bpm"), track.get("key")
        tp = track.get("params") or {}
        if tp.get("operation") in _STEM_OPERATIONS and tp.get("source_id"):
            try:  # a stem: its song's tempo and key, so all stems of one song get the same ratio and shift
                song = await ctx.store.get_track(str(tp["source_id"]))
                bpm, key = song.get("bpm") or bpm, song.get("key") or key
            except Exception:  # the song was deleted: the stem's own reading
                pass
    if audio is not None:
        key_ = await loop.run_in_executor(ctx.submit_pool, SOURCES.save, data_dir, audio)
    return {"source_key": key_, "source_id": source_id, "source_name": source_name, "duration": round(seconds, 3),
            "analysed_bpm": bpm, "analysed_key": key}


class FitKind(JobKind):
    """A new track: the source at the target tempo and key."""

    name = FIT

    def owns(self, job: Mapping[str, Any]) -> bool:
        return (job.get("params") or {}).get("operation") == FIT

    async def check(self, ctx: JobContext, raw: dict[str, Any]) -> JobRow:
        req = validate(FIT, raw)
        assert isinstance(req, FitRequest)
        src = await _source(ctx, req)
        analysed_bpm, analysed_key = src.pop("analysed_bpm"), src.pop("analysed_key")
        from_bpm, from_key = req.from_bpm or analysed_bpm, req.from_key or analysed_key
        params = {"operation": FIT, **src, **stored_params(req), "from_bpm": from_bpm, "from_key": from_key}
        return JobRow(prompt=f"fit to {_target(req)}", params={k: v for k, v in params.items() if v is not None},
                      count=1, seed=0, model=ctx.check_model(None),
                      summary=f"fit of {src['source_id'] or src['source_name']} to {_target(req)}")

    def describe(self, job: Mapping[str, Any]) -> str:
        return FIT

    async def prepare(self, ctx: JobContext, job: dict[str, Any]) -> Work:
        p = job["params"]
        source = await _load_source(ctx, p)

        def run(progress: StepProgress, cancel: threading.Event) -> GenerateResult:
            from dgx_music.common.audio.key import estimate_key
            from dgx_music.common.audio.tempo import estimate_tempo

            sr = SOURCES.sample_rate
            progress(1, 3)
            from_bpm, from_key = p.get("from_bpm"), p.get("from_key")
            if p.get("bpm") and not from_bpm:
                from_bpm = estimate_tempo(source, sr)[0]
                if from_bpm is None:
                    raise EngineError("bad_request", "the source has no tempo the analysis can read; give from_bpm")
            if p.get("key") and not from_key:
                from_key = estimate_key(source, sr)[0]
                if from_key is None:
                    raise EngineError("bad_request", "the source has no key the analysis can read; give from_key")
            shift = semitone_shift(from_key, p["key"]) if p.get("key") else 0
            _check_stretch(from_bpm, p.get("bpm"))
            progress(2, 3)
            out = fit_render.fit_audio(source, sr, from_bpm, p.get("bpm"), shift, bool(p.get("formant")), cancel)
            progress(3, 3)
            return _result(out, sr)

        async def compute(progress: StepProgress, cancel: threading.Event) -> GenerateResult:
            return await asyncio.get_running_loop().run_in_executor(ctx.pool, run, progress, cancel)

        def write(data_dir: Path, job: dict[str, Any], audio: Any, sr: int,
                  opts: render.RenderOptions) -> list[dict[str, Any]]:
            return fit_render.write_result(data_dir, job, audio, sr, opts, "kept at the level of the source")

        return Work(prompts=[job["prompt"]], params=None, render=write, compute=compute)


class LoopKind(JobKind):
    """A loop of exactly N bars: cut from a source (computed) or generated (the model, then the cut)."""

    name = LOOP

    def owns(self, job: Mapping[str, Any]) -> bool:
        return (job.get("params") or {}).get("operation") == LOOP

    def describe(self, job: Mapping[str, Any]) -> str:
        return LOOP

    async def check(self, ctx: JobContext, raw: dict[str, Any]) -> JobRow:
        req = validate(LOOP, raw)
        assert isinstance(req, LoopRequest)
        asked = stored_params(req)
        if req.prompt is not None:
            return await self._check_prompt(ctx, req, asked)
        src = await _source(ctx, req)
        from_bpm, from_key = src.pop("analysed_bpm"), src.pop("analysed_key")
        params = {"operation": LOOP, **src, **asked, "from_bpm": from_bpm, "from_key": from_key}
        return JobRow(prompt=f"loop of {req.bars} bars", params={k: v for k, v in params.items() if v is not None},
                      count=1, seed=0, model=ctx.check_model(None),
                      summary=f"loop of {req.bars} bars from {src['source_id'] or src['source_name']}")

    async def _check_prompt(self, ctx: JobContext, req: LoopRequest, asked: dict[str, Any]) -> JobRow:
        assert req.bpm is not None and req.prompt is not None
        model = ctx.check_model(check_model_name(req.model) if req.model is not None else None)
        family = families.family(ctx.family_of(model))
        seconds = (req.bars + LOOP_SPARE_BARS + req.start_bar) * req.beats_per_bar * 60.0 / req.bpm + 0.5
        raw: dict[str, Any] = {"prompt": req.prompt, "duration": round(seconds, 2), "count": 1, "model": req.model,
                               "seed": req.seed if req.seed is not None else secrets.randbelow(MAX_SEED + 1)}
        if family.song_fields:  # ACE-Step takes the tempo, key and metre as conditions
            raw.update(bpm=int(round(req.bpm)), key=req.key, duration=max(raw["duration"], ACE_MIN_DURATION))
            if req.beats_per_bar in (2, 3, 4, 6):
                raw["time_signature"] = req.beats_per_bar
        else:  # MusicGen reads them in its prompt
            raw["prompt"] = f"{req.prompt}, {req.bpm:g} bpm" + (f", {req.key}" if req.key else "")
        try:
            row = await GenerateKind().check(ctx, {k: v for k, v in raw.items() if v is not None})
        except ParamError as exc:
            if exc.field == "duration":
                raise ParamError("bars", f"{req.bars} bars at {req.bpm:g} BPM need {seconds:.0f} s of generated "
                                         f"audio: {exc.message}") from None
            raise
        params = {**row.params, "operation": LOOP, "loop_prompt": req.prompt, **asked}
        return JobRow(prompt=row.prompt, params=params, count=1, seed=row.seed, model=row.model,
                      summary=f"loop of {req.bars} bars at {req.bpm:g} BPM: {row.summary}")

    async def prepare(self, ctx: JobContext, job: dict[str, Any]) -> Work:
        p = job["params"]
        if p.get("loop_prompt") is not None:
            return await self._prepare_prompt(ctx, job)
        source = await _load_source(ctx, p)

        def run(progress: StepProgress, cancel: threading.Event) -> GenerateResult:
            from dgx_music.common.audio.key import estimate_key

            sr = SOURCES.sample_rate
            progress(1, 3)
            from_bpm = p.get("from_bpm") or fit_render.read_tempo(source, sr, None)
            if not from_bpm:
                raise EngineError("bad_request", "the source has no tempo the analysis can read: no bars to cut")
            shift = 0
            if p.get("key"):
                from_key = p.get("from_key") or estimate_key(source, sr)[0]
                shift = semitone_shift(from_key, p["key"]) if from_key else 0
            _check_stretch(from_bpm, p.get("bpm"))
            progress(2, 3)
            out = fit_render.make_loop(source, sr, float(from_bpm), float(p.get("bpm") or from_bpm), int(p["bars"]),
                                       int(p["beats_per_bar"]), shift, int(p.get("start_bar", 0)), opts_for(ctx),
                                       cancel)
            progress(3, 3)
            return _result(out, sr)

        async def compute(progress: StepProgress, cancel: threading.Event) -> GenerateResult:
            return await asyncio.get_running_loop().run_in_executor(ctx.pool, run, progress, cancel)

        def write(data_dir: Path, job: dict[str, Any], audio: Any, sr: int,
                  opts: render.RenderOptions) -> list[dict[str, Any]]:
            return fit_render.write_result(data_dir, job, audio, sr, opts, None)

        return Work(prompts=[job["prompt"]], params=None, render=write, compute=compute)

    async def _prepare_prompt(self, ctx: JobContext, job: dict[str, Any]) -> Work:
        p = job["params"]
        gen_params = {k: v for k, v in p.items()
                      if k not in ("operation", "loop_prompt", "bars", "beats_per_bar", "start_bar")
                      and not (k in ("bpm", "key") and not families.family(p.get("family") or DEFAULT_FAMILY).song_fields)}
        if families.family(p.get("family") or DEFAULT_FAMILY).song_fields:
            gen_params["bpm"] = int(round(float(p["bpm"])))
        work = await GenerateKind().prepare(ctx, {**job, "params": gen_params})
        bpm, bars, bpb = float(p["bpm"]), int(p["bars"]), int(p["beats_per_bar"])

        def write(data_dir: Path, job: dict[str, Any], audio: Any, sr: int,
                  opts: render.RenderOptions) -> list[dict[str, Any]]:
            import numpy as np

            a = np.asarray(audio[0], dtype=np.float32)
            from_bpm = fit_render.read_tempo(a, sr, bpm) or bpm
            if abs(from_bpm / bpm - 1.0) < 0.002:
                from_bpm = bpm  # within the analysis' precision: no stretch
            loop = fit_render.make_loop(a, sr, from_bpm, bpm, bars, bpb, 0, int(p.get("start_bar", 0)), opts, None)
            return fit_render.write_result(data_dir, job, loop[None], sr, opts, None)

        return Work(prompts=work.prompts, params=work.params, render=write, inputs=work.inputs, stream=False,
                    target_lufs=work.target_lufs)


def _check_stretch(from_bpm: float | None, bpm: float | None) -> None:
    """Past 2x either way Rubber Band smears; the job fails saying so. (At run time, not at submit:
    the source's tempo is often read only then, and a request the schema calls valid is accepted.)"""
    if from_bpm and bpm and not 1 / MAX_STRETCH <= from_bpm / bpm <= MAX_STRETCH:
        raise EngineError("bad_request", f"{bpm:g} BPM is more than {MAX_STRETCH:g}x away from the source's "
                                         f"{from_bpm:g} BPM (give from_bpm if its reading is wrong)")


def _target(req: FitRequest) -> str:
    return ", ".join(x for x in (f"{req.bpm:g} BPM" if req.bpm else "", req.key or "") if x)


async def _load_source(ctx: JobContext, p: Mapping[str, Any]) -> Any:
    try:
        return await asyncio.get_running_loop().run_in_executor(ctx.pool, SOURCES.load, ctx.storage,
                                                                p["source_key"])
    except (OSError, RuntimeError, ValueError) as exc:
        raise EngineError("bad_request", f"the job's source audio cannot be read: {exc}") from None


def opts_for(ctx: JobContext) -> render.RenderOptions:
    """The loudness settings a computed loop is normalised to (before its cut)."""
    s = ctx.settings
    return render.RenderOptions(target_lufs=float(s["audio.target_lufs"]), ceiling_dbtp=float(s["audio.ceiling_dbtp"]))


def _result(audio: Any, sr: int) -> GenerateResult:
    return GenerateResult(audio=audio[None], sample_rate=sr, model=TOOL_MODEL, backend=TOOL_BACKEND, device="cpu",
                          seconds=0.0)


KINDS = {FIT: FitKind(), LOOP: LoopKind()}
