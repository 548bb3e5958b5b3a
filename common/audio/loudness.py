"""Loudness (ITU-R BS.1770 via pyloudnorm), true peak, and normalisation with a true-peak limiter.

Audio arrays throughout common/audio are float32 ``[channels, samples]``.

Normalising to -14 LUFS with a -1 dBTP ceiling usually needs more gain than the peaks allow, so
plain gain would either miss the target or clip. Instead we apply the gain and let a look-ahead
limiter (linked channels, smooth dB-domain envelope) shave the peaks, then iterate the gain until
the *limited* signal reads the target. Only when the required gain exceeds ``max_gain_db``
(near-silence: boosting noise by +40 dB helps nobody) do we stop short and say why.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyloudnorm
from scipy.ndimage import maximum_filter1d, uniform_filter1d
from scipy.signal import firwin, lfilter

#: Oversampling factor for true peak (BS.1770-4 Annex 2: at least 4x).
TRUE_PEAK_OVERSAMPLE = 4
#: BS.1770 absolute gate; below it a signal has no integrated loudness at all.
ABSOLUTE_GATE_LUFS = -70.0
#: The limiter aims this far below the ceiling. True peak depends on the meter's interpolation
#: filter and grid: on material with energy near Nyquist (hi-hats at 32 kHz), ffmpeg's ebur128
#: (192 kHz via swresample) reads up to ~0.3 dB above a 4x polyphase meter. 16-bit rounding adds
#: a little more. 0.5 dB keeps finished files at or under the ceiling on any of them.
DEFAULT_HEADROOM_DB = 0.5
DEFAULT_MAX_GAIN_DB = 30.0
#: Look-ahead (= attack ramp) and release time constant of the limiter. 5 ms attack keeps the
#: body of transients without distorting; an exponential (in dB) release of 60 ms lets deep
#: reductions on drum hits recover quickly (so the limiter does not turn into a pumping
#: compressor) while small ones stay smooth.
LIMITER_LOOKAHEAD_S = 0.005
LIMITER_RELEASE_S = 0.06
#: Samples per limiter control block (the gain is interpolated between block centres).
CONTROL_BLOCK = 8
_TAPS_PER_PHASE = 32
_KAISER_BETA = 5.0

_BLOCK_S = 0.4
_STEP_S = 0.1


class LoudnessError(ValueError):
    """Audio that cannot be measured or normalised (wrong shape, non-finite samples)."""


@dataclass(frozen=True)
class LoudnessInfo:
    """What normalisation did; ``note`` says why the target was not reached (else None)."""

    lufs_before: float | None  # None: below the absolute gate (silence) or shorter than 0.4 s
    lufs: float | None
    true_peak: float | None  # dBTP of the result; None for digital silence
    gain_db: float
    max_reduction_db: float  # deepest gain reduction the limiter applied
    note: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def as_channels_first(audio: np.ndarray) -> np.ndarray:
    """Validate and return ``audio`` as float32 [channels, samples] (1-D input becomes mono)."""
    a = np.asarray(audio)
    if a.ndim == 1:
        a = a[np.newaxis, :]
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[0] > 8:
        raise LoudnessError(f"expected audio shaped [channels, samples] with 1..8 channels, got {a.shape}")
    a = a.astype(np.float32, copy=False)
    if not np.all(np.isfinite(a)):
        raise LoudnessError("audio contains NaN or infinite samples")
    return a


@functools.lru_cache(maxsize=8)
def _meter(sr: int) -> pyloudnorm.Meter:
    return pyloudnorm.Meter(sr)


@functools.lru_cache(maxsize=8)
def _k_filters(sr: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """pyloudnorm's own K-weighting coefficients, so the fast path agrees with it exactly."""
    m = _meter(sr)
    return tuple((f.b, f.a) for f in m._filters.values())


def integrated_loudness(audio: np.ndarray, sr: int) -> float:
    """Integrated loudness in LUFS by pyloudnorm; -inf for silence or clips under 0.4 s."""
    a = as_channels_first(audio)
    if a.shape[1] < int(_BLOCK_S * sr) + 1:
        return -math.inf
    with np.errstate(divide="ignore"):
        value = float(_meter(sr).integrated_loudness(a.T.astype(np.float64)))
    return value if math.isfinite(value) else -math.inf


def _k_weighted(a: np.ndarray, sr: int) -> np.ndarray:
    y = a.astype(np.float64)
    for b, den in _k_filters(sr):
        y = lfilter(b, den, y, axis=1)
    return y


