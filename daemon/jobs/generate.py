"""Generation from a prompt (`job.submit`): text to music in any family, MusicGen with a melody.

The row keeps the family's checked parameters; a melody is stored (daemon/audio_store.py)
before the row is committed, so deleting the track it came from never breaks the job.
Continuing a track is its own kind (extend.py), on the same request.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Mapping, cast

import msgspec

from dgx_music.common import protocol
from dgx_music.common import families
from dgx_music.common.families import CONTINUE, DEFAULT_FAMILY, MELODY
from dgx_music.common.params import MELODY_KEY_RE, WINDOW_SECONDS, GenerationParams, ParamError
from dgx_music.common.schemas import FamilyParams, check_model_name, validate_request
from dgx_music.daemon import libfiles, render
from dgx_music.daemon.audio_store import MELODIES
from dgx_music.daemon.engine.errors import EngineError
from dgx_music.daemon.engine.models import accepts_melody, resolve_model
from dgx_music.daemon.handlers import HandlerError
from dgx_music.daemon.jobs.kinds import JobContext, JobKind, JobRow, Work
from dgx_music.daemon.store import STYLE_NAME_RE, StoreError

GENERATE, EXTEND = "generate", "extend"


def submit_kind(raw: Any) -> str:
    """The kind a `job.submit` request is: continuing a track when it names one to extend."""
    return EXTEND if isinstance(raw, Mapping) and raw.get("extend") is not None else GENERATE


def is_melody_model(model: str) -> bool:
    try:
        return accepts_melody(resolve_model(model))
    except EngineError as exc:
        raise ParamError("model", exc.message) from None


def params_of(job: Mapping[str, Any], max_count: int) -> FamilyParams:
    """The typed parameters of a stored job, in its family (the engine receives `params.wire()`)."""
    raw = {**job["params"], "prompt": job["prompt"], "count": job["count"], "seed": job["seed"],
           "model": job["model"]}
    family = raw.pop("family", DEFAULT_FAMILY)
    raw.pop("style", None)  # lineage only: the style's name beside its resolved `lora` directory
    return validate_request(raw, family, max_count=max(max_count, job["count"]))


class GenerateKind(JobKind):
    """A batch of `count` variations of one prompt; streamed as it is made where the backend can."""

    name = GENERATE

    def owns(self, job: Mapping[str, Any]) -> bool:
        return not (job.get("params") or {}).get("operation")

    async def check(self, ctx: JobContext, raw: dict[str, Any]) -> JobRow:
        upload, upload_name = raw.pop("melody_audio", None), raw.pop("melody_name", None)
        # The model is named (and checked as a name) first: its family decides which parameters exist.
        model = ctx.check_model(check_model_name(raw["model"]) if raw.get("model") is not None else None)
        family = ctx.family_of(model)
        fam = families.family(family)
        if fam.model_defaults and not raw.get("model"):
            raw["model"] = model  # the variant's defaults (steps, guidance, shift) follow the daemon's model
        params: FamilyParams = validate_request(raw, family, max_count=ctx.max_count).with_seed()
        if upload is not None and not fam.does(MELODY):
            raise ParamError("melody_audio", f"melody_audio is a parameter of "
                                             f"{', '.join(families.family(f).title for f in families.with_task(MELODY))}; "
                                             f"{family} does not take it")
        style = None
        if getattr(params, "lora", None) is not None:
            lora, style = await _check_lora(ctx, params.lora)  # type: ignore[union-attr]
            params = msgspec.structs.replace(params, lora=lora)  # type: ignore[union-attr]
        # The tasks the family declares decide which fields its schema has: a melody to follow
        # (MELODY), a track to extend (CONTINUE); both are MusicGen's (GenerationParams).
        if fam.does(MELODY):
            mparams = cast(GenerationParams, params)
            if mparams.duration > WINDOW_SECONDS and is_melody_model(model):
                raise ParamError("duration", f"melody models make at most {WINDOW_SECONDS:g} s per clip")
            if upload is not None or mparams.melody is not None:
                params = await _store_melody(ctx, mparams, model, upload, upload_name)
        if fam.does(CONTINUE):
            await self.check_more(ctx, cast(GenerationParams, params), model)
        stored = {k: v for k, v in params.to_dict().items() if k not in ("prompt", "count", "seed", "model")}
        if family != DEFAULT_FAMILY:
            stored["family"] = family  # absent: the default, as every job stored before families existed
        if style is not None:
            stored["style"] = style  # lineage: the job's tracks name the style they were made with
        return JobRow(prompt=params.prompt, params=stored, count=params.count, seed=int(params.seed or 0),
                      model=model, summary=f"{family} {params.prompt[:60]!r} x{params.count}, "
                                           f"{params.duration:.1f}s, seed {params.seed}")

    async def check_more(self, ctx: JobContext, params: GenerationParams, model: str) -> None:
        """What a MusicGen request of this kind must also satisfy (extend.py adds its own)."""
        if params.extend is not None:
            raise ParamError("extend", "continuing a track is submitted as an extend job")

    async def prepare(self, ctx: JobContext, job: dict[str, Any]) -> Work:
        params = params_of(job, ctx.max_count)
        inputs: dict[str, Any] = {}
        melody = await _load_melody(ctx, params)
        if melody is not None:
            inputs["melody"] = melody
        return Work(prompts=[job["prompt"]] * job["count"], params=params, render=render.render_tracks,
                    inputs=inputs, stream=True, target_lufs=params.target_lufs)


async def _check_lora(ctx: JobContext, name: str) -> tuple[str, str | None]:
    """A style's name (one `dgx-music train` made, in the styles table; its files under the storage
    root, shared by the hosts), or a LoRA directory under <data>/loras (a bare name) or <data>/models
    -> (its absolute path, the style's name or None). As with models, no request makes the daemon
    read outside its data directory or the styles of its storage root."""
    data_dir = ctx.data_dir
    styles = (ctx.storage / "styles").resolve()
    allowed = [(data_dir / "loras").resolve(), (data_dir / "models").resolve(), styles]
    if STYLE_NAME_RE.match(name):
        try:
            style = await ctx.store.get_style(name)
        except StoreError as exc:
            if exc.code != "not_found":
                raise
        else:
            return str((ctx.storage / style["path"]).resolve()), style["name"]

    def look() -> Path | None:
        p = Path(name).expanduser()
        path = (p if p.is_absolute() else allowed[0] / p).resolve()
        return path if path.is_dir() else None

    path = await asyncio.get_running_loop().run_in_executor(ctx.submit_pool, look)
    if path is None:
        raise ParamError("lora", f"no style and no LoRA directory named {name} (dgx-music loras lists the styles; "
                                 f"bare names are also looked up in {allowed[0]})")
    if not any(a in path.parents for a in allowed):
        raise HandlerError(protocol.FORBIDDEN, f"lora: LoRA directories must be under {allowed[0]} or "
                                               f"{allowed[1]}", field="lora")
    # A remix of a styled track sends the style's directory: it keeps naming the style.
    return str(path), (path.name if path.parent == styles and STYLE_NAME_RE.match(path.name) else None)


async def _store_melody(ctx: JobContext, params: GenerationParams, model: str, upload: Any,
                        upload_name: Any) -> GenerationParams:
    """Keep the job's own copy of its melody, on disk before the job row is committed."""
    if ctx.settings["engine.backend"] != "transformers":
        raise ParamError("melody", "melody conditioning needs the transformers backend")
    if not is_melody_model(model):
        raise ParamError("melody", f"model {model} does not follow a melody; use --model melody")
    loop = asyncio.get_running_loop()
    data_dir = ctx.storage  # the stored copies and the library's audio
    if upload is not None:
        if params.melody is not None:
            raise ParamError("melody", "give a track id or melody_audio, not both")
        name = upload_name if isinstance(upload_name, str) and upload_name.strip() else "uploaded audio"
        audio = await loop.run_in_executor(ctx.submit_pool, MELODIES.from_bytes, upload, "melody_audio")
        key = await loop.run_in_executor(ctx.submit_pool, MELODIES.save, data_dir, audio)
        source = f"file {Path(name).name[:120]}"
    elif MELODY_KEY_RE.match(params.melody or ""):
        key = str(params.melody)  # a remix: the melody is already stored
        if not await loop.run_in_executor(ctx.submit_pool, MELODIES.refresh, data_dir, key):
            raise ParamError("melody", f"no stored melody {key}; give a track id instead")
        source = params.melody_source or f"melody {key}"
    else:
        track = await ctx.library_track("melody", str(params.melody))
        path = libfiles.library_file(data_dir, track["path"])
        audio = await loop.run_in_executor(ctx.submit_pool, MELODIES.from_file, path, "melody")
        key = await loop.run_in_executor(ctx.submit_pool, MELODIES.save, data_dir, audio)
        source = f"track {track['id']}"
    return msgspec.structs.replace(params, melody=key, melody_source=source)


async def _load_melody(ctx: JobContext, params: FamilyParams) -> Any:
    melody = getattr(params, "melody", None)  # a field of the families that do MELODY only
    if melody is None:
        return None
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(ctx.pool, MELODIES.load, ctx.storage, melody)
    except (OSError, RuntimeError, ParamError) as exc:
        raise EngineError("bad_request", f"the job's melody ({getattr(params, 'melody_source', None) or melody}) "
                                         f"cannot be read: {exc}") from None
