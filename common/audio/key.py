"""Key of a clip (see analysis.py for the method in brief)."""

from __future__ import annotations

import math

import numpy as np
import soxr

from .features import _chroma_basis, stft_mag, to_mono

PITCHES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]

# Albrecht & Shanahan (2013) major/minor key profiles (pitch-class distributions, tonic first).
_MAJOR = np.array([0.238, 0.006, 0.111, 0.006, 0.137, 0.094, 0.016, 0.214, 0.009, 0.080, 0.008, 0.081])
_MINOR = np.array([0.220, 0.006, 0.104, 0.123, 0.019, 0.103, 0.012, 0.214, 0.062, 0.022, 0.061, 0.052])

_KEY_SR = 11025
_KEY_NFFT = 4096
#: Length of the opening/closing chord windows for the tonic cues, and the cues' weights against
#: the profile correlation (a relative major/minor pair differs by 0.2-0.7 there on looped minor
#: progressions, so the opening chord must be able to outweigh that).
_KEY_CUE_S = 1.5
_OPENING_WEIGHT = 3.5
_CLOSING_WEIGHT = 0.25
_DWELL_WEIGHT = 1.5
#: How many best-fitting scales (each as major and relative minor) compete.
_SCALES = 2
#: Confidence factor when the tonic cues chose a key outside the best-fitting scale (the profile
#: and the cues disagree about the notes, not only about the tonic): 3 of the 6 wrong keys on the
#: 119 songs, 5 of the 113 right ones.
_OFF_SCALE_CONF = 0.55
#: Confidence scale for the winner's margin over the runner-up.
_MARGIN_SCALE = 0.3


