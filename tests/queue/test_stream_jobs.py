"""job.listen through a real daemon and the tiny MusicGen: the stream a script would write to a file."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from dgx_music.common.client import Client
from dgx_music.common.protocol import RemoteError
from dgx_music.daemon.libfiles import library_file
from tests.conftest import wait_event


async def collect(c: Client, job_id: int, timeout: float = 240.0) -> tuple[np.ndarray, dict[str, Any], list[int]]:
    """Read job.audio events until job.audio_end; place each chunk at its offset, as documented."""
    out = np.zeros((0, 1), np.float32)
    offsets: list[int] = []

    async def run() -> dict[str, Any]:
        nonlocal out
        async for ev in c.events():
            if ev.name == "job.audio" and ev.data["job_id"] == job_id:
                d = ev.data
                dtype = "<f4" if d["format"] == "f32" else "<i2"
                a = np.frombuffer(d["pcm"], dtype=dtype).reshape(-1, d["channels"]).astype(np.float32)
                if d["format"] == "s16":
                    a /= 32767.0
                assert a.shape[0] == d["frames"]
                end = d["offset"] + d["frames"]
                if out.shape[0] < end:
                    out = np.concatenate([out, np.zeros((end - out.shape[0], d["channels"]), np.float32)])
                out[d["offset"]:end] = a
                offsets.append(d["offset"])
            elif ev.name == "job.audio_end" and ev.data["job_id"] == job_id:
                return dict(ev.data)
        raise AssertionError("connection ended")

    end = await asyncio.wait_for(run(), timeout)
    return out, end, offsets


def snr_after_gain(ref: np.ndarray, got: np.ndarray) -> float:
    g = float((ref * got).sum() / (got * got).sum())
    return 10 * np.log10(float((ref ** 2).sum()) / max(float(((ref - g * got) ** 2).sum()), 1e-30))


async def test_listen_late_joiner_and_the_track(studio: Any) -> None:
    async with await Client.connect(studio.server.path) as c:
        await c.subscribe("job")
        job = await c.call("job.submit", {"prompt": "a stream", "duration": 3.0, "seed": 5})
        info = await c.call("job.listen", {"id": job["id"]})
        assert info["job_id"] == job["id"] and info["format"] == "f32" and info["state"] in ("queued", "running")
        audio, end, offsets = await collect(c, job["id"])
        assert end["reason"] == "complete" and end["samples"] == audio.shape[0] == 3 * 32000
        assert end["sample_rate"] == 32000 and end["channels"] == 1 and len(offsets) >= 2
        done = await wait_event(c, "job.finished", job["id"], timeout=120)
        track = await c.call("track.get", {"id": done.data["track_ids"][0]})
        ref, sr = sf.read(str(library_file(studio.data_dir, track["path"])), dtype="float32", always_2d=True)
        assert sr == 32000 and ref.shape[0] == audio.shape[0]
        # The track is loudness-normalised: the same audio after matching gain.
        assert snr_after_gain(ref, audio) >= 30.0
    # A late joiner (the job is over) gets the whole stream, in 16-bit this time.
    async with await Client.connect(studio.server.path) as late:
        info = await late.call("job.listen", {"id": job["id"], "format": "s16"})
        assert info["ended"] == "complete" and info["ready_samples"] == audio.shape[0]
        again, end2, _ = await collect(late, job["id"])
        assert end2["reason"] == "complete" and again.shape == audio.shape
        assert np.abs(again - np.clip(audio, -1, 1)).max() <= 1.0 / 32767 + 1e-6


async def test_listen_cancel_and_bad_requests(daemon_factory: Any, tiny_model: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("DGX_MUSIC_TEST_STEP_DELAY", "0.03")
    d = await daemon_factory(engine__model=str(tiny_model), engine__keep_alive=-1)
    async with await Client.connect(d.server.path) as c:
        job = await c.call("job.submit", {"prompt": "to cancel", "duration": 20.0})
        for params, field in (({"id": job["id"], "format": "mp3"}, "format"),
                              ({"id": job["id"], "variation": 1}, "variation")):
            with pytest.raises(RemoteError) as ei:
                await c.call("job.listen", params)
            assert ei.value.code == "invalid_params" and ei.value.data.get("field") == field
        await c.call("job.listen", {"id": job["id"]})
        async def first_chunk() -> None:
            async for ev in c.events():
                if ev.name == "job.audio":
                    return
        await asyncio.wait_for(first_chunk(), 120)
        # A listener joining mid-run gets the stream from its start, then the live chunks.
        async with await Client.connect(d.server.path) as late:
            info = await late.call("job.listen", {"id": job["id"]})
            assert info["state"] == "running" and info["ready_samples"] > 0
            late_task = asyncio.create_task(collect(late, job["id"]))
            await asyncio.sleep(0.5)
            await c.call("job.cancel", {"id": job["id"]})
            heard, late_end, _ = await late_task
        assert late_end["reason"] == "cancelled" and 0 < late_end["samples"] < 20 * 32000
        assert heard.shape[0] == late_end["samples"] and np.abs(heard[:info["ready_samples"]]).max() > 0
