"""The interface every model backend implements, plus device/dtype choice.

A backend declares what it can do (`capabilities`: its family's tasks and audio inputs, whether
it streams, its sample rate) and takes its family's typed request as the worker received it
(`run`). The worker asks those, never the family's name; which class serves a family is the
family registry's (common/families.py).

Runs inside the worker process only: the backends import torch.
"""

from __future__ import annotations

import abc
import importlib
import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
from dgx_music.common.fmt import plural

from dgx_music.common import families
from dgx_music.common.families import DEFAULT_FAMILY, MUSICGEN, AudioInput

ProgressCb = Callable[[float | None, str], None]
StepCb = Callable[[int, int], None]
#: on_audio(offset, chunk [batch, channels, n]): the clip as it is made (streaming backends).
EmitCb = Callable[[int, np.ndarray], None]

BACKENDS = tuple(families.family(MUSICGEN).backends)  # --backend picks among MusicGen's
#: MusicGen decode loops (transformers backend): fast_decode.py's loop (compiled with CUDA graphs on
#: CUDA), the same loop compiled on any device, or transformers' own generate.
DECODE_MODES = ("fast", "compiled", "stock")


def pick_device(requested: str = "auto") -> str:
    """cuda, then mps, then cpu for "auto"; a forced device must exist."""
    import torch

    from dgx_music.daemon.engine.errors import EngineError

    req = (requested or "auto").strip().lower()
    if req == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if req.startswith("cuda"):
        if not torch.cuda.is_available():
            raise EngineError("bad_request", f"device {requested} asked for, but torch {torch.__version__} "
                                             f"sees no CUDA device")
        idx = int(req.split(":", 1)[1]) if ":" in req else 0
        if idx >= torch.cuda.device_count():
            raise EngineError("bad_request", f"device {requested} does not exist "
                                             f"({plural(torch.cuda.device_count(), 'CUDA device')})")
        return req
    if req == "mps":
        if not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
            raise EngineError("bad_request", "device mps asked for, but MPS is not available")
        return req
    if req == "cpu":
        return req
    raise EngineError("bad_request", f"unknown device {requested!r}: use auto, cuda, cuda:N, mps or cpu")


