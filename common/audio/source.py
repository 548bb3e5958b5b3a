"""Source audio of operations on tracks (repaint, cover, stems, add a part), as the daemon checks it.

Any libsndfile format is decoded, checked (length, rate, silence) and reduced to what ACE-Step
reads: 48 kHz stereo. The daemon then keeps the job's own copy, at submit time, before the job
row is committed (daemon/audio_store.py: SOURCES). Blocking file and DSP work: run it in a thread.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from dgx_music.common.audio.melody import MIN_PEAK, check_samples, open_checked
from dgx_music.common.operations import MAX_SOURCE_SECONDS, MIN_SOURCE_SECONDS
from dgx_music.common.schemas import ParamError

SAMPLE_RATE = 48000  # ACE-Step's rate; its VAE reads stereo


def decode(source: io.BytesIO | Path, field: str) -> tuple[np.ndarray, int]:
    """Any libsndfile format -> float32 [channels, samples]; the length is checked before reading."""
    with open_checked(source, field) as snd:
        sr = int(snd.samplerate)
        if snd.frames > 0 and snd.frames / sr > MAX_SOURCE_SECONDS + 1:
            raise ParamError(field, f"is {snd.frames / sr:.1f} s long; ACE-Step works on at most "
                                    f"{MAX_SOURCE_SECONDS:g} s")
        blocks = [b[:, :2] for b in snd.blocks(blocksize=sr * 10, frames=int((MAX_SOURCE_SECONDS + 1) * sr),
                                                dtype="float32", always_2d=True)]
        audio = np.concatenate(blocks) if blocks else np.zeros((0, 1), dtype=np.float32)
    return np.ascontiguousarray(audio.T), sr


def native_format(source: io.BytesIO | Path, field: str) -> dict[str, int]:
    """What a source file is before `prepare` converts it: its rate, channels (at most 2, as
    `decode` keeps) and frames (as many as `decode` reads), so stems can be written back in it."""
    with open_checked(source, field) as snd:
        sr = int(snd.samplerate)
        frames = min(int(snd.frames), int((MAX_SOURCE_SECONDS + 1) * sr))
        return {"source_rate": sr, "source_channels": min(int(snd.channels), 2), "source_frames": frames}


def prepare(audio: np.ndarray, sr: int, field: str) -> np.ndarray:
    """[channels, samples] at any rate -> float32 [2, samples] at 48 kHz, checked (length, silence)."""
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim != 2 or a.shape[0] < 1:
        raise ParamError(field, f"expected [channels, samples] audio, got shape {a.shape}")
    seconds = check_samples(a, sr, field, MIN_SOURCE_SECONDS, "a source")
    if seconds > MAX_SOURCE_SECONDS:
        raise ParamError(field, f"is {seconds:.1f} s long; ACE-Step works on at most {MAX_SOURCE_SECONDS:g} s")
    if a.shape[0] == 1:
        a = np.repeat(a, 2, axis=0)
    a = a[:2]
    if sr != SAMPLE_RATE:
        import soxr

        a = soxr.resample(a.T, sr, SAMPLE_RATE, quality="HQ").T.astype(np.float32)
    peak = float(np.abs(a).max()) if a.size else 0.0
    if peak < MIN_PEAK:
        raise ParamError(field, "is silent: there is nothing to work on")
    return np.ascontiguousarray(a, dtype=np.float32)
