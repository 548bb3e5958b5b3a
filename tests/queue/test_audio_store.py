"""The one content-addressed audio store (daemon/audio_store.py): melodies and operation sources.

Data dirs written before the two stores became one must keep working: the same audio gets the
same key (so a resubmit re-uses the stored copy) in the same place, read back as it was."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dgx_music.common.audio import melody, source
from dgx_music.common.params import ParamError
from dgx_music.daemon.audio_store import MELODIES, SOURCES, STORES

MONO = (0.5 * np.sin(np.arange(32000 * 2) / 7.0)).astype(np.float32)
STEREO = (0.25 * np.sin(np.arange(48000 * 2).reshape(2, -1) / 11.0)).astype(np.float32)
# The keys daemon/melodies.py and daemon/sources.py gave this audio before they became one store.
OLD_KEYS = {"melodies": "9396076aab8b1f4c", "sources": "de3ecb6c7e55c062"}


def test_keys_and_layout_are_those_of_existing_data_dirs(tmp_path: Path) -> None:
    mkey, skey = MELODIES.save(tmp_path, MONO), SOURCES.save(tmp_path, STEREO)
    assert {"melodies": mkey, "sources": skey} == OLD_KEYS
    mel, src = tmp_path / "melodies" / f"{mkey}.wav", tmp_path / "sources" / f"{skey}.wav"
    info = sf.info(str(mel))
    assert (info.samplerate, info.channels, info.subtype) == (32000, 1, "PCM_16")
    info = sf.info(str(src))
    assert (info.samplerate, info.channels, info.subtype) == (48000, 2, "FLOAT")
    assert np.array_equal(SOURCES.load(tmp_path, skey), STEREO)  # float kept exactly
    loaded = MELODIES.load(tmp_path, mkey)
    assert loaded.shape == MONO.shape and np.abs(loaded - MONO).max() < 1e-4  # 16-bit
    assert SOURCES.seconds_of(tmp_path, skey) == pytest.approx(1.0)


def test_the_rates_are_what_the_readers_produce() -> None:
    assert (MELODIES.sample_rate, SOURCES.sample_rate) == (melody.SAMPLE_RATE, source.SAMPLE_RATE)


@pytest.mark.parametrize("store", STORES, ids=lambda s: s.folder)
def test_a_checked_upload_is_stored_once_and_pruned_when_unreferenced(tmp_path: Path, store) -> None:
    path = tmp_path / "up.flac"
    sf.write(str(path), np.stack([MONO, MONO]).T, 32000)
    audio = store.from_bytes(path.read_bytes(), "upload")
    assert store.seconds(audio) == pytest.approx(2.0, abs=0.01)
    key = store.save(tmp_path, audio)
    assert store.save(tmp_path, store.from_file(path, "upload")) == key  # same audio, one copy
    assert [p.name for p in (tmp_path / store.folder).iterdir()] == [f"{key}.wav"]
    stored = store.path(tmp_path, key)
    os.utime(stored, (time.time() - 3 * 86400,) * 2)
    assert store.remove_unreferenced(tmp_path, {key}, 86400) == 0 and stored.exists()
    assert store.remove_unreferenced(tmp_path, set(), 86400) == 1 and not stored.exists()
    assert not store.refresh(tmp_path, key)
    with pytest.raises(FileNotFoundError):
        store.load(tmp_path, key)


@pytest.mark.parametrize("store", STORES, ids=lambda s: s.folder)
def test_refusals_name_the_field(tmp_path: Path, store) -> None:
    with pytest.raises(ParamError, match="not a stored"):
        store.path(tmp_path, "../../etc/passwd")
    with pytest.raises(ParamError, match="cannot decode"):
        store.from_bytes(b"not audio at all", "upload")
    with pytest.raises(ParamError, match="missing"):
        store.from_file(tmp_path / "gone.wav", "upload")