def pick_dtype(device: str, requested: str = "auto") -> "torch.dtype":  # noqa: F821
    """bf16 on CUDA when supported (fp16 otherwise), fp16 on MPS, fp32 on CPU.

    transformers loads fp32 by default, which doubles GPU memory and time for
    nothing; CPUs are slow in half precision, so they keep fp32.
    DGX_MUSIC_DTYPE (float32, float16, bfloat16) overrides, for experiments.
    """
    import torch

    req = os.environ.get("DGX_MUSIC_DTYPE", requested) or "auto"
    if req != "auto":
        return {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
                "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}[req]
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    return torch.float32


def seed_everything(seed: int) -> None:
    """Seed every RNG sampling can touch, so a job can be reproduced exactly."""
    import random

    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


@dataclass(frozen=True)
class Capabilities:
    """What a loaded backend does: the worker checks requests against this, not a family name."""

    family: str
    tasks: tuple[str, ...]
    streams: bool
    audio_inputs: Mapping[str, AudioInput]
    sample_rate: int

    def input_rate(self, name: str) -> int:
        rate = self.audio_inputs[name].sample_rate
        return self.sample_rate if rate is None else rate


class Backend(abc.ABC):
    """Load one model, generate batches from it, close. One instance per worker process."""

    name: str = "?"
    family: str = DEFAULT_FAMILY
    streams: bool = False  # run(on_audio=...) sends the clip as it is made
    model_name: str = ""
    device: str = "cpu"
    dtype: str = "float32"
    sample_rate: int = 32000

    @property
    def capabilities(self) -> Capabilities:
        fam = families.family(self.family)
        return Capabilities(family=fam.name, tasks=fam.tasks, streams=self.streams,
                            audio_inputs=dict(fam.audio_inputs), sample_rate=int(self.sample_rate))

    @abc.abstractmethod
    def load(self, model_spec: str, device: str, dtype: str, progress_cb: ProgressCb, *,
             offline: bool = False, cache_dir: str | None = None) -> None:
        """Load `model_spec` (name, hub id, directory or random:<size>) onto `device`."""

    @abc.abstractmethod
    def run(self, prompts: list[str], params: Mapping[str, Any], on_step: StepCb,
            audio_in: Mapping[str, np.ndarray], on_audio: EmitCb | None = None) -> tuple[np.ndarray, int]:
        """One batch from the family's request (`params`: its schema's `wire()`, checked here) and the
        audio inputs the capabilities name -> (float32 [batch, channels, samples], sample_rate).
        `on_step(step, total)` may raise to cancel; `on_audio` is given only when the backend streams."""

    def close(self) -> None:
        """Drop the model; the worker exits right after, which frees GPU memory for good."""


class MusicGenBackend(Backend):
    """MusicGen's backends (transformers, audiocraft): the request's fields as `generate` arguments."""

    family = MUSICGEN

    def run(self, prompts: list[str], params: Mapping[str, Any], on_step: StepCb,
            audio_in: Mapping[str, np.ndarray], on_audio: EmitCb | None = None) -> tuple[np.ndarray, int]:
        p = params
        stream: dict[str, Any] = {"on_audio": on_audio} if on_audio is not None and self.streams else {}
        return self.generate(
            prompts, float(p.get("duration", 8.0)), float(p.get("temperature", 1.0)), int(p.get("top_k", 250)),
            float(p.get("top_p", 0.0)), float(p.get("cfg", 3.0)), int(p.get("seed", 0)), on_step,
            melody=audio_in.get("melody"), prefix=audio_in.get("prefix"), **stream)

    @abc.abstractmethod
    def generate(self, prompts: list[str], duration: float, temperature: float, top_k: int, top_p: float,
                 cfg: float, seed: int, on_step: StepCb, melody: np.ndarray | None = None,
                 prefix: np.ndarray | None = None) -> tuple[np.ndarray, int]:
        """Return (float32 [batch, channels, samples], sample_rate). `on_step` may raise to cancel.

        `melody` (float32 mono at the model's sample rate) is followed by melody models.
        `prefix` (the same format) is existing music to continue: the result is the prefix
        followed by `duration` seconds that carry it on."""


def get_backend(name: str, family: str = DEFAULT_FAMILY) -> Backend:
    """The backend class the family registry names for `family` (and, among several, `name`)."""
    from dgx_music.daemon.engine.errors import EngineError

    if family not in families.REGISTRY:
        raise EngineError("bad_request", f"unknown model family {family!r}: use {' or '.join(families.FAMILIES)}")
    fam = families.family(family)
    try:
        where = fam.backend_for(name)
    except KeyError:
        raise EngineError("bad_request", f"unknown backend {name!r}: use {' or '.join(fam.backends)}") from None
    module, cls = where.split(":")
    return getattr(importlib.import_module(module), cls)()


#: Seconds of the previous window fed back as the audio prompt of the next (audiocraft's
#: default keeps 12 s); each later window adds (30 s window) - CONTEXT_SECONDS of new audio.
CONTEXT_SECONDS = 10.0
#: Crossfade where a window's re-decoded prompt meets the audio already made.
CROSSFADE_SECONDS = 0.05


def window_plan(frames: int, window: int, context: int, made: int = 0) -> list[tuple[int, int]]:
    """(context frames, new frames) per window, for `frames` new frames after `made` existing ones.

    From nothing, the first window has no context and at most `window` frames; every other one
    continues from the last `context` frames made (fewer if less exists) with at most
    window - context new ones."""
    if not 0 < context < window:
        raise ValueError("need 0 < context < window")
    plan: list[tuple[int, int]] = []
    left = frames
    if made <= 0:
        first = min(frames, window)
        plan, left, made = [(0, first)], frames - first, first
    while left > 0:
        ctx = min(context, made)
        new = min(left, window - ctx)
        plan.append((ctx, new))
        left -= new
        made += new
    return plan


def join_windows(made: np.ndarray, window: np.ndarray, context_samples: int, fade: int) -> np.ndarray:
    """Append a continuation window to [batch, channels, samples] audio.

    `window` starts with its re-decoded prompt (the last `context_samples` of `made`), which is
    close to but not exactly the original: keep the original, crossfade over `fade` samples
    into the re-decoded prompt's end, then take the new audio."""
    fade = max(1, min(fade, context_samples, made.shape[-1]))
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    blend = made[..., -fade:] * (1.0 - ramp) + window[..., context_samples - fade:context_samples] * ramp
    return np.concatenate([made[..., :-fade], blend, window[..., context_samples:]], axis=-1)


def frames_for(duration: float, frame_rate: float) -> int:
    """Number of codec frames for `duration` seconds (at least one)."""
    return max(1, int(round(duration * frame_rate)))
