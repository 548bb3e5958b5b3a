"""Backup and restore of the keyed stored copies: melodies and the sources of operations on tracks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from dgx_music.common.audio import source
from dgx_music.daemon import backup
from dgx_music.daemon.audio_store import MELODIES, SOURCES, STORES
from dgx_music.daemon.components import DB_NAME
from tests.ops.test_backup_hostile import live_tracks, make_library


def store_source(data: Path, seed: int = 0) -> str:
    """Store a source the way an operation job's submit does; return its key."""
    rng = np.random.default_rng(seed)
    audio = (0.1 * rng.standard_normal((2, source.SAMPLE_RATE))).astype(np.float32)
    return SOURCES.save(data, source.prepare(audio, source.SAMPLE_RATE, "source"))


def test_the_folder_names_are_the_stores_own() -> None:
    assert set(backup.KEYED) == {"melodies", "sources"} == {store.folder for store in STORES}


def test_a_backup_with_audio_carries_the_sources_and_restore_brings_them_back(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_library(data, ["library/a.wav"])
    key = store_source(data)
    stored = SOURCES.path(data, key)
    assert stored.is_file()

    lines: list[str] = []
    report = backup.backup(data, tmp_path / "bk", with_audio=True, progress=lines.append)
    assert (report.files, report.sources, report.melodies) == (1, 1, 0)
    assert (tmp_path / "bk" / "sources" / f"{key}.wav").read_bytes() == stored.read_bytes()
    manifest = json.loads((tmp_path / "bk" / backup.MANIFEST).read_text())
    assert (manifest["sources"], manifest["melodies"]) == (1, 0)
    assert any(line.startswith("audio: 1 file, 0 melodies, 1 source") for line in lines), lines

    # Without --with-audio the database only.
    assert backup.backup(data, tmp_path / "db-only").sources == 0
    assert not (tmp_path / "db-only" / "sources").exists()

    fresh = tmp_path / "restored"
    restored = backup.restore(tmp_path / "bk", fresh)
    assert (restored.files, restored.sources) == (1, 1)
    assert SOURCES.path(fresh, key).read_bytes() == stored.read_bytes()
    assert np.array_equal(SOURCES.load(fresh, key), SOURCES.load(data, key))  # a queued job can read it
    assert live_tracks(fresh) == ["t-0"]


def test_melodies_and_sources_travel_together(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_library(data, ["library/a.wav"])
    src_key = store_source(data)
    mel_key = MELODIES.save(data, (0.1 * np.sin(np.arange(32000) / 10.0)).astype(np.float32))
    report = backup.backup(data, tmp_path / "bk", with_audio=True)
    assert (report.melodies, report.sources) == (1, 1)
    fresh = tmp_path / "restored"
    # A key the data dir already holds is not copied again (content-addressed).
    (fresh / "sources").mkdir(parents=True)
    (fresh / "sources" / f"{src_key}.wav").write_bytes(SOURCES.path(data, src_key).read_bytes())
    restored = backup.restore(tmp_path / "bk", fresh)
    assert (restored.melodies, restored.sources) == (1, 0)
    assert MELODIES.path(fresh, mel_key).read_bytes() == MELODIES.path(data, mel_key).read_bytes()


def _backup_with_source(tmp_path: Path) -> tuple[Path, str]:
    data = tmp_path / "data"
    make_library(data, ["library/a.wav"])
    key = store_source(data)
    backup.backup(data, tmp_path / "bk", with_audio=True)
    return tmp_path / "bk", key


def _live(tmp_path: Path) -> tuple[Path, bytes]:
    live = tmp_path / "live"
    make_library(live, ["library/mine.wav"])
    return live, (live / DB_NAME).read_bytes()


@pytest.mark.parametrize("folder", ["sources", "melodies"])
def test_a_symlinked_stored_folder_is_refused_whole(tmp_path: Path, folder: str) -> None:
    bk, _key = _backup_with_source(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / ("0" * 16 + ".wav")).write_bytes(b"someone else's file")
    if (bk / folder).exists():
        for f in (bk / folder).iterdir():
            f.unlink()
        (bk / folder).rmdir()
    (bk / folder).symlink_to(outside)
    live, before = _live(tmp_path)
    with pytest.raises(backup.BackupError, match="nothing was changed.*symlink"):
        backup.restore(bk, live)
    assert (live / DB_NAME).read_bytes() == before and live_tracks(live) == ["t-0"]
    assert not (live / folder).exists() and not list(live.glob(DB_NAME + ".before-restore-*"))


def test_a_symlinked_source_is_refused_whole(tmp_path: Path) -> None:
    bk, key = _backup_with_source(tmp_path)
    secret = tmp_path / "secret"
    secret.write_bytes(b"root:x:0:0:secret\n")
    member = bk / "sources" / f"{key}.wav"
    member.unlink()
    member.symlink_to(secret)
    live, before = _live(tmp_path)
    with pytest.raises(backup.BackupError, match="nothing was changed.*symlink"):
        backup.restore(bk, live)
    assert (live / DB_NAME).read_bytes() == before and live_tracks(live) == ["t-0"]
    assert not (live / "sources").exists()


def test_a_hard_linked_source_is_refused_whole(tmp_path: Path) -> None:
    bk, key = _backup_with_source(tmp_path)
    other = tmp_path / "elsewhere.wav"
    other.write_bytes(b"someone else's file")
    member = bk / "sources" / f"{key}.wav"
    member.unlink()
    os.link(other, member)
    live, before = _live(tmp_path)
    with pytest.raises(backup.BackupError, match="hard link"):
        backup.restore(bk, live)
    assert (live / DB_NAME).read_bytes() == before and not (live / "sources").exists()


def test_restore_does_not_write_sources_through_a_symlink_in_the_data_dir(tmp_path: Path) -> None:
    bk, key = _backup_with_source(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    live, before = _live(tmp_path)
    (live / "sources").symlink_to(elsewhere)
    with pytest.raises(backup.BackupError, match="nothing was changed"):
        backup.restore(bk, live)
    assert (live / DB_NAME).read_bytes() == before and not list(elsewhere.iterdir())
