"""`dgx-music bench`: how fast is generation here, measured through the real worker.

Runs the same path a daemon job takes (supervisor -> worker process -> backend),
so the numbers include process start, IPC and decoding, not just the model.
Use `random:<size>` to measure the real architecture without downloading it.
Each family names its own bench in the registry (common/families.py): ACE-Step
models (`random:ace-step`) are measured phase by phase in this process instead,
see acestep_bench.py for why.
"""

from __future__ import annotations

import asyncio
import platform
import time
from pathlib import Path
from typing import Any, Callable

from dgx_music.common import families
from dgx_music.common.params import validate_params
from dgx_music.daemon.engine.models import resolve_model
from dgx_music.daemon.engine.supervisor import EngineSettings, EngineSupervisor

DEFAULT_PROMPT = "upbeat electronic track with warm synth pads and punchy drums"


async def bench_async(*, model: str = "random:small", duration: float = 5.0, batch: int = 1,
                      backend: str = "transformers", device: str = "auto", prompt: str = DEFAULT_PROMPT,
                      seed: int = 0, warmup: bool = False, offline: bool = False, decode: str | None = None,
                      sampler: str | None = None,
                      cache_dir: str | Path | None = None, python: str | None = None,
                      progress_cb: Callable[[str, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Load, optionally warm up, generate one batch; return timings and peak memory."""
    params = validate_params({"prompt": prompt, "duration": duration, "seed": seed, "count": batch})
    cb = progress_cb or (lambda kind, data: None)
    events: list[tuple[float, str, dict[str, Any]]] = []
    sup = EngineSupervisor(EngineSettings(model=model, backend=backend, device=device, keep_alive=-1,
                                          worker_env={**({"DGX_MUSIC_DECODE": decode} if decode else {}),
                                                      **({"DGX_MUSIC_SAMPLER": sampler} if sampler else {})},
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
        "decode": decode or "fast", "sampler": None if decode == "stock" else (sampler or "counter"),
        "duration": duration, "batch": batch, "warmup": warmup,
        "machine": platform.machine(), "platform": platform.platform(),
        "load_seconds": round(load_s, 3),  # process start + imports + weights
        "worker_load_seconds": loaded.get("load_seconds"),
        "generate_seconds": round(gen_s, 3),
        "time_to_first_step": round(first, 3) if first is not None else None,
        "steps": total,
        "steps_per_second": round(steps_per_s, 2) if steps_per_s else None,
        # Wall time per decode step after the first (the first may compile): the figure --decode compares.
        "step_ms": round(1000.0 / steps_per_s, 3) if steps_per_s else None,
        "audio_seconds": round(audio_s, 3),
        # Seconds of compute per second of audio: for the batch, and per clip (batch generates in parallel).
        "rtf": round(gen_s / audio_s, 3),
        "rtf_per_clip": round(gen_s / (audio_s * batch), 3),
        "peak_rss": mem.get("rss_peak"),
        "peak_cuda": mem.get("cuda_peak"),
        "cuda_total": mem.get("cuda_total"),
        "output_shape": list(res.audio.shape), "sample_rate": res.sample_rate,
    }


def bench(**kwargs: Any) -> dict[str, Any]:
    """Synchronous entry point for the CLI: the model's family runs its own bench (its `bench` in
    common/families.py: MusicGen's is `bench_musicgen`, ACE-Step's the per-phase acestep_bench.py)."""
    fam = families.family(resolve_model(str(kwargs.get("model") or "random:small")).family)
    return fam.tool("bench")(**kwargs)  # type: ignore[no-any-return]


def bench_musicgen(**kwargs: Any) -> dict[str, Any]:
    """MusicGen's bench (through the real worker), once per `--decode` loop asked."""
    if kwargs.get("train"):
        from dgx_music.daemon.engine.errors import EngineError

        raise EngineError("bad_request", "--train: training a style needs an ACE-Step model (--model random:ace-step)")
    kwargs = {k: v for k, v in kwargs.items() if k not in ("lyrics", "steps", "train")}
    modes = [m.strip() for m in str(kwargs.pop("decode", None) or "").split(",") if m.strip()]
    if len(modes) <= 1:
        return asyncio.run(bench_async(**kwargs, decode=modes[0] if modes else None))
    runs = [asyncio.run(bench_async(**kwargs, decode=m)) for m in modes]
    return {"decode_compare": runs, "model": runs[0]["model"], "device": runs[0]["device"],
            "batch": runs[0]["batch"], "duration": runs[0]["duration"]}


def check_decode(value: str | None) -> str | None:
    """`--decode`: one of fast, compiled, stock, or several joined by commas (measured in turn)."""
    from dgx_music.daemon.engine.backend import DECODE_MODES

    for m in [m.strip() for m in (value or "").split(",") if m.strip()]:
        if m not in DECODE_MODES:
            raise ValueError(f"unknown decode loop {m!r}: use {', '.join(DECODE_MODES)} (comma-separated to compare)")
    return value


def format_bench(r: dict[str, Any]) -> str:
    """The result as text, by its family's `bench_format` (a result names its family where it is not
    the default: MusicGen's results, --decode comparisons included, name none)."""
    return families.family(r.get("family")).tool("bench_format")(r)  # type: ignore[no-any-return]


def format_musicgen(r: dict[str, Any]) -> str:
    """MusicGen's `bench_format`: one run, or the --decode loops side by side."""
    if "decode_compare" in r:
        runs = r["decode_compare"]
        base = runs[0].get("step_ms")
        lines = [f"model {r['model']} ({r['device']}), batch {r['batch']} x {r['duration']:g} s, "
                 "decode loops side by side",
                 f"  {'decode':<10} {'ms/step':>9} {'vs ' + runs[0]['decode']:>10} {'first step s':>13} "
                 f"{'generate s':>11} {'rtf':>7}"]
        for x in runs:
            ratio = f"{x['step_ms'] / base:.2f}x" if base and x.get("step_ms") else "n/a"
            lines.append(f"  {x['decode']:<10} {x.get('step_ms') or float('nan'):>9.3f} {ratio:>10} "
                         f"{x['time_to_first_step'] or float('nan'):>13.3f} {x['generate_seconds']:>11.2f} "
                         f"{x['rtf']:>7.3f}")
        return "\n".join(lines)

    def gb(n: int | None) -> str:
        return "n/a" if n is None else f"{n / 1024**3:.2f} GiB"

    return "\n".join([
        f"model {r['model']} ({r['backend']}, {r['device']}, {r['dtype']}, decode {r.get('decode')}), "
        f"batch {r['batch']} x {r['duration']:g} s",
        f"  load:               {r['load_seconds']:.2f} s (worker: {r['worker_load_seconds']} s)",
        f"  time to first step: {r['time_to_first_step']} s",
        f"  decode:             {r['steps']} steps, {r['steps_per_second']} steps/s ({r.get('step_ms')} ms/step)",
        f"  generate:           {r['generate_seconds']:.2f} s for {r['audio_seconds']:g} s of audio per clip",
        f"  real-time factor:   {r['rtf']:.2f} s of compute per s of audio (batch), {r['rtf_per_clip']:.2f} per clip",
        f"  peak memory:        RSS {gb(r['peak_rss'])}, CUDA {gb(r['peak_cuda'])}",
    ])
