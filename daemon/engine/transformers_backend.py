"""The default backend: Hugging Face transformers' MusicGen.

It installs with any recent torch (including aarch64 + CUDA 13 on DGX Spark),
keeps T5 in the same checkpoint, and was measured ~20% faster and 1.7 GB
lighter than audiocraft on the same architecture on CPU.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from dgx_music.common.fmt import with_article
from dgx_music.common.params import WINDOW_SECONDS
from dgx_music.daemon.engine.backend import (CONTEXT_SECONDS, CROSSFADE_SECONDS, DECODE_MODES, MusicGenBackend, ProgressCb,
                                             StepCb, frames_for, join_windows, pick_dtype, seed_everything, window_plan)
from dgx_music.daemon.engine.errors import EngineError
from dgx_music.daemon.engine.models import fetch_model, resolve_model
from dgx_music.daemon.engine.streaming import CodeStream, EmitCb, MusicgenCodec

log = logging.getLogger(__name__)


class _StepHook(LogitsProcessor):
    """Called once per decode step (the streamer is not, for MusicGen); raising here aborts generate.

    `offset` counts the steps of earlier windows, so progress runs once from 1 to `total`."""

    def __init__(self, total: int, on_step: StepCb, offset: int = 0, stream: CodeStream | None = None) -> None:
        self.total = total
        self.step = offset
        self.on_step = on_step
        self.stream = stream

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.step += 1
        self.on_step(self.step, self.total)
        if self.stream is not None:  # the ids so far, delay pattern and all: the stream undelays them
            self.stream.on_ids(input_ids)
        return scores


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


#: transformers' config `model_type` of a MusicGen directory -> (model class, processor class) in transformers.
_MODEL_TYPES: dict[str, tuple[str, str]] = {
    "musicgen": ("MusicgenForConditionalGeneration", "MusicgenProcessor"),
    "musicgen_melody": ("MusicgenMelodyForConditionalGeneration", "AutoTokenizer"),
}


class TransformersBackend(MusicGenBackend):
    name = "transformers"
    streams = True  # generate(on_audio=...) sends the clip as it is made

    def __init__(self) -> None:
        self.model: Any = None
        self.processor: Any = None
        self.frame_rate = 50.0
        self.delay = 3
        self.is_melody = False
        self.decode = "stock"
        self.fast: Any = None

    def load(self, model_spec: str, device: str, dtype: str, progress_cb: ProgressCb, *,
             offline: bool = False, cache_dir: str | None = None) -> None:
        spec = resolve_model(model_spec)
        self.model_name = spec.name
        self.device = device
        torch_dtype = pick_dtype(device, dtype)
        self.dtype = _dtype_name(torch_dtype)
        if spec.kind == "random":
            from dgx_music.daemon.engine.testmodel import build_random_model

            progress_cb(None, f"building the {spec.ref} architecture with random weights")
            model, processor = build_random_model(spec.ref)
            model = model.to(dtype=torch_dtype)
        else:
            path = fetch_model(spec, "transformers", offline=offline, cache_dir=cache_dir, progress_cb=progress_cb)
            model, processor = self._from_dir(Path(path), torch_dtype, progress_cb)
        progress_cb(None, f"moving the model to {device}")
        self.model = model.to(device).eval()
        self.processor = processor
        cfg = self.model.config
        self.is_melody = getattr(cfg, "model_type", "") == "musicgen_melody"
        self.sample_rate = int(cfg.audio_encoder.sampling_rate)
        self.frame_rate = float(cfg.audio_encoder.frame_rate)
        channels = int(getattr(cfg.decoder, "audio_channels", 1) or 1)
        self.channels = channels
        # The delay pattern shifts codebook k by k steps: num_codebooks-1 extra steps per channel group.
        self.delay = int(cfg.decoder.num_codebooks) // channels - 1
        self.set_decode(os.environ.get("DGX_MUSIC_DECODE", "fast") or "fast",
                        os.environ.get("DGX_MUSIC_SAMPLER", "counter") or "counter")

    def set_decode(self, mode: str, sampler: str = "counter") -> None:
        """Pick the decode loop and its sampler; a compiled loop that disagrees with eager at load falls
        back to stock."""
        from dgx_music.daemon.engine.fast_decode import FastDecoder, self_check
        from dgx_music.daemon.engine.sampling import SAMPLERS

        if mode not in DECODE_MODES:
            raise EngineError("bad_request", f"unknown decode loop {mode!r}: use {', '.join(DECODE_MODES)}")
        if sampler not in SAMPLERS:
            raise EngineError("bad_request", f"unknown sampler {sampler!r}: use {', '.join(SAMPLERS)}")
        self.decode, self.fast = mode, None
        if mode == "stock":
            return
        fast = FastDecoder(self.model, compile=True if mode == "compiled" else None, sampler=sampler)
        if fast.compile and self.device.startswith("cuda"):
            ok, why = self_check(fast, self.processor)
            if not ok:
                log.warning("fast decode disabled, using stock generate: %s", why)
                self.decode = "stock"
                return
        self.fast = fast

    def _from_dir(self, path: Path, torch_dtype: torch.dtype, progress_cb: ProgressCb) -> tuple[Any, Any]:
        cfg_file = path / "config.json"
        if not cfg_file.is_file():
            if (path / "state_dict.bin").is_file():
                raise EngineError("bad_model", f"{path} holds an audiocraft checkpoint; use --backend audiocraft")
            raise EngineError("bad_model", f"{path} has no config.json: not a transformers MusicGen model")
        try:
            model_type = json.loads(cfg_file.read_text()).get("model_type")
        except (OSError, ValueError) as exc:
            raise EngineError("bad_model", f"cannot read {cfg_file}: {exc}") from None
        # transformers' own config `model_type` (not a family name): the model and processor classes.
        # A melody model's processor feature extractor needs torchaudio; its text goes through the
        # tokenizer and the melody through our own chroma (engine/chroma.py).
        names = _MODEL_TYPES.get(model_type) if isinstance(model_type, str) else None
        if names is None:
            raise EngineError("bad_model", f"{path} is {with_article(repr(model_type))} model, not MusicGen")
        import transformers

        cls, proc_cls = (getattr(transformers, n) for n in names)
        progress_cb(None, f"loading weights from {path}")
        try:
            model = cls.from_pretrained(path, dtype=torch_dtype)
            processor = proc_cls.from_pretrained(path)
        except EngineError:
            raise
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            if "out of memory" in str(exc).lower():
                raise
            raise EngineError("bad_model", f"cannot load {path}: {exc}") from None
        return model, processor

    def generate(self, prompts: list[str], duration: float, temperature: float, top_k: int, top_p: float,
                 cfg: float, seed: int, on_step: StepCb, melody: np.ndarray | None = None,
                 prefix: np.ndarray | None = None, on_audio: EmitCb | None = None) -> tuple[np.ndarray, int]:
        """`on_audio(offset, audio)` receives the clip as it is made (streaming.py); the rest as Backend."""
        if self.model is None:
            raise EngineError("internal", "generate before load")
        hop = int(round(self.sample_rate / self.frame_rate))
        made: np.ndarray | None = None
        if prefix is not None:
            if self.is_melody or self.channels != 1:
                raise EngineError("bad_request", f"{self.model_name} cannot continue existing music; "
                                                 "use a mono text model such as small, medium or large")
            if prefix.ndim != 1 or prefix.shape[0] < hop:
                raise EngineError("bad_request", "the music to continue must be mono and at least one frame long")
            prefix = prefix[: prefix.shape[0] // hop * hop]  # whole frames: the prompt encodes exactly
            made = np.ascontiguousarray(np.tile(prefix, (len(prompts), 1))[:, None, :], dtype=np.float32)
        plan = window_plan(frames_for(duration, self.frame_rate), int(WINDOW_SECONDS * self.frame_rate),
                           int(CONTEXT_SECONDS * self.frame_rate), made=0 if made is None else made.shape[-1] // hop)
        if len(plan) > 1 and (self.is_melody or self.channels != 1):
            kind = "melody" if self.is_melody else "stereo"
            raise EngineError("bad_request", f"{kind} models make at most {WINDOW_SECONDS:g} s per clip; "
                                             f"{duration:g} s asked for")
        total = sum(new + self.delay for _, new in plan)
        inputs = self.processor(text=list(prompts), padding=True, return_tensors="pt").to(self.device)
        if melody is not None:
            if not self.is_melody:
                raise EngineError("bad_request", f"{self.model_name} does not follow a melody; "
                                                 "use a melody model (--model melody)")
            from dgx_music.daemon.engine.chroma import chroma_features, fit_to_duration

            features = chroma_features(fit_to_duration(melody, duration, self.sample_rate), self.sample_rate,
                                       batch=len(prompts))
            inputs["input_features"] = features.to(self.device, dtype=self.model.dtype)
        sampling: dict[str, Any] = dict(
            do_sample=True, temperature=float(temperature),
            # audiocraft semantics: top_p > 0 replaces top_k; 0 disables each.
            top_k=0 if top_p > 0 else int(top_k), top_p=float(top_p) if 0 < top_p < 1 else 1.0,
            guidance_scale=float(cfg) if cfg > 1 else None,
        )
        seed_everything(seed)  # once: the windows that follow stay reproducible
        stream = None if on_audio is None else CodeStream(MusicgenCodec(self.model), on_audio,
                                                          join_fade=int(CROSSFADE_SECONDS * self.sample_rate))
        if stream is not None and made is not None:  # the music being continued comes first
            stream.asm.put(0, made, stream.join_fade, 0)
        done = 0
        for i, (context, new) in enumerate(plan):
            if made is not None:
                # Continue from the tail of what is made: EnCodec encodes it into the decoder's prompt.
                tail = made[:, 0, -context * hop:]
                inputs = self.processor(text=list(prompts), audio=list(tail), sampling_rate=self.sample_rate,
                                        padding=True, return_tensors="pt").to(self.device)
                if "input_values" in inputs:
                    inputs["input_values"] = inputs["input_values"].to(self.model.dtype)
            if stream is not None:
                stream.begin_window(0 if made is None else made.shape[-1] - context * hop, None if made is None
                                    else stream.codec.encode(inputs["input_values"], inputs.get("padding_mask")))
            out = self._generate_window(inputs, new + self.delay, sampling, _StepHook(total, on_step, done, stream))
            if stream is not None:
                stream.end_window(out, last=i == len(plan) - 1)
            made = out if made is None else join_windows(made, out, context * hop,
                                                         int(CROSSFADE_SECONDS * self.sample_rate))
            done += new + self.delay
        assert made is not None
        return np.ascontiguousarray(made, dtype=np.float32), self.sample_rate

    def _generate_window(self, inputs: Any, steps: int, sampling: dict[str, Any], hook: _StepHook) -> np.ndarray:
        processors = LogitsProcessorList([hook])
        if self.fast is not None:  # fast_decode.py: the same hooks, called once per step with the same data
            from dgx_music.daemon.engine.sampling import Sampling

            audio = self.fast.generate(dict(inputs), steps, Sampling.from_kwargs(self.model, sampling), processors)
        else:
            audio = self.model.generate(**inputs, **sampling, max_new_tokens=steps, logits_processor=processors)
        if isinstance(audio, tuple):
            audio = audio[0]
        out = audio.detach().to(torch.float32).cpu().numpy()
        return out[:, None, :] if out.ndim == 2 else out

    def close(self) -> None:
        self.model = None
        self.processor = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

