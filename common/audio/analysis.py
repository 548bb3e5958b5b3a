"""Musical analysis of a clip: tempo, key, waveform peaks (``analyze``; the estimators live in
tempo.py and key.py, the shared STFT and filter banks in features.py).

Tempo (tempo.py): librosa's ``beat_track`` picks the wrong metrical level on slow (~70 BPM) and fast
(~170 BPM) material, so we estimate the beat period ourselves: a spectral-flux onset envelope, its
autocorrelation scored with a harmonic comb over a fine BPM grid, then an explicit octave decision
(a faster level only when the half-way onsets are beat-like, or the slower level would put onsets on
32nd notes; without percussion, an even stream of arpeggio notes is not taken as the beat) and
metrical checks that only ever slow down: the kick and snare alternating at half the tempo; the
snare/clap figure repeating every two beats (a dembow read double, a dotted funk figure read as the
beat); and a kick-free snare backbeat pairing at half a fast reading, weighed with a log-normal
tempo prior (boom bap with 16th hats read double). The confidence falls when any of these decisions
nearly went the other way, and without percussion.

Key (key.py): a bass-weighted chroma profile against the 24 rotations of the Albrecht-Shanahan key
profiles finds the scale; the tonic among the two best scales' majors and relative minors is then
decided by the opening chord, the closing chord and how long each candidate's tonic triad sounds
(the profile alone reads a looped i-VI-III-VII as the relative major's I-V-vi-IV).

All functions are plain sync functions (the daemon runs them in an executor).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .features import _chroma_basis, _mel_basis, _mel_centres, to_mono  # noqa: F401  (warm_up, tests)
from .key import PITCHES, chroma_vector, estimate_key  # noqa: F401
from .tempo import estimate_tempo

__all__ = ["PITCHES", "analyze", "chroma_vector", "estimate_key", "estimate_tempo", "to_mono", "warm_up",
           "waveform_peaks"]


def waveform_peaks(audio: np.ndarray, count: int = 256) -> list[list[float]]:
    """``count`` [min, max] pairs over all channels (rounded to 4 decimals), for a terminal
    waveform and a seek bar. Fewer pairs when the clip has fewer samples than ``count``."""
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim == 1:
        a = a[np.newaxis, :]
    n = a.shape[1]
    if n == 0 or count <= 0:
        return []
    count = min(count, n)
    lo_s, hi_s = a.min(axis=0), a.max(axis=0)
    edges = (np.arange(count) * n) // count
    lo = np.minimum.reduceat(lo_s, edges)
    hi = np.maximum.reduceat(hi_s, edges)
    return [[round(float(x), 4), round(float(y), 4)] for x, y in zip(lo, hi)]


def analyze(audio: np.ndarray, sr: int, *, peaks: int = 256) -> dict[str, Any]:
    """Tempo, key, peaks and format facts of float [channels, samples] audio."""
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim == 1:
        a = a[np.newaxis, :]
    bpm, bpm_conf = estimate_tempo(a, sr)
    key, key_conf = estimate_key(a, sr)
    return {
        "bpm": bpm,
        "bpm_confidence": bpm_conf,
        "key": key,
        "key_confidence": key_conf,
        "duration": round(a.shape[1] / sr, 3),
        "sample_rate": int(sr),
        "channels": int(a.shape[0]),
        "peaks": waveform_peaks(a, peaks),
    }


def warm_up() -> None:
    """Build the filter banks and run every analysis path once on a tiny signal.

    The analysis itself avoids numba-compiled librosa paths; librosa is only imported here for
    its filter-bank builders, but importing and building them costs ~1-2 s on a cold process, so
    the daemon calls this in a thread at start instead of making the first user wait."""
    sr = 32000
    t = np.arange(sr * 5) / sr
    y = (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 2 * t) > 0)).astype(np.float32)
    analyze(y[np.newaxis, :], sr, peaks=16)
