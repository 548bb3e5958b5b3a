"""A job kind is all a new kind of job needs: registered in a test, it runs through the real
scheduler, worker (the tiny MusicGen) and library without any change to the scheduler."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import soundfile as sf

from dgx_music.common.client import Client
from dgx_music.common.schemas import MusicGenParams
from dgx_music.daemon import jobs, libfiles, render
from dgx_music.daemon.engine.errors import EngineError
from dgx_music.daemon.engine.supervisor import GenerateResult
from dgx_music.daemon.jobs import JobContext, JobKind, JobRow, Work
from tests.conftest import wait_event


class ReversedKind(JobKind):
    """A made-up kind: a MusicGen clip, filed backwards (so the render is visibly its own)."""

    name = "test-reversed"
    renders: list[np.ndarray] = []

    def owns(self, job: Mapping[str, Any]) -> bool:
        return (job.get("params") or {}).get("test_kind") == self.name

    async def check(self, ctx: JobContext, raw: dict[str, Any]) -> JobRow:
        model = ctx.check_model(None)
        return JobRow(prompt=str(raw["prompt"]), params={"test_kind": self.name, "duration": 1.0}, count=1,
                      seed=7, model=model, summary="a reversed clip")

    async def prepare(self, ctx: JobContext, job: dict[str, Any]) -> Work:
        params = MusicGenParams(prompt=job["prompt"], duration=1.0, seed=job["seed"])

        def backwards(data_dir: Path, job: dict[str, Any], audio: Any, sr: int,
                      opts: render.RenderOptions) -> list[dict[str, Any]]:
            flipped = np.ascontiguousarray(np.asarray(audio)[..., ::-1])
            self.renders.append(flipped)
            return render.render_tracks(data_dir, job, flipped, sr, opts)

        return Work(prompts=[job["prompt"]], params=params, render=backwards)


async def test_a_registered_kind_runs_through_the_scheduler(daemon_factory: Callable[..., Any],
                                                            tiny_model: Path) -> None:
    kind = jobs.register(ReversedKind())
    try:
        d = await daemon_factory(engine__model=str(tiny_model))
        async with await Client.connect(d.server.path) as c:
            await c.subscribe("job")
            job = await d.scheduler.submit({"prompt": "backwards"}, kind=kind.name)
            assert job["state"] == "queued" and job["params"]["test_kind"] == kind.name
            done = await wait_event(c, "job.finished", job["id"], timeout=120)
            track = await c.call("track.get", {"id": done.data["track_ids"][0]})
        assert track["prompt"] == "backwards" and track["seed"] == 7
        audio, sr = sf.read(str(d.data_dir / track["path"]), always_2d=True)
        assert len(kind.renders) == 1 and sr == 32000 and audio.shape[0] == kind.renders[0].shape[-1]
    finally:
        jobs.unregister(kind.name)


class ToneKind(JobKind):
    """A kind that computes its audio itself (Work.compute), as fitting or a loop cut does: no model."""

    name = "test-tone"
    steps = 20

    def __init__(self) -> None:
        self.gate = threading.Event()  # the compute waits here after its first step until the test opens it
        self.finished: list[list[dict[str, Any]]] = []

    def owns(self, job: Mapping[str, Any]) -> bool:
        return (job.get("params") or {}).get("test_kind") == self.name

    async def check(self, ctx: JobContext, raw: dict[str, Any]) -> JobRow:
        return JobRow(prompt="a tone", params={"test_kind": self.name, "duration": 1.0,
                                               "keep": bool(raw.get("keep", True))},
                      count=1, seed=1, model=ctx.check_model(None), summary="a tone")

    async def prepare(self, ctx: JobContext, job: dict[str, Any]) -> Work:
        sr = 44100

        def tone(progress: Callable[[int, int], None], cancel: threading.Event) -> GenerateResult:
            for step in range(1, self.steps + 1):
                if cancel.is_set():
                    raise EngineError("cancelled", f"job {job['id']} was cancelled")
                progress(step, self.steps)
                if step == 1:
                    self.gate.wait(30)
            t = np.arange(sr, dtype=np.float32) / sr
            audio = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)[None, None, :]
            return GenerateResult(audio=audio, sample_rate=sr, model="tone", backend="numpy", device="cpu",
                                  seconds=0.0)

        async def compute(progress: Callable[[int, int], None], cancel: threading.Event) -> GenerateResult:
            return await asyncio.get_running_loop().run_in_executor(None, tone, progress, cancel)

        async def finish(job_id: int, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
            self.finished.append(rows)  # a kind whose result is not a track: its own commit
            libfiles.discard(ctx.data_dir, rows)
            return await ctx.store.finish_job_bare(job_id)

        keep = bool(job["params"].get("keep", True))
        return Work(prompts=[job["prompt"]], params=None, render=render.render_tracks, compute=compute,
                    finish=None if keep else finish)


async def test_a_kind_that_computes_its_audio_needs_no_worker(daemon_factory: Callable[..., Any],
                                                              tiny_model: Path) -> None:
    """Work.compute: progress events as the worker's, a track from the kind's own audio, cancel
    mid-compute ends the job with nothing stored, a kind's own finish replaces the library commit."""
    kind = ToneKind()
    jobs.register(kind)
    try:
        d = await daemon_factory(engine__model=str(tiny_model))
        async with await Client.connect(d.server.path) as c:
            await c.subscribe("job")
            seen: list[Any] = []
            job = await d.scheduler.submit({}, kind=kind.name)
            await wait_event(c, "job.progress", job["id"], timeout=60, seen=seen)
            kind.gate.set()
            done = await wait_event(c, "job.finished", job["id"], timeout=60, seen=seen)
            track = await c.call("track.get", {"id": done.data["track_ids"][0]})
            audio, sr = sf.read(str(d.data_dir / track["path"]), always_2d=True)
            # the tone, at its own rate and length: the render took the compute's audio, not a model's
            assert sr == 44100 and audio.shape[0] == 44100
            spectrum = np.abs(np.fft.rfft(audio[:, 0]))
            assert abs(int(np.argmax(spectrum)) - 440) <= 1
            assert d.engine.worker is None, "a computed job must not start the model worker"

            kind.gate.clear()
            job = await d.scheduler.submit({}, kind=kind.name)
            await wait_event(c, "job.progress", job["id"], timeout=60)
            await c.call("job.cancel", {"id": job["id"]})
            kind.gate.set()
            await wait_event(c, "job.cancelled", job["id"], timeout=60)
            assert (await c.call("job.get", {"id": job["id"]}))["state"] == "cancelled"

            job = await d.scheduler.submit({"keep": False}, kind=kind.name)
            done = await wait_event(c, "job.finished", job["id"], timeout=60)
            assert done.data["track_ids"] == [] and len(kind.finished) == 1
            listed = await c.call("track.list", {})
        assert [t["id"] for t in listed["tracks"]] == [track["id"]]
        assert not (d.data_dir / kind.finished[0][0]["path"]).exists()
    finally:
        jobs.unregister(kind.name)
