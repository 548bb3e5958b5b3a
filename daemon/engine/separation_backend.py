"""Source separation in the worker: HTDemucs (demucs-infer) splits a source into aligned stems.

The stems are made to add up to the source: the model runs at its own rate (44.1 kHz), each
stem is resampled back to the source's 48 kHz and cut to its exact length, and the "other"
stem is the residual, source minus every other stem. That makes the sum exact (to float32
rounding) with any weights, and keeps what the model left out of the named stems audible in
"other" instead of lost. No stem is loudness-normalised: each keeps the source's gain.

Runs inside the worker process only (imports torch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from dgx_music.common.families import SEPARATION, SEPARATION_ALIASES
from dgx_music.daemon.engine.backend import Backend, EmitCb, ProgressCb, StepCb
from dgx_music.daemon.engine.errors import EngineError

#: Overlap of the model's segments (demucs' default); the segments are cross-faded.
OVERLAP = 0.25
#: The stem that takes the residual, when the model makes it.
RESIDUAL = "other"


class SeparationBackend(Backend):
    """One demucs model (a bag of one or more HTDemucs), loaded from a local repository."""

    name = "demucs"
    family = SEPARATION
    sample_rate = 48000  # what run() returns: the rate the daemon stores sources at

    def __init__(self) -> None:
        self.model: Any = None
        self.sources: tuple[str, ...] = ()
        self.model_rate = 44100

    def load(self, model_spec: str, device: str, dtype: str, progress_cb: ProgressCb, *,
             offline: bool = False, cache_dir: str | None = None) -> None:
        from dgx_music.daemon.engine import separation_models
        from dgx_music.daemon.engine.models import resolve_model

        spec = resolve_model(model_spec)
        if spec.family != SEPARATION:
            raise EngineError("bad_model", f"{model_spec} is not a separation model")
        if spec.ref in SEPARATION_ALIASES:
            repo = separation_models.fetch(spec.ref, offline=offline, cache_dir=cache_dir, progress_cb=progress_cb)
        else:
            repo = Path(spec.ref)
        name = separation_models.bag_name(repo)
        progress_cb(None, f"loading {name} from {repo}")
        try:
            from demucs_infer.pretrained import get_model
            from demucs_infer.repo import ModelLoadingError
        except ImportError as exc:
            raise EngineError("bad_model", f"separation needs demucs-infer ({exc}); pip install "
                                           "'dgx-music[daemon]'") from None
        try:
            model = get_model(name, repo=repo)
        except (ModelLoadingError, OSError, KeyError, ValueError, RuntimeError) as exc:
            raise EngineError("bad_model", f"cannot load the separation model in {repo}: {exc}") from None
        self.model = model.eval()
        self.sources = tuple(model.sources)
        self.model_rate = int(model.samplerate)
        if int(model.audio_channels) != 2:
            raise EngineError("bad_model", f"{repo} separates {model.audio_channels}-channel audio; stereo is needed")
        self.model_name, self.device, self.dtype = spec.name, device, "float32"  # demucs runs in float32

    def run(self, prompts: list[str], params: Mapping[str, Any], on_step: StepCb,
            audio_in: Mapping[str, np.ndarray], on_audio: EmitCb | None = None) -> tuple[np.ndarray, int]:
        """The source's stems named by params["parts"] (all the model's when empty), in that order:
        float32 [stems, 2, samples] at 48 kHz, as long as the source."""
        if self.model is None:
            raise EngineError("bad_request", "generate before load")
        source = audio_in.get("source")
        if source is None or source.ndim != 2 or source.shape[0] != 2:
            raise EngineError("bad_request", "separation needs the stereo source (audio input 'source')")
        parts = [str(p) for p in (params.get("parts") or self.sources)]
        missing = [p for p in parts if p not in self.sources]
        if missing:
            raise EngineError("bad_request", f"parts: {self.model_name} makes no {', '.join(missing)} stem; it makes "
                                             f"{', '.join(self.sources)}")
        stems = self.separate(np.asarray(source, dtype=np.float32), on_step)
        return np.stack([stems[p] for p in parts]).astype(np.float32), self.sample_rate

    def separate(self, source: np.ndarray, on_step: StepCb) -> dict[str, np.ndarray]:
        """[2, n] at 48 kHz -> {stem: [2, n]} whose sum is the source."""
        import soxr
        import torch
        from demucs_infer.apply import BagOfModels, apply_model

        n = source.shape[1]
        x = soxr.resample(source.T, self.sample_rate, self.model_rate, quality="HQ").T.astype(np.float32)
        mix = torch.from_numpy(np.ascontiguousarray(x))
        # demucs' own normalisation: the model was trained on standardised mixes.
        ref = mix.mean(0)
        mean, std = float(ref.mean()), float(ref.std())
        std = std if std > 1e-8 else 1.0
        segment = _segment_of(self.model)
        seg_len = int(self.model_rate * segment)
        count = len(range(0, mix.shape[1], int((1 - OVERLAP) * seg_len)))
        total = count * (len(self.model.models) if isinstance(self.model, BagOfModels) else 1)
        done = [0]

        def callback(d: dict[str, Any]) -> None:
            if d.get("state") == "end":
                done[0] += 1
                on_step(min(done[0], total), total)  # raises Cancelled to stop

        with torch.inference_mode():
            out = apply_model(self.model, ((mix - mean) / std)[None], shifts=0, split=True, overlap=OVERLAP,
                              device=self.device, callback=callback, segment=segment)[0]
        out = (out * std + mean).float().cpu().numpy()  # [sources, 2, m]
        stems: dict[str, np.ndarray] = {}
        for name, stem in zip(self.sources, out):
            y = soxr.resample(stem.T, self.model_rate, self.sample_rate, quality="HQ").T
            stems[name] = _fit(y, n)
        residual = RESIDUAL if RESIDUAL in stems else self.sources[-1]
        rest = sum((stems[s].astype(np.float64) for s in self.sources if s != residual),
                   np.zeros_like(source, dtype=np.float64))
        stems[residual] = (source.astype(np.float64) - rest).astype(np.float32)
        return stems

    def close(self) -> None:
        self.model = None


def _segment_of(model: Any) -> float:
    """The segment length (s) every model of a bag accepts: HTDemucs cannot run past its training one."""
    models = getattr(model, "models", None) or [model]
    segs = [float(getattr(m, "segment", 0) or 0) for m in models]
    segs = [s for s in segs if s > 0]
    return min(segs) if segs else 10.0


def _fit(a: np.ndarray, n: int) -> np.ndarray:
    a = np.asarray(a, dtype=np.float32)
    if a.shape[1] >= n:
        return np.ascontiguousarray(a[:, :n])
    return np.pad(a, ((0, 0), (0, n - a.shape[1])))


__all__ = ["SeparationBackend"]
