"""From an operation's model output to library files: fit to the source, splice, mix, write.

Plain synchronous functions, run in the scheduler's audio thread. Every output is exactly
as long as the source (the pipeline rounds up to whole latent frames) and starts at its
first sample, so stems and added parts line up with the source sample for sample.

Levels: a repaint keeps the source's samples outside the span (no normalisation: the
new track equals the source there, bit for bit at the library's bit depth); stems and an
added part are written as the model made them (a loudness target per stem would break
their balance); a cover and the source-plus-part mix are loudness-normalised like a
generated track.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dgx_music import __version__
from dgx_music.common.operations import ADD_PART, COVER, CROSSFADE_SECONDS, EXTEND, REPAINT, STEMS
from dgx_music.daemon import failpoints, libfiles
from dgx_music.daemon.render import SUBTYPES, RenderOptions, song_fields

#: An extension is level-matched to this many seconds of the source next to it.
LEVEL_SECONDS = 10

#: Job params that say where the source is, not what was asked: left out of lineage rows.
INTERNAL_KEYS = ("family", "operation", "source_key", "source_id", "source_name", "duration", "source_rate",
                 "source_channels", "source_frames", "style")


def fit(audio: np.ndarray, n: int) -> np.ndarray:
    """[channels, m] -> [channels, n]: cut the pipeline's round-up, or pad with silence."""
    a = np.asarray(audio, dtype=np.float32)
    if a.shape[1] >= n:
        return np.ascontiguousarray(a[:, :n])
    return np.pad(a, ((0, 0), (0, n - a.shape[1])))


