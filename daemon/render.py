"""From model output to library files: post-process, write atomically, describe for the store.

Plain synchronous functions: the scheduler runs them in its executor thread so
the event loop never waits on numpy, librosa or fsync.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dgx_music import __version__
from dgx_music.common import families
from dgx_music.common.families import DEFAULT_FAMILY
from dgx_music.daemon import failpoints, libfiles
from dgx_music.daemon.store import default_title

log = logging.getLogger("dgx_music.render")

SUBTYPES = {16: "PCM_16", 24: "PCM_24", 32: "FLOAT"}


@dataclass(frozen=True)
class RenderOptions:
    target_lufs: float = -14.0
    ceiling_dbtp: float = -1.0
    bit_depth: int = 16
    model: str = ""
    backend: str = ""


def render_tracks(data_dir: Path, job: dict[str, Any], audio: np.ndarray, sample_rate: int,
                  opts: RenderOptions) -> list[dict[str, Any]]:
    """Normalise, analyse and write each variation; return rows for `Store.finish_job`.

    Paths are deterministic per track id, so a job re-run after a crash rewrites
    (atomically) the same files instead of leaving duplicates.
    """
    from dgx_music.common.audio import confidence, files, pipeline  # librosa is heavy: imported when a job renders

    created = dt.datetime.now()
    title = default_title(job["prompt"])
    out: list[dict[str, Any]] = []
    for index in range(audio.shape[0]):
        track_id = f"{job['id']}-{index}"
        processed = pipeline.process(np.asarray(audio[index], dtype=np.float32), sample_rate,
                                     target_lufs=opts.target_lufs, ceiling_dbtp=opts.ceiling_dbtp)
        a = processed.analysis
        path = libfiles.new_track_file(data_dir, track_id, title, created)
        files.write_wav_atomic(path, processed.audio, sample_rate, subtype=SUBTYPES[opts.bit_depth], metadata={
            "title": title if audio.shape[0] == 1 else f"{title} ({index + 1})",
            "comment": job["prompt"],
            "software": f"DGX Music {__version__} ({opts.model}, {opts.backend}, seed {job['seed']})",
            "date": f"{created:%Y-%m-%d}",
            "params": {"model": opts.model or None, "seed": job["seed"], **(job.get("params") or {})},
            "bpm": a.get("bpm"),
            "key": a.get("key"),
            "analysis": confidence.tag_text(a.get("bpm"), a.get("bpm_confidence"), a.get("key"), a.get("key_confidence")),
        })
        failpoints.hit("processing")  # a file is on disk, its row is not
        out.append({
            "index": index,
            "path": str(path.relative_to(data_dir)),
            "duration": a["duration"],
            "sample_rate": a["sample_rate"],
            "channels": a["channels"],
            "model": opts.model or None,
            "backend": opts.backend or None,
            "peaks": a.get("peaks"),
            **{k: a.get(k) for k in ("lufs_before", "lufs", "true_peak", "gain_db", "loudness_note",
                                     "bpm", "bpm_confidence", "key", "key_confidence")},
            **song_fields(job),
        })
    return out


def song_fields(job: dict[str, Any]) -> dict[str, Any]:
    """What a track keeps of its request beside the detected analysis: the model family, and for
    ACE-Step the lyrics (searchable), vocal language and the tempo/key/metre that were asked for."""
    p = job.get("params") or {}
    family = p.get("family") or DEFAULT_FAMILY
    if not families.family(family).song_fields:
        return {"family": family}
    return {"family": family, "lyrics": p.get("lyrics") or None, "language": p.get("language"),
            "req_bpm": p.get("bpm"), "req_key": p.get("key"), "req_time_signature": p.get("time_signature")}
