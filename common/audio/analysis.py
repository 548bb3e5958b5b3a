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

import functools
import math
from typing import Any

import numpy as np
import soxr
from scipy.ndimage import maximum_filter1d

PITCHES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]

# Albrecht & Shanahan (2013) major/minor key profiles (pitch-class distributions, tonic first).
_MAJOR = np.array([0.238, 0.006, 0.111, 0.006, 0.137, 0.094, 0.016, 0.214, 0.009, 0.080, 0.008, 0.081])
_MINOR = np.array([0.220, 0.006, 0.104, 0.123, 0.019, 0.103, 0.012, 0.214, 0.062, 0.022, 0.061, 0.052])

_TEMPO_SR = 16000
_TEMPO_HOP = 160  # 100 envelope frames per second
_TEMPO_NFFT = 1024
_TEMPO_MELS = 40
_FLOOR = 1e-6
#: A faster metrical level wins when the onsets half-way between the slower level's beats are at
#: least this strong relative to those on the beats (kick vs snare ~0.4-0.9, beat vs off-beat
#: hats/ghost notes ~0-0.3 on the low-band envelope).
_OCTAVE_RATIO = 0.62
#: Weight of the "32nd-note" evidence: mean full-band onset strength at the odd eighths of a
#: candidate beat (relative to the beat). Regular onsets there mean that the candidate is too slow
#: (the grid would need 32nd notes), e.g. a kick on the "a" of a hip-hop beat at 140 sits at 7/8
#: of a 70 BPM beat; at a true 70 BPM those positions are empty. Scores: ~0.0-0.02 at the right
#: level, ~0.08-0.13 one octave too slow on syncopated grooves.
_SUBDIV_WEIGHT = 4.0
_MIN_BPM, _MAX_BPM = 60.0, 200.0
#: Halve the chosen tempo when the kick/snare alternation at half of it is this much clearer
#: (``_backbeat`` scores: 0.9-1.4 at the right level of a ballad read double, 0-0.5 elsewhere).
_BACKBEAT_MARGIN = 0.3
#: ... and is itself this clear (a four-on-the-floor kick halved by hats in the snare band scores
#: up to ~0.5 at half its tempo).
_BACKBEAT_MIN = 0.7
#: The snare-figure check (``_snare_pair``): a slower level is taken when the noise onsets pair up
#: there at least this clearly (dembow at its beat 0.45-0.56, a backbeat 0.2-0.45; wherever the
#: chosen level was already right, half of it scores at most 0.16 on the tuning set)...
_PAIR_MIN = 0.2
#: ... and this much more clearly than at the chosen level.
_PAIR_MARGIN = 0.3
#: An octave decision whose evidence came within this of ``_OCTAVE_RATIO`` was a near tie.
_OCTAVE_CLOSE = 0.15
_PRIOR_CENTRE_BPM = 115.0
_KEY_SR = 11025
_KEY_NFFT = 4096
#: Length of the opening/closing chord windows for the tonic cue, and the closing one's weight.
_KEY_CUE_S = 1.5
_CLOSING_WEIGHT = 0.25


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