def _gated_loudness(kw_power: np.ndarray, sr: float, per_value: int = 1) -> float:
    """BS.1770 gating over channel-summed K-weighted power (each value the sum of ``per_value``
    samples; ``sr`` values per second), vectorised, with pyloudnorm's block boundaries. Used in
    the gain iteration, where pyloudnorm's per-block Python loop would cost too much."""
    n = kw_power.shape[0]
    block = int(_BLOCK_S * sr)
    if n < block + 1:
        return -math.inf
    count = int(round((n / sr - _BLOCK_S) / _STEP_S)) + 1
    lo = (np.arange(count) * _STEP_S * sr).astype(np.int64)
    hi = np.minimum(((np.arange(count) * _STEP_S + _BLOCK_S) * sr).astype(np.int64), n)
    csum = np.concatenate(([0.0], np.cumsum(kw_power)))
    z = (csum[hi] - csum[lo]) / (block * per_value)
    with np.errstate(divide="ignore"):
        lj = -0.691 + 10.0 * np.log10(np.maximum(z, 1e-30))
    z = z[lj >= ABSOLUTE_GATE_LUFS]
    if z.size == 0:
        return -math.inf
    rel = -0.691 + 10.0 * math.log10(float(np.mean(z))) - 10.0
    lj = -0.691 + 10.0 * np.log10(np.maximum(z, 1e-30))
    z = z[lj > rel]
    if z.size == 0:
        return -math.inf
    return -0.691 + 10.0 * math.log10(float(np.mean(z)))


@functools.lru_cache(maxsize=4)
def _phase_filters(factor: int) -> np.ndarray:
    """Polyphase interpolation filters [factor, taps] from a Kaiser-windowed sinc with 32 taps
    per phase cut off at the input Nyquist. Unlike soxr's presets (passband ends at ~91% of
    Nyquist) it keeps content near Nyquist, whose inter-sample peaks other meters do see.
    Row p gives the samples at offset p/factor: y_p[i] = sum_k H[p, k] x[i + k - half]."""
    half = _TAPS_PER_PHASE // 2
    centre = factor * half
    h = firwin(2 * centre + 1, 1.0 / factor, window=("kaiser", _KAISER_BETA)) * factor
    rows = np.zeros((factor, 2 * half + 1))
    for p in range(factor):
        for k in range(-half, half + 1):
            j = p + centre - factor * k
            if 0 <= j < h.shape[0]:
                rows[p, k + half] = h[j]
    return rows.astype(np.float32)


def _oversampled_abs_max(a: np.ndarray) -> np.ndarray:
    """Per input sample, max over channels and the 4 oversampled phases at/after it of |x|.

    Phase 0 of a windowed sinc cut at 1/factor is the identity, so only factor-1 short
    convolutions per channel are needed (np.convolve: ~7 ms per phase for 30 s at 32 kHz)."""
    rows = _phase_filters(TRUE_PEAK_OVERSAMPLE)
    env = np.abs(a).max(axis=0)
    n = a.shape[1]
    for ch in a:
        x = ch if n >= rows.shape[1] else np.pad(ch, (0, rows.shape[1] - n))
        for p in range(1, TRUE_PEAK_OVERSAMPLE):
            y = np.convolve(x, rows[p][::-1], mode="same")[:n]
            np.maximum(env, np.abs(y), out=env)
    return env


def oversampled(a: np.ndarray) -> np.ndarray:
    """[channels, n] -> [channels, factor, n]: the true-peak meter's oversampled signal (row p is
    the signal at offset p/factor; row 0 the samples). Linear in `a`, so the oversampled sum of
    two signals is the sum of theirs (op_render fits a repaint's span under the ceiling with it)."""
    a = np.asarray(a, dtype=np.float64)
    rows = _phase_filters(TRUE_PEAK_OVERSAMPLE)
    n = a.shape[1]
    out = np.empty((a.shape[0], TRUE_PEAK_OVERSAMPLE, n))
    for c, ch in enumerate(a):
        out[c, 0] = ch
        x = ch if n >= rows.shape[1] else np.pad(ch, (0, rows.shape[1] - n))
        for p in range(1, TRUE_PEAK_OVERSAMPLE):
            out[c, p] = np.convolve(x, rows[p][::-1].astype(np.float64), mode="same")[:n]
    return out


