"""Library files: safe names, the library layout, atomic WAV writes with embedded metadata.

Metadata in WAV goes two ways, because readers differ: a RIFF LIST/INFO chunk (written by
libsndfile: INAM title, ICMT comment = the prompt, ISFT software, IART artist, ICRD date) and an
``id3 `` chunk (ID3v2.4: TIT2, COMM, TSSE, TBPM, TKEY, and TXXX "DGX Music parameters" with the
job's parameters as JSON) since INFO has no BPM or key field and DJ software and mutagen read ID3
in WAV (ffprobe shows it only when there is no INFO chunk). FLAC tags (Vorbis comments) are written in export.py.
"""

from __future__ import annotations

import json
import os
import re
import struct
import tempfile
import unicodedata
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import soundfile as sf

SOFTWARE = "DGX Music"
#: The metadata keys write_wav_atomic understands; any other key is a caller's mistake (a key the
#: writer silently ignored once kept every library file's prompt out of its tags).
META_KEYS = frozenset({"title", "comment", "artist", "date", "software", "bpm", "key", "params", "analysis"})
PARAMS_DESC = "DGX Music parameters"  # TXXX description; ffprobe shows it as a tag of that name
ANALYSIS_DESC = "DGX Music analysis"  # TXXX: the BPM/key readings with how sure they are
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


def _id3_text_frame(frame_id: str, text: str) -> bytes:
    body = b"\x03" + text.encode("utf-8")  # encoding 3 = UTF-8 (ID3v2.4)
    return frame_id.encode("ascii") + _syncsafe(len(body)) + b"\x00\x00" + body


def _syncsafe(n: int) -> bytes:
    return bytes([(n >> 21) & 0x7F, (n >> 14) & 0x7F, (n >> 7) & 0x7F, n & 0x7F])


def id3_tag(meta: Mapping[str, Any]) -> bytes:
    """A minimal ID3v2.4 tag (title, comment, software, artist, BPM, key, parameters) for the
    ``id3 `` chunk."""
    frames = []
    for key, fid in (("title", "TIT2"), ("artist", "TPE1"), ("software", "TSSE")):
        if meta.get(key):
            frames.append(_id3_text_frame(fid, str(meta[key])))
    if meta.get("bpm"):
        frames.append(_id3_text_frame("TBPM", str(int(round(float(meta["bpm"]))))))
    if meta.get("key"):
        frames.append(_id3_text_frame("TKEY", id3_key(str(meta["key"]))))
    if meta.get("comment"):
        body = b"\x03" + b"eng" + b"\x00" + str(meta["comment"]).encode("utf-8")
        frames.append(b"COMM" + _syncsafe(len(body)) + b"\x00\x00" + body)
    if meta.get("params"):
        value = meta["params"] if isinstance(meta["params"], str) else json.dumps(
            meta["params"], sort_keys=True, separators=(",", ":"), default=str)
        body = b"\x03" + PARAMS_DESC.encode("utf-8") + b"\x00" + value.encode("utf-8")
        frames.append(b"TXXX" + _syncsafe(len(body)) + b"\x00\x00" + body)
    if meta.get("analysis"):  # how sure the BPM/key readings are (TBPM/TKEY cannot say)
        body = b"\x03" + ANALYSIS_DESC.encode("utf-8") + b"\x00" + str(meta["analysis"]).encode("utf-8")
        frames.append(b"TXXX" + _syncsafe(len(body)) + b"\x00\x00" + body)
    payload = b"".join(frames)
    return b"ID3\x04\x00\x00" + _syncsafe(len(payload)) + payload


def id3_key(key: str) -> str:
    """'A minor' -> 'Am', 'C# major' -> 'C#' (the TKEY / INITIALKEY convention)."""
    parts = key.split()
    if len(parts) == 2 and parts[1].lower() in ("major", "minor"):
        return parts[0] + ("m" if parts[1].lower() == "minor" else "")
    return key[:3]


def _append_riff_chunk(fh: Any, chunk_id: bytes, data: bytes) -> None:
    """Append a chunk to an open RIFF/WAVE file and fix the RIFF size."""
    fh.seek(0, os.SEEK_END)
    fh.write(chunk_id + struct.pack("<I", len(data)) + data + (b"\x00" if len(data) % 2 else b""))
    size = fh.tell() - 8
    fh.seek(4)
    fh.write(struct.pack("<I", size))


def write_wav_atomic(
    path: str | Path,
    audio: np.ndarray,
    sr: int,
    subtype: str = "PCM_16",
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write [channels, samples] float audio as WAV so that ``path`` is either absent or complete.

    Temp file in the same directory, fsync, rename over ``path``, fsync the directory: a crash
    leaves no half-written track for the DB row (committed after this returns) to point at.
    ``metadata`` keys (META_KEYS; any other is a ValueError): title, comment (the prompt),
    artist, date, bpm, key, params (a dict, stored as JSON), software (default "DGX Music").
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
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.stem[:40]}.", suffix=".tmp", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w+b") as fh:
            with sf.SoundFile(fh, "w", samplerate=int(sr), channels=a.shape[0], format="WAV", subtype=subtype) as snd:
                for key in ("title", "comment", "artist", "date"):
                    if meta.get(key):
                        setattr(snd, key, str(meta[key]))
                snd.software = meta["software"]
                snd.write(np.clip(a, -1.0, 1.0).T if subtype != "FLOAT" else a.T)
            _append_riff_chunk(fh, b"id3 ", id3_tag(meta))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest
