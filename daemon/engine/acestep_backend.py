"""The ACE-Step 1.5 family: diffusers' AceStepPipeline (songs with sung lyrics, 48 kHz stereo).

Runs inside the worker process only. The worker calls `run(prompts, params,
on_step, audio_in)` (Backend's entry point; `generate_params` here): params is
the wire map documented in docs/engine.md. Each step of
the denoising loop reports through `on_step`; when it raises (Cancelled), the
exception leaves the pipeline from inside its step callback, so the partial
latents are never decoded (the pipeline's own `_interrupt` flag would still
decode them).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from dgx_music.common.families import ACE_STEP
from dgx_music.common.fmt import with_article
from dgx_music.common.schemas import split_lora
from dgx_music.daemon.engine.backend import Backend, EmitCb, ProgressCb, StepCb, pick_dtype, seed_everything
from dgx_music.daemon.engine.errors import EngineError
from dgx_music.daemon.engine.acestep_tasks import SOURCE, TASK_KEYS, check_task, task_kwargs
from dgx_music.daemon.engine.models import fetch_model, resolve_model

#: Defaults per variant: turbo is guidance-distilled (8 steps, no CFG); base needs CFG and more steps.
#: turbo's values and shift 3.0 are diffusers' documented defaults; base's 32 steps is our choice.
VARIANT_DEFAULTS: dict[str, dict[str, float]] = {
    "turbo": {"steps": 8, "guidance": 1.0, "shift": 3.0},
    "base": {"steps": 32, "guidance": 7.0, "shift": 3.0},
}
#: The keys of the wire contract (all optional except duration and seed).
PARAM_KEYS = frozenset({"duration", "lyrics", "language", "bpm", "key", "time_signature", "steps", "guidance",
                        "shift", "seed", "lora", "lora_scale", *TASK_KEYS})
MAX_DURATION = 600.0
LORA_ADAPTER = "dgx-music-lora"


def parse_lora(value: str | None) -> tuple[str | None, float]:
    """`DIR[:scale]` (the CLI form) -> (directory, scale); a bare DIR has scale 1.0."""
    if not value:
        return None, 1.0
    directory, scale = split_lora(value)
    return directory, 1.0 if scale is None else scale


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


class AceStepBackend(Backend):
    """One AceStepPipeline per worker; LoRAs swap in and out per job."""

    name = "diffusers"
    family = ACE_STEP
    sample_rate = 48000

    def __init__(self) -> None:
        self.pipe: Any = None
        self.variant = "turbo"
        self.lora: tuple[str, float] | None = None  # (resolved directory, scale) now applied

    def load(self, model_spec: str, device: str, dtype: str, progress_cb: ProgressCb, *,
             offline: bool = False, cache_dir: str | None = None, lora: str | None = None) -> None:
        from diffusers import AceStepPipeline

        spec = resolve_model(model_spec)
        if spec.family != self.family:
            raise EngineError("bad_model", f"{model_spec} is {with_article(spec.family)} model, not ACE-Step")
        self.model_name = spec.name
        self.device = device
        torch_dtype = pick_dtype(device, dtype)  # bf16 on CUDA, fp32 on CPU
        self.dtype = _dtype_name(torch_dtype)
        if spec.kind == "random":
            from dgx_music.daemon.engine.acestep_testmodel import build_random_pipeline

            progress_cb(None, f"building the {spec.ref} architecture with random weights")
            pipe = build_random_pipeline(spec.ref)
            if torch_dtype != torch.float32:  # built in fp32; casting is only needed (and warned about) for half
                pipe = pipe.to(dtype=torch_dtype)
        else:
            path = fetch_model(spec, ACE_STEP, offline=offline, cache_dir=cache_dir, progress_cb=progress_cb)
            progress_cb(None, f"loading the pipeline from {path}")
            try:
                pipe = AceStepPipeline.from_pretrained(path, dtype=torch_dtype)
            except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
                if "out of memory" in str(exc).lower():
                    raise
                raise EngineError("bad_model", f"cannot load {path} as an AceStepPipeline: {exc}") from None
        progress_cb(None, f"moving the pipeline to {device}")
        pipe = pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        # Untiled decode grows ~0.13 GB per second of audio; tiling only kicks in above 512 latent frames
        # (~20 s), so short clips decode exactly as before.
        pipe.vae.enable_tiling()
        self.pipe = pipe
        self.sample_rate = int(pipe.sample_rate)
        self.variant = "turbo" if pipe.is_turbo else "base"
        if lora:
            self._use_lora(*parse_lora(lora))

    def defaults(self) -> dict[str, float]:
        return dict(VARIANT_DEFAULTS[self.variant])

    # ------------------------------------------------------------------ LoRA
    def _use_lora(self, directory: str | None, scale: float) -> None:
        """Make the pipeline carry exactly this LoRA (or none): load, rescale or unload as needed."""
        want = (str(Path(directory).expanduser().resolve()), float(scale)) if directory else None
        if want == self.lora:
            return
        if want is not None and self.lora is not None and want[0] == self.lora[0]:
            self.pipe.set_adapters([LORA_ADAPTER], adapter_weights=[want[1]])
            self.lora = want
            return
        if self.lora is not None:
            self.pipe.unload_lora_weights()
            self.lora = None
        if want is None:
            return
        if not Path(want[0]).exists():
            raise EngineError("bad_request", f"lora: {want[0]} does not exist")
        try:
            self.pipe.load_lora_weights(want[0], adapter_name=LORA_ADAPTER)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            if "out of memory" in str(exc).lower():
                raise
            raise EngineError("bad_request", f"lora: cannot load {want[0]}: {exc}") from None
        self.pipe.set_adapters([LORA_ADAPTER], adapter_weights=[want[1]])
        self.lora = want

    # ------------------------------------------------------------------ generation
    def run(self, prompts: list[str], params: Mapping[str, Any], on_step: StepCb,
            audio_in: Mapping[str, np.ndarray], on_audio: EmitCb | None = None) -> tuple[np.ndarray, int]:
        """Backend's entry point: ACE-Step does not stream (the whole clip comes out of the VAE at once)."""
        return self.generate_params(prompts, params, on_step, audio_in)

    def generate_params(self, prompts: list[str], params: Mapping[str, Any], on_step: StepCb,
                        audio_in: Mapping[str, Any] | None = None) -> tuple[np.ndarray, int]:
        """Text to music: float32 [len(prompts), 2, samples] at 48 kHz, one caption per variation.

        Variation i draws its noise from seed + i (a generator each), so a batch is reproducible and a
        variation does not depend on how many were asked for alongside it."""
        if self.pipe is None:
            raise EngineError("internal", "generate before load")
        p = _check_params(params)
        task = check_task(p, audio_in, len(prompts), self.sample_rate)
        lora_dir, lora_scale = parse_lora(p["lora"])  # "DIR:0.7" carries its scale; lora_scale wins
        self._use_lora(lora_dir, lora_scale if params.get("lora_scale") is None else p["lora_scale"])
        d = self.defaults()
        steps = int(p["steps"] if p["steps"] is not None else d["steps"])
        guidance = float(p["guidance"] if p["guidance"] is not None else d["guidance"])
        shift = float(p["shift"] if p["shift"] is not None else d["shift"])
        n = len(prompts)
        seed = int(p["seed"])
        common = dict(num_inference_steps=steps, guidance_scale=guidance, shift=shift, bpm=p["bpm"],
                      keyscale=p["key"], timesignature=str(p["time_signature"]) if p["time_signature"] else None,
                      output_type="pt")
        if task == "text2music":
            # Noise comes from CPU generators (the same on every device); the global RNGs are seeded too,
            # because tasks that encode source audio sample the VAE posterior from them.
            seed_everything(seed)
            return self._run([list(prompts)], [dict(lyrics=[p["lyrics"]] * n, vocal_language=[p["language"]] * n,
                                                    audio_duration=float(p["duration"]), **common)],
                             [[seed + i for i in range(n)]], steps, on_step)
        source = torch.from_numpy(np.ascontiguousarray(audio_in[SOURCE], dtype=np.float32))
        calls = task_kwargs(task, p, list(prompts), source)
        seeds = [[seed + off + i for i in range(len(c["prompt"]))] for c, off in
                 zip(calls, np.cumsum([0] + [len(c["prompt"]) for c in calls[:-1]]))]
        return self._run([c.pop("prompt") for c in calls], [{**common, **c} for c in calls], seeds, steps,
                         on_step)

    def _run(self, prompts: list[list[str]], kwargs: list[dict[str, Any]], seeds: list[list[int]], steps: int,
             on_step: StepCb) -> tuple[np.ndarray, int]:
        """One pipeline call per entry (a stems job: one per part), progress counted across all of them.

        Each call seeds the global RNGs with its first variation's seed (the VAE encode of a source
        samples from them) and draws variation i's noise from its own generator."""
        total = steps * len(kwargs)
        outs = []
        for k, (prompt, kw, seed_list) in enumerate(zip(prompts, kwargs, seeds)):
            def step_end(pipe: Any, i: int, t: float, cb_kwargs: dict[str, Any], k: int = k) -> None:
                on_step(k * steps + i + 1, total)  # raising here (Cancelled) leaves before the VAE decode

            seed_everything(int(seed_list[0]))
            gens = [torch.Generator("cpu").manual_seed(int(s)) for s in seed_list]
            with torch.inference_mode():
                out = self.pipe(prompt=prompt, generator=gens, callback_on_step_end=step_end, **kw)
            outs.append(out.audios.detach().to(torch.float32).cpu().numpy())
        width = max(o.shape[-1] for o in outs)
        audio = np.concatenate([np.pad(o, ((0, 0), (0, 0), (0, width - o.shape[-1]))) for o in outs], axis=0)
        return np.ascontiguousarray(audio, dtype=np.float32), self.sample_rate

    # ------------------------------------------------------------------ training
    def train(self, items: list[dict[str, Any]], params: Mapping[str, Any], work_dir: str,
              on_step: Any) -> dict[str, Any]:
        """Train a LoRA on this pipeline (acestep_train.py); the adapter ends in work_dir/final.

        Any LoRA a generation applied is taken off first: the style learns on the bare model."""
        from dgx_music.daemon.engine.acestep_train import TrainItem, TrainOptions, train_lora

        if self.pipe is None:
            raise EngineError("internal", "train before load")
        opts = TrainOptions.from_wire(params)
        try:
            parsed = [TrainItem(path=str(i["path"]), caption=str(i.get("caption") or ""),
                                lyrics=str(i.get("lyrics") or ""), language=str(i.get("language") or "en"))
                      for i in items]
        except (TypeError, KeyError) as exc:
            raise EngineError("bad_request", f"items: each needs a path ({exc})") from None
        self._use_lora(None, 1.0)
        return train_lora(self.pipe, parsed, opts, Path(work_dir), self.variant == "turbo", on_step)

    def expected_samples(self, duration: float) -> int:
        """Samples the pipeline makes for `duration` s: whole latent frames (1920 samples at 48 kHz)."""
        lps = self.pipe.latents_per_second
        return math.ceil(duration * lps) * int(round(self.sample_rate / lps))

    def close(self) -> None:
        self.pipe = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _check_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The wire map, checked: a daemon that validated with the schema never trips these."""
    if not isinstance(params, Mapping):
        raise EngineError("bad_request", "params must be a map")
    unknown = sorted(set(params) - PARAM_KEYS)
    if unknown:
        raise EngineError("bad_request", f"{unknown[0]}: not an ACE-Step parameter")
    p: dict[str, Any] = {k: params.get(k) for k in PARAM_KEYS}
    try:
        dur = float(p["duration"])
    except (TypeError, ValueError):
        raise EngineError("bad_request", "duration: required, in seconds") from None
    if not 0 < dur <= MAX_DURATION:
        raise EngineError("bad_request", f"duration: {dur:g} s is outside 0-{MAX_DURATION:g} s")
    if not isinstance(p["seed"], int) or isinstance(p["seed"], bool) or p["seed"] < 0:
        raise EngineError("bad_request", "seed: required, a non-negative integer")
    p["lyrics"] = p["lyrics"] or ""
    p["language"] = p["language"] or "en"
    p["lora_scale"] = 1.0 if p["lora_scale"] is None else float(p["lora_scale"])
    if p["steps"] is not None and int(p["steps"]) < 1:
        raise EngineError("bad_request", "steps: must be at least 1")
    if p["time_signature"] not in (None, 2, 3, 4, 6):
        raise EngineError("bad_request", "time_signature: one of 2, 3, 4, 6")
    return p
