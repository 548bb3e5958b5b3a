"""Backup and restore against tampered databases and hostile backup directories."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

import pytest

from dgx_music.daemon import backup
from dgx_music.daemon.components import DB_NAME
from dgx_music.daemon.store import Store


def make_library(data: Path, paths: list[str]) -> None:
    """A data dir whose database lists ``paths`` (written with the store, then any absolute
    or '..' path put in behind its back, as a tampered database would hold)."""
    async def build() -> None:
        s = await Store.open(data / DB_NAME, synchronous="NORMAL")
        try:
            await s.import_tracks([{"id": f"t-{i}", "prompt": "p", "path": f"library/t-{i}.wav",
                                    "duration": 1.0, "sample_rate": 32000, "channels": 1}
                                   for i in range(len(paths))])
        finally:
            await s.close()

    asyncio.run(build())
    con = sqlite3.connect(data / DB_NAME)
    for i, p in enumerate(paths):
        con.execute("UPDATE tracks SET path = ? WHERE id = ?", (p, f"t-{i}"))
        if not p.startswith("/") and ".." not in p and not p.startswith(DB_NAME):
            (data / p).parent.mkdir(parents=True, exist_ok=True)
            (data / p).write_bytes(b"audio " + p.encode())
    con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    p = tmp_path / "outside" / "passwd"
    p.parent.mkdir()
    p.write_bytes(b"root:x:0:0:secret\n")
    return p


def live_tracks(data: Path) -> list[str]:
    con = sqlite3.connect(data / DB_NAME)
    try:
        return [r[0] for r in con.execute("SELECT id FROM tracks ORDER BY id")]
    finally:
        con.close()


def test_backup_does_not_copy_a_file_outside_the_data_dir(tmp_path: Path, secret: Path) -> None:
    data = tmp_path / "data"
    make_library(data, ["library/a.wav", str(secret)])
    report = backup.backup(data, tmp_path / "bk", with_audio=True)
    assert report.files == 1 and report.refused == [str(secret)]
    copied = [p for p in (tmp_path / "bk").rglob("*") if p.is_file()]
    assert all(b"secret" not in p.read_bytes() for p in copied)


@pytest.mark.parametrize("member", [DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm"])
def test_restore_refuses_a_member_that_lands_on_the_database(tmp_path: Path, member: str) -> None:
    src = tmp_path / "src"
    make_library(src, ["library/a.wav"])
    backup.backup(src, tmp_path / "bk", with_audio=True)
    # The backup's database now names the database file itself, and the backup carries one.
    con = sqlite3.connect(tmp_path / "bk" / DB_NAME)
    con.execute("UPDATE tracks SET path = ? WHERE id = 't-0'", (member,))
    con.commit()
    con.close()
    if member != DB_NAME:
        (tmp_path / "bk" / member).write_bytes(b"not a database")
    live = tmp_path / "live"
    make_library(live, ["library/mine.wav", "library/other.wav"])
    before = (live / DB_NAME).read_bytes()
    with pytest.raises(backup.BackupError, match="database files"):
        backup.restore(tmp_path / "bk", live)
    assert (live / DB_NAME).read_bytes() == before  # nothing changed
    assert live_tracks(live) == ["t-0", "t-1"]


def test_restore_refuses_a_symlinked_member(tmp_path: Path, secret: Path) -> None:
    src = tmp_path / "src"
    make_library(src, ["library/a.wav"])
    backup.backup(src, tmp_path / "bk", with_audio=True)
    member = tmp_path / "bk" / "library" / "a.wav"
    member.unlink()
    member.symlink_to(secret)
    live = tmp_path / "live"
    with pytest.raises(backup.BackupError, match="symlink"):
        backup.restore(tmp_path / "bk", live)
    assert not (live / DB_NAME).exists() and not (live / "library" / "a.wav").exists()


def test_restore_refuses_a_member_through_a_symlinked_directory(tmp_path: Path, secret: Path) -> None:
    src = tmp_path / "src"
    make_library(src, ["library/passwd"])
    backup.backup(src, tmp_path / "bk", with_audio=True)
    lib = tmp_path / "bk" / "library"
    (lib / "passwd").unlink()
    lib.rmdir()
    lib.symlink_to(secret.parent)
    with pytest.raises(backup.BackupError, match="outside|symlink"):
        backup.restore(tmp_path / "bk", tmp_path / "live")


def test_restore_does_not_write_through_a_symlink_in_the_data_dir(tmp_path: Path, secret: Path) -> None:
    src = tmp_path / "src"
    make_library(src, ["library/passwd"])
    backup.backup(src, tmp_path / "bk", with_audio=True)
    live = tmp_path / "live"
    live.mkdir()
    (live / "library").symlink_to(secret.parent)
    with pytest.raises(backup.BackupError, match="outside"):
        backup.restore(tmp_path / "bk", live)
    assert secret.read_bytes() == b"root:x:0:0:secret\n"


def test_restore_refuses_a_hard_linked_member(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_library(src, ["library/a.wav"])
    backup.backup(src, tmp_path / "bk", with_audio=True)
    other = tmp_path / "elsewhere.wav"
    other.write_bytes(b"someone else's file")
    member = tmp_path / "bk" / "library" / "a.wav"
    member.unlink()
    os.link(other, member)
    with pytest.raises(backup.BackupError, match="hard link"):
        backup.restore(tmp_path / "bk", tmp_path / "live")


def test_restore_refuses_a_database_row_pointing_outside(tmp_path: Path, secret: Path) -> None:
    src = tmp_path / "src"
    make_library(src, ["library/a.wav", "../outside/passwd"])
    backup.backup(src, tmp_path / "bk")
    with pytest.raises(backup.BackupError, match="nothing was changed.*'..'"):
        backup.restore(tmp_path / "bk", tmp_path / "live")


@pytest.mark.parametrize("name", ["odd dir?mode=rw#x", "100% music"])
def test_backup_and_restore_with_uri_characters_in_the_path(tmp_path: Path, name: str) -> None:
    data = tmp_path / name / "data"
    make_library(data, ["library/a.wav"])
    report = backup.backup(data, tmp_path / name / "bk", with_audio=True)
    assert report.tracks == 1 and report.files == 1
    restored = backup.restore(tmp_path / name / "bk", tmp_path / name / "restored")
    assert restored.tracks == 1 and restored.files == 1
    assert live_tracks(tmp_path / name / "restored") == ["t-0"]