def _stft_mag(y: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """|STFT| [bins, frames] with a Hann window; numpy only (no numba on this path)."""
    if y.shape[0] < n_fft:
        y = np.pad(y, (0, n_fft - y.shape[0]))
    frames = 1 + (y.shape[0] - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    win = np.hanning(n_fft + 1)[:-1].astype(np.float32)
    return np.abs(np.fft.rfft(y[idx] * win, axis=1)).T.astype(np.float32)


def onset_envelopes(y: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Spectral-flux onset strength on a dB mel spectrogram (80 dB range): full band (for the
    periodicity) and below 2 kHz (kick, snare body, bass: what defines the beat level; hi-hats
    live above it), plus the envelope frame rate."""
    y16 = soxr.resample(y, sr, _TEMPO_SR, quality="MQ") if sr != _TEMPO_SR else y
    mag = _stft_mag(np.asarray(y16, dtype=np.float32), _TEMPO_NFFT, _TEMPO_HOP)
    mel = _mel_basis(_TEMPO_SR, _TEMPO_NFFT, _TEMPO_MELS) @ (mag * mag)
    db = 10.0 * np.log10(np.maximum(mel, mel.max() * _FLOOR + 1e-20))
    flux = np.maximum(np.diff(db, axis=1), 0.0)
    low = _mel_centres() < 2000.0
    return flux.mean(axis=0), flux[low].mean(axis=0), _TEMPO_SR / _TEMPO_HOP


def _tempo_envelopes(y: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray, float, np.ndarray, np.ndarray,
                                                    np.ndarray]:
    """``onset_envelopes`` plus a kick band (< 150 Hz), a snare/clap band (1-4.5 kHz) and a
    broadband-noise envelope: the median over the 200-5000 Hz bands, which a snare, clap or rim
    lights all at once while a tonal onset (piano, bass, pad) lights only its few partials and a
    hi-hat only the bands above."""
    y16 = soxr.resample(y, sr, _TEMPO_SR, quality="MQ") if sr != _TEMPO_SR else y
    mag = _stft_mag(np.asarray(y16, dtype=np.float32), _TEMPO_NFFT, _TEMPO_HOP)
    mel = _mel_basis(_TEMPO_SR, _TEMPO_NFFT, _TEMPO_MELS) @ (mag * mag)
    db = 10.0 * np.log10(np.maximum(mel, mel.max() * _FLOOR + 1e-20))
    flux = np.maximum(np.diff(db, axis=1), 0.0)
    c = _mel_centres()
    return (flux.mean(axis=0), flux[c < 2000.0].mean(axis=0), _TEMPO_SR / _TEMPO_HOP,
            flux[c < 150.0].mean(axis=0), flux[(c > 1000.0) & (c < 4500.0)].mean(axis=0),
            np.median(flux[(c > 200.0) & (c < 5000.0)], axis=0))


def _fold(env: np.ndarray, period: float, steps: int = 48) -> np.ndarray:
    """Mean onset strength at ``steps`` phases of a ``period``-frame cycle (+-2 frames jitter)."""
    n = env.shape[0]
    count = int((n - 2) // period)
    if count < 2:
        return np.zeros(steps)
    pos = (np.arange(steps) / steps * period)[:, None] + np.arange(count)[None, :] * period
    return np.interp(pos, np.arange(n), maximum_filter1d(env, size=5, mode="nearest")).mean(axis=1)


def _backbeat(kick: np.ndarray, snare: np.ndarray, period: float) -> float:
    """How much the kick band and the snare band alternate beat by beat at this beat period
    (-2..2): over a two-beat cycle aligned to the kick's strongest phase, the kick's contrast
    (beat 1 over beat 2) plus the snare's (beat 2 over beat 1)."""
    fk, fs = _fold(kick, 2 * period), _fold(snare, 2 * period)
    b = int(np.argmax(fk))
    h = (b + fk.shape[0] // 2) % fk.shape[0]
    return float((fk[b] - fk[h]) / (fk[b] + fk[h] + 1e-9) + (fs[h] - fs[b]) / (fs[b] + fs[h] + 1e-9))


@functools.lru_cache(maxsize=1)
def _mel_centres() -> np.ndarray:
    import librosa

    return librosa.mel_frequencies(_TEMPO_MELS + 2, fmin=30.0, fmax=_TEMPO_SR / 2)[1:-1]


def _autocorr(env: np.ndarray, max_lag: int) -> np.ndarray:
    n = env.shape[0]
    size = 1 << int(math.ceil(math.log2(2 * n)))
    spec = np.fft.rfft(env - env.mean(), size)
    acf = np.fft.irfft(spec * np.conj(spec), size)[: max_lag + 1]
    acf /= np.arange(n, n - max_lag - 1, -1)  # unbiased: long lags are not penalised
    return acf / acf[0] if acf[0] > 0 else acf


def _acf_near(acf: np.ndarray, lag: float) -> float:
    """Autocorrelation at a fractional lag, best within +-1 frame (timing jitter)."""
    idx = np.arange(acf.shape[0])
    return max(float(np.interp(lag + d, idx, acf)) for d in (-1.0, 0.0, 1.0))


def _folded_strength(env: np.ndarray, period: float, phases: int = 2) -> np.ndarray:
    """Mean onset strength at ``phases`` equally spaced points of a ``period``-frame cycle,
    aligned to the strongest phase: [on the beat, half-way, ...]."""
    n = env.shape[0]
    count = int((n - 2) // period)  # whole cycles that fit, so every phase has `count` points
    if count < 2:
        return np.zeros(phases)
    steps = 48
    grid = np.arange(steps) / steps * period
    pos = grid[:, None] + np.arange(count)[None, :] * period
    # a +-2 frame (20 ms) window around each point absorbs timing jitter and the grid's phase
    wide = maximum_filter1d(env, size=5, mode="nearest")
    vals = np.interp(pos, np.arange(n), wide).mean(axis=1)
    best = int(np.argmax(vals))
    return np.array([vals[(best + i * steps // phases) % len(vals)] for i in range(phases)])



def _snare_pair(acf: np.ndarray, period: float) -> float:
    """How much the broadband-noise onsets (snare, clap, rim) repeat every two beats rather than
    every beat: their autocorrelation at two beat periods minus that at one. A backbeat (2 and 4)
    or the dembow's 3+3+2 figure per beat pair scores high at the beat level and near zero at
    double speed; regular hi-hats score the same at both lags and cancel out."""
    if 2 * period >= acf.shape[0] - 2:
        return 0.0
    return _acf_near(acf, 2 * period) - _acf_near(acf, period)


def estimate_tempo(y: np.ndarray, sr: int) -> tuple[float | None, float]:
    """Tempo in BPM (quarter-note beats, 60..200) and a 0..1 confidence; (None, 0) if no pulse."""
    mono = to_mono(y)
    if mono.shape[0] < 4 * sr or float(np.abs(mono).max()) < 1e-4:
        return None, 0.0
    env, low, rate, kick, snare, noise = _tempo_envelopes(mono, sr)
    if not np.any(env > 0):
        return None, 0.0
    max_lag = int(rate * 60.0 / _MIN_BPM * 4) + 2
    max_lag = min(max_lag, env.shape[0] - 1)
    acf = _autocorr(env, max_lag)
    lags = np.arange(acf.shape[0])

    bpms = np.arange(_MIN_BPM / 2, _MAX_BPM * 1.05, 0.2)
    periods = rate * 60.0 / bpms
    score = np.zeros_like(bpms)
    for k, w in ((1, 1.0), (2, 0.7), (3, 0.45), (4, 0.35)):
        lag = periods * k
        ok = lag < acf.shape[0] - 1
        score[ok] += w * np.interp(lag[ok], lags, acf)
    prior = np.exp(-0.5 * (np.log2(bpms / _PRIOR_CENTRE_BPM) / 1.2) ** 2)
    best = int(np.argmax(score * prior))
    bpm = float(bpms[best])

    # Octave decision, slowest plausible level upwards: go to the faster level when what lies
    # half-way between the slower level's beats is beat-like (low-band fold ratio) and recurs
    # every faster beat (low-band autocorrelation at the faster period vs the slower one), with
    # extra evidence when the slower level would put regular onsets on 32nd-note positions
    # (full-band fold at the odd eighths of its beat). Beat/half-beat evidence alone cannot tell a
    # 70 BPM hip-hop groove from the same groove at 140 (the pattern is scale-free); where onsets
    # sit on the finer grid can.
    cands = sorted({b for b in (bpm / 4, bpm / 2, bpm, bpm * 2, bpm * 4) if _MIN_BPM * 0.99 <= b <= _MAX_BPM})
    if not cands:
        cands = [min(max(bpm, _MIN_BPM), _MAX_BPM)]
    source = low if np.any(low > 0) else env
    acf_low = _autocorr(maximum_filter1d(source, size=3, mode="nearest"), max_lag)
    chosen = cands[0]
    octave_margin = 1.0  # how far the last octave decision was from going the other way
    for faster in cands[1:]:
        period = rate * 60.0 / chosen
        on, half = _folded_strength(source, period)
        fold = half / on if on > 0 else 0.0
        slow_ac = _acf_near(acf_low, period)
        recur = _acf_near(acf_low, period / 2) / slow_ac if slow_ac > 0 else 0.0
        eighths = _folded_strength(env, period, 8)
        subdiv = float(eighths[1::2].mean() / eighths[0]) if eighths[0] > 0 else 0.0
        evidence = 0.5 * (fold + recur) + _SUBDIV_WEIGHT * subdiv
        octave_margin = abs(evidence - _OCTAVE_RATIO)
        if evidence > _OCTAVE_RATIO:
            chosen = faster
        else:
            break

    # The backbeat marks the beat: where the low band (kick) and the snare band alternate every
    # beat (kick on 1 and 3, snare on 2 and 4), that is the beat level, however busy the hi-hats
    # or arpeggios above it are. Only ever slows down, and only on clear evidence.
    margin = 1.0
    half = chosen / 2
    if half >= _MIN_BPM * 0.99:
        bb_half = _backbeat(kick, snare, rate * 60.0 / half)
        bb_here = _backbeat(kick, snare, rate * 60.0 / chosen)
        if bb_half >= _BACKBEAT_MIN and bb_half - bb_here >= _BACKBEAT_MARGIN:
            chosen = half
        margin = abs(bb_half - bb_here - _BACKBEAT_MARGIN)

    # The snare/clap/rim figure marks the beat too where the kick does not alternate with it (a
    # four-on-the-floor dembow, a dotted funk figure): it repeats every two beats at the beat
    # level and not every beat. Move to half speed (the dembow's 3+3+2 per beat pair read as
    # eighths at double tempo) or to 3/4 of the tempo (a dotted-eighth figure read as the beat)
    # when the figure is clearly paired there and not at the chosen level.
    acf_noise = _autocorr(maximum_filter1d(noise, size=3, mode="nearest"), max_lag)
    pair_here = _snare_pair(acf_noise, rate * 60.0 / chosen)
    pair_margin = 1.0
    for factor in (0.5, 0.75):
        slower = chosen * factor
        if slower < _MIN_BPM * 0.99:
            continue
        pair = _snare_pair(acf_noise, rate * 60.0 / slower)
        # how close this check came to going the other way (in units of its margin)
        pair_margin = min(pair_margin, max(abs(pair - _PAIR_MIN), abs(pair - pair_here - _PAIR_MARGIN))
                          / _PAIR_MARGIN)
        if pair >= _PAIR_MIN and pair - pair_here >= _PAIR_MARGIN:
            pair_margin = min(pair - _PAIR_MIN, pair - pair_here - _PAIR_MARGIN) / _PAIR_MARGIN
            chosen = slower
            break

    # Refine on a fine grid around the chosen level, parabolic peak.
    fine = np.arange(chosen * 0.97, chosen * 1.03, 0.02)
    fscore = np.zeros_like(fine)
    for k in range(1, 9):
        lag = rate * 60.0 / fine * k
        ok = lag < acf.shape[0] - 1
        fscore[ok] += np.interp(lag[ok], lags, acf)
    i = int(np.argmax(fscore))
    if 0 < i < len(fine) - 1:
        a, b, c = fscore[i - 1], fscore[i], fscore[i + 1]
        denom = a - 2 * b + c
        shift = 0.5 * (a - c) / denom if denom < 0 else 0.0
        final = float(fine[i] + shift * 0.02)
    else:
        final = float(fine[i])
    # Honest confidence: how periodic the onsets are at the reading, scaled down when any metrical
    # decision on the way (octave, backbeat, snare figure) nearly went the other way, i.e. when
    # the double/half (or 3/4) alternative scored close.
    decisive = min(1.0, octave_margin / _OCTAVE_CLOSE, margin / _BACKBEAT_MARGIN, pair_margin)
    periodic = float(np.interp(rate * 60.0 / final, lags, acf))
    conf = min(1.0, 0.3 + periodic) * (0.2 + 0.8 * decisive)
    return round(final, 2), round(min(max(conf, 0.0), 1.0), 3)


def _chroma_frames(y: np.ndarray, sr: int) -> tuple[np.ndarray, float]:
    """Per-frame chroma [12, frames] (each frame scaled to max 1; silent frames are zero) and the
    frame rate."""
    y11 = soxr.resample(to_mono(y), sr, _KEY_SR, quality="MQ") if sr != _KEY_SR else to_mono(y)
    mag = _stft_mag(np.asarray(y11, dtype=np.float32), _KEY_NFFT, _KEY_NFFT // 2)
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


def estimate_key(y: np.ndarray, sr: int) -> tuple[str | None, float]:
    """Key and mode like "A minor" and a 0..1 confidence; (None, 0) for silence / no pitch.

    Two stages. The clip's pitch-class profile against the 24 rotations of the key profiles
    finds the scale; it cannot tell a key from its relative (B minor / D major share every note,
    and a looped i-VI-III-VII reads as the major key's I-V-vi-IV). The tonic decides that pair:
    which of the two tonic triads the opening chord (first 1.5 s of sound) matches, and, with
    less weight, the closing one (a clip cut mid-loop ends anywhere; a song ends on the tonic),
    added to the profile difference."""
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
    best = ranked[0]
    rel = ((best[0] - 3) % 12, "minor") if best[1] == "major" else ((best[0] + 3) % 12, "major")
    # the tonic cue: opening and closing chords (loud frames only: no reverb tail, no count-in)
    energy = chroma[:, sounding].sum(axis=0)
    loud = sounding[energy > 0.2 * energy.max()] if energy.size else sounding
    span = max(2, int(_KEY_CUE_S * rate))
    first, last = int(loud[0]), int(loud[-1])
    opening = chroma[:, first:first + span].mean(axis=1)
    closing = chroma[:, max(first, last + 1 - span):last + 1].mean(axis=1)
    evidence = (scores[rel] - scores[best]
                + _corr(opening, _triad(*rel)) - _corr(opening, _triad(*best))
                + _CLOSING_WEIGHT * (_corr(closing, _triad(*rel)) - _corr(closing, _triad(*best))))
    if evidence > 0:
        best, rel = rel, best
    r1 = max(scores[best], scores[rel])  # how well the scale (shared by the pair) fits
    others = [scores[k] for k in ranked if k not in (best, rel)]
    gap = r1 - max(others) if others else 1.0
    # honest confidence: the profile's fit, its margin over keys with another scale, and how
    # clearly the tonic cue settled the relative major/minor question
    conf = max(0.0, min(1.0, r1)) * (1.0 - math.exp(-max(gap, 0.0) / 0.05)) * (1.0 - math.exp(-abs(evidence) / 0.15))
    return f"{PITCHES[best[0]]} {best[1]}", round(conf, 3)


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
