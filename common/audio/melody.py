"""Melody references, as both sides see them: decode any audio file to mono, check it, and reduce
it to what a melody model reads (32 kHz mono, at most 30 s).

Clients call :func:`encode_upload` before sending a local file as `melody_audio` (so a long 96 kHz
WAV still fits one frame); the daemon decodes and checks the upload again with :func:`decode` and
:func:`prepare` before storing it (daemon/audio_store.py: MELODIES). Blocking file and DSP work: run it in a
thread.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import soundfile as sf

from dgx_music.common.params import ParamError

SAMPLE_RATE = 32000  # what MusicGen's chroma extractor expects
MAX_SECONDS = 30.0  # the longest span a melody model looks at
MIN_SECONDS = 1.0
MIN_PEAK = 1e-4  # quieter than -80 dBFS: nothing to follow
MIN_RATE, MAX_RATE = 4000, 384000


def prepare(audio: np.ndarray, sample_rate: int, field: str = "melody") -> np.ndarray:
    """[frames] or [frames, channels] at any rate -> float32 mono at 32 kHz, at most 30 s."""
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim == 2:
        a = a.mean(axis=1)
    if a.ndim != 1:
        raise ParamError(field, f"expected mono or multichannel audio, got shape {a.shape}")
    check_samples(a, sample_rate, field, MIN_SECONDS, "a melody")
    if sample_rate != SAMPLE_RATE:
        import soxr

        a = soxr.resample(a, sample_rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    a = a[: int(MAX_SECONDS * SAMPLE_RATE)]
    peak = float(np.abs(a).max()) if a.size else 0.0
    if peak < MIN_PEAK:
        raise ParamError(field, "is silent: there is no melody to follow")
    if peak > 1.0:
        a = a / peak  # keep the shape of a hot file instead of clipping it
    return np.ascontiguousarray(a)


@contextmanager
def open_checked(source: io.BytesIO | Path, field: str) -> Iterator[sf.SoundFile]:
    """An audio file open for reading with its sample rate checked; what libsndfile refuses
    becomes a ParamError naming `field` (shared by melody and operation-source decoding)."""
    try:
        with sf.SoundFile(source) as snd:
            sr = int(snd.samplerate)
            if not MIN_RATE <= sr <= MAX_RATE:
                raise ParamError(field, f"has a sample rate of {sr} Hz; expected {MIN_RATE}-{MAX_RATE} Hz")
            yield snd
    except ParamError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        detail = str(exc).rsplit(": ", 1)[-1]  # libsndfile names the file object first: noise to a user
        raise ParamError(field, f"cannot decode that audio ({detail}); send WAV, FLAC, OGG or MP3") from None


def check_samples(a: np.ndarray, sample_rate: int, field: str, min_seconds: float, noun: str) -> float:
    """Refuse NaN/infinite samples and audio shorter than `min_seconds` ([..., samples]); return its seconds."""
    if not np.isfinite(a).all():
        raise ParamError(field, "contains NaN or infinite samples")
    seconds = a.shape[-1] / sample_rate
    if seconds < min_seconds:
        raise ParamError(field, f"is {seconds:.2f} s long; {noun} needs at least {min_seconds:g} s")
    return seconds


def decode(source: io.BytesIO | Path, field: str) -> tuple[np.ndarray, int]:
    """Mono float32 of at most the first 30 s: read a second at a time and mixed down as it
    comes, so a small compressed upload with many channels cannot expand without bound."""
    with open_checked(source, field) as snd:
        sr = int(snd.samplerate)
        parts = [block.mean(axis=1) for block in snd.blocks(blocksize=sr, frames=int(MAX_SECONDS * sr),
                                                              dtype="float32", always_2d=True)]
        audio = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    return audio, sr


def read_mono(path: Path) -> np.ndarray:
    """A library track as float32 mono at 32 kHz, unchecked (music a job continues, read when it runs)."""
    audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    if sr != SAMPLE_RATE:
        import soxr

        mono = soxr.resample(mono, sr, SAMPLE_RATE, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(mono, dtype=np.float32)


def encode_upload(path: Path, field: str = "melody") -> bytes:
    """A local audio file -> FLAC bytes of its first 30 s at 32 kHz mono, for `melody_audio`.

    Clients reduce before sending, so a long 96 kHz WAV still fits one frame; the daemon
    decodes and checks the upload again all the same."""
    if not Path(path).is_file():
        raise ParamError(field, f"{path} is not a file")
    audio, sr = decode(Path(path), field)
    buf = io.BytesIO()
    sf.write(buf, prepare(audio, sr, field), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return buf.getvalue()
