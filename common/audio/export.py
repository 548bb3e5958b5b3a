"""Exports for producers: WAV or FLAC, optional resampling (soxr), tags DJ software reads.

libsndfile can only write its fixed set of strings (title, artist, comment, ...) into FLAC, not
BPM or INITIALKEY, so after libsndfile writes the FLAC its Vorbis comments are replaced with
ours by mutagen (common/audio/tags.py), as WAV gets its ID3 chunk.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import soundfile as sf
import soxr

from .files import _fsync_dir, safe_filename, write_wav_atomic
from .loops import read_smpl
from .tags import write_tags

FORMATS = ("wav", "flac")
SAMPLE_RATES = (None, 44100, 48000)
BIT_DEPTHS = (16, 24)


class ExportError(ValueError):
    """An export request that cannot be honoured (bad option, unsafe destination)."""


class ExportExistsError(FileExistsError):
    """The destination file exists and ``overwrite`` was not given."""


def resample(audio: np.ndarray, sr: int, target_sr: int) -> np.ndarray:
    """Band-limited resampling of [channels, samples] with soxr (VHQ), not interpolation."""
    if sr == target_sr:
        return audio
    out = soxr.resample(np.ascontiguousarray(audio.T), sr, target_sr, quality="VHQ")
    return np.ascontiguousarray(out.reshape(out.shape[0], -1).T)


def _inside(dest_dir: Path, target: Path) -> bool:
    try:
        target.resolve().relative_to(dest_dir.resolve())
    except ValueError:
        return False
    return True


def export_track(
    src_path: str | Path,
    dest_dir: str | Path,
    name: str,
    format: str = "wav",
    sample_rate: int | None = None,
    bit_depth: int = 16,
    overwrite: bool = False,
    tags: Mapping[str, Any] | None = None,
) -> Path:
    """Export one track to ``dest_dir/<safe name>.<format>`` and return the path written.

    ``tags``: title, artist, comment, date, bpm, key (e.g. "A minor"; written as INITIALKEY
    "Am" in FLAC and TKEY in WAV's id3 chunk). Raises ExportExistsError rather than overwrite
    (unless ``overwrite``), ExportError for bad options or a name that would land outside
    ``dest_dir``. The file appears atomically (temp file + rename)."""
    fmt = format.lower()
    if fmt not in FORMATS:
        raise ExportError(f"format must be one of {FORMATS}, got {format!r}")
    if sample_rate not in SAMPLE_RATES:
        raise ExportError(f"sample rate must be 44100 or 48000 (or unchanged), got {sample_rate!r}")
    if bit_depth not in BIT_DEPTHS:
        raise ExportError(f"bit depth must be 16 or 24, got {bit_depth!r}")
    out_dir = Path(dest_dir)
    if not out_dir.is_dir():
        raise ExportError(f"export directory does not exist: {out_dir}")
    filename = safe_filename(f"{name}.{fmt}" if name else f"untitled.{fmt}")  # separators become _
    target = out_dir / filename
    if not _inside(out_dir, target) or target.is_symlink():
        raise ExportError(f"refusing to write outside {out_dir}: {name!r}")
    if target.exists() and not overwrite:
        raise ExportExistsError(f"{target} exists (use overwrite to replace it)")

    data, sr = sf.read(str(src_path), dtype="float32", always_2d=True)
    audio = data.T
    loop = read_smpl(src_path) if str(src_path).lower().endswith(".wav") else None  # a bar-exact loop's points
    if sample_rate and sample_rate != sr:
        audio = resample(audio, sr, sample_rate)
        if loop is not None:
            start = int(round(loop[0] * sample_rate / sr))
            loop = (start, min(int(round(loop[1] * sample_rate / sr)), audio.shape[1] - start))
        sr = sample_rate
    subtype = "PCM_16" if bit_depth == 16 else "PCM_24"
    meta = dict(tags or {})
    if loop is not None:
        meta["loop"] = loop
    if fmt == "wav":
        return write_wav_atomic(target, audio, sr, subtype, meta)

    fd, tmp_name = tempfile.mkstemp(prefix=".export.", suffix=".flac.tmp", dir=out_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        sf.write(str(tmp), np.clip(audio, -1.0, 1.0).T, sr, format="FLAC", subtype=subtype)
        write_tags(tmp, "flac", meta)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        if target.exists() and not overwrite:  # appeared meanwhile
            raise ExportExistsError(f"{target} exists (use overwrite to replace it)")
        os.replace(tmp, target)
        _fsync_dir(out_dir)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target
