"""Audio a job reads besides its prompt: melodies to follow, music to continue.

Melody references for melody models are decoded, checked and stored once, at submit time.

A job that follows a melody keeps its own copy (<data>/melodies/<key>.wav, 32 kHz mono,
at most 30 s), written atomically before the job row is committed. So the job survives a
restart, a deleted source track, or a client that disconnected after uploading. The key is
a hash of the audio, so submitting the same melody twice stores it once. Everything here
is blocking file and DSP work: the daemon calls it in an executor. Decoding and checking a
reference is shared with the clients (dgx_music.common.audio.melody).
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
import soundfile as sf

from dgx_music.common.audio.files import write_wav_atomic
from dgx_music.common.audio.melody import SAMPLE_RATE, decode, prepare
from dgx_music.common.params import MELODY_KEY_RE, ParamError
from dgx_music.daemon import libfiles

__all__ = ["SAMPLE_RATE", "melody_path", "prepare", "refresh", "save", "from_bytes", "from_file",
           "remove_unreferenced", "read_mono", "load"]

MELODIES = "melodies"


def melody_path(data_dir: Path, key: str) -> Path:
    if not isinstance(key, str) or not MELODY_KEY_RE.match(key):
        raise ParamError("melody", f"{key!r} is not a stored melody key")
    return libfiles.plain(data_dir, f"{MELODIES}/{key}.wav")  # a symlinked melodies/ is refused


def refresh(data_dir: Path, key: str) -> bool:
    """Mark a stored melody as just used (pruning spares young files); False if it is gone."""
    try:
        os.utime(melody_path(data_dir, key))
        return True
    except FileNotFoundError:
        return False


def save(data_dir: Path, mono: np.ndarray) -> str:
    """Store prepared audio under its content key (16-bit WAV, atomic); return the key."""
    pcm = (np.clip(mono, -1.0, 1.0) * 32767.0).round().astype("<i2")
    key = hashlib.sha256(pcm.tobytes()).hexdigest()[:16]
    # Already stored: mark it fresh, so pruning (which spares young files) leaves it for this job.
    if not refresh(data_dir, key):
        write_wav_atomic(melody_path(data_dir, key), pcm.astype(np.float32)[np.newaxis, :] / 32767.0, SAMPLE_RATE,
                         metadata={"title": "melody reference"})
    return key


def from_bytes(data_dir: Path, data: bytes, field: str = "melody_audio") -> tuple[str, float]:
    """An uploaded audio file -> (key, seconds kept)."""
    if not isinstance(data, (bytes, bytearray)) or not data:
        raise ParamError(field, "must be the bytes of an audio file")
    audio, sr = decode(io.BytesIO(bytes(data)), field)
    mono = prepare(audio, sr, field)
    return save(data_dir, mono), mono.shape[0] / SAMPLE_RATE


def from_file(data_dir: Path, path: Path, field: str = "melody") -> tuple[str, float]:
    """A library track's file -> (key, seconds kept)."""
    try:
        audio, sr = decode(Path(path), field)
    except ParamError:
        if not Path(path).is_file():
            raise ParamError(field, "that track's audio file is missing") from None
        raise
    mono = prepare(audio, sr, field)
    return save(data_dir, mono), mono.shape[0] / SAMPLE_RATE


def remove_unreferenced(data_dir: Path, keep: set[str], min_age: float) -> int:
    """Delete stored melodies whose key is not in `keep` and that are older than `min_age` s."""
    return libfiles.remove_unreferenced(Path(data_dir), MELODIES, keep, min_age)


def read_mono(path: Path) -> np.ndarray:
    """A library track as float32 mono at 32 kHz (music to continue, read when the job runs)."""
    audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    if sr != SAMPLE_RATE:
        import soxr

        mono = soxr.resample(mono, sr, SAMPLE_RATE, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(mono, dtype=np.float32)


def load(data_dir: Path, key: str) -> np.ndarray:
    """The stored melody as float32 mono at 32 kHz; FileNotFoundError if it was removed."""
    audio, _sr = sf.read(str(melody_path(data_dir, key)), dtype="float32", always_2d=False)
    return np.ascontiguousarray(audio.reshape(-1), dtype=np.float32)