def extend_span(n: int, by: float, before: bool, sr: int) -> tuple[int, int, int]:
    """An extension of a source `n` samples long by `by` s -> (samples of silence padded on, start and
    end of the span to regenerate in the padded source). The span reaches one crossfade into the
    source, so the new music fades in over the source's own edge instead of starting after a cut."""
    pad = int(round(by * sr))
    xf = min(int(CROSSFADE_SECONDS * sr), n // 2)
    return (pad, 0, pad + xf) if before else (pad, n - xf, n + pad)


#: ACE-Step's latent frame (1920 samples at 48 kHz). The pipeline floors a repaint window to whole
#: frames, so the model is asked for a frame more on each side than the daemon splices in.
FRAME_SECONDS = 0.04


def model_window(s: int, e: int, sr: int) -> tuple[float, float]:
    """The repaint window (seconds) to ask the model for, covering the samples [s, e) after the
    pipeline's flooring to frames (it clamps a window past the end to the clip)."""
    return max(0.0, s / sr - FRAME_SECONDS), e / sr + FRAME_SECONDS


def pad_source(source: np.ndarray, pad: int, before: bool) -> np.ndarray:
    """The source with `pad` samples of silence ahead of it (before) or after it."""
    return np.pad(np.asarray(source, dtype=np.float32), ((0, 0), (pad, 0) if before else (0, pad)))


def splice(source: np.ndarray, generated: np.ndarray, start: float, end: float, sr: int,
           crossfade: float = CROSSFADE_SECONDS, ceiling_dbtp: float | None = None) -> np.ndarray:
    """Seconds -> samples for `splice_samples` (a repaint: the new span level-matched to the old one)."""
    n = source.shape[1]
    s = max(0, min(n, int(round(start * sr))))
    return splice_samples(source, generated, s, max(s, min(n, int(round(end * sr)))), sr, crossfade, ceiling_dbtp)


def splice_samples(source: np.ndarray, generated: np.ndarray, s: int, e: int, sr: int,
                   crossfade: float = CROSSFADE_SECONDS, ceiling_dbtp: float | None = None,
                   level_of: np.ndarray | None = None) -> np.ndarray:
    """The source with [start, end) taken from `generated`, level-matched, with crossfades inside
    the span: every sample outside the span is the source's own.

    With `ceiling_dbtp`, the new audio's gain is also capped so the span's true peak stays under
    the library's ceiling (less the limiter's headroom), or under the source's own true peak if that
    is higher (a loud upload): the RMS match alone once gave a span peak of 1.61 against a loud
    source, which clips in a PCM file. The fades are complementary in amplitude (they sum to 1),
    so a fade between two signals under a level stays under it; equal-power fades (sin/cos) can
    reach 1.41 times it where the two agree.

    `level_of`: the audio whose RMS the new span is matched to, when the span's own is not the
    level to keep (an extension's span is mostly the silence padded on: the source's edge is)."""
    n = source.shape[1]
    out = np.array(source, dtype=np.float32, copy=True)
    if e <= s:
        return out
    seg = np.array(fit(generated, n)[:, s:e], dtype=np.float64)
    orig = source[:, s:e].astype(np.float64)
    ref = orig if level_of is None else np.asarray(level_of, dtype=np.float64)
    r_src, r_gen = math.sqrt(float(np.mean(ref ** 2))) if ref.size else 0.0, math.sqrt(float(np.mean(seg ** 2)))
    if r_src > 1e-9 and r_gen > 1e-9:
        seg *= min(r_src / r_gen, 10.0)  # the pipeline peak-normalises its output; the source has its own level
    # The span = the source fading out + the new audio fading in (in place: spans run to 10 min).
    fixed, added = orig, seg
    xf = min(int(crossfade * sr), (e - s) // 2)
    fixed[:, xf:e - s - xf] = 0.0
    if xf > 0:
        fade_in = (np.arange(xf) + 0.5) / xf
        fade_out = 1.0 - fade_in
        fixed[:, :xf] *= fade_out
        fixed[:, -xf:] *= fade_in
        added[:, :xf] *= fade_in
        added[:, -xf:] *= fade_out
    if ceiling_dbtp is not None:
        from dgx_music.common.audio.loudness import DEFAULT_HEADROOM_DB

        added *= _gain_under(source, fixed, added, s, e, 10.0 ** ((ceiling_dbtp - DEFAULT_HEADROOM_DB) / 20.0))
    out[:, s:e] = (fixed + added).astype(np.float32)
    return out


def _gain_under(source: np.ndarray, fixed: np.ndarray, added: np.ndarray, s: int, e: int, limit: float) -> float:
    """The largest k <= 1 for which the span `fixed + k * added` (with the source around it, for
    the interpolation at its edges) has no true-peak sample above L = max(limit, the source's own
    true peak there).

    Oversampling is linear, so each oversampled point i bounds k on its own:
    |F_i + k A_i| <= L  <=>  k <= (L - sign(A_i) F_i) / |A_i|, for k >= 0 and |F_i| <= L; a point
    already under L at k = 1 is under it for every k in [0, 1]. Polyphase filters over a 10 min
    span cost a few seconds in the audio thread, once per repaint."""
    from dgx_music.common.audio.loudness import _oversampled_abs_max, oversampled

    # pad: past the interpolation filter's half length (each window reads that much context, so
    # its own edges add no ringing); step: bounded memory.
    pad, step, k, n = 32, 480_000, 1.0, source.shape[1]
    lo, hi = max(0, s - pad), min(n, e + pad)
    w0, w1 = max(0, lo - pad), min(n, hi + pad)
    L = max(limit, float(_oversampled_abs_max(np.asarray(source[:, w0:w1], dtype=np.float32))[lo - w0:hi - w0].max()))
    for c0 in range(lo, hi, step):
        c1 = min(hi, c0 + step)
        w0, w1 = max(0, c0 - pad), min(n, c1 + pad)
        f = source[:, w0:w1].astype(np.float64)
        a = np.zeros_like(f)
        i0, i1 = max(s, w0), min(e, w1)  # the span's part in this window
        if i1 > i0:
            f[:, i0 - w0:i1 - w0] = fixed[:, i0 - s:i1 - s]
            a[:, i0 - w0:i1 - w0] = added[:, i0 - s:i1 - s]
        F, A = (oversampled(x)[:, :, c0 - w0:c1 - w0] for x in (f, a))
        over = (np.abs(F + A) > L) & (A != 0)
        if over.any():
            F, A = F[over], A[over]
            k = min(k, float(((L - np.sign(A) * F) / np.abs(A)).min()))
    return max(0.0, k)


def mix(source: np.ndarray, part: np.ndarray) -> np.ndarray:
    """The source with a part added; scaled down as a whole if the sum would clip."""
    m = source.astype(np.float64) + part.astype(np.float64)
    peak = float(np.abs(m).max()) if m.size else 0.0
    if peak > 0.999:
        m *= 0.999 / peak
    return m.astype(np.float32)


@dataclass(frozen=True)
class Output:
    audio: np.ndarray
    title: str
    normalise: bool
    part: str | None = None
    extra: dict[str, Any] | None = None
    sample_rate: int | None = None  # None: the model's (48 kHz)


def in_source_format(stems: list[np.ndarray], sr: int, p: dict[str, Any]) -> tuple[list[np.ndarray], int]:
    """Separated stems ([2, n] at the stored 48 kHz copy's rate) -> the source file's own rate,
    channel count and length (job params `source_rate`, `source_channels`, `source_frames`).

    Resampling and a mono downmix are linear, so stems that add up to the stored copy add up to
    its conversion back, which is the source up to the two resamplings (soxr HQ)."""
    rate, channels, frames = (int(p.get(k) or 0) for k in ("source_rate", "source_channels", "source_frames"))
    if not rate or not frames:
        return stems, sr  # a row from before, or a source whose format was not recorded
    out = []
    for a in stems:
        a = np.asarray(a, dtype=np.float32)
        if rate != sr:
            import soxr

            a = soxr.resample(a.T, sr, rate, quality="HQ").T
        if channels == 1:
            a = a.mean(axis=0, keepdims=True)
        out.append(fit(a, frames))
    return out, rate


def outputs(job: dict[str, Any], source: np.ndarray, audio: np.ndarray, sr: int,
            ceiling_dbtp: float | None = None) -> list[Output]:
    """What each of the job's tracks holds, in index order (a repaint's span under `ceiling_dbtp`)."""
    p = job["params"]
    op, name, n = p["operation"], p.get("source_name") or "source", source.shape[1]
    if op == REPAINT:
        return [Output(splice(source, audio[0], float(p["start"]), float(p["end"]), sr, ceiling_dbtp=ceiling_dbtp),
                       f"{name} (repaint {p['start']:g}-{p['end']:g} s)", False)]
    if op == COVER:
        return [Output(fit(audio[0], n), f"{name} (cover)", True)]
    if op == STEMS:
        stems, rate = [fit(audio[i], n) for i in range(len(p["parts"]))], None
        if p.get("method") == "separate":  # they add up to the source: write them in its own format
            stems, rate = in_source_format(stems, sr, p)
        return [Output(a, f"{name} ({part})", False, part, sample_rate=rate) for a, part in zip(stems, p["parts"])]
    if op == ADD_PART:
        part = fit(audio[0], n)
        outs = [Output(part, f"{name} (+{p['part']})", False, p["part"])]
        if p.get("mix"):
            outs.append(Output(mix(source, part), f"{name} (+{p['part']}, mix)", True, p["part"], {"mix": True}))
        return outs
    if op == EXTEND:
        by, before = float(p["by"]), bool(p.get("before"))
        # `source` is the padded source (see jobs/operations.py): the original is what is not padding.
        pad = int(round(by * sr))
        orig = source[:, pad:] if before else source[:, :n - pad]
        _, s, e = extend_span(orig.shape[1], by, before, sr)
        edge = orig[:, :LEVEL_SECONDS * sr] if before else orig[:, -LEVEL_SECONDS * sr:]
        where = "before" if before else "after"
        return [Output(splice_samples(source, audio[0], s, e, sr, ceiling_dbtp=ceiling_dbtp, level_of=edge),
                       f"{name} (+{by:g} s {where})", False)]
    raise ValueError(f"unknown operation {op!r}")


def _measure(audio: np.ndarray, sr: int) -> dict[str, Any]:
    """Analysis of audio written as it is (no loudness change)."""
    from dgx_music.common.audio import analysis, loudness

    lufs, tp = loudness.integrated_loudness(audio, sr), loudness.true_peak(audio, sr)
    facts = analysis.analyze(audio, sr, peaks=256)
    lufs_v = round(lufs, 2) if math.isfinite(lufs) else None
    return {**facts, "lufs_before": lufs_v, "lufs": lufs_v, "true_peak": round(tp, 2) if math.isfinite(tp) else None,
            "gain_db": 0.0, "loudness_note": "kept at the level of the source"}


def render_operation(data_dir: Path, job: dict[str, Any], source: np.ndarray, audio: np.ndarray, sr: int,
                     opts: RenderOptions) -> list[dict[str, Any]]:
    """Write each output atomically; return rows for `Store.finish_job` (each with its lineage)."""
    from dgx_music.common.audio import files, pipeline

    p = job["params"]
    created = dt.datetime.now()
    asked = {k: v for k, v in p.items() if k not in INTERNAL_KEYS}
    rows: list[dict[str, Any]] = []
    for index, out in enumerate(outputs(job, source, np.asarray(audio, dtype=np.float32), sr, opts.ceiling_dbtp)):
        track_id = f"{job['id']}-{index}"
        rate = out.sample_rate or sr
        if out.normalise:
            processed = pipeline.process(out.audio, rate, target_lufs=opts.target_lufs, ceiling_dbtp=opts.ceiling_dbtp)
            data, a = processed.audio, processed.analysis
        else:
            data, a = out.audio, _measure(out.audio, rate)
        path = libfiles.new_track_file(data_dir, track_id, out.title, created)
        files.write_wav_atomic(path, data, rate, subtype=SUBTYPES[opts.bit_depth], metadata={
            "title": out.title, "comment": job["prompt"],
            "software": f"DGX Music {__version__} ({opts.model}, {opts.backend}, seed {job['seed']})",
            "date": f"{created:%Y-%m-%d}",
            "params": {"model": opts.model or None, "seed": job["seed"], **asked,
                       "source": p.get("source_id") or p.get("source_name")},
            "bpm": a.get("bpm"), "key": a.get("key")})
        failpoints.hit("processing")
        rows.append({
            "index": index, "title": out.title, "path": str(path.relative_to(data_dir)),
            "duration": a["duration"], "sample_rate": a["sample_rate"], "channels": a["channels"],
            "model": opts.model or None, "backend": opts.backend or None, "peaks": a.get("peaks"),
            **{k: a.get(k) for k in ("lufs_before", "lufs", "true_peak", "gain_db", "loudness_note",
                                     "bpm", "bpm_confidence", "key", "key_confidence")},
            **song_fields(job),
            "lineage": {"source_id": p.get("source_id"), "source_name": p.get("source_name") or "uploaded audio",
                        "operation": p["operation"], "part": out.part,
                        "params": {**asked, "seed": job["seed"], **(out.extra or {})}},
        })
    return rows
