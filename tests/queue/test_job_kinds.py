"""A job kind is all a new kind of job needs: registered in a test, it runs through the real
scheduler, worker (the tiny MusicGen) and library without any change to the scheduler."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import soundfile as sf

from dgx_music.common.client import Client
from dgx_music.common.schemas import MusicGenParams
from dgx_music.daemon import jobs, render
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
