"""Streaming preview latency: time from a MusicGen job starting to its first audible chunk.

Runs the real supervisor and worker process (engine/streaming.py through the transformers
backend). The model is loaded and warmed up first, so a run measures generation only: from
`EngineSupervisor.generate()` being called to the first `on_audio` chunk, and to the end. Each
run is repeated without streaming too, to show what the chunk decoding costs.

    .venv/bin/python bench/stream_latency.py                         # the tiny test model, CPU
    .venv/bin/python bench/stream_latency.py --model random:small --duration 5 --runs 1
    .venv/bin/python bench/stream_latency.py --model small --device cuda --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


async def measure(model: str, device: str, duration: float, runs: int) -> dict[str, Any]:
    from dgx_music.common.params import GenerationParams
    from dgx_music.daemon.engine.supervisor import EngineSettings, EngineSupervisor

    sup = EngineSupervisor(EngineSettings(model=model, device=device, keep_alive=-1))
    try:
        await sup.load()
        await sup.generate(0, ["warm up"], GenerationParams(prompt="x", duration=1.0, seed=1), None,
                           on_audio=lambda c: None)
        firsts, totals, plain, first_audio = [], [], [], []
        for i in range(runs):
            params = GenerationParams(prompt="x", duration=duration, seed=100 + i)
            got: list[float] = []
            sizes: list[int] = []

            def on_audio(chunk: dict[str, Any], t0: float = 0.0) -> None:
                if not got:
                    got.append(time.perf_counter())
                    sizes.append(chunk["audio"].shape[-1])

            t0 = time.perf_counter()
            res = await sup.generate(1 + i, ["ambient pads"], params, None, on_audio=on_audio)
            totals.append(time.perf_counter() - t0)
            firsts.append(got[0] - t0)
            first_audio.append(sizes[0] / res.sample_rate)
            t0 = time.perf_counter()
            await sup.generate(1000 + i, ["ambient pads"], params, None)
            plain.append(time.perf_counter() - t0)
        return {"model": model, "device": device, "duration": duration, "runs": runs,
                "first_chunk_s": round(statistics.median(firsts), 3),
                "first_chunk_audio_s": round(statistics.median(first_audio), 3),
                "total_streaming_s": round(statistics.median(totals), 3),
                "total_plain_s": round(statistics.median(plain), 3),
                "machine": f"{platform.machine()}, {platform.processor() or '?'}, python {platform.python_version()}"}
    finally:
        await sup.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model name or directory (default: a tiny random test model, built here)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    model = args.model
    if model is None:
        from dgx_music.daemon.engine.testmodel import build_test_model

        model = str(build_test_model(Path(tempfile.mkdtemp(prefix="dgx-stream-bench-")) / "tiny"))
    print(json.dumps(asyncio.run(measure(model, args.device, args.duration, args.runs)), indent=2))


if __name__ == "__main__":
    main()
