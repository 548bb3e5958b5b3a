"""One user of a data directory at a time: two daemons, a daemon and a restore, a deleted lock file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from dgx_music.daemon import backup
from dgx_music.daemon.datalock import LOCK_NAME, DataDirLock, DataDirLocked
from tests.conftest import DaemonProcess
from tests.ops.test_backup_hostile import live_tracks, make_library


def daemon_cmd(data: Path, sock: Path) -> list[str]:
    return [sys.executable, "-m", "dgx_music", "daemon", "--socket", str(sock), "--data-dir", str(data)]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("DGX_MUSIC_")}


def test_deleting_the_lock_file_does_not_let_a_second_daemon_in(
        daemon_process: Callable[..., DaemonProcess], short_tmp: Path) -> None:
    first = daemon_process().start()
    (first.data_dir / LOCK_NAME).unlink()  # what a user (or a cleanup script) may do while it runs
    second = subprocess.run(daemon_cmd(first.data_dir, short_tmp / "other.sock"), capture_output=True, text=True,
                            timeout=60, env=clean_env())
    assert second.returncode == 1, second.stderr
    assert "is using the data directory" in second.stderr
    assert first.proc is not None and first.proc.poll() is None
    assert first.stop() == 0


def test_restore_refuses_while_the_lock_is_held(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_library(data, ["library/a.wav"])
    bk = tmp_path / "bk"
    backup.backup(data, bk, with_audio=True)
    before = (data / "dgx-music.db").read_bytes()
    # A daemon that has not opened the database yet (or whose socket is elsewhere): only the lock tells.
    with DataDirLock.acquire(data):
        with pytest.raises(backup.BackupError, match=r"another dgx-music daemon \(pid \d+\)"):
            backup.restore(bk, data)
    assert (data / "dgx-music.db").read_bytes() == before
    assert not list(data.glob("dgx-music.db.before-restore-*"))


def test_a_daemon_cannot_start_during_a_restore(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_library(data, ["library/a.wav", "library/b.wav"])
    bk = tmp_path / "bk"
    backup.backup(data, bk, with_audio=True)
    sock = Path(os.path.join("/tmp", f"dgxm-lock-{os.getpid()}.sock"))
    started: list[subprocess.CompletedProcess[str]] = []

    def midway(line: str) -> None:  # called after the database was replaced, before the audio
        if not started:
            started.append(subprocess.run(daemon_cmd(data, sock), capture_output=True, text=True, timeout=60,
                                          env=clean_env()))

    report = backup.restore(bk, data, progress=midway)
    assert started and started[0].returncode == 1, started[0].stderr if started else None
    assert "a restore (pid" in started[0].stderr and "wait for it to finish" in started[0].stderr
    assert not sock.exists()
    assert report.tracks == 2 and live_tracks(data) == ["t-0", "t-1"]
    with DataDirLock.acquire(data):  # released once the restore is done
        pass


def test_lock_is_exclusive_in_one_process_too(tmp_path: Path) -> None:
    lock = DataDirLock.acquire(tmp_path)
    try:
        with pytest.raises(DataDirLocked):
            DataDirLock.acquire(tmp_path)
    finally:
        lock.release()
    DataDirLock.acquire(tmp_path).release()
