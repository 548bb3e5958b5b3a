"""Training a style through a real daemon: the tiny AceStepPipeline, the real worker, queue and store."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from dgx_music.common.client import Client
from dgx_music.common.protocol import RemoteError
from tests.conftest import wait_event
from tests.operations.test_operation_jobs import run


@pytest.fixture
async def daemon(daemon_factory: Callable[..., Any], tiny_acestep: Path) -> Any:
    return await daemon_factory(engine__model=str(tiny_acestep))


async def two_tracks(c: Client) -> list[str]:
    await c.subscribe("job")
    job = await run(c, "job.submit", {"prompt": "dream pop, warm synths", "duration": 10.0, "count": 2, "seed": 3,
                                      "steps": 2, "lyrics": "[verse]\nneon rivers"})
    return list(job["track_ids"])


async def test_a_style_trained_on_tracks_is_listed_used_by_name_and_deleted(daemon: Any) -> None:
    async with await Client.connect(daemon.server.path) as c:
        ids = await two_tracks(c)
        seen: list[Any] = []
        job = await c.call("style.train", {"name": "mine", "tracks": ids, "steps": 12, "checkpoint_every": 5,
                                           "lr": 1e-2, "seed": 7})
        assert job["state"] == "queued"
        await wait_event(c, "job.finished", job["id"], timeout=120, seen=seen)
        progress = [e.data for e in seen if e.name == "job.progress" and e.data.get("id") == job["id"]]
        training = [p for p in progress if p.get("phase") == "training" and p["step"] > 0]
        assert training and training[-1]["step"] == 12 and training[-1]["total"] == 12
        assert all(p["loss"] is not None for p in training)
        assert any(p.get("rate") for p in training) and any(p.get("eta") is not None for p in training)

        styles = (await c.call("style.list"))["styles"]
        assert [s["name"] for s in styles] == ["mine"]
        s = styles[0]
        assert s["steps"] == 12 and s["tracks"] == ids and s["rank"] == 8 and s["size"] > 0
        assert s["base_model"] and s["final_loss"] is not None and s["created"] > 0
        style_dir = Path(s["dir"])
        assert (style_dir / "pytorch_lora_weights.safetensors").is_file() and (style_dir / "style.json").is_file()
        assert not (daemon.data_dir / "styles" / ".work" / f"job-{job['id']}").exists()  # checkpoints are gone

        # The same fixed-seed generation without and with the style: the style changes the audio.
        req = {"prompt": "dream pop, warm synths", "duration": 10.0, "seed": 11, "steps": 2}
        plain = await run(c, "job.submit", req)
        styled = await run(c, "job.submit", {**req, "lora": "mine:1.0"})
        tracks = [await c.call("track.get", {"id": j["track_ids"][0]}) for j in (plain, styled)]
        a = [sf.read(t["file"], dtype="float32")[0] for t in tracks]
        assert a[0].shape == a[1].shape and float(np.abs(a[0] - a[1]).max()) > 1e-3
        track = tracks[1]
        assert track["params"]["lora"] == str(style_dir) and track["params"].get("style") == "mine"
        again = await run(c, "job.submit", {**req, "lora": track["params"]["lora"]})  # what a remix sends
        assert (await c.call("track.get", {"id": again["track_ids"][0]}))["params"]["style"] == "mine"
        # Operations take a style too: the new track names it.
        op = await run(c, "op.repaint", {"source": ids[0], "start": 2.0, "end": 4.0, "steps": 1, "lora": "mine:0.5"})
        p = (await c.call("track.get", {"id": op["track_ids"][0]}))["params"]
        assert (p["style"], p["lora"], p["lora_scale"]) == ("mine", str(style_dir), 0.5)

        with pytest.raises(RemoteError) as err:  # the name is taken
            await c.call("style.train", {"name": "mine", "tracks": ids})
        assert err.value.data.get("field") == "name"
        assert (await c.call("style.delete", {"name": "mine"}))["deleted"] == "mine"
        assert (await c.call("style.list"))["styles"] == [] and not style_dir.exists()
        with pytest.raises(RemoteError) as err:
            await c.call("job.submit", {**req, "lora": "mine"})
        assert err.value.data.get("field") == "lora"


def training_set(data_dir: Path, name: str = "set", seconds: float = 1.0) -> Path:
    """Two short stereo files in <data>/training/NAME, captioned by sidecar .txt files."""
    d = data_dir / "training" / name
    d.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * 44100)) / 44100
    for i, f in enumerate((220.0, 330.0)):
        sf.write(d / f"take{i}.flac", np.stack([0.4 * np.sin(2 * np.pi * f * t)] * 2, axis=1), 44100)
        (d / f"take{i}.txt").write_text(f"slow sine at {f:g} Hz")
    return d


async def test_cancel_mid_training_leaves_no_style_behind(daemon: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DGX_MUSIC_TEST_STEP_DELAY", "0.2")  # the worker inherits it: slow steps to cancel into
    training_set(daemon.data_dir)
    async with await Client.connect(daemon.server.path) as c:
        await c.subscribe("job")
        job = await c.call("style.train", {"name": "halfway", "directory": "set", "steps": 200,
                                           "checkpoint_every": 2})
        work = daemon.data_dir / "styles" / ".work" / f"job-{job['id']}"

        async def trained_a_few() -> None:
            async for ev in c.events():
                if ev.name == "job.progress" and ev.data.get("id") == job["id"] and ev.data["step"] >= 3:
                    return
        await asyncio.wait_for(trained_a_few(), 60)
        assert (work / "checkpoint" / "state.json").is_file()  # a checkpoint was written meanwhile
        await c.call("job.cancel", {"id": job["id"]})
        await wait_event(c, "job.cancelled", job["id"], timeout=60)
        assert (await c.call("job.get", {"id": job["id"]}))["state"] == "cancelled"
        assert (await c.call("style.list"))["styles"] == []
        assert not work.exists() and not (daemon.data_dir / "styles" / "halfway").exists()


def test_kill_9_mid_training_resumes_at_the_last_checkpoint(daemon_process: Callable[..., Any],
                                                            tiny_acestep: Path) -> None:
    p = daemon_process("--model", str(tiny_acestep), env={"DGX_MUSIC_TEST_STEP_DELAY": "0.1"}).start()
    training_set(p.data_dir)

    async def submit() -> int:
        async with await Client.connect(p.socket) as c:
            job = await c.call("style.train", {"name": "survivor", "directory": "set", "steps": 20,
                                               "checkpoint_every": 4})
            return int(job["id"])

    job_id = asyncio.run(submit())
    state = p.data_dir / "styles" / ".work" / f"job-{job_id}" / "checkpoint" / "state.json"
    deadline = time.monotonic() + 120
    while not (state.is_file() and json.loads(state.read_text())["step"] >= 4):
        assert time.monotonic() < deadline, p.logs()
        time.sleep(0.05)
    p.stop(signal.SIGKILL)
    at = json.loads(state.read_text())["step"]  # the checkpoint the restart must resume from
    assert 4 <= at < 20
    p.start()

    async def finished() -> dict[str, Any]:
        async with await Client.connect(p.socket) as c:
            while True:
                job = await c.call("job.get", {"id": job_id})
                if job["state"] not in ("queued", "running", "processing"):
                    return {"job": job, "styles": (await c.call("style.list"))["styles"]}
                await asyncio.sleep(0.2)

    end = asyncio.run(asyncio.wait_for(finished(), 180))
    assert end["job"]["state"] == "done", end
    assert [(s["name"], s["steps"]) for s in end["styles"]] == [("survivor", 20)]
    assert f"job {job_id}: training resumes at step {at}/20" in p.logs()


async def test_kill_9_of_the_worker_mid_training_resumes_at_the_last_checkpoint(
        daemon: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("DGX_MUSIC_TEST_STEP_DELAY", "0.1")
    caplog.set_level(logging.INFO, logger="dgx_music.queue")
    training_set(daemon.data_dir)
    async with await Client.connect(daemon.server.path) as c:
        await c.subscribe("job")
        job = await c.call("style.train", {"name": "tough", "directory": "set", "steps": 16, "checkpoint_every": 4})
        state = daemon.data_dir / "styles" / ".work" / f"job-{job['id']}" / "checkpoint" / "state.json"
        deadline = time.monotonic() + 120
        while not (state.is_file() and json.loads(state.read_text())["step"] >= 4):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        pid = daemon.engine.worker.pid
        os.kill(pid, signal.SIGKILL)
        at = json.loads(state.read_text())["step"]
        seen: list[Any] = []
        await wait_event(c, "job.finished", job["id"], timeout=180, seen=seen)
        assert any(e.name == "job.failed" and e.data.get("retrying") for e in seen)  # the crash, then the retry
        [style] = (await c.call("style.list"))["styles"]
        assert style["steps"] == 16 and daemon.engine.worker.pid != pid
        assert f"job {job['id']}: training resumes at step {at}/16" in caplog.text


async def test_a_musicgen_daemon_refuses_to_train_naming_the_model(daemon_factory: Callable[..., Any],
                                                                   tiny_model: Path) -> None:
    d = await daemon_factory(engine__model=str(tiny_model))
    async with await Client.connect(d.server.path) as c:
        with pytest.raises(RemoteError) as err:
            await c.call("style.train", {"name": "x", "tracks": ["1-0"]})
        assert err.value.data.get("field") == "model" and "ACE-Step" in err.value.message and "MusicGen" in err.value.message
        assert (await c.call("job.list", {"all": True}))["jobs"] == []
