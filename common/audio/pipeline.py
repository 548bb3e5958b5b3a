"""Post-processing of one generated clip: normalise, then analyse; and analysis of any file.

The daemon's job runner calls :func:`process` in an executor right after generation and stores
``Processed.analysis`` on the track; ``dgx-music analyze FILE`` calls :func:`analyze_file`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from . import analysis, loudness

#: Keys of ``Processed.analysis`` (stable: stored on tracks and sent over the protocol).
ANALYSIS_KEYS = (
    "lufs_before", "lufs", "true_peak", "gain_db", "loudness_note", "bpm", "bpm_confidence",
    "key", "key_confidence", "duration", "sample_rate", "channels", "peaks",
)


@dataclass(frozen=True)
class Processed:
    audio: np.ndarray  # float32 [channels, samples], normalised
    analysis: dict[str, Any]


def process(
    audio: np.ndarray,
    sr: int,
    *,
    target_lufs: float = -14.0,
    ceiling_dbtp: float = -1.0,
    peaks: int = 256,
) -> Processed:
    """Normalise ``audio`` ([channels, samples] float) and analyse the result.

    Loudness values are floats (LUFS / dBTP) or None for silence; ``loudness_note`` says why
    the target was not reached (None when it was). Tempo and key are measured on the
    normalised audio (same as what the user hears).
    """
    a = loudness.as_channels_first(audio)
    with _one_blas_thread():
        out, info = loudness.normalize(a, sr, target_lufs, ceiling_dbtp)
        facts = analysis.analyze(out, sr, peaks=peaks)
    result = {
        "lufs_before": info.lufs_before,
        "lufs": info.lufs,
        "true_peak": info.true_peak,
        "gain_db": info.gain_db,
        "loudness_note": info.note,
        **facts,
    }
    return Processed(out, {k: result[k] for k in ANALYSIS_KEYS})


def _one_blas_thread() -> contextlib.AbstractContextManager[object]:
    """Our matrix products are small (mel/chroma banks); OpenBLAS's spinning worker threads add
    ~50% CPU time for no speed-up. threadpoolctl comes with librosa (via scikit-learn). Note the
    limit is process-wide while it lasts; the model runs in its own worker process."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Read any libsndfile format (WAV, FLAC, OGG/Vorbis, Opus, AIFF...) as float32
    [channels, samples]; raises ``ValueError`` naming the file when it cannot be decoded."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such audio file: {p}")
    try:
        data, sr = sf.read(str(p), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise ValueError(f"cannot decode {p}: {exc}") from exc
    return np.ascontiguousarray(data.T), int(sr)


def analyze_file(path: str | Path, *, peaks: int = 0) -> dict[str, Any]:
    """Measure a file as it is (no normalisation): duration, sample_rate, channels, lufs,
    true_peak, bpm, bpm_confidence, key, key_confidence (and ``peaks`` pairs if asked)."""
    a, sr = read_audio(path)
    with _one_blas_thread():
        lufs = loudness.integrated_loudness(a, sr)
        tp = loudness.true_peak(a, sr)
        facts = analysis.analyze(a, sr, peaks=peaks)
    result: dict[str, Any] = {
        "duration": facts["duration"],
        "sample_rate": sr,
        "channels": facts["channels"],
        "lufs": round(lufs, 2) if np.isfinite(lufs) else None,
        "true_peak": round(tp, 2) if np.isfinite(tp) else None,
        "bpm": facts["bpm"],
        "bpm_confidence": facts["bpm_confidence"],
        "key": facts["key"],
        "key_confidence": facts["key_confidence"],
    }
    if peaks:
        result["peaks"] = facts["peaks"]
    return result


def warm_up() -> None:
    """Pay one-time costs (librosa import, filter banks, FFT plans) before the first job."""
    analysis.warm_up()
    sr = 32000
    t = np.arange(sr) / sr
    process((0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[np.newaxis, :], sr)
