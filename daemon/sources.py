"""Source audio of operations on tracks (repaint, cover, stems, add a part): the job's own copy.

Like melodies (daemon/melodies.py), a source is decoded, checked and stored once, at submit
time, before the job row is committed: <data>/sources/<key>.wav, 48 kHz stereo, 32-bit float
(so a 16- or 24-bit library track is kept exactly: a repaint equals it outside the span).
The key is a hash of the audio, so the same source is stored once, and a retry or remix
names the key instead of the track, which may have been deleted since. Job pruning deletes
the sources no job refers to any more (daemon/history.py). Blocking file and DSP work: the
daemon calls these in an executor.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
import soundfile as sf

from dgx_music.common.audio.files import write_wav_atomic
from dgx_music.common.operations import MAX_SOURCE_SECONDS, MIN_SOURCE_SECONDS
from dgx_music.common.schemas import MELODY_KEY_RE, ParamError
from dgx_music.daemon import libfiles

SOURCES = "sources"
SAMPLE_RATE = 48000  # ACE-Step's rate; its VAE reads stereo
MIN_PEAK = 1e-4  # quieter than -80 dBFS: nothing to work on
MIN_RATE, MAX_RATE = 4000, 384000


def source_path(data_dir: Path, key: str) -> Path:
    if not isinstance(key, str) or not MELODY_KEY_RE.match(key):
        raise ParamError("source", f"{key!r} is not a stored source key")
    return libfiles.plain(data_dir, f"{SOURCES}/{key}.wav")  # a symlinked sources/ is refused


def refresh(data_dir: Path, key: str) -> bool:
    """Mark a stored source as just used; False if it is gone."""
    try:
        os.utime(source_path(data_dir, key))
        return True
    except FileNotFoundError:
        return False


def remove_unreferenced(data_dir: Path, keep: set[str], min_age: float) -> int:
    """Delete stored sources whose key is not in `keep` and that are older than `min_age` s."""
    return libfiles.remove_unreferenced(Path(data_dir), SOURCES, keep, min_age)


def decode(source: io.BytesIO | Path, field: str) -> tuple[np.ndarray, int]:
    """Any libsndfile format -> float32 [channels, samples]; the length is checked before reading."""
    try:
        with sf.SoundFile(source) as snd:
            sr = int(snd.samplerate)
            if not MIN_RATE <= sr <= MAX_RATE:
                raise ParamError(field, f"has a sample rate of {sr} Hz; expected {MIN_RATE}-{MAX_RATE} Hz")
            if snd.frames > 0 and snd.frames / sr > MAX_SOURCE_SECONDS + 1:
                raise ParamError(field, f"is {snd.frames / sr:.1f} s long; ACE-Step works on at most "
                                        f"{MAX_SOURCE_SECONDS:g} s")
            blocks = [b[:, :2] for b in snd.blocks(blocksize=sr * 10, frames=int((MAX_SOURCE_SECONDS + 1) * sr),
                                                    dtype="float32", always_2d=True)]
            audio = np.concatenate(blocks) if blocks else np.zeros((0, 1), dtype=np.float32)
    except ParamError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        detail = str(exc).rsplit(": ", 1)[-1]
        raise ParamError(field, f"cannot decode that audio ({detail}); send WAV, FLAC, OGG or MP3") from None
    return np.ascontiguousarray(audio.T), sr


def prepare(audio: np.ndarray, sr: int, field: str) -> np.ndarray:
    """[channels, samples] at any rate -> float32 [2, samples] at 48 kHz, checked (length, silence)."""
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim != 2 or a.shape[0] < 1:
        raise ParamError(field, f"expected [channels, samples] audio, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ParamError(field, "contains NaN or infinite samples")
    seconds = a.shape[1] / sr
    if seconds < MIN_SOURCE_SECONDS:
        raise ParamError(field, f"is {seconds:.2f} s long; a source needs at least {MIN_SOURCE_SECONDS:g} s")
    if seconds > MAX_SOURCE_SECONDS:
        raise ParamError(field, f"is {seconds:.1f} s long; ACE-Step works on at most {MAX_SOURCE_SECONDS:g} s")
    if a.shape[0] == 1:
        a = np.repeat(a, 2, axis=0)
    a = a[:2]
    if sr != SAMPLE_RATE:
        import soxr

        a = soxr.resample(a.T, sr, SAMPLE_RATE, quality="HQ").T.astype(np.float32)
    peak = float(np.abs(a).max()) if a.size else 0.0
    if peak < MIN_PEAK:
        raise ParamError(field, "is silent: there is nothing to work on")
    return np.ascontiguousarray(a, dtype=np.float32)


def save(data_dir: Path, audio: np.ndarray) -> str:
    """Store prepared audio under its content key (float WAV, atomic); return the key."""
    a = np.ascontiguousarray(audio, dtype=np.float32)
    key = hashlib.sha256(a.tobytes()).hexdigest()[:16]
    if not refresh(data_dir, key):
        write_wav_atomic(source_path(data_dir, key), a, SAMPLE_RATE, subtype="FLOAT",
                         metadata={"title": "operation source"})
    return key


def from_bytes(data: bytes, field: str = "source_audio") -> np.ndarray:
    """An uploaded audio file -> checked [2, samples] at 48 kHz (not stored yet: see `save`)."""
    if not isinstance(data, (bytes, bytearray)) or not data:
        raise ParamError(field, "must be the bytes of an audio file")
    audio, sr = decode(io.BytesIO(bytes(data)), field)
    return prepare(audio, sr, field)


def from_file(path: Path, field: str = "source") -> np.ndarray:
    """A library track's file -> checked [2, samples] at 48 kHz (not stored yet: see `save`)."""
    if not Path(path).is_file():
        raise ParamError(field, "that track's audio file is missing")
    audio, sr = decode(Path(path), field)
    return prepare(audio, sr, field)


def seconds_of(data_dir: Path, key: str) -> float:
    return float(sf.info(str(source_path(data_dir, key))).duration)


def load(data_dir: Path, key: str) -> np.ndarray:
    """The stored source as float32 [2, samples] at 48 kHz; FileNotFoundError if it was removed."""
    path = source_path(data_dir, key)
    if not path.is_file():
        raise FileNotFoundError(f"no stored source {key}")
    audio, _sr = sf.read(str(path), dtype="float32", always_2d=True)
    return np.ascontiguousarray(audio.T, dtype=np.float32)