def true_peak(audio: np.ndarray, sr: int) -> float:
    """True peak in dBTP per BS.1770-4: max |x| of the 4x oversampled signal (and the samples)."""
    a = as_channels_first(audio)
    if a.shape[1] == 0:
        return -math.inf
    peak = float(_oversampled_abs_max(a).max())
    return 20.0 * math.log10(peak) if peak > 0 else -math.inf


def block_peak_db(a: np.ndarray) -> np.ndarray:
    """True-peak level in dB per block of CONTROL_BLOCK samples (4x oversampled, all channels).

    The limiter works at this control rate (4 kHz at 32 kHz): its gain moves over milliseconds,
    so computing it per sample would only cost time. Oversampling is linear, so this is done
    once per clip and shifted by the gain being tried. A block also covers the inter-sample
    peaks just before its first sample."""
    n = a.shape[1]
    blocks = -(-n // CONTROL_BLOCK)
    env = _oversampled_abs_max(a)
    env[1:] = np.maximum(env[1:], env[:-1])
    env = np.pad(env, (0, blocks * CONTROL_BLOCK - n)).reshape(blocks, CONTROL_BLOCK)
    with np.errstate(divide="ignore"):
        return 20.0 * np.log10(env.max(axis=1).astype(np.float64))


def limiter_reduction_db(level_db: np.ndarray, sr: int, threshold_db: float) -> np.ndarray:
    """Gain reduction per control block (dB, >= 0, linked channels) so peaks stay <= threshold.

    Release: each reduction decays exponentially (time constant LIMITER_RELEASE_S), computed
    without a Python loop as a running max in the log domain. Attack: a look-ahead max then a
    moving average of the same length, so the gain ramps smoothly into each peak (no clicks, no
    clipping distortion) yet, at every block, is at least the reduction that block and both its
    neighbours need; linear interpolation between blocks therefore never under-reduces.
    """
    need = np.maximum(level_db - threshold_db, 0.0)
    if not np.any(need > 0):
        return need
    rate = sr / CONTROL_BLOCK
    ramp = np.arange(need.shape[0], dtype=np.float64) / (LIMITER_RELEASE_S * rate)
    with np.errstate(divide="ignore"):
        released = np.exp(np.maximum.accumulate(np.log(need) + ramp) - ramp)
    look = max(2, int(round(LIMITER_LOOKAHEAD_S * rate)))
    # max over [b-1, b+look] (scipy centres windows; a negative origin moves it right) ...
    ahead = maximum_filter1d(released, size=look + 2, origin=-((look + 2) // 2) + 1, mode="nearest")
    # ... then the mean over [b-look+1, b]
    smooth = uniform_filter1d(ahead, size=look, origin=(look - 1) // 2, mode="nearest")
    return np.maximum(smooth, released)


def _block_centres(n: int) -> np.ndarray:
    blocks = -(-n // CONTROL_BLOCK)
    return np.arange(blocks) * CONTROL_BLOCK + (CONTROL_BLOCK - 1) / 2.0


def _apply_reduction(a: np.ndarray, gain_db: float, red_db: np.ndarray) -> np.ndarray:
    n = a.shape[1]
    red = np.interp(np.arange(n, dtype=np.float64), _block_centres(n), red_db)
    lin = np.power(10.0, (gain_db - red) / 20.0).astype(np.float32)
    return a * lin[np.newaxis, :]


def limit(audio: np.ndarray, sr: int, ceiling_dbtp: float) -> np.ndarray:
    """Apply the look-ahead true-peak limiter with its threshold at ``ceiling_dbtp``."""
    a = as_channels_first(audio)
    return _apply_reduction(a, 0.0, limiter_reduction_db(block_peak_db(a), sr, ceiling_dbtp))


def normalize(
    audio: np.ndarray,
    sr: int,
    target_lufs: float = -14.0,
    ceiling_dbtp: float = -1.0,
    *,
    max_gain_db: float = DEFAULT_MAX_GAIN_DB,
    headroom_db: float = DEFAULT_HEADROOM_DB,
) -> tuple[np.ndarray, LoudnessInfo]:
    """Gain to ``target_lufs`` with true peaks held under ``ceiling_dbtp`` by the limiter.

    Returns the new float32 [channels, samples] audio and a :class:`LoudnessInfo`. The limiter
    aims ``headroom_db`` below the ceiling so the finished, quantised file still passes an
    independent meter. Silence and clips shorter than a 0.4 s gating block are returned unchanged.
    """
    if not (-70.0 < target_lufs < 0.0):
        raise LoudnessError(f"target_lufs must be between -70 and 0 LUFS, got {target_lufs}")
    if not (-20.0 <= ceiling_dbtp <= 0.0):
        raise LoudnessError(f"ceiling_dbtp must be between -20 and 0 dBTP, got {ceiling_dbtp}")
    a = as_channels_first(audio)
    lufs_before = integrated_loudness(a, sr)
    if not math.isfinite(lufs_before):
        reason = (
            "clip shorter than one 0.4 s loudness block; left unchanged"
            if a.shape[1] <= int(_BLOCK_S * sr)
            else f"clip is silent (below the {ABSOLUTE_GATE_LUFS:.0f} LUFS gate); left unchanged"
        )
        tp = true_peak(a, sr)
        return a.copy(), LoudnessInfo(None, None, _finite(tp), 0.0, 0.0, reason)

    threshold_db = ceiling_dbtp - headroom_db
    level_db = block_peak_db(a)
    kw = _k_weighted(a, sr)
    n = a.shape[1]
    # K-weighted power summed per control block: the gain is ~constant within a block and
    # K-weighting is linear, so loudness(x * g) is computed from these sums without refiltering.
    kw_blocks = np.pad(np.sum(kw * kw, axis=0), (0, len(level_db) * CONTROL_BLOCK - n))
    kw_blocks = kw_blocks.reshape(-1, CONTROL_BLOCK).sum(axis=1)

    def run(gain_db: float) -> tuple[np.ndarray, float]:
        red = limiter_reduction_db(level_db + gain_db, sr, threshold_db)
        weight = np.power(10.0, (gain_db - red) / 10.0)
        return red, _gated_loudness(kw_blocks * weight, sr / CONTROL_BLOCK, CONTROL_BLOCK)

    wanted = target_lufs - lufs_before
    gain = min(wanted, max_gain_db)
    note = None
    if wanted > max_gain_db:
        note = (
            f"gain capped at +{max_gain_db:.1f} dB: clip measured {lufs_before:.1f} LUFS and "
            f"{target_lufs:.1f} LUFS would need +{wanted:.1f} dB (near-silence)"
        )
    def solve(goal: float, gain: float) -> tuple[float, np.ndarray, float]:
        """Secant search for the gain whose limited result reads ``goal`` (fast model)."""
        red, level = run(gain)
        prev: tuple[float, float] | None = None
        for _ in range(8):
            err = goal - level
            if abs(err) < 0.02 or (err > 0 and gain >= max_gain_db):
                break
            if prev is not None and abs(level - prev[1]) > 1e-6:
                slope = (level - prev[1]) / (gain - prev[0])
                step = err / min(max(slope, 0.05), 1.0)
            else:
                step = err
            prev = (gain, level)
            gain = min(gain + step, max_gain_db)
            red, level = run(gain)
        return gain, red, level

    gain, red, level = solve(target_lufs, gain)
    out = _apply_reduction(a, gain, red)
    measured = integrated_loudness(out, sr)
    if note is None and abs(target_lufs - measured) > 0.05 and gain < max_gain_db:
        # Heavy limiting makes the fast model drift a little; correct it once by the measured error.
        gain, red, level = solve(target_lufs + (target_lufs - measured), gain)
        out = _apply_reduction(a, gain, red)
        measured = integrated_loudness(out, sr)
    if note is None and target_lufs - measured > 0.1:
        note = f"limiter could only reach {measured:.1f} LUFS under the {ceiling_dbtp:.1f} dBTP ceiling"

    tp = true_peak(out, sr)
    if tp > ceiling_dbtp - headroom_db / 2:  # belt and braces; the limiter should have held it
        out *= np.float32(10.0 ** ((ceiling_dbtp - headroom_db - tp) / 20.0))
        tp = true_peak(out, sr)
        measured = integrated_loudness(out, sr)
    max_red = float(red.max()) if red.size else 0.0
    info = LoudnessInfo(
        lufs_before=round(lufs_before, 2),
        lufs=_finite(measured),
        true_peak=_finite(tp),
        gain_db=round(gain, 2),
        max_reduction_db=round(max_red, 2),
        note=note,
    )
    return out, info


def _finite(x: float) -> float | None:
    return round(x, 2) if math.isfinite(x) else None
