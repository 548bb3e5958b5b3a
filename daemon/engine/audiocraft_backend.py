"""The opt-in backend: Meta's audiocraft MusicGen (`--backend audiocraft`).

audiocraft pins torch 2.1 and needs xformers, so it lives in its own
environment (docs/engine.md) and is imported only here, lazily. Its text
conditioner always loads the hub's `t5-base`, so the hub environment must be
set before the first import of huggingface_hub: the worker does that.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from dgx_music.daemon.engine.backend import CONTEXT_SECONDS, MusicGenBackend, ProgressCb, StepCb, seed_everything
from dgx_music.daemon.engine.errors import EngineError
from dgx_music.daemon.engine.models import cached_snapshot, fetch_model, resolve_model

T5_REPO = "t5-base"


def _import_audiocraft() -> Any:
    try:
        from audiocraft.models import MusicGen  # type: ignore[import-not-found]
    except ImportError as exc:
        raise EngineError("bad_request", f"the audiocraft backend needs audiocraft installed ({exc}); "
                                         "see docs/engine.md (make audiocraft-env)") from None
    return MusicGen


class AudiocraftBackend(MusicGenBackend):
    name = "audiocraft"

    def __init__(self) -> None:
        self.model: Any = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def load(self, model_spec: str, device: str, dtype: str, progress_cb: ProgressCb, *,
             offline: bool = False, cache_dir: str | None = None) -> None:
        spec = resolve_model(model_spec)
        self.model_name = spec.name
        self.device = device
        # audiocraft picks its own precision: fp16 weights + autocast on GPU, fp32 on CPU.
        self.dtype = "float32" if device == "cpu" else "float16"
        if spec.kind == "random":
            self._load_random(spec.ref, device, progress_cb)
            return
        path = Path(fetch_model(spec, "audiocraft", offline=offline, cache_dir=cache_dir, progress_cb=progress_cb))
        if not (path / "state_dict.bin").is_file() or not (path / "compression_state_dict.bin").is_file():
            if (path / "config.json").is_file():
                raise EngineError("bad_model", f"{path} holds a transformers checkpoint, not audiocraft's "
                                               "state_dict.bin; use --backend transformers")
            raise EngineError("bad_model", f"{path} has no state_dict.bin + compression_state_dict.bin")
        if not (path / "hf-cache").is_dir():
            self._ensure_t5(offline, cache_dir, progress_cb)
        MusicGen = _import_audiocraft()
        progress_cb(None, f"loading {path} with audiocraft")
        try:
            self.model = MusicGen.get_pretrained(str(path), device=device)
        except EngineError:
            raise
        except (OSError, KeyError, RuntimeError, ValueError) as exc:
            if "out of memory" in str(exc).lower():
                raise
            raise EngineError("bad_model", f"cannot load {path} with audiocraft: {exc}") from None
        self.sample_rate = int(self.model.sample_rate)

    def _ensure_t5(self, offline: bool, cache_dir: str | None, progress_cb: ProgressCb) -> None:
        """audiocraft downloads t5-base silently on first use; fetch it here with progress instead."""
        if cached_snapshot(T5_REPO, cache_dir) is not None:
            return
        if offline:
            raise EngineError("model_not_found", f"audiocraft needs {T5_REPO} from the hub and it is not cached; "
                                                 "offline mode forbids downloading it")
        from dgx_music.daemon.engine.models import ModelSpec

        fetch_model(ModelSpec(T5_REPO, "hub", T5_REPO), "transformers", offline=False, cache_dir=cache_dir,
                    progress_cb=progress_cb)

    def _load_random(self, size: str, device: str, progress_cb: ProgressCb) -> None:
        """The real musicgen-<size> shapes with random weights, T5-base included (no download)."""
        import torch

        from dgx_music.daemon.engine import testmodel

        if size == "melody":
            raise EngineError("bad_request", "random:melody is built for the transformers backend only")
        if "huggingface_hub" in sys.modules:
            raise EngineError("internal", "random audiocraft models must load in a fresh worker process")
        self._tmp = tempfile.TemporaryDirectory(prefix="dgx-music-random-t5-")
        cache = Path(self._tmp.name)
        os.environ.update(HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        progress_cb(None, "building a random T5-base encoder")
        testmodel._fake_t5_base(cache, 0, full=True)
        _import_audiocraft()
        from audiocraft.models import MusicGen, builders  # type: ignore[import-not-found]
        from omegaconf import OmegaConf

        progress_cb(None, f"building the {size} architecture with random weights")
        cfg = OmegaConf.create(testmodel.audiocraft_random_cfg(size, device))
        torch.manual_seed(0)
        compression = builders.get_compression_model(cfg).to(device).eval()
        lm = builders.get_lm_model(cfg).to(device).eval()
        if device != "cpu":
            lm = lm.half()  # as audiocraft's own loader does on GPU
        lm.cfg = cfg
        self.model = MusicGen(f"random:{size}", compression, lm)
        self.sample_rate = int(self.model.sample_rate)

    def generate(self, prompts: list[str], duration: float, temperature: float, top_k: int, top_p: float,
                 cfg: float, seed: int, on_step: StepCb, melody: np.ndarray | None = None,
                 prefix: np.ndarray | None = None) -> tuple[np.ndarray, int]:
        import torch

        if self.model is None:
            raise EngineError("internal", "generate before load")
        if prefix is not None:
            raise EngineError("bad_request", "continuing a track needs the transformers backend "
                                             "(--backend transformers)")
        if melody is not None:
            # audiocraft's chroma conditioner separates stems with Demucs first, whose weights are
            # another download; the transformers backend follows melodies without it.
            raise EngineError("bad_request", "melody conditioning needs the transformers backend "
                                             "(--backend transformers)")
        # set_generation_params resets everything not passed, so pass everything. Beyond its
        # max_duration (30 s) audiocraft continues window by window, keeping
        # max_duration - extend_stride seconds of context: the same 10 s as the transformers backend.
        stride = max(1.0, self.model.max_duration - CONTEXT_SECONDS)
        self.model.set_generation_params(use_sampling=True, top_k=int(top_k), top_p=float(top_p),
                                         temperature=float(temperature), duration=float(duration),
                                         cfg_coef=float(cfg), two_step_cfg=False, extend_stride=stride)
        # Fires only with progress=True; raising from it aborts generation (our cancel).
        extended = duration > self.model.max_duration
        grand = int(round(duration * self.model.frame_rate))
        last = [0]

        def progress(done: int, total: int) -> None:
            if not extended:
                on_step(int(done), int(total))
                return
            # Past 30 s its total is per window and its count jumps by the stride between
            # windows: report against the whole clip, never backwards, the end when it ends.
            step = min(int(done), grand - 1)
            if step > last[0]:
                last[0] = step
                on_step(step, grand)

        self.model.set_custom_progress_callback(progress)
        seed_everything(seed)
        wav = self.model.generate(list(prompts), progress=True)
        if extended:
            on_step(grand, grand)
        out = wav.detach().to(torch.float32).cpu().numpy()
        return np.ascontiguousarray(out, dtype=np.float32), self.sample_rate

    def close(self) -> None:
        self.model = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
