"""Tempo of a clip (see analysis.py for the method in brief)."""

from __future__ import annotations

import math

import numpy as np
import soxr
from scipy.ndimage import maximum_filter1d

from .features import TEMPO_HOP, TEMPO_MELS, TEMPO_NFFT, TEMPO_SR, _mel_basis, _mel_centres, stft_mag, to_mono

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
#: The snare backbeat check: the kick-free snare envelope's two-beat pairing at half the chosen
#: tempo must reach this (backbeats 0.14-0.37 there; a correct reading's half scores at most 0.08
#: above 150 BPM on the 60 songs)...
_SNARE_MIN = 0.12
#: ... and exceed that at the chosen tempo, plus the prior's gain, by this.
_SNARE_MARGIN = 0.12
#: The snare backbeat check also below the prior's gate, down to this reading, where the drums
#: are exposed: a share of broadband-onset frames of at least ``_EXPOSED_KIT`` (loud kick and
#: snare hits lighting most bands at once: hip-hop, pop, drum and bass kits score 0.02-0.05; a
#: ride-and-pedal-hat swing, whose hi-hat foot on 2 and 4 pairs like a backbeat at half speed,
#: and drums under distorted guitars stay under 0.011 on the 119 songs). There the half must pair
#: at least ``_SNARE_MIN`` and beat the reading by ``_EXPOSED_MARGIN``, prior not counted (between
#: 140 and 163 BPM it is near neutral).
_EXPOSED_MIN_BPM = 140.0
_EXPOSED_KIT = 0.025
_EXPOSED_MARGIN = 0.06
#: Below this share of broadband-onset frames there is no percussion (``_tempo_envelopes``).
_DRUMLESS = 0.002
#: ... and then a half-beat fold ratio above this is an even stream of figuration.
_EVEN_STREAM = 0.75
#: Confidence factor without percussion: the even-stream rule, not drums, decided between the
#: figuration's pulse and half of it, so the reading is less sure.
_DRUMLESS_CONF = 0.6


def _tempo_envelopes(y: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray, float, np.ndarray, np.ndarray,
                                                    np.ndarray, np.ndarray, float]:
    """Spectral-flux onset strength on a dB mel spectrogram (80 dB range): full band (for the
    periodicity), below 2 kHz (kick, snare body, bass: what defines the beat level; hi-hats live
    above it), the frame rate, a kick band (< 150 Hz), a snare/clap band (1-4.5 kHz) and a
    broadband-noise envelope: the median over the 200-5000 Hz bands, which a snare, clap or rim
    lights all at once while a tonal onset (piano, bass, pad) lights only its few partials and a
    hi-hat only the bands above; the same less half the kick band (a snare is about as strong
    across 200-5000 Hz as below 150 Hz; a kick is several times stronger below), the snare alone.
    Last, the share of frames where more than half of all bands rise
    by 3 dB at once: percussive onsets; pitched instruments alone (pads, strings, piano) stay
    under ~0.1%, drums above ~0.3% even under distorted guitars."""
    y16 = soxr.resample(y, sr, TEMPO_SR, quality="MQ") if sr != TEMPO_SR else y
    mag = stft_mag(np.asarray(y16, dtype=np.float32), TEMPO_NFFT, TEMPO_HOP)
    mel = _mel_basis(TEMPO_SR, TEMPO_NFFT, TEMPO_MELS) @ (mag * mag)
    db = 10.0 * np.log10(np.maximum(mel, mel.max() * _FLOOR + 1e-20))
    flux = np.maximum(np.diff(db, axis=1), 0.0)
    c = _mel_centres()
    kick = flux[c < 150.0].mean(axis=0)
    noise = np.median(flux[(c > 200.0) & (c < 5000.0)], axis=0)
    return (flux.mean(axis=0), flux[c < 2000.0].mean(axis=0), TEMPO_SR / TEMPO_HOP,
            kick, flux[(c > 1000.0) & (c < 4500.0)].mean(axis=0),
            noise, np.maximum(noise - 0.5 * kick, 0.0),
            float(np.mean(np.mean(flux > 3.0, axis=0) > 0.5)))


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


