"""ACE-Step songs through a real daemon: the tiny AceStepPipeline through the real loader and worker."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from dgx_music.common.client import Client
from dgx_music.common.protocol import RemoteError
from tests.cli.test_cli_e2e import cli, cli_json
from tests.conftest import wait_event

LYRICS = "[verse]\nneon rivers in the rain\n[chorus]\nsing it back to me again"


async def test_a_song_with_lyrics_lands_in_the_library_and_is_found_by_its_lyrics(
        daemon_factory: Callable[..., Any], tiny_acestep: Path) -> None:
    d = await daemon_factory(engine__model=str(tiny_acestep))
    async with await Client.connect(d.server.path) as c:
        await c.subscribe("job")
        seen: list[Any] = []
        job = await c.call("job.submit", {"prompt": "synth pop, female vocal", "lyrics": LYRICS,
                                          "language": "en", "duration": 10, "bpm": 96, "key": "A minor",
                                          "time_signature": 4, "steps": 4, "count": 2, "seed": 7})
        assert job["params"]["family"] == "ace-step" and job["params"]["lyrics"] == LYRICS
        await wait_event(c, "job.finished", job["id"], timeout=300, seen=seen)
        steps = [ev.data["step"] for ev in seen if ev.name == "job.progress" and ev.data["id"] == job["id"]]
        assert steps and steps == sorted(steps) and steps[-1] == 4  # per denoising step, in order
        done = await c.call("job.get", {"id": job["id"]})
        assert done["state"] == "done" and len(done["track_ids"]) == 2

        tracks = [await c.call("track.get", {"id": tid}) for tid in done["track_ids"]]
        for t in tracks:
            assert t["family"] == "ace-step" and t["lyrics"] == LYRICS and t["language"] == "en"
            assert (t["req_bpm"], t["req_key"], t["req_time_signature"]) == (96, "A minor", 4)
            info = sf.info(str(d.data_dir / t["path"]))  # an independent reader of the library file
            assert (info.samplerate, info.channels) == (48000, 2)
            assert abs(info.duration - 10.0) < 0.1
            assert t["lufs"] is not None  # loudness normalisation and analysis ran on 48 kHz stereo
        a0, _ = sf.read(str(d.data_dir / tracks[0]["path"]))
        a1, _ = sf.read(str(d.data_dir / tracks[1]["path"]))
        assert not np.allclose(a0, a1)  # two variations, not one clip twice

        found = await c.call("track.list", {"search": "neon rivers"})
        assert {t["id"] for t in found["tracks"]} == set(done["track_ids"])

        # The same seed and parameters (a remix of the job keeps them all) make the same songs again.
        again = await c.call("job.submit", {"prompt": "synth pop, female vocal", "lyrics": LYRICS,
                                            "language": "en", "duration": 10, "bpm": 96, "key": "A minor",
                                            "time_signature": 4, "steps": 4, "count": 2, "seed": 7})
        await wait_event(c, "job.finished", again["id"], timeout=300)
        rerun = await c.call("job.get", {"id": again["id"]})
        for old, new in zip(tracks, rerun["track_ids"]):
            b, _ = sf.read(str(d.data_dir / (await c.call("track.get", {"id": new}))["path"]))
            a, _ = sf.read(str(d.data_dir / old["path"]))
            assert np.array_equal(a, b)

        # MusicGen's parameters are refused for this family before anything is queued.
        before = (await c.call("status"))["queue"]
        try:
            await c.call("job.submit", {"prompt": "x", "duration": 10, "top_k": 50})
            raise AssertionError("top_k accepted for an ace-step model")
        except RemoteError as exc:
            assert exc.code == "invalid_params" and exc.data.get("field") == "top_k"
            assert "MusicGen parameter" in exc.message
        assert (await c.call("status"))["queue"] == before


async def test_cancel_a_song_mid_run_keeps_nothing(daemon_factory: Callable[..., Any], tiny_acestep: Path,
                                                   monkeypatch: Any) -> None:
    monkeypatch.setenv("DGX_MUSIC_TEST_STEP_DELAY", "0.3")  # the worker sleeps per denoising step
    d = await daemon_factory(engine__model=str(tiny_acestep))
    async with await Client.connect(d.server.path) as c:
        await c.subscribe("job")
        job = await c.call("job.submit", {"prompt": "slow ballad", "duration": 10, "steps": 8})
        await wait_event(c, "job.progress", job["id"], timeout=300)
        await c.call("job.cancel", {"id": job["id"]})
        await wait_event(c, "job.cancelled", job["id"], timeout=60)
        assert (await c.call("job.get", {"id": job["id"]}))["track_ids"] == []
        assert (await c.call("track.list", {}))["tracks"] == []


async def test_cli_generates_a_song_and_show_prints_its_lyrics(tmp_path: Path, tiny_acestep: Path,
                                                               daemon_factory: Callable[..., Any]) -> None:
    d = await daemon_factory(engine__model=str(tiny_acestep))
    sock = d.server.path
    lyrics = tmp_path / "song.txt"
    lyrics.write_text(LYRICS)
    done = await cli_json(sock, "generate", "dream pop", "--model", str(tiny_acestep), "--lyrics", str(lyrics),
                          "--language", "en", "--bpm", "96", "--key", "A minor", "--time-signature", "4",
                          "--steps", "2", "--duration", "10", "--wait")
    tid = done["tracks"][0]["id"]
    assert done["tracks"][0]["lyrics"] == LYRICS
    rc, out, err = await cli(sock, "show", tid)
    assert rc == 0 and "neon rivers in the rain" in out and "[chorus]" in out, err
    found = await cli_json(sock, "library", "--search", "rivers")
    rows = found["tracks"] if isinstance(found, dict) else found
    assert [t["id"] for t in rows] == [tid]
