"""The daemon's content-addressed audio store: the audio a job reads besides its prompt.

A job that follows a melody, or works on a source track (repaint, cover, stems, add a part),
keeps its own copy: <data>/<folder>/<key>.wav, decoded, checked and written atomically at
submit time, before the job row is committed. So the job survives a restart, a deleted
source track, or a client that disconnected after uploading. The key is a hash of the stored
samples, so the same audio is stored once, and a retry or remix names the key instead of the
track. Job pruning deletes the copies no job refers to any more (daemon/history.py), and
backup copies them by folder (daemon/backup.py).

Two stores, one class: MELODIES (32 kHz mono, 16-bit, at most 30 s: what a melody model
follows) and SOURCES (48 kHz stereo, 32-bit float, so a 16- or 24-bit library track is kept
exactly and a repaint equals it outside the span). The decoding and checks are shared with
the clients (dgx_music.common.audio.melody, .source).

This module imports no audio library at load time (backup reads the folder names without
the audio stack); the methods are blocking file and DSP work: the daemon calls them in an
executor.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dgx_music.common.schemas import MELODY_KEY_RE, ParamError
from dgx_music.daemon import libfiles

if TYPE_CHECKING:
    import numpy as np

#: decode and check an audio file (a path or uploaded bytes) -> what the store keeps, not stored yet
Reader = Callable[["io.BytesIO | Path", str], "np.ndarray"]


@dataclass(frozen=True)
class AudioStore:
    """One folder of keyed WAV copies, the same format for every copy in it."""

    folder: str  # under the data dir; also the backup's folder and its Report field
    what: str  # "melody", "source": the job field and the word in messages
    sample_rate: int
    subtype: str  # "PCM_16" (the key hashes the 16-bit samples) or "FLOAT" (the float32 samples)
    title: str  # the WAV's title tag
    reader: Reader

    def path(self, data_dir: Path, key: str) -> Path:
        if not isinstance(key, str) or not MELODY_KEY_RE.match(key):
            raise ParamError(self.what, f"{key!r} is not a stored {self.what} key")
        return libfiles.plain(data_dir, f"{self.folder}/{key}.wav")  # a symlinked folder is refused

    def refresh(self, data_dir: Path, key: str) -> bool:
        """Mark a stored copy as just used (pruning spares young files); False if it is gone."""
        try:
            os.utime(self.path(data_dir, key))
            return True
        except FileNotFoundError:
            return False

    def from_bytes(self, data: bytes, field: str) -> np.ndarray:
        """An uploaded audio file -> checked audio (not stored yet: see `save`)."""
        if not isinstance(data, (bytes, bytearray)) or not data:
            raise ParamError(field, "must be the bytes of an audio file")
        return self.reader(io.BytesIO(bytes(data)), field)

    def from_file(self, path: Path, field: str) -> np.ndarray:
        """A library track's file -> checked audio (not stored yet: see `save`)."""
        if not Path(path).is_file():
            raise ParamError(field, "that track's audio file is missing")
        return self.reader(Path(path), field)

    def seconds(self, audio: np.ndarray) -> float:
        """How long checked audio ([samples] or [channels, samples]) is."""
        return audio.shape[-1] / self.sample_rate

    def save(self, data_dir: Path, audio: np.ndarray) -> str:
        """Store checked audio under its content key (atomic); return the key. Already stored:
        only marked fresh, so pruning (which spares young files) leaves it for this job."""
        import numpy as np

        from dgx_music.common.audio.files import write_wav_atomic

        a = np.atleast_2d(np.ascontiguousarray(audio, dtype=np.float32))
        if self.subtype == "PCM_16":
            pcm = (np.clip(a, -1.0, 1.0) * 32767.0).round().astype("<i2")
            key = hashlib.sha256(pcm.tobytes()).hexdigest()[:16]
            a = pcm.astype(np.float32) / 32767.0  # exactly the samples hashed
        else:
            key = hashlib.sha256(a.tobytes()).hexdigest()[:16]
        if not self.refresh(data_dir, key):
            write_wav_atomic(self.path(data_dir, key), a, self.sample_rate, subtype=self.subtype,
                             metadata={"title": self.title})
        return key

    def seconds_of(self, data_dir: Path, key: str) -> float:
        import soundfile as sf

        return float(sf.info(str(self.path(data_dir, key))).duration)

    def load(self, data_dir: Path, key: str) -> np.ndarray:
        """The stored copy as float32 ([samples] when mono, else [channels, samples]);
        FileNotFoundError if it was removed."""
        import numpy as np
        import soundfile as sf

        path = self.path(data_dir, key)
        if not path.is_file():
            raise FileNotFoundError(f"no stored {self.what} {key}")
        audio, _sr = sf.read(str(path), dtype="float32", always_2d=True)
        a = audio.T[0] if audio.shape[1] == 1 else audio.T
        return np.ascontiguousarray(a, dtype=np.float32)

    def remove_unreferenced(self, data_dir: Path, keep: set[str], min_age: float) -> int:
        """Delete the copies whose key is not in `keep` and that are older than `min_age` s;
        return how many went.

        A copy is written before its job row is committed (and touched when a submit re-uses
        it), so `min_age` spares one that belongs to a submit still in progress."""
        folder = libfiles.plain(data_dir, self.folder)
        if not folder.is_dir():
            return 0
        removed = 0
        cutoff = time.time() - min_age
        for f in folder.glob("*.wav"):
            if not MELODY_KEY_RE.match(f.stem) or f.stem in keep:
                continue  # not a stored copy, or still needed
            try:
                if f.stat().st_mtime >= cutoff:
                    continue
                f.unlink()
            except FileNotFoundError:
                continue
            removed += 1
        return removed


def _melody(source: io.BytesIO | Path, field: str) -> np.ndarray:
    from dgx_music.common.audio import melody

    audio, sr = melody.decode(source, field)
    return melody.prepare(audio, sr, field)


def _source(source: io.BytesIO | Path, field: str) -> np.ndarray:
    from dgx_music.common.audio import source as src

    audio, sr = src.decode(source, field)
    return src.prepare(audio, sr, field)


#: what melody models follow (MusicGen's chroma extractor reads 32 kHz mono)
MELODIES = AudioStore("melodies", "melody", 32000, "PCM_16", "melody reference", _melody)
#: the source audio of operations on tracks (ACE-Step's VAE reads 48 kHz stereo)
SOURCES = AudioStore("sources", "source", 48000, "FLOAT", "operation source", _source)
STORES = (MELODIES, SOURCES)
