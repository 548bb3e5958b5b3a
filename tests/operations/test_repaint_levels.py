"""A repaint never clips: the regenerated span stays under the library's true-peak ceiling.

The tiny ACE-Step pipeline (random weights, peak-normalised output) through the real daemon;
the result is read back with soundfile."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from dgx_music.common.audio.loudness import true_peak
from dgx_music.common.client import Client
from tests.operations.test_operation_jobs import run

SR = 48000
CEILING_DBTP = -1.0  # the library's default (audio.ceiling_dbtp)


def loud_source(seconds: float = 6.0) -> np.ndarray:
    """A loud, dense source just under the ceiling: RMS 0.6, so the RMS match asks the
    (peak-normalised, spiky) model output for several times its own peak."""
    t = np.arange(int(seconds * SR)) / SR
    return np.stack([0.85 * np.sin(2 * np.pi * 440 * t), 0.85 * np.sin(2 * np.pi * 441 * t)], axis=1)


@pytest.fixture
async def daemon(daemon_factory: Callable[..., Any], tiny_acestep: Path) -> Any:
    return await daemon_factory(engine__model=str(tiny_acestep), audio__ceiling_dbtp=CEILING_DBTP)


async def test_repaint_of_a_loud_source_stays_under_the_ceiling(daemon: Any) -> None:
    src = loud_source()
    buf = io.BytesIO()
    sf.write(buf, src.astype(np.float32), SR, format="WAV", subtype="PCM_16")
    pcm = sf.read(io.BytesIO(buf.getvalue()), dtype="int16", always_2d=True)[0]
    async with await Client.connect(daemon.server.path) as c:
        await c.subscribe("job")
        done = await run(c, "op.repaint", {"source_audio": buf.getvalue(), "source_name": "loud.wav",
                                           "start": 1.5, "end": 4.5, "steps": 2, "seed": 11})
        track = await c.call("track.get", {"id": done["track_ids"][0]})
    path = daemon.data_dir / track["path"]
    out, sr = sf.read(str(path), dtype="float32", always_2d=True)
    assert sr == SR and out.shape == src.shape
    ceiling = 10.0 ** (CEILING_DBTP / 20.0)
    s, e = int(1.5 * SR), int(4.5 * SR)
    assert float(np.abs(out).max()) <= ceiling, float(np.abs(out).max())
    assert true_peak(out.T, sr) <= CEILING_DBTP + 0.05
    span = out[s + 960:e - 960]  # past the crossfades: the model's audio, not a quiet leftover of it
    assert float(np.sqrt(np.mean(span ** 2))) > 0.05
    # Outside the span: the source's own samples (read as the PCM both files hold).
    got = sf.read(str(path), dtype="int16", always_2d=True)[0]
    assert np.array_equal(got[:s], pcm[:s]) and np.array_equal(got[e:], pcm[e:])