def _chroma_frames(y: np.ndarray, sr: int) -> tuple[np.ndarray, float]:
    """Per-frame chroma [12, frames] (each frame scaled to max 1; silent frames are zero) and the
    frame rate."""
    y11 = soxr.resample(to_mono(y), sr, _KEY_SR, quality="MQ") if sr != _KEY_SR else to_mono(y)
    mag = stft_mag(np.asarray(y11, dtype=np.float32), _KEY_NFFT, _KEY_NFFT // 2)
    chroma = _chroma_basis(_KEY_SR, _KEY_NFFT) @ mag
    energy = chroma.sum(axis=0)
    if energy.size:
        chroma[:, energy <= energy.max() * 1e-3] = 0.0
    return chroma / (chroma.max(axis=0, keepdims=True) + 1e-12), _KEY_SR / (_KEY_NFFT // 2)


def chroma_vector(y: np.ndarray, sr: int) -> np.ndarray:
    """Clip-level pitch-class profile: per-frame normalised chroma, averaged over sounding frames."""
    chroma, _ = _chroma_frames(y, sr)
    sounding = chroma.max(axis=0) > 0
    return chroma[:, sounding].mean(axis=1) if np.any(sounding) else np.zeros(12)


def _triad(tonic: int, mode: str) -> np.ndarray:
    t = np.zeros(12)
    t[[tonic, (tonic + (4 if mode == "major" else 3)) % 12, (tonic + 7) % 12]] = [1.0, 0.7, 0.7]
    return t


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if np.allclose(a, a.mean()) or np.allclose(b, b.mean()):
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def _relative(key: tuple[int, str]) -> tuple[int, str]:
    return ((key[0] - 3) % 12, "minor") if key[1] == "major" else ((key[0] + 3) % 12, "major")


def _scale(key: tuple[int, str]) -> int:
    """The scale a key uses, named by its major tonic (A minor and C major: 0)."""
    return key[0] if key[1] == "major" else (key[0] + 3) % 12


def estimate_key(y: np.ndarray, sr: int, trace: dict | None = None) -> tuple[str | None, float]:
    """Key and mode like "A minor" and a 0..1 confidence; (None, 0) for silence / no pitch.

    The clip's pitch-class profile against the 24 rotations of the key profiles finds the scale;
    it cannot find the tonic within it (B minor and D major share every note, and a looped
    i-VI-III-VII weights the relative major's triad as much as its own). So the candidates are the
    two best-fitting scales, each as its major and its relative minor, and each is scored by its
    profile fit plus tonic cues: how well its tonic triad matches the opening chord (first 1.5 s of
    sound; a song or a loop starts on its tonic far more often than on another chord; weight
    ``_OPENING_WEIGHT``), the closing chord (a song ends on its tonic, a clip cut mid-loop anywhere:
    lower weight) and the whole clip (how long the tonic triad sounds: a ii-V-I-I dwells on I)."""
    trace = {} if trace is None else trace
    mono = to_mono(y)
    if mono.shape[0] < sr // 2 or float(np.abs(mono).max()) < 1e-4:
        return None, 0.0
    chroma, rate = _chroma_frames(mono, sr)
    sounding = np.flatnonzero(chroma.sum(axis=0) > 0)
    if sounding.size == 0:
        return None, 0.0
    prof = chroma[:, sounding].mean(axis=1)
    if not np.any(prof > 0) or np.allclose(prof, prof.mean()):
        return None, 0.0
    scores: dict[tuple[int, str], float] = {}
    for mode, template in (("major", _MAJOR), ("minor", _MINOR)):
        for tonic in range(12):
            scores[(tonic, mode)] = _corr(prof, np.roll(template, tonic))
    ranked = sorted(scores, key=scores.get, reverse=True)
    # the tonic cues: opening and closing chords (loud frames only: no reverb tail, no count-in)
    energy = chroma[:, sounding].sum(axis=0)
    loud = sounding[energy > 0.2 * energy.max()] if energy.size else sounding
    span = max(2, int(_KEY_CUE_S * rate))
    first, last = int(loud[0]), int(loud[-1])
    opening = chroma[:, first:first + span].mean(axis=1)
    closing = chroma[:, max(first, last + 1 - span):last + 1].mean(axis=1)
    # the best-fitting scales, distinct: a key and its relative share one scale and must not take
    # both places (the second scale is there for a profile misjudged by one accidental)
    tops: list[tuple[int, str]] = []
    for k in ranked:
        if len(tops) == _SCALES:
            break
        if _scale(k) not in {_scale(t) for t in tops}:
            tops.append(k)
    cands = {k for top in tops for k in (top, _relative(top))}
    # a chord cue only speaks for the key whose tonic triad it resembles; an opening on ii (a
    # ii-V-I) matches neither candidate's tonic and must not count against the true one
    total = {k: scores[k] + _OPENING_WEIGHT * max(_corr(opening, _triad(*k)), 0.0)
             + _CLOSING_WEIGHT * max(_corr(closing, _triad(*k)), 0.0) + _DWELL_WEIGHT * _corr(prof, _triad(*k))
             for k in cands}
    order = sorted(total, key=total.get, reverse=True)
    best, second = order[0], order[1]
    trace.update(total={f"{PITCHES[k[0]]} {k[1]}": round(v, 3) for k, v in total.items()})
    fit = scores[best]
    # honest confidence: how well the key's profile fits the clip, and how clearly it beat the
    # runner-up (a relative or a neighbouring key whose cues came close)
    margin = total[best] - total[second]
    conf = max(0.0, min(1.0, fit)) * (1.0 - math.exp(-max(margin, 0.0) / _MARGIN_SCALE))
    if _scale(best) != _scale(ranked[0]):
        # the cues overruled the scale fit: a confident opening chord can be the wrong one (an
        # opening ii or iii, a bright lead turning a minor chord major), so say so
        conf *= _OFF_SCALE_CONF
    trace.update(profile_best=f"{PITCHES[ranked[0][0]]} {ranked[0][1]}", profile_gap=round(scores[ranked[0]] - fit, 3), fit=round(fit, 3), margin=round(margin, 3), second=f"{PITCHES[second[0]]} {second[1]}")
    return f"{PITCHES[best[0]]} {best[1]}", round(conf, 3)
