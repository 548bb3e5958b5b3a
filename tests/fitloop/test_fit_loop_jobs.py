"""Fit and loops through a real daemon: the job path (queue, compute, render, library, lineage).

Music is synthesised with a known tempo and key (tests/audio/synth.py: drums, chords, bass); every
result is read back from the library file with soundfile and measured with the project's own
analysis (the reading a user sees), the loop points parsed with a few lines of struct."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from dgx_music.common.audio.key import estimate_key
from dgx_music.common.audio.tempo import estimate_tempo
from dgx_music.common.client import Client
from dgx_music.common.fitloop import loop_samples
from dgx_music.common.protocol import RemoteError
from tests.audio import synth
from tests.conftest import wait_event

SR = 48000
needs_rubberband = pytest.mark.skipif(shutil.which("rubberband") is None,
                                      reason="rubberband (rubberband-cli) is not installed: scripts/ensure-test-tools")


def flac(audio: np.ndarray, sr: int = SR) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio.T, sr, format="FLAC", subtype="PCM_24" if sr == SR else "PCM_16")
    return buf.getvalue()


@pytest.fixture(scope="module")
def song() -> np.ndarray:
    """16 s at 100 BPM in A minor, stereo 48 kHz."""
    return synth.song(100, "A", "minor", seconds=16, sr=SR, stereo=True)


async def run(c: Client, method: str, params: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
    job = await c.call(method, params)

    async def end() -> None:
        async for ev in c.events():
            if ev.data.get("id") == job["id"] and (ev.name in ("job.finished", "job.cancelled") or
                                                   (ev.name == "job.failed" and not ev.data.get("retrying"))):
                return

    await asyncio.wait_for(end(), timeout)
    return await c.call("job.get", {"id": job["id"]})


def read(d: Any, track: dict[str, Any]) -> np.ndarray:
    a, sr = sf.read(str(d.data_dir / track["path"]), dtype="float32", always_2d=True)
    assert sr == SR
    return a.T


def smpl_loop(path: Path) -> tuple[int, int, int]:
    """(loop count, start, end inclusive) from the WAV's smpl chunk: an independent RIFF walk."""
    data = path.read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    assert struct.unpack("<I", data[4:8])[0] == len(data) - 8, "RIFF size must cover the appended chunk"
    pos = 12
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if cid == b"smpl":
            body = data[pos + 8:pos + 8 + size]
            count = struct.unpack("<I", body[28:32])[0]
            _cue, kind, start, end = struct.unpack("<4I", body[36:52])
            assert kind == 0  # forward
            return count, start, end
        pos += 8 + size + (size % 2)
    raise AssertionError("no smpl chunk")


def assert_smooth_wrap(a: np.ndarray) -> None:
    """The step from the loop's last sample to its first is no larger than the music's own steps
    there (the largest of the 32 steps each side, per channel), nor than its 99th percentile overall:
    no click. A plain cut of this music jumps by up to 100 times that."""
    wrap = np.abs(a[:, 0] - a[:, -1])
    local = np.maximum(np.abs(np.diff(a[:, :33], axis=1)).max(axis=1), np.abs(np.diff(a[:, -33:], axis=1)).max(axis=1))
    assert np.all(wrap <= local), (wrap, local)
    assert np.all(wrap <= np.percentile(np.abs(np.diff(a, axis=1)), 99, axis=1))


@pytest.fixture
async def daemon(daemon_factory: Callable[..., Any], tiny_model: Path) -> Any:
    return await daemon_factory(engine__model=str(tiny_model))


