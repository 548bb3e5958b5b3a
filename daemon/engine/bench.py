"""`dgx-music bench`: how fast is generation here, measured through the real worker.

Runs the same path a daemon job takes (supervisor -> worker process -> backend),
so the numbers include process start, IPC and decoding, not just the model.
Use `random:<size>` to measure the real architecture without downloading it.
ACE-Step models (`random:ace-step`) are measured phase by phase in this process
instead: see acestep_bench.py for why.
"""

from __future__ import annotations

import asyncio
import platform
import time
from pathlib import Path
from typing import Any, Callable

from dgx_music.common.families import ACE_STEP
from dgx_music.common.params import validate_params
from dgx_music.daemon.engine.models import resolve_model
from dgx_music.daemon.engine.supervisor import EngineSettings, EngineSupervisor

DEFAULT_PROMPT = "upbeat electronic track with warm synth pads and punchy drums"


async def bench_async(*, model: str = "random:small", duration: float = 5.0, batch: int = 1,
                      backend: str = "transformers", device: str = "auto", prompt: str = DEFAULT_PROMPT,
                      seed: int = 0, warmup: bool = False, offline: bool = False,
                      cache_dir: str | Path | None = None, python: str | None = None,
                      progress_cb: Callable[[str, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Load, optionally warm up, generate one batch; return timings and peak memory."""
    params = validate_params({"prompt": prompt, "duration": duration, "seed": seed, "count": batch})
    cb = progress_cb or (lambda kind, data: None)
    events: list[tuple[float, str, dict[str, Any]]] = []
    sup = EngineSupervisor(EngineSettings(model=model, backend=backend, device=device, keep_alive=-1,
                                          offline=offline, cache_dir=Path(cache_dir) if cache_dir else None,
                                          hang_timeout=600, **({"python": python} if python else {})),
                           lambda name, data: (events.append((time.perf_counter(), name, data)), cb(name, data)))
    try:
        t0 = time.perf_counter()
        await sup.load()
        load_s = time.perf_counter() - t0
        if warmup:
            await sup.generate(0, [prompt] * batch, validate_params({"prompt": prompt, "duration": 1.0, "seed": 0}))
        steps: list[dict[str, Any]] = []

        def on_progress(p: dict[str, Any]) -> None:
            steps.append({**p, "t": time.perf_counter()})
            cb("progress", p)

        t1 = time.perf_counter()
        res = await sup.generate(1, [prompt] * batch, params, on_progress)
        gen_s = time.perf_counter() - t1
        state = sup.state()
        mem = sup.last_memory()
    finally:
        await sup.close()
    total = steps[-1]["total"] if steps else 0
    first = steps[0]["elapsed"] if steps else None
    decode_span = steps[-1]["elapsed"] - steps[0]["elapsed"] if len(steps) > 1 else None
    steps_per_s = (steps[-1]["step"] - steps[0]["step"]) / decode_span if decode_span else None
    audio_s = res.audio.shape[-1] / res.sample_rate
    loaded = next((d for _, n, d in events if n == "model.loaded"), {})
    return {
        "model": model, "backend": backend, "device": state.get("device"), "dtype": state.get("dtype"),
        "duration": duration, "batch": batch, "warmup": warmup,
        "machine": platform.machine(), "platform": platform.platform(),
        "load_seconds": round(load_s, 3),  # process start + imports + weights
        "worker_load_seconds": loaded.get("load_seconds"),
        "generate_seconds": round(gen_s, 3),
        "time_to_first_step": round(first, 3) if first is not None else None,
        "steps": total,
        "steps_per_second": round(steps_per_s, 2) if steps_per_s else None,
        "audio_seconds": round(audio_s, 3),
        # Seconds of compute per second of audio: for the batch, and per clip (batch generates in parallel).
        "rtf": round(gen_s / audio_s, 3),
        "rtf_per_clip": round(gen_s / (audio_s * batch), 3),
        "peak_rss": mem.get("rss_peak"),
        "peak_cuda": mem.get("cuda_peak"),
        "cuda_total": mem.get("cuda_total"),
        "output_shape": list(res.audio.shape), "sample_rate": res.sample_rate,
    }


_ACE_STEP_KEYS = {"model", "duration", "batch", "device", "prompt", "lyrics", "seed", "steps", "warmup", "offline",
                  "cache_dir", "progress_cb"}


def bench(**kwargs: Any) -> dict[str, Any]:
    """Synchronous entry point for the CLI: ACE-Step models get the per-phase bench (acestep_bench.py)."""
    if resolve_model(str(kwargs.get("model") or "random:small")).family == ACE_STEP:
        from dgx_music.daemon.engine.acestep_bench import bench_acestep

        return bench_acestep(**{k: v for k, v in kwargs.items() if k in _ACE_STEP_KEYS and v is not None})
    kwargs = {k: v for k, v in kwargs.items() if k not in ("lyrics", "steps")}
    return asyncio.run(bench_async(**kwargs))


def format_bench(r: dict[str, Any]) -> str:
    if r.get("family") == ACE_STEP:
        from dgx_music.daemon.engine.acestep_bench import format_acestep

        return format_acestep(r)

    def gb(n: int | None) -> str:
        return "n/a" if n is None else f"{n / 1024**3:.2f} GiB"

    return "\n".join([
        f"model {r['model']} ({r['backend']}, {r['device']}, {r['dtype']}), batch {r['batch']} x {r['duration']:g} s",
        f"  load:               {r['load_seconds']:.2f} s (worker: {r['worker_load_seconds']} s)",
        f"  time to first step: {r['time_to_first_step']} s",
        f"  decode:             {r['steps']} steps, {r['steps_per_second']} steps/s",
        f"  generate:           {r['generate_seconds']:.2f} s for {r['audio_seconds']:g} s of audio per clip",
        f"  real-time factor:   {r['rtf']:.2f} s of compute per s of audio (batch), {r['rtf_per_clip']:.2f} per clip",
        f"  peak memory:        RSS {gb(r['peak_rss'])}, CUDA {gb(r['peak_cuda'])}",
    ])
