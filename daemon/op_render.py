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
from dgx_music.common.operations import ADD_PART, COVER, CROSSFADE_SECONDS, REPAINT, STEMS
from dgx_music.daemon import failpoints
from dgx_music.daemon.render import SUBTYPES, RenderOptions, song_fields

#: Job params that say where the source is, not what was asked: left out of lineage rows.
INTERNAL_KEYS = ("family", "operation", "source_key", "source_id", "source_name", "duration")


def fit(audio: np.ndarray, n: int) -> np.ndarray:
    """[channels, m] -> [channels, n]: cut the pipeline's round-up, or pad with silence."""
    a = np.asarray(audio, dtype=np.float32)
    if a.shape[1] >= n:
        return np.ascontiguousarray(a[:, :n])
    return np.pad(a, ((0, 0), (0, n - a.shape[1])))


def splice(source: np.ndarray, generated: np.ndarray, start: float, end: float, sr: int,
           crossfade: float = CROSSFADE_SECONDS) -> np.ndarray:
    """The source with [start, end) taken from `generated`, level-matched, with equal-power
    crossfades inside the span: every sample outside the span is the source's own."""
    n = source.shape[1]
    s = max(0, min(n, int(round(start * sr))))
    e = max(s, min(n, int(round(end * sr))))
    out = np.array(source, dtype=np.float32, copy=True)
    if e <= s:
        return out
    seg = np.array(fit(generated, n)[:, s:e], dtype=np.float64)
    orig = source[:, s:e].astype(np.float64)
    r_src, r_gen = math.sqrt(float(np.mean(orig ** 2))), math.sqrt(float(np.mean(seg ** 2)))
    if r_src > 1e-9 and r_gen > 1e-9:
        seg *= min(r_src / r_gen, 10.0)  # the pipeline peak-normalises its output; the source has its own level
    xf = min(int(crossfade * sr), (e - s) // 2)
    if xf > 0:
        t = (np.arange(xf) + 0.5) / xf
        fade_in, fade_out = np.sin(t * math.pi / 2), np.cos(t * math.pi / 2)
        seg[:, :xf] = orig[:, :xf] * fade_out + seg[:, :xf] * fade_in
        seg[:, -xf:] = seg[:, -xf:] * fade_out + orig[:, -xf:] * fade_in
    out[:, s:e] = seg.astype(np.float32)
    return out


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


def outputs(job: dict[str, Any], source: np.ndarray, audio: np.ndarray, sr: int) -> list[Output]:
    """What each of the job's tracks holds, in index order."""
    p = job["params"]
    op, name, n = p["operation"], p.get("source_name") or "source", source.shape[1]
    if op == REPAINT:
        return [Output(splice(source, audio[0], float(p["start"]), float(p["end"]), sr),
                       f"{name} (repaint {p['start']:g}-{p['end']:g} s)", False)]
    if op == COVER:
        return [Output(fit(audio[0], n), f"{name} (cover)", True)]
    if op == STEMS:
        return [Output(fit(audio[i], n), f"{name} ({part})", False, part) for i, part in enumerate(p["parts"])]
    if op == ADD_PART:
        part = fit(audio[0], n)
        outs = [Output(part, f"{name} (+{p['part']})", False, p["part"])]
        if p.get("mix"):
            outs.append(Output(mix(source, part), f"{name} (+{p['part']}, mix)", True, p["part"], {"mix": True}))
        return outs
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
    for index, out in enumerate(outputs(job, source, np.asarray(audio, dtype=np.float32), sr)):
        track_id = f"{job['id']}-{index}"
        if out.normalise:
            processed = pipeline.process(out.audio, sr, target_lufs=opts.target_lufs, ceiling_dbtp=opts.ceiling_dbtp)
            data, a = processed.audio, processed.analysis
        else:
            data, a = out.audio, _measure(out.audio, sr)
        path = files.library_path(data_dir, track_id, out.title, created)
        files.write_wav_atomic(path, data, sr, subtype=SUBTYPES[opts.bit_depth], metadata={
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