@needs_rubberband
async def test_fit_reaches_the_target_tempo_and_key_with_lineage(daemon: Any, song: np.ndarray) -> None:
    d = daemon
    async with await Client.connect(d.server.path) as c:
        await c.subscribe("job")
        done = await run(c, "op.fit", {"source_audio": flac(song), "source_name": "groove.flac", "bpm": 124,
                                       "key": "C minor"})
        assert done["state"] == "done", done
        new = await c.call("track.get", {"id": done["track_ids"][0]})
        out = read(d, new)
        assert out.shape[1] == round(song.shape[1] * 100 / 124)  # the length scales with the tempo
        bpm, _ = estimate_tempo(out, SR)
        key, _ = estimate_key(out, SR)
        assert bpm is not None and abs(bpm / 124 - 1) < 0.01, bpm
        assert key == "C minor"
        assert new["title"] == "groove.flac (fit 124 BPM, C minor)"
        lin = await c.call("track.lineage", {"id": new["id"]})
        assert lin["source"]["operation"] == "fit" and lin["source"]["name"] == "groove.flac"
        assert lin["source"]["params"]["bpm"] == 124 and lin["source"]["params"]["key"] == "C minor"
        assert d.engine.worker is None, "fitting must not start the model worker"

        # the fitted track is a library track: cut a loop from it at its own tempo (the library's reading)
        looped = await run(c, "op.loop", {"source": new["id"], "bars": 4, "bpm": 124})
        assert looped["state"] == "done", looped
        lt = await c.call("track.get", {"id": looped["track_ids"][0]})
        lin = await c.call("track.lineage", {"id": lt["id"]})
        assert lin["source"]["id"] == new["id"] and lin["source"]["operation"] == "loop"


@needs_rubberband
async def test_stems_of_one_song_fit_together(daemon: Any, song: np.ndarray) -> None:
    """Two stems (drums, chords) fitted with the song's tempo and key: equally long, still aligned."""
    d = daemon
    drums = synth.drums(100, 16, "rock", SR, 0)
    drums = np.concatenate([drums, drums])[:, :song.shape[1]]
    chords = synth.chords("A", "minor", 16, SR, 0)
    chords = np.concatenate([chords, chords])[:, :song.shape[1]]
    async with await Client.connect(d.server.path) as c:
        await c.subscribe("job")
        outs = []
        for name, stem in (("drums", drums), ("chords", chords)):
            done = await run(c, "op.fit", {"source_audio": flac(stem), "source_name": name, "bpm": 124,
                                           "key": "C minor", "from_bpm": 100, "from_key": "A minor"})
            assert done["state"] == "done", done
            outs.append(read(d, await c.call("track.get", {"id": done["track_ids"][0]})))
    assert outs[0].shape == outs[1].shape
    # aligned: the fitted drums hit on the 124 BPM grid from the first sample (as the song fitted alike does)
    want = np.round(np.array([k * 60 / 124 * SR for k in range(1, 20)])).astype(int)
    env = np.abs(outs[0][0])
    got = [int(np.argmax(env[w - 2400:w + 2400])) + w - 2400 for w in want]
    assert np.median(np.abs(np.array(got) - want)) < 0.01 * SR  # the beat grid at 124 BPM, within 10 ms


async def test_a_loop_cut_from_a_track_is_bar_exact_and_wraps_cleanly(daemon: Any, song: np.ndarray) -> None:
    """Same tempo (no stretch): exact length, smpl loop points, a wrap no rougher than the music,
    and played twice it reads the asked tempo."""
    d = daemon
    async with await Client.connect(d.server.path) as c:
        await c.subscribe("job")
        done = await run(c, "op.loop", {"source_audio": flac(song), "source_name": "groove", "bars": 4,
                                        "bpm": 100})
        assert done["state"] == "done", done
        track = await c.call("track.get", {"id": done["track_ids"][0]})
        a = read(d, track)
        n = loop_samples(4, 4, 100, SR)
        assert a.shape[1] == n == round(4 * 4 * 60 / 100 * SR)
        assert smpl_loop(d.data_dir / track["path"]) == (1, 0, n - 1)
        assert_smooth_wrap(a)
        twice = np.concatenate([a, a], axis=1)
        bpm, _ = estimate_tempo(twice, SR)
        assert bpm is not None and abs(bpm / 100 - 1) < 0.01, bpm

        # more bars than the source has: a clear failure naming the bars
        job = await c.call("op.loop", {"source": track["id"], "bars": 8})
        failed = await wait_event(c, "job.failed", job["id"], timeout=60)
        assert "3 whole bars" in str(failed.data["error"]) and "8 needed" in str(failed.data["error"])


@needs_rubberband
async def test_a_loop_at_another_tempo_is_stretched_to_it(daemon: Any, song: np.ndarray) -> None:
    d = daemon
    async with await Client.connect(d.server.path) as c:
        await c.subscribe("job")
        done = await run(c, "op.loop", {"source_audio": flac(song), "bars": 4, "bpm": 124, "key": "B minor"})
        assert done["state"] == "done", done
        track = await c.call("track.get", {"id": done["track_ids"][0]})
        a = read(d, track)
        n = loop_samples(4, 4, 124, SR)
        assert a.shape[1] == n
        assert_smooth_wrap(a)
        bpm, _ = estimate_tempo(np.concatenate([a, a], axis=1), SR)
        assert bpm is not None and abs(bpm / 124 - 1) < 0.01, bpm
        assert estimate_key(a, SR)[0] == "B minor"


