"""Shared spectral front end of the analysis (tempo.py, key.py): mono mixdown, a numpy-only STFT
and the cached mel/chroma filter banks. librosa is imported lazily, only to build the banks (its
numba paths are never run), so a cold import stays cheap."""

from __future__ import annotations

import functools

import numpy as np

TEMPO_SR = 16000
TEMPO_HOP = 160  # 100 envelope frames per second
TEMPO_NFFT = 1024
TEMPO_MELS = 40


def to_mono(audio: np.ndarray) -> np.ndarray:
    """Average channels of a [channels, samples] array (1-D passes through) as float32."""
    a = np.asarray(audio, dtype=np.float32)
    return a if a.ndim == 1 else a.mean(axis=0)


@functools.lru_cache(maxsize=4)
def _mel_basis(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=30.0, fmax=sr / 2).astype(np.float32)


@functools.lru_cache(maxsize=4)
def _chroma_basis(sr: int, n_fft: int) -> np.ndarray:
    import librosa

    # Weighting centred on octave 3.5 (~185 Hz, two octaves wide) rather than librosa's default
    # 5.0 (~520 Hz): fundamentals of chords and bass dominate, so the 3rd harmonic (a fifth up)
    # no longer pulls minor keys towards their dominant (i III VII V i read as v minor).
    return librosa.filters.chroma(
        sr=sr, n_fft=n_fft, tuning=0.0, base_c=True, ctroct=3.5, octwidth=2.0
    ).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _mel_centres() -> np.ndarray:
    import librosa

    return librosa.mel_frequencies(TEMPO_MELS + 2, fmin=30.0, fmax=TEMPO_SR / 2)[1:-1]


def stft_mag(y: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """|STFT| [bins, frames] with a Hann window; numpy only (no numba on this path)."""
    if y.shape[0] < n_fft:
        y = np.pad(y, (0, n_fft - y.shape[0]))
    frames = 1 + (y.shape[0] - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    win = np.hanning(n_fft + 1)[:-1].astype(np.float32)
    return np.abs(np.fft.rfft(y[idx] * win, axis=1)).T.astype(np.float32)
