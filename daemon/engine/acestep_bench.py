"""`dgx-music bench` for the ACE-Step family: where a song's time goes, phase by phase.

A diffusion pipeline's cost is three different things: text encoding (once), the
denoising steps (steps x DiT), and the VAE decode to 48 kHz (which grows with the
duration and, on CPU, dominates). The worker protocol only carries step events,
so this bench loads the backend in this process and times the phases with light
wrappers around `encode_prompt` and `vae.decode`; generation itself is the same
`AceStepBackend.generate_params` a daemon job runs.
"""

from __future__ import annotations

import platform
import resource
import time
from pathlib import Path
from typing import Any, Callable

DEFAULT_LYRICS = "[verse]\nneon lights across the water\n[chorus]\nwe keep on running through the night"


def _timed(store: list[float], fn: Callable[..., Any], sync: Callable[[], None]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        sync()
        store.append(time.perf_counter() - t0)
        return out

    return wrapper


_KEYS = {"model", "duration", "batch", "device", "prompt", "lyrics", "seed", "steps", "warmup", "offline",
         "cache_dir", "progress_cb"}
_TRAIN_KEYS = {"model", "duration", "device", "seed", "offline", "cache_dir", "progress_cb"}


def bench(**kwargs: Any) -> dict[str, Any]:
    """The family's `bench` (common/families.py): the CLI's options this bench takes, unset ones left out.
    With `train` (steps): LoRA training's speed instead of generation's."""
    if kwargs.get("train"):
        return bench_training(steps=int(kwargs["train"]),
                              **{k: v for k, v in kwargs.items() if k in _TRAIN_KEYS and v is not None})
    return bench_acestep(**{k: v for k, v in kwargs.items() if k in _KEYS and v is not None})


def bench_training(*, model: str = "random:ace-step", steps: int = 5, duration: float = 30.0, device: str = "auto",
                   seed: int = 0, offline: bool = False, cache_dir: str | Path | None = None,
                   progress_cb: Callable[[str, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """`dgx-music bench --train N`: load, encode two clips of `duration` s of noise-and-tone, then N LoRA
    steps with the upstream recipe (acestep_train.py); steps per second over the steady steps."""
    import tempfile

    import numpy as np
    import soundfile as sf
    import torch

    from dgx_music.daemon.engine.acestep_backend import AceStepBackend
    from dgx_music.daemon.engine.backend import pick_device

    cb = progress_cb or (lambda kind, data: None)
    dev = pick_device(device)
    backend = AceStepBackend()
    t0 = time.perf_counter()
    backend.load(model, dev, "auto", lambda p, m: cb("model.loading", {"progress": p, "message": m}),
                 offline=offline, cache_dir=str(cache_dir) if cache_dir else None)
    load_s = time.perf_counter() - t0
    cb("model.loaded", {"device": dev, "load_seconds": round(load_s, 3)})
    marks: list[tuple[int, float]] = []
    encoded: list[float] = []
    try:
        with tempfile.TemporaryDirectory(prefix="dgxm-bench-train-") as tmp:
            rng = np.random.default_rng(seed)
            t = np.arange(int(duration * 48000)) / 48000
            items = []
            for i, f in enumerate((220.0, 330.0)):
                a = 0.3 * np.sin(2 * np.pi * f * t)[:, None] + 0.05 * rng.standard_normal((t.size, 2))
                path = Path(tmp) / f"clip{i}.flac"
                sf.write(path, a.astype(np.float32), 48000)
                items.append({"path": str(path), "caption": f"bench clip {i}", "lyrics": ""})
            if dev.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            t1 = time.perf_counter()

            def on_step(step: int, total: int, loss: Any, phase: str) -> None:
                now = time.perf_counter()
                if phase.startswith("encoded"):
                    encoded.append(now - t1)
                elif step > 0:
                    marks.append((step, now))
                    cb("progress", {"step": step, "total": total, "elapsed": now - t1})

            result = backend.train(items, {"steps": steps, "seed": seed, "checkpoint_every": steps + 1},
                                   str(Path(tmp) / "work"), on_step)
            mem: dict[str, Any] = {"peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                                   "peak_cuda": None}
            if dev.startswith("cuda"):
                mem["peak_cuda"] = int(torch.cuda.max_memory_allocated())
        state = {"device": backend.device, "dtype": backend.dtype, "variant": backend.variant}
    finally:
        backend.close()
    gaps = [b[1] - a[1] for a, b in zip(marks, marks[1:])]  # steady steps: the first pays for warm-up
    return {"model": model, "family": "ace-step", "backend": "diffusers", "training": True, **state,
            "duration": duration, "clips": 2, "train_steps": steps, "rank": result.get("rank"),
            "machine": platform.machine(), "torch_threads": torch.get_num_threads(),
            "load_seconds": round(load_s, 3), "encode_seconds": round(encoded[-1], 3) if encoded else None,
            "first_step_seconds": round(marks[0][1] - t1 - (encoded[-1] if encoded else 0), 3) if marks else None,
            "steps_per_second": round(len(gaps) / sum(gaps), 4) if gaps and sum(gaps) else None,
            "final_loss": result.get("final_loss"), "adapter_bytes": result.get("size"), **mem}


def bench_acestep(*, model: str = "random:ace-step", duration: float = 30.0, batch: int = 1,
                  device: str = "auto", prompt: str = "", lyrics: str = DEFAULT_LYRICS, seed: int = 0,
                  steps: int | None = None, warmup: bool = False, offline: bool = False,
                  cache_dir: str | Path | None = None,
                  progress_cb: Callable[[str, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Load, optionally warm up, generate one batch; return per-phase timings and peak memory."""
    import torch

    from dgx_music.daemon.engine.acestep_backend import AceStepBackend
    from dgx_music.daemon.engine.backend import pick_device

    cb = progress_cb or (lambda kind, data: None)
    dev = pick_device(device)
    cuda = dev.startswith("cuda")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    backend = AceStepBackend()
    t0 = time.perf_counter()
    backend.load(model, dev, "auto", lambda p, m: cb("model.loading", {"progress": p, "message": m}),
                 offline=offline, cache_dir=str(cache_dir) if cache_dir else None)
    sync()
    load_s = time.perf_counter() - t0
    cb("model.loaded", {"device": dev, "load_seconds": round(load_s, 3)})
    prompts = [prompt or "upbeat synth pop song with a female vocal"] * batch
    params: dict[str, Any] = {"duration": duration, "seed": seed, "lyrics": lyrics, "language": "en",
                              "steps": steps}
    try:
        if warmup:
            backend.generate_params(prompts, {**params, "duration": 10.0, "steps": 1}, lambda s, t: None, {})
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        pipe = backend.pipe
        encode_s: list[float] = []
        decode_s: list[float] = []
        pipe.encode_prompt = _timed(encode_s, pipe.encode_prompt, sync)
        pipe.vae.decode = _timed(decode_s, pipe.vae.decode, sync)
        marks: list[float] = []

        def on_step(step: int, total: int) -> None:
            sync()
            marks.append(time.perf_counter())
            cb("progress", {"step": step, "total": total, "elapsed": marks[-1] - t1})

        t1 = time.perf_counter()
        audio, sr = backend.generate_params(prompts, params, on_step, {})
        gen_s = time.perf_counter() - t1
        mem: dict[str, Any] = {"peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
        if cuda:
            mem.update(peak_cuda=int(torch.cuda.max_memory_allocated()),
                       cuda_total=int(torch.cuda.mem_get_info()[1]))
        state = {"device": backend.device, "dtype": backend.dtype, "variant": backend.variant}
    finally:
        backend.close()
    step_s = [b - a for a, b in zip([t1 + sum(encode_s)] + marks[:-1], marks)]
    # The first step also pays for the condition encoder and noise; report it apart from the steady steps.
    steady = step_s[1:] or step_s
    audio_s = audio.shape[-1] / sr
    return {
        "model": model, "family": "ace-step", "backend": "diffusers", **state,
        "duration": duration, "batch": batch, "warmup": warmup, "in_process": True,
        "machine": platform.machine(), "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "load_seconds": round(load_s, 3),
        "text_encoding_seconds": round(sum(encode_s), 3),
        "steps": len(marks),
        "first_step_seconds": round(step_s[0], 3) if step_s else None,
        "step_seconds": round(sum(steady) / len(steady), 3) if steady else None,
        "steps_per_second": round(len(steady) / sum(steady), 3) if steady and sum(steady) else None,
        "vae_decode_seconds": round(sum(decode_s), 3),
        "generate_seconds": round(gen_s, 3),
        "time_to_first_step": round(marks[0] - t1, 3) if marks else None,
        "audio_seconds": round(audio_s, 3),
        "rtf": round(gen_s / audio_s, 3),
        "rtf_per_clip": round(gen_s / (audio_s * batch), 3),
        **{"peak_cuda": None, "cuda_total": None, **mem},
        "worker_load_seconds": None,
        "output_shape": list(audio.shape), "sample_rate": sr,
    }


def format_acestep(r: dict[str, Any]) -> str:
    def gb(n: int | None) -> str:
        return "n/a" if n is None else f"{n / 1024**3:.2f} GiB"

    if r.get("training"):
        return "\n".join([
            f"model {r['model']} (ACE-Step {r['variant']}, {r['device']}, {r['dtype']}): LoRA training, rank "
            f"{r['rank']}, {r['clips']} clips x {r['duration']:g} s",
            f"  load:               {r['load_seconds']:.2f} s (in this process)",
            f"  encode (once):      {r['encode_seconds']} s (VAE + text, cached for later steps and restarts)",
            f"  training:           {r['train_steps']} steps: first {r['first_step_seconds']} s, then "
            f"{r['steps_per_second']} steps/s",
            f"  adapter:            {r['adapter_bytes']} bytes, smoothed loss {r['final_loss']}",
            f"  peak memory:        RSS {gb(r['peak_rss'])}, CUDA {gb(r['peak_cuda'])}",
        ])

    return "\n".join([
        f"model {r['model']} (ACE-Step {r['variant']}, {r['device']}, {r['dtype']}), batch {r['batch']} x "
        f"{r['duration']:g} s",
        f"  load:               {r['load_seconds']:.2f} s (in this process)",
        f"  text encoding:      {r['text_encoding_seconds']:.3f} s",
        f"  denoising:          {r['steps']} steps: first {r['first_step_seconds']} s, then {r['step_seconds']} s each",
        f"  VAE decode:         {r['vae_decode_seconds']:.2f} s",
        f"  generate:           {r['generate_seconds']:.2f} s for {r['audio_seconds']:g} s of audio per clip",
        f"  real-time factor:   {r['rtf']:.3f} s of compute per s of audio (batch), {r['rtf_per_clip']:.3f} per clip",
        f"  peak memory:        RSS {gb(r['peak_rss'])}, CUDA {gb(r['peak_cuda'])}",
    ])