async def test_refusals_name_the_field(daemon: Any) -> None:
    d = daemon
    async with await Client.connect(d.server.path) as c:
        for method, params, field in (
                ("op.fit", {"source": "99-0", "bpm": 120}, "source"),
                ("op.fit", {"source": "99-0"}, "bpm"),
                ("op.fit", {"source": "99-0", "bpm": 500}, "bpm"),
                ("op.fit", {"source": "99-0", "key": "H minor"}, "key"),
                ("op.loop", {"bars": 4}, "prompt"),
                ("op.loop", {"prompt": "funk", "bars": 4}, "bpm"),
                ("op.loop", {"prompt": "funk", "source": "1-0", "bpm": 120}, "prompt"),
                ("op.loop", {"prompt": "funk", "bars": 0, "bpm": 120}, "bars")):
            with pytest.raises(RemoteError) as err:
                await c.call(method, params)
            assert err.value.data.get("field") == field, (method, params, err.value)


async def test_a_loop_from_a_prompt_through_the_model_is_bar_exact(daemon: Any) -> None:
    """The tiny MusicGen (random weights: noise, no tempo to read) through the real worker: the job
    asks for the tempo in the prompt, the render cuts exactly 2 bars at 240 BPM with loop points."""
    d = daemon
    async with await Client.connect(d.server.path) as c:
        await c.subscribe("job")
        done = await run(c, "op.loop", {"prompt": "funk drums", "bars": 2, "bpm": 240, "seed": 4}, timeout=300)
        assert done["state"] == "done", done
        assert done["prompt"] == "funk drums, 240 bpm"  # MusicGen reads the tempo in its prompt
        track = await c.call("track.get", {"id": done["track_ids"][0]})
        path = d.data_dir / track["path"]
        info = sf.info(str(path))
        n = loop_samples(2, 4, 240, info.samplerate)
        assert info.frames == n == 2 * 32000
        assert smpl_loop(path) == (1, 0, n - 1)
        assert track["title"] == "funk drums (loop 2 bars)"


@needs_rubberband
async def test_cancel_mid_stretch_kills_rubberband_and_stores_nothing(daemon: Any) -> None:
    """A long fit is cancelled while Rubber Band runs: the job ends cancelled, its child process is
    gone, no track is made; a retry stretches again from the stored source."""
    d = daemon
    long = synth.song(100, "A", "minor", seconds=150, sr=22050)
    async with await Client.connect(d.server.path) as c:
        await c.subscribe("job")
        job = await c.call("op.fit", {"source_audio": flac(long, 22050), "bpm": 90, "key": "B minor",
                                      "from_bpm": 100, "from_key": "A minor"})

        def children() -> list[str]:
            """Our child processes named rubberband (/proc: comm and parent pid)."""
            found = []
            for stat in Path("/proc").glob("[0-9]*/stat"):
                try:
                    text = stat.read_text()
                except OSError:
                    continue
                comm, rest = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
                if comm == "rubberband" and int(rest[1]) == os.getpid() and rest[0] != "Z":
                    found.append(stat.parent.name)
            return found

        for _ in range(300):  # poll with a deadline for the stretcher to start
            if children():
                break
            await asyncio.sleep(0.05)
        assert children(), "rubberband never started"
        await c.call("job.cancel", {"id": job["id"]})
        await wait_event(c, "job.cancelled", job["id"], timeout=30)
        for _ in range(100):
            if not children():
                break
            await asyncio.sleep(0.05)
        assert not children(), "the cancelled job's rubberband is still running"
        assert (await c.call("track.list", {}))["tracks"] == []
        # a retry runs it again from the daemon's stored copy of the upload (stretching again), then cancel
        await c.call("job.retry", {"id": job["id"]})
        for _ in range(300):
            if children():
                break
            await asyncio.sleep(0.05)
        assert children(), "the retried fit never started stretching"
        await c.call("job.cancel", {"id": job["id"]})
        await wait_event(c, "job.cancelled", job["id"], timeout=30)
