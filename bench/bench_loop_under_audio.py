"""Does post-processing a long clip starve the daemon's event loop?

The daemon runs loudness and analysis in an executor thread; numpy releases the GIL for
most of it, but not all. This runs `pipeline.process` on a synthetic clip in a thread while
the asyncio loop measures how late a 1 ms timer fires: that lateness is what every socket
request waits on top of its own work.

    .venv/bin/python bench/bench_loop_under_audio.py 30 300
"""

from __future__ import annotations

import argparse
import asyncio
import time

import numpy as np

from dgx_music.common.audio import pipeline

SR = 32000


def clip(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    pulse = (1 + np.sign(np.sin(2 * np.pi * 2 * t))) / 2  # 120 BPM on/off
    noise = np.random.default_rng(0).standard_normal(t.size)
    return (0.3 * np.sin(2 * np.pi * 220 * t) * pulse + 0.05 * noise).astype(np.float32)[None, :]


async def measure(seconds: float) -> dict[str, float]:
    audio = clip(seconds)
    loop = asyncio.get_running_loop()
    lates: list[float] = []
    running = True

    async def ticker() -> None:
        while running:
            t0 = time.perf_counter()
            await asyncio.sleep(0.001)
            lates.append(time.perf_counter() - t0 - 0.001)

    task = asyncio.create_task(ticker())
    t0 = time.perf_counter()
    await loop.run_in_executor(None, lambda: pipeline.process(audio, SR))
    wall = time.perf_counter() - t0
    running = False
    await task
    lates.sort()
    return {"clip_s": seconds, "process_wall_s": wall, "late_p50_ms": lates[len(lates) // 2] * 1e3,
            "late_p99_ms": lates[int(len(lates) * 0.99)] * 1e3, "late_max_ms": lates[-1] * 1e3,
            "ticks": len(lates)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("seconds", type=float, nargs="*", default=[30.0, 300.0], help="clip lengths (default 30 300)")
    args = ap.parse_args()
    pipeline.warm_up()
    print("| clip | post-processing (wall) | loop lateness p50 | p99 | max |")
    print("|---|---|---|---|---|")
    for s in args.seconds:
        r = asyncio.run(measure(s))
        print(f"| {r['clip_s']:g} s | {r['process_wall_s']:.2f} s | {r['late_p50_ms']:.2f} ms | "
              f"{r['late_p99_ms']:.2f} ms | {r['late_max_ms']:.1f} ms |")


if __name__ == "__main__":
    main()
