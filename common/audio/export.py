"""Exports for producers: WAV or FLAC, optional resampling (soxr), tags DJ software reads.

libsndfile can only write its fixed set of strings (title, artist, comment, ...) into FLAC, not
BPM or INITIALKEY, so after libsndfile writes the FLAC we replace its VORBIS_COMMENT metadata
block with our own (the block format is simple and documented; no extra dependency). ffprobe
and mutagen read the result.
"""

from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import soundfile as sf
import soxr

from .files import SOFTWARE, _fsync_dir, id3_key, safe_filename, write_wav_atomic

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


def _vorbis_comment_block(tags: Mapping[str, str], last: bool) -> bytes:
    vendor = SOFTWARE.encode("utf-8")
    items = [f"{k.upper()}={v}".encode("utf-8") for k, v in tags.items() if v not in (None, "")]
    body = struct.pack("<I", len(vendor)) + vendor + struct.pack("<I", len(items))
    body += b"".join(struct.pack("<I", len(i)) + i for i in items)
    header = (0x80 if last else 0) | 4
    return bytes([header]) + len(body).to_bytes(3, "big") + body


def set_flac_tags(path: Path, tags: Mapping[str, str]) -> None:
    """Rewrite ``path`` (a FLAC file) in place with ``tags`` as its only VORBIS_COMMENT block."""
    data = path.read_bytes()
    if data[:4] != b"fLaC":
        raise ExportError(f"{path} is not a FLAC file")
    pos, blocks = 4, []
    while True:
        head = data[pos]
        length = int.from_bytes(data[pos + 1 : pos + 4], "big")
        kind = head & 0x7F
        if kind not in (1, 4):  # drop PADDING and the old VORBIS_COMMENT
            blocks.append(bytes([kind]) + data[pos + 1 : pos + 4 + length])
        pos += 4 + length
        if head & 0x80:
            break
    out = [b"fLaC", *blocks, _vorbis_comment_block(tags, last=True)]
    path.write_bytes(b"".join(out) + data[pos:])


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
    if sample_rate and sample_rate != sr:
        audio = resample(audio, sr, sample_rate)
        sr = sample_rate
    subtype = "PCM_16" if bit_depth == 16 else "PCM_24"
    meta = dict(tags or {})
    if fmt == "wav":
        return write_wav_atomic(target, audio, sr, subtype, meta)

    fd, tmp_name = tempfile.mkstemp(prefix=".export.", suffix=".flac.tmp", dir=out_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        sf.write(str(tmp), np.clip(audio, -1.0, 1.0).T, sr, format="FLAC", subtype=subtype)
        vorbis = {
            "TITLE": meta.get("title"),
            "ARTIST": meta.get("artist"),
            "COMMENT": meta.get("comment"),
            "DATE": meta.get("date"),
            "BPM": str(int(round(float(meta["bpm"])))) if meta.get("bpm") else None,
            "INITIALKEY": id3_key(str(meta["key"])) if meta.get("key") else None,
            "ENCODER": SOFTWARE,
        }
        set_flac_tags(tmp, {k: str(v) for k, v in vorbis.items() if v})
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
