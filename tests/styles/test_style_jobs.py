"""Training a style through a real daemon: the tiny AceStepPipeline, the real worker, queue and store."""

from __future__ import annotations

import asyncio
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
        done = await wait_event(c, "job.finished", job["id"], timeout=120, seen=seen)
        assert done.data["style"]["name"] == "mine"
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

        with pytest.raises(RemoteError) as err:  # the name is taken
            await c.call("style.train", {"name": "mine", "tracks": ids})
        assert err.value.data.get("field") == "name"
        assert (await c.call("style.delete", {"name": "mine"}))["deleted"] == "mine"
        assert (await c.call("style.list"))["styles"] == [] and not style_dir.exists()
        with pytest.raises(RemoteError) as err:
            await c.call("job.submit", {**req, "lora": "mine"})
        assert err.value.data.get("field") == "lora"


async def test_cancel_mid_training_leaves_no_style_behind(daemon: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DGX_MUSIC_TEST_STEP_DELAY", "0.2")  # the worker inherits it: slow steps to cancel into
    async with await Client.connect(daemon.server.path) as c:
        ids = await two_tracks(c)
        await daemon.engine.unload()  # a fresh worker, with the delay
        job = await c.call("style.train", {"name": "halfway", "tracks": ids, "steps": 200, "checkpoint_every": 2})
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


async def test_a_musicgen_daemon_refuses_to_train_naming_the_model(daemon_factory: Callable[..., Any],
                                                                   tiny_model: Path) -> None:
    d = await daemon_factory(engine__model=str(tiny_model))
    async with await Client.connect(d.server.path) as c:
        with pytest.raises(RemoteError) as err:
            await c.call("style.train", {"name": "x", "tracks": ["1-0"]})
        assert err.value.data.get("field") == "model" and "ACE-Step" in err.value.message and "MusicGen" in err.value.message
        assert (await c.call("job.list", {"all": True}))["jobs"] == []
