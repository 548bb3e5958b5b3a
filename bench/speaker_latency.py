"""The browser tab as the speaker: how soon the tab plays after being asked (issue 19 §1).

One in-process daemon (the tiny test model unless --model), its HTTP API on loopback, one headless Chromium
tab on the page (speaker.js). Measured, each as the median of --runs:

  * play: a `speaker.play` request sent -> the tab's audio element fires `playing` (goal 200 ms);
  * key: the TUI's space key pressed (Textual Pilot, over-SSH mode) -> `playing` in the tab (goal 200 ms);
  * stream: the first chunk of a running job exists in the daemon -> the tab starts that audio (its Web
    Audio start time) (goal: within 1 s).

Times are wall-clock on one machine: the page stamps events with performance.timeOrigin + now().

    .venv/bin/python bench/speaker_latency.py
    .venv/bin/python bench/speaker_latency.py --runs 10 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CHROMIUM = "/usr/bin/chromium"
STAMP = """() => {
  window.__playingAt = null;
  document.addEventListener('playing', () => { window.__playingAt = performance.timeOrigin + performance.now(); },
                            true);
}"""


async def poll(page: Any, expr: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await page.evaluate(expr)
        if value:
            return value
        await asyncio.sleep(0.005)
    raise TimeoutError(expr)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    from dgx_music.common.client import Client
    from dgx_music.common.config import load_settings
    from dgx_music.common.speaker import page_url
    from dgx_music.daemon import http
    from dgx_music.daemon.app import Daemon

    root = Path(tempfile.mkdtemp(prefix="dgxb-", dir="/tmp"))
    model = args.model
    if model is None:
        from dgx_music.daemon.engine.testmodel import build_test_model

        model = str(build_test_model(root / "tiny", backend="transformers"))
    os.environ["DGX_MUSIC_TEST_STEP_DELAY"] = str(args.step_delay)  # a stream about as fast as it plays
    (root / "config.toml").touch()
    settings = load_settings(root / "config.toml", {"daemon.socket": str(root / "d.sock"),
                                                    "daemon.data_dir": str(root / "data"), "engine.model": model,
                                                    "engine.keep_alive": -1, "http.listen": "127.0.0.1:0"},
                             env={})
    d = Daemon(settings)
    await d.start()
    plan = http.plan(settings)
    api = await http.start(d, plan)
    d.extras.append(api)
    first_chunk: dict[int, float] = {}
    relay = d.scheduler.streams
    on_audio = relay.on_audio

    def stamped(chunk: dict[str, Any]) -> None:
        first_chunk.setdefault(int(chunk["job_id"]), time.time())
        on_audio(chunk)

    relay.on_audio = stamped  # type: ignore[method-assign]
    out: dict[str, Any] = {}
    try:
        async with await Client.connect(d.server.path) as c, async_playwright() as p:
            await c.subscribe("job")
            job = await c.call("job.submit", {"prompt": "bench", "duration": 3.0, "seed": 1})
            while (await c.call("job.get", {"id": job["id"]}))["state"] != "done":
                await asyncio.sleep(0.1)
            track = f"{job['id']}-0"
            browser = await p.chromium.launch(executable_path=CHROMIUM,
                                              args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
            page = await browser.new_page()
            await page.goto(page_url(api.port, getattr(plan, "token", None), host="127.0.0.1"))
            if not await page.evaluate("() => !!window.dgxSpeaker"):
                await page.add_script_tag(url="/static/speaker.js")
            await poll(page, "() => window.dgxSpeaker.connected()")
            await page.evaluate(STAMP)

            plays = []
            for _ in range(args.runs):
                await c.call("speaker.stop")
                await poll(page, "() => { const a = window.dgxSpeaker.audio(); return !a || a.paused }")
                await page.evaluate("() => { window.__playingAt = null }")
                t0 = time.time()
                await c.call("speaker.play", {"track_id": track})
                at = await poll(page, "() => window.__playingAt")
                plays.append((at / 1000.0 - t0) * 1000.0)
            out["play_ms"] = round(statistics.median(plays), 1)
            out["play_ms_all"] = [round(x, 1) for x in plays]
            await c.call("speaker.stop")
            out["key_ms"], out["key_ms_all"] = await tui_key(d, page, args.runs, track)
            streams = []
            for i in range(args.runs):
                job = await c.call("job.submit", {"prompt": "bench stream", "duration": 4.0, "seed": 10 + i})
                await c.call("speaker.stream", {"job_id": job["id"]})
                first = await poll(page, "() => { const c = window.dgxSpeaker.counters(); return c.firstChunkAt &&"
                                         " performance.timeOrigin + c.firstChunkAt }")
                streams.append((first / 1000.0 + 0.05 - first_chunk[job["id"]]) * 1000.0)  # + speaker.js's LEAD
                while (await c.call("job.get", {"id": job["id"]}))["state"] not in ("done", "failed", "cancelled"):
                    await asyncio.sleep(0.1)
            out["stream_ms"] = round(statistics.median(streams), 1)
            out["stream_ms_all"] = [round(x, 1) for x in streams]
            await browser.close()
    finally:
        await d.close()
        shutil.rmtree(root, ignore_errors=True)
    out.update(model=args.model or "tiny test model", runs=args.runs,
               machine=f"{platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, "
                       f"python {platform.python_version()}")
    return out


async def tui_key(d: Any, page: Any, runs: int, track: str) -> tuple[float, list[float]]:
    """Space in the TUI's library, over SSH with no forwarded sound: to `playing` in the tab."""
    from dgx_music.tui.app import DgxMusicApp
    from dgx_music.tui.player import Player

    os.environ["SSH_CONNECTION"] = "10.0.0.2 50000 10.0.0.1 22"
    os.environ.pop("PULSE_SERVER", None)
    os.environ.pop("DGX_MUSIC_PLAYER", None)
    times: list[float] = []
    app = DgxMusicApp(d.server.path, cache_dir=Path(tempfile.mkdtemp()), player=Player(use_sounddevice=False))
    async with app.run_test(size=(120, 40)) as pilot:
        while not (app.connected and app.tab.tabs):
            await pilot.pause(0.05)
        await pilot.press("f4")
        while app.library_view.selected() is None:
            await pilot.pause(0.05)
        for _ in range(runs):
            await page.evaluate("() => { window.__playingAt = null }")
            t0 = time.time()
            await pilot.press("space")
            at = await poll(page, "() => window.__playingAt")
            times.append((at / 1000.0 - t0) * 1000.0)
            await pilot.press("space")  # stop
            await poll(page, "() => window.dgxSpeaker.audio().paused")
    return round(statistics.median(times), 1), [round(x, 1) for x in times]


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="a model the daemon loads (default: the tiny test model, built here)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--step-delay", type=float, default=0.02, help="the tiny model's delay per decode step (s)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    result = asyncio.run(main(a))
    print(json.dumps(result, indent=2) if a.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
