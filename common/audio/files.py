"""Library files: safe names, the library layout, atomic WAV writes with embedded metadata.

Metadata in WAV goes two ways, because readers differ: a RIFF LIST/INFO chunk (written by
libsndfile: INAM title, ICMT comment = the prompt, ISFT software, IART artist, ICRD date) and an
``id3 `` chunk (ID3v2.4, written by mutagen: common/audio/tags.py) with BPM, key and the job's
parameters as JSON, since INFO has no field for them and DJ software reads ID3 in WAV (ffprobe
shows it only when there is no INFO chunk).
"""

from __future__ import annotations

import os
import re
import tempfile
import unicodedata
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import soundfile as sf

from dgx_music.common.paths import temp_prefix

from .tags import ANALYSIS_DESC, PARAMS_DESC, SOFTWARE, write_tags

__all__ = ["ANALYSIS_DESC", "PARAMS_DESC", "SOFTWARE", "META_KEYS", "SUBTYPES", "slugify", "safe_filename",
           "library_path", "write_wav_atomic"]

#: The metadata keys write_wav_atomic understands; any other key is a caller's mistake (a key the
#: writer silently ignored once kept every library file's prompt out of its tags).
META_KEYS = frozenset({"title", "comment", "artist", "date", "software", "bpm", "key", "params", "analysis", "loop"})
SUBTYPES = ("PCM_16", "PCM_24", "FLOAT")
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}
_MAX_NAME_BYTES = 120  # well under 255 (ext4, NTFS, APFS), leaving room for prefixes and suffixes


def slugify(text: str, max_len: int = 60) -> str:
    """ASCII, lowercase, hyphen-separated; 'untitled' when nothing is left."""
    norm = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", norm.lower()).strip("-")
    slug = slug[:max_len].rstrip("-")
    return slug or "untitled"


def safe_filename(name: str, max_bytes: int = _MAX_NAME_BYTES) -> str:
    """A file name (no directory part) valid on Linux, macOS and Windows.

    Removes separators, control and Windows-forbidden characters, trailing dots/spaces,
    avoids reserved device names (CON, NUL, COM1...), and caps the UTF-8 length while keeping
    the extension. Never returns '', '.' or '..'."""
    name = unicodedata.normalize("NFC", name)
    name = "".join("_" if (ord(c) < 32 or ord(c) == 127 or c in '<>:"/\\|?*') else c for c in name)
    name = name.strip().strip(".").strip() or "untitled"
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or len(ext) > 10:
        stem, ext = name, ""
    if stem.split(".")[0].upper().rstrip() in _WINDOWS_RESERVED:
        stem = "_" + stem
    suffix = f".{ext}" if ext else ""
    budget = max_bytes - len(suffix.encode("utf-8"))
    while len(stem.encode("utf-8")) > budget:
        stem = stem[:-1]
    stem = stem.rstrip(" .") or "untitled"
    return stem + suffix


def library_path(data_dir: str | Path, track_id: int | str, title: str, created: datetime) -> Path:
    """``<data_dir>/library/YYYY/MM/<track id>-<slug>.wav``."""
    tid = re.sub(r"[^A-Za-z0-9_-]", "", str(track_id))
    if not tid:
        raise ValueError(f"track id {track_id!r} has no usable characters")
    return Path(data_dir) / "library" / f"{created:%Y}" / f"{created:%m}" / f"{tid}-{slugify(title)}.wav"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_wav_atomic(
    path: str | Path,
    audio: np.ndarray,
    sr: int,
    subtype: str = "PCM_16",
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write [channels, samples] float audio as WAV so that ``path`` is either absent or complete.

    Temp file in the same directory (named after this host and process: `temp_prefix`), fsync,
    rename over ``path``, fsync the directory: a crash leaves no half-written track for the DB row (committed after this returns) to point at.
    ``metadata`` keys (META_KEYS; any other is a ValueError): title, comment (the prompt),
    artist, date, bpm, key, params (a dict, stored as JSON), software (default "DGX Music"), loop
    ((start, length) in samples: a `smpl` chunk, loops.py).
    Parent directories are created."""
    if subtype not in SUBTYPES:
        raise ValueError(f"subtype must be one of {SUBTYPES}, got {subtype!r}")
    dest = Path(path)
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim == 1:
        a = a[np.newaxis, :]
    if a.ndim != 2 or not 1 <= a.shape[0] <= 8:
        raise ValueError(f"audio must be [channels, samples], got shape {a.shape}")
    unknown = set(metadata or {}) - META_KEYS
    if unknown:
        raise ValueError(f"unknown metadata keys {sorted(unknown)}; expected some of {sorted(META_KEYS)}")
    meta = {**(metadata or {})}
    meta["software"] = str(meta.get("software") or SOFTWARE)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(dest.stem), suffix=".tmp", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w+b") as fh:
            with sf.SoundFile(fh, "w", samplerate=int(sr), channels=a.shape[0], format="WAV", subtype=subtype) as snd:
                for key in ("title", "comment", "artist", "date"):
                    if meta.get(key):
                        setattr(snd, key, str(meta[key]))
                snd.software = meta["software"]
                snd.write(np.clip(a, -1.0, 1.0).T if subtype != "FLOAT" else a.T)
            write_tags(fh, "wav", meta)
            if meta.get("loop"):
                from .loops import append_riff_chunk, smpl_chunk

                append_riff_chunk(fh, smpl_chunk(int(sr), int(meta["loop"][0]), int(meta["loop"][1])))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest
