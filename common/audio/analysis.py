"""Musical analysis of a clip: tempo, key, waveform peaks.

Tempo: librosa's ``beat_track`` picks the wrong metrical level on slow (~70 BPM) and fast
(~170 BPM) material, so we estimate the beat period ourselves: a spectral-flux onset envelope,
its autocorrelation scored with a harmonic comb over a fine BPM grid (sub-frame precision), then
an explicit octave decision: a faster level is taken only when the onsets half-way between the
slower level's beats are nearly as strong as those on them (they are beats, not off-beats), or
when the slower level would put regular onsets on 32nd-note positions (it is too slow); last, a
backbeat check halves it when the kick and snare bands clearly alternate beat by beat at half the
tempo (ballads whose eighth-note hats and arpeggios read double); then a snare-figure check
(``_snare_pair``) takes half (a dembow read at double) or 3/4 of it (a dotted funk figure read as
the beat) where the snare/clap/rim onsets repeat every two beats there and not at the chosen level.
The confidence falls when any of these decisions nearly went the other way.

Key: a chroma vector averaged over the clip, correlated with the 24 rotations of the
Albrecht-Shanahan key profiles (best of the published profiles on our test set and in their paper),
which finds the scale; the opening and closing chords then decide between that key and its relative
major/minor (the profile alone reads a looped i-VI-III-VII as the relative major's I-V-vi-IV).

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
