"""Streaming preview: chunks of a MusicGen clip while it is made, through the real worker and the
tiny model (real EnCodec decode), checked against the final audio the same job returns."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from dgx_music.common.params import GenerationParams
from dgx_music.daemon.engine.errors import EngineError
from dgx_music.daemon.engine.streaming import Assembler


def params(**kw: Any) -> GenerationParams:
    base: dict[str, Any] = {"prompt": "x", "duration": 4.0, "seed": 3}
    base.update(kw)
    return GenerationParams(**base)


def assemble(chunks: list[dict[str, Any]], shape: tuple[int, ...]) -> tuple[np.ndarray, list[int]]:
    """The stream written at its offsets (as a script writing a file would), and the seams."""
    out = np.full(shape, np.nan, dtype=np.float32)
    seams = []
    for c in chunks:
        a = c["audio"]
        out[c["variation"]:c["variation"] + a.shape[0], :, c["offset"]:c["offset"] + a.shape[-1]] = a
        seams.append(c["offset"])
    return out, seams[1:]


def snr_after_gain(ref: np.ndarray, got: np.ndarray) -> float:
    g = float((ref * got).sum() / (got * got).sum())
    err = ref - g * got
    return 10 * np.log10(float((ref ** 2).sum()) / max(float((err ** 2).sum()), 1e-30))


def jumps_at(x: np.ndarray, seams: list[int]) -> tuple[float, float]:
    """Largest sample-to-sample step across any seam, and anywhere in the clip."""
    d = np.abs(np.diff(x, axis=-1))
    at = max(float(d[..., s - 2:s + 1].max()) for s in seams)
    return at, float(d.max())


async def test_stream_equals_the_final_audio(make_supervisor) -> None:  # type: ignore[no-untyped-def]
    sup, _ = make_supervisor()
    chunks: list[dict[str, Any]] = []
    res = await sup.generate(1, ["calm piano", "drums"], params(), None, on_audio=chunks.append)
    assert len(chunks) >= 4 and all(c["job_id"] == 1 and c["sample_rate"] == 32000 for c in chunks)
    offsets = [c["offset"] for c in chunks]
    assert offsets[0] == 0 and offsets == sorted(offsets)
    # Contiguous: each chunk starts where the one before ended, and the stream ends with the clip.
    ends = [c["offset"] + c["audio"].shape[-1] for c in chunks]
    assert offsets[1:] == ends[:-1] and ends[-1] == res.audio.shape[-1]
    stream, seams = assemble(chunks, res.audio.shape)
    assert not np.isnan(stream).any()
    assert snr_after_gain(res.audio, stream) >= 40.0
    at_seams, anywhere = jumps_at(stream, seams)
    assert at_seams <= anywhere  # no clicks: nothing at a seam jumps more than the music does elsewhere


async def test_long_clip_streams_across_the_window_join(make_supervisor) -> None:  # type: ignore[no-untyped-def]
    sup, _ = make_supervisor()
    chunks: list[dict[str, Any]] = []
    res = await sup.generate(2, ["slow strings"], params(duration=45.0), None, on_audio=chunks.append)
    assert res.audio.shape == (1, 1, 45 * 32000)
    stream, seams = assemble(chunks, res.audio.shape)
    assert not np.isnan(stream).any()
    # Chunks kept coming after the first 30 s window: the second window streamed too.
    assert sum(1 for c in chunks if c["offset"] > 31 * 32000) >= 5
    assert snr_after_gain(res.audio, stream) >= 40.0
    # The join itself (first window's end, crossfaded into the second) matches too.
    join = slice(29 * 32000, 31 * 32000)
    assert snr_after_gain(res.audio[..., join], stream[..., join]) >= 40.0
    at_seams, anywhere = jumps_at(stream, seams)
    assert at_seams <= anywhere


async def test_cancel_stops_the_stream(make_supervisor) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    sup, _ = make_supervisor(worker_env={"DGX_MUSIC_TEST_STEP_DELAY": "0.02"})
    chunks: list[dict[str, Any]] = []
    task = asyncio.create_task(sup.generate(3, ["x"], params(duration=20.0), None, on_audio=chunks.append))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while not chunks and loop.time() < deadline:
        await asyncio.sleep(0.05)
    assert chunks, "no chunk before the deadline"
    assert await sup.cancel(3)
    with pytest.raises(EngineError) as ei:
        await task
    assert ei.value.code == "cancelled"
    n = len(chunks)
    made = chunks[-1]["offset"] + chunks[-1]["audio"].shape[-1]
    assert made < 20 * 32000
    # Nothing arrives for the cancelled job after its failure; the next job streams from 0.
    res = await sup.generate(4, ["x"], params(duration=1.0), None, on_audio=chunks.append)
    assert len(chunks) > n and all(c["job_id"] == 4 for c in chunks[n:]) and chunks[n]["offset"] == 0
    assert chunks[-1]["offset"] + chunks[-1]["audio"].shape[-1] == res.audio.shape[-1]


def test_assembler_crossfades_and_holds_back() -> None:
    sent: list[tuple[int, np.ndarray]] = []
    asm = Assembler(lambda off, a: sent.append((off, a)))
    ones = np.ones((1, 1, 100), np.float32)
    asm.put(0, ones, keep=10, fade=0)
    assert [(o, a.shape[-1]) for o, a in sent] == [(0, 90)] and asm.made == 100
    asm.put(90, np.zeros((1, 1, 50), np.float32), keep=0, fade=5)
    off, a = sent[-1]
    # Over the fade the held-back ones ramp into the new zeros; after it, the new piece rules.
    assert off == 90 and np.allclose(a[0, 0, :5], [1, 0.75, 0.5, 0.25, 0]) and not a[0, 0, 5:].any()
    with pytest.raises(ValueError):
        asm.put(500, ones, keep=0, fade=0)


class _DisagreeingCodec:
    """A codec whose decodes of overlapping spans disagree, as EnCodec's do (its decoder is not causal,
    so the same frame decodes a little differently with other context): frame f decodes to the samples
    of one steady 220 Hz tone, plus a level that changes from one decode call to the next. The tone's
    continuity is known, so any step at a seam beyond the tone's own is the stream's doing."""

    hop = 640
    num_codebooks = 4
    delays = [0, 1, 2, 3]
    sample_rate = 32000

    def __init__(self) -> None:
        self.calls = 0

    def decode(self, codes: Any) -> np.ndarray:
        first = int(codes[0, 0, 0])  # each frame's codes carry its frame index
        t = (first * self.hop + np.arange(codes.shape[-1] * self.hop)) / self.sample_rate
        self.calls += 1
        level = 0.08 * (self.calls % 2)
        return (0.3 * np.sin(2 * np.pi * 220 * t) + level).astype(np.float32)[None, None, :]


def test_seams_crossfade_between_decodes_that_disagree() -> None:
    """Each chunk's decode meets the held-back end of the one before over a crossfade: the stream never
    steps at a seam by more than the tone itself moves. Without the seam's crossfade it steps by the
    decodes' 0.08 disagreement, a click a listener hears at every chunk."""
    import torch

    from dgx_music.daemon.engine.streaming import CodeStream

    codec = _DisagreeingCodec()
    chunks: list[tuple[int, np.ndarray]] = []
    stream = CodeStream(codec, lambda off, a: chunks.append((off, a)))  # type: ignore[arg-type]
    frames = 300
    codes = torch.arange(frames).expand(1, 4, frames)
    stream.begin_window(0)
    for f in range(0, frames, 7):  # frames become final a few at a time, as the decode loop makes them
        stream.on_frames(codes[..., f:f + 7])
    stream.end_window(codec.decode(codes), last=True)
    assert len(chunks) >= 5 and codec.calls >= 6
    out = np.concatenate([a for _, a in chunks], axis=-1)[0, 0]
    assert [off for off, _ in chunks] == list(np.cumsum([0] + [a.shape[-1] for _, a in chunks[:-1]]))
    assert out.shape[-1] == frames * codec.hop
    tone_step = 0.3 * 2 * np.pi * 220 / codec.sample_rate  # the steepest the tone alone moves per sample
    steps = np.abs(np.diff(out))
    assert steps.max() <= tone_step * 1.2, f"a click in the stream: a step of {steps.max():.3f}"
