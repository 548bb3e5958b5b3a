"""Fit and loop audio, and write the results: plain synchronous functions for the audio thread.

fit_audio:  the source stretched by source/target tempo and shifted by the key's semitones (Rubber
            Band, daemon/stretch.py). The stretch ratio and shift depend only on the request and the
            source's tempo and key, so every stem of one song fitted with the same source tempo and
            key comes out equally long and aligned.
make_loop:  find the downbeat, stretch the whole bars around the loop (plus one spare
            bar each side) to the target tempo, normalise that (loudness target and limiter), then
            cut exactly bars x beats x 60 / bpm seconds (to the sample) from the first downbeat
            and fade the audio that followed the cut into its start (common/audio/loops.py).
            Normalising before the cut keeps one gain across the wrap: a limiter run on the loop
            itself would start fresh at sample 0 and so treat the wrap differently from the rest.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np

from dgx_music import __version__
from dgx_music.common.fitloop import WRAP_CROSSFADE_SECONDS, loop_samples
from dgx_music.daemon import failpoints, libfiles, stretch
from dgx_music.daemon.engine.errors import EngineError
from dgx_music.daemon.render import SUBTYPES, RenderOptions
from dgx_music.daemon.store import default_title

#: Job params that say where the source is, not what was asked: left out of lineage rows.
INTERNAL_KEYS = ("family", "operation", "source_key", "source_id", "source_name", "duration", "loop_prompt")


def fit_audio(audio: np.ndarray, sr: int, source_bpm: float | None, bpm: float | None, semitones: int,
              formant: bool, cancel: threading.Event | None) -> np.ndarray:
    """The whole source at the target tempo (length scaled by source_bpm / bpm) and key."""
    ratio = source_bpm / bpm if source_bpm and bpm else 1.0
    out = stretch.stretch(audio, sr, ratio, semitones, formant, cancel)
    want = int(round(audio.shape[1] * ratio))  # Rubber Band's length, exactly: stems stay equally long
    return _fit_length(out, want)


def _fit_length(a: np.ndarray, n: int) -> np.ndarray:
    if a.shape[1] >= n:
        return np.ascontiguousarray(a[:, :n])
    return np.pad(a, ((0, 0), (0, n - a.shape[1])))


def read_tempo(audio: np.ndarray, sr: int, asked: float | None) -> float | None:
    """The clip's tempo by the project's analysis; near the asked tempo (or an octave of it) it is
    taken at the asked level, and a reading nowhere near it (noise, a model that ignored the
    tempo) gives the asked tempo itself."""
    from dgx_music.common.audio.tempo import estimate_tempo

    bpm, _conf = estimate_tempo(audio, sr)
    if asked is None:
        return bpm
    if bpm is None:
        return asked
    for factor in (1.0, 2.0, 0.5, 1.5, 2.0 / 3.0):
        if abs(bpm * factor / asked - 1.0) <= 0.08:
            return bpm * factor
    return asked


def make_loop(audio: np.ndarray, sr: int, source_bpm: float, bpm: float, bars: int, beats_per_bar: int,
              semitones: int, start_bar: int, opts: RenderOptions, cancel: threading.Event | None,
              normalise: bool = True) -> np.ndarray:
    """A loop of exactly loop_samples(bars, beats_per_bar, bpm, sr) samples (see the module docstring)."""
    from dgx_music.common.audio import loops, loudness

    a = np.asarray(audio, dtype=np.float32)
    bar_src = beats_per_bar * 60.0 / source_bpm  # seconds per bar in the source
    first = loops.first_downbeat(a, sr, source_bpm, beats_per_bar)
    start = first + start_bar * bar_src
    fade = int(round(WRAP_CROSSFADE_SECONDS * sr))
    need_end = start + bars * bar_src + WRAP_CROSSFADE_SECONDS
    have = a.shape[1] / sr
    if need_end > have + 1e-6:
        full = int(max(0.0, (have - first - WRAP_CROSSFADE_SECONDS) // bar_src))
        raise EngineError("bad_request", f"the source has {full} whole {'bar' if full == 1 else 'bars'} after its "
                                         f"first downbeat ({first:.2f} s) at {source_bpm:.1f} BPM; "
                                         f"{start_bar + bars} needed")
    # the stretch of audio around the loop: a spare bar before and after (Rubber Band's edges)
    lo = max(0, int(math.floor((start - bar_src) * sr)))
    hi = min(a.shape[1], int(math.ceil((need_end + bar_src) * sr)))
    ratio = source_bpm / bpm
    region = stretch.stretch(a[:, lo:hi], sr, ratio, semitones, False, cancel)
    if cancel is not None and cancel.is_set():
        raise EngineError("cancelled", "cancelled")
    n = loop_samples(bars, beats_per_bar, bpm, sr)
    at = int(round((start * sr - lo) * ratio))
    region = _fit_length(region, max(region.shape[1], at + n + fade))
    if normalise:
        region, _info = loudness.normalize(loudness.as_channels_first(region), sr, opts.target_lufs,
                                           opts.ceiling_dbtp)
    return loops.wrap_crossfade(region, at, n, fade)


def measure(audio: np.ndarray, sr: int, note: str | None) -> dict[str, Any]:
    """Analysis of audio written as it is (its loudness already settled)."""
    from dgx_music.common.audio import analysis, loudness

    lufs, tp = loudness.integrated_loudness(audio, sr), loudness.true_peak(audio, sr)
    facts = analysis.analyze(audio, sr, peaks=256)
    lufs_v = round(lufs, 2) if math.isfinite(lufs) else None
    return {**facts, "lufs_before": lufs_v, "lufs": lufs_v, "true_peak": round(tp, 2) if math.isfinite(tp) else None,
            "gain_db": 0.0, "loudness_note": note}


def title_of(job: dict[str, Any]) -> str:
    p = job["params"]
    name = p.get("source_name")
    if p["operation"] == "fit":
        what = ", ".join(x for x in (f"{p['bpm']:g} BPM" if p.get("bpm") else "", p.get("key") or "") if x)
        return f"{name} (fit {what})"
    loop = f"loop {p['bars']} {'bar' if p['bars'] == 1 else 'bars'}"
    if name is None:  # generated from a prompt
        return f"{default_title(p.get('loop_prompt') or job['prompt'])} ({loop})"
    return f"{name} ({loop}{', ' + format(p['bpm'], 'g') + ' BPM' if p.get('bpm') else ''})"


def write_result(data_dir: Path, job: dict[str, Any], audio: np.ndarray, sr: int, opts: RenderOptions,
                 note: str | None) -> list[dict[str, Any]]:
    """Write the job's one track atomically (a loop with its loop points); its row for Store.finish_job."""
    from dgx_music.common.audio import files

    p = job["params"]
    a = np.asarray(audio[0] if audio.ndim == 3 else audio, dtype=np.float32)
    if p["operation"] == "fit":
        peak = float(np.max(np.abs(a))) if a.size else 0.0
        if peak > 1.0:  # the stretcher's ringing can overshoot a source at full scale; PCM would clip
            a = a / peak * 0.999
            note = "scaled down to stay under full scale after stretching"
    info = measure(a, sr, note)
    created = dt.datetime.now()
    title = title_of(job)
    track_id = f"{job['id']}-0"
    asked = {k: v for k, v in p.items() if k not in INTERNAL_KEYS}
    path = libfiles.new_track_file(data_dir, track_id, title, created)
    is_loop = p["operation"] == "loop"
    files.write_wav_atomic(path, a, sr, subtype=SUBTYPES[opts.bit_depth], metadata={
        "title": title, "comment": job["prompt"],
        "software": f"DGX Music {__version__} ({opts.model}, {opts.backend}, seed {job['seed']})",
        "date": f"{created:%Y-%m-%d}",
        "params": {"model": opts.model or None, "seed": job["seed"], **asked,
                   "source": p.get("source_id") or p.get("source_name")},
        "bpm": p.get("bpm") or info.get("bpm"), "key": p.get("key") or info.get("key"),
        "loop": (0, a.shape[1]) if is_loop else None})
    failpoints.hit("processing")
    row: dict[str, Any] = {
        "index": 0, "title": title, "path": str(path.relative_to(data_dir)),
        "duration": info["duration"], "sample_rate": info["sample_rate"], "channels": info["channels"],
        "model": opts.model or None, "backend": opts.backend or None, "peaks": info.get("peaks"),
        **{k: info.get(k) for k in ("lufs_before", "lufs", "true_peak", "gain_db", "loudness_note",
                                    "bpm", "bpm_confidence", "key", "key_confidence")},
    }
    if p.get("source_name") is not None:
        row["lineage"] = {"source_id": p.get("source_id"), "source_name": p["source_name"],
                          "operation": p["operation"], "part": None, "params": {**asked, "seed": job["seed"]}}
    return [row]


__all__ = ["INTERNAL_KEYS", "fit_audio", "make_loop", "measure", "read_tempo", "title_of", "write_result"]