def estimate_tempo(y: np.ndarray, sr: int, trace: dict | None = None) -> tuple[float | None, float]:
    """Tempo in BPM (quarter-note beats, 60..200) and a 0..1 confidence; (None, 0) if no pulse.
    ``trace``, when given, receives the evidence of each metrical decision (bench diagnostics)."""
    trace = {} if trace is None else trace
    mono = to_mono(y)
    if mono.shape[0] < 4 * sr or float(np.abs(mono).max()) < 1e-4:
        return None, 0.0
    env, low, rate, kick, snare, noise, snare_only, broadband = _tempo_envelopes(mono, sr)
    drumless = broadband < _DRUMLESS
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
        # onsets at the quarter-beats, above the floor between onsets (the odd eighths; sustained
        # pads keep the flux from reaching zero there)
        floor = float(eighths[1::2].mean())
        quarter = float((eighths[2] + eighths[6]) / 2 - floor) / max(float(eighths[0]) - floor, 1e-9)
        if drumless and fold > _EVEN_STREAM and quarter < 0.5:
            # Without percussion an even stream (the half-way onsets as strong as those on the
            # beat, the quarter-way ones not: arpeggios, strummed eighths) is accompaniment
            # figuration, and a beat is at least two of its notes: the faster level would make
            # each note a beat. (A stream at quarter-beats may still double the level.)
            trace["even_stream"] = round(chosen, 1)
            break
        trace.setdefault("octave", []).append((round(chosen, 1), round(fold, 2), round(recur, 2), round(subdiv, 3),
                                               round(evidence, 2)))
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

    # The backbeat against the tempo prior: a snare on 2 and 4 repeats every two beats. Where the
    # kick-free snare envelope does so at half the chosen tempo clearly more than at the chosen one
    # (boom bap and pop with 16th hats read double: the hats and the syncopated kick and bass
    # fill the half-beats), halve, with the log-normal tempo prior's gain from going slower counted
    # in. Only where the prior favours the half (readings above ~163 BPM): a swing ride with the
    # hi-hat foot on 2 and 4 pairs up at half speed too, at moderate tempos.
    beat_margin = 1.0
    if chosen / 2 >= _MIN_BPM * 0.99:
        acf_snare = _autocorr(maximum_filter1d(snare_only, size=3, mode="nearest"), max_lag)
        sn_half = _snare_pair(acf_snare, rate * 60.0 / (chosen / 2))
        sn_here = _snare_pair(acf_snare, rate * 60.0 / chosen)
        gain = 0.5 * (math.log2(chosen / _PRIOR_CENTRE_BPM) ** 2 - math.log2(chosen / 2 / _PRIOR_CENTRE_BPM) ** 2)
        score = sn_half - sn_here + gain
        trace.update(snare_half=round(sn_half, 3), snare_here=round(sn_here, 3), prior_gain=round(gain, 3))
        if gain > 0 and sn_half >= _SNARE_MIN:
            beat_margin = abs(score - _SNARE_MARGIN) / _SNARE_MARGIN
            if score >= _SNARE_MARGIN:
                chosen = chosen / 2
        elif chosen >= _EXPOSED_MIN_BPM and broadband >= _EXPOSED_KIT and sn_half >= _SNARE_MIN:
            # boom bap at 70-82 read double (140-163): the prior cannot speak there, an exposed
            # kit's snare pairing can
            diff = sn_half - sn_here
            beat_margin = abs(diff - _EXPOSED_MARGIN) / _EXPOSED_MARGIN
            if diff >= _EXPOSED_MARGIN:
                chosen = chosen / 2

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
    decisive = min(1.0, octave_margin / _OCTAVE_CLOSE, margin / _BACKBEAT_MARGIN, pair_margin, beat_margin)
    periodic = float(np.interp(rate * 60.0 / final, lags, acf))
    conf = min(1.0, 0.3 + periodic) * (0.2 + 0.8 * decisive) * (_DRUMLESS_CONF if drumless else 1.0)
    trace.update(broadband=round(broadband, 4), drumless=drumless)
    return round(final, 2), round(min(max(conf, 0.0), 1.0), 3)
