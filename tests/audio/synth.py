"""Synthetic test material with known tempo, key and loudness behaviour.

Everything is generated from a seeded RNG so failures reproduce. The drum kit and the chord
instrument are deliberately not trivial (pitch-swept kicks, noisy snares, humanised timing,
velocity accents, harmonic-rich tones with a bass line) so estimators cannot pass by accident.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import butter, sosfilt

SR = 32000


def _env(n: int, sr: int, decay_s: float) -> np.ndarray:
    return np.exp(-np.arange(n) / (decay_s * sr))


def kick(sr: int, rng: np.random.Generator) -> np.ndarray:
    n = int(0.35 * sr)
    t = np.arange(n) / sr
    f = 50 + 110 * np.exp(-t / 0.03)
    phase = 2 * np.pi * np.cumsum(f) / sr
    click = rng.standard_normal(n) * _env(n, sr, 0.002) * 0.3
    return (np.sin(phase) * _env(n, sr, 0.12) + click).astype(np.float32)


def snare(sr: int, rng: np.random.Generator) -> np.ndarray:
    n = int(0.25 * sr)
    t = np.arange(n) / sr
    noise = sosfilt(butter(2, [1200, 8000], btype="band", fs=sr, output="sos"), rng.standard_normal(n))
    tone = np.sin(2 * np.pi * 185 * t) * _env(n, sr, 0.04)
    return (0.8 * noise * _env(n, sr, 0.06) + 0.5 * tone).astype(np.float32)


def hat(sr: int, rng: np.random.Generator, open_: bool = False) -> np.ndarray:
    n = int((0.2 if open_ else 0.06) * sr)
    noise = sosfilt(butter(4, 7000, btype="high", fs=sr, output="sos"), rng.standard_normal(n))
    return (noise * _env(n, sr, 0.07 if open_ else 0.015) * 0.5).astype(np.float32)


# (instrument, position in beats within a 4-beat bar, velocity)
PATTERNS: dict[str, list[tuple[str, float, float]]] = {
    "rock": [("k", 0, 1.0), ("s", 1, 0.9), ("k", 2, 0.9), ("s", 3, 0.9)]
    + [("h", i / 2, 0.5 if i % 2 else 0.7) for i in range(8)],
    "house": [("k", i, 1.0) for i in range(4)]
    + [("o", i + 0.5, 0.6) for i in range(4)]
    + [("s", 1, 0.7), ("s", 3, 0.7)],
    "hiphop": [("k", 0, 1.0), ("k", 1.75, 0.8), ("k", 2.5, 0.9), ("s", 1, 1.0), ("s", 3, 1.0)]
    + [("h", i / 4, 0.35 if i % 2 else 0.5) for i in range(16)],
    "halftime": [("k", 0, 1.0), ("k", 2.5, 0.8), ("s", 2, 1.0)] + [("h", i / 2, 0.5) for i in range(8)],
}


def drums(bpm: float, seconds: float = 12.0, style: str = "rock", sr: int = SR, seed: int = 0) -> np.ndarray:
    """A mono drum loop at exactly ``bpm`` (quarter-note beats), float32 [1, samples]."""
    rng = np.random.default_rng(seed)
    kit = {"k": kick(sr, rng), "s": snare(sr, rng), "h": hat(sr, rng), "o": hat(sr, rng, True)}
    n = int(seconds * sr)
    out = np.zeros(n + sr, dtype=np.float32)
    beat = 60.0 / bpm
    bars = int(seconds / (4 * beat)) + 1
    for bar in range(bars):
        for inst, pos, vel in PATTERNS[style]:
            t = (bar * 4 + pos) * beat + rng.normal(0, 0.003)
            i = int(max(t, 0) * sr)
            if i >= n:
                continue
            s = kit[inst] * vel * rng.uniform(0.85, 1.0)
            out[i : i + len(s)] += s[: len(out) - i]
    return (out[:n] * 0.5)[np.newaxis, :]


NOTE = {"C": 0, "C#": 1, "D": 2, "D#": 3, "E": 4, "F": 5, "F#": 6, "G": 7, "G#": 8, "A": 9, "A#": 10, "B": 11}
NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]

# Progressions as (root degree in semitones from tonic, quality) with the tonic clearly established.
MAJOR_PROGRESSIONS = [
    [(0, "maj"), (5, "maj"), (7, "maj"), (0, "maj")],  # I IV V I
    [(0, "maj"), (9, "min"), (5, "maj"), (7, "maj")],  # I vi IV V
    [(0, "maj"), (7, "maj"), (9, "min"), (5, "maj"), (0, "maj")],  # I V vi IV I
    [(0, "maj"), (2, "min"), (7, "dom7"), (0, "maj")],  # I ii V7 I
]
MINOR_PROGRESSIONS = [
    [(0, "min"), (5, "min"), (7, "maj"), (0, "min")],  # i iv V i (harmonic minor)
    [(0, "min"), (8, "maj"), (5, "min"), (7, "maj")],  # i VI iv V
    [(0, "min"), (3, "maj"), (10, "maj"), (7, "maj"), (0, "min")],  # i III VII V i
    [(0, "min"), (2, "dim"), (7, "dom7"), (0, "min")],  # i ii° V7 i
]
CHORD = {"maj": [0, 4, 7], "min": [0, 3, 7], "dim": [0, 3, 6], "dom7": [0, 4, 7, 10]}


def _tone(freq: float, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / sr
    ph = rng.uniform(0, 2 * np.pi)
    y = sum((0.6**k) * np.sin(2 * np.pi * freq * (k + 1) * t + ph * k) for k in range(5) if freq * (k + 1) < sr / 2)
    att = np.minimum(1.0, np.arange(n) / (0.01 * sr))
    return (y * att * _env(n, sr, 1.2)).astype(np.float32)


def chords(tonic: str, mode: str, seconds: float = 12.0, sr: int = SR, seed: int = 0) -> np.ndarray:
    """A chord progression in ``tonic`` ``mode`` ('major'/'minor') with a bass line, [1, samples]."""
    rng = np.random.default_rng(seed)
    progs = MAJOR_PROGRESSIONS if mode == "major" else MINOR_PROGRESSIONS
    prog = progs[seed % len(progs)]
    root = NOTE[tonic]
    n = int(seconds * sr)
    out = np.zeros(n, dtype=np.float32)
    per = n // (2 * len(prog))
    for rep in range(2):
        for j, (deg, q) in enumerate(prog):
            start = (rep * len(prog) + j) * per
            base = 48 + (root + deg) % 12  # MIDI note of the chord root around C3..B3
            length = min(per + sr // 10, n - start)
            for iv in CHORD[q]:
                m = base + iv + (12 if iv < 5 and rng.random() < 0.3 else 0)
                out[start : start + length] += 0.25 * _tone(440 * 2 ** ((m - 69) / 12), length, sr, rng)
            out[start : start + length] += 0.35 * _tone(440 * 2 ** ((base - 12 - 69) / 12), length, sr, rng)
    return (out / np.abs(out).max() * 0.5)[np.newaxis, :]


def song(bpm: float, tonic: str, mode: str, seconds: float = 30.0, sr: int = SR, seed: int = 0,
         stereo: bool = False) -> np.ndarray:
    """Drums plus chords: a stand-in for a generated clip (peaky, so normalising needs limiting)."""
    d = drums(bpm, seconds, "rock", sr, seed)
    c = chords(tonic, mode, seconds, sr, seed)
    mix = 0.7 * d + 0.4 * c
    if stereo:
        mix = np.concatenate([mix, 0.9 * mix + 0.02 * np.roll(mix, 37, axis=1)], axis=0)
    return mix.astype(np.float32)
