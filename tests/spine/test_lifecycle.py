"""Daemon start-up and shutdown as a separate process: stale sockets, rivals, signals, CLI exit codes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Callable

from tests.conftest import DaemonProcess


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("DGX_MUSIC_")}
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "dgx_music", *args], capture_output=True, text=True,
                          timeout=60, env=e)


def test_sigterm_shuts_down_cleanly_and_removes_socket(daemon_process: Callable[..., DaemonProcess]) -> None:
    d = daemon_process().start()
    assert d.socket.exists()
    assert d.stop(signal.SIGTERM) == 0
    assert not d.socket.exists()
    assert "shutting down" in d.logs()


def test_stale_socket_is_replaced(daemon_process: Callable[..., DaemonProcess], short_tmp: Path) -> None:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(short_tmp / "d.sock"))  # bound, never listening: what a crash leaves behind
    sock.close()
    d = daemon_process().start()
    r = cli("status", "--json", "--socket", str(d.socket))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["pid"] == d.proc.pid  # type: ignore[union-attr]
    assert "stale socket" in d.logs()


def test_second_daemon_refuses_to_start(daemon_process: Callable[..., DaemonProcess]) -> None:
    first = daemon_process().start()
    second = daemon_process().start(wait=False)
    assert second.proc is not None and second.proc.wait(30) == 1
    # Same data directory and socket: the data directory's lock stops it first, naming the holder.
    assert f"daemon (pid {first.proc.pid}) is using the data directory" in second.logs()  # type: ignore[union-attr]
    assert first.proc is not None and first.proc.poll() is None
    assert first.socket.exists()


def test_non_socket_file_is_never_deleted(daemon_process: Callable[..., DaemonProcess], short_tmp: Path) -> None:
    (short_tmp / "d.sock").write_text("precious")
    d = daemon_process().start(wait=False)
    assert d.proc is not None and d.proc.wait(30) == 1
    assert (short_tmp / "d.sock").read_text() == "precious"
    assert "not a socket" in d.logs()


def test_cli_exit_codes(daemon_process: Callable[..., DaemonProcess], short_tmp: Path) -> None:
    r = cli("status", "--socket", str(short_tmp / "nothing.sock"))
    assert r.returncode == 3 and "dgx-music daemon" in r.stderr
    r = cli("status", "--json", "--socket", str(short_tmp / "nothing.sock"))
    assert r.returncode == 3 and json.loads(r.stdout)["error"]["code"] == "unreachable"
    r = cli("status", "--bogus-flag")
    assert r.returncode == 2
    d = daemon_process().start()
    r = cli("status", "--socket", str(d.socket))
    assert r.returncode == 0 and "dgx-music" in r.stdout and "clients" in r.stdout
    # DGX_MUSIC_SOCKET works like --socket.
    r = cli("status", "--json", env={"DGX_MUSIC_SOCKET": str(d.socket)})
    assert r.returncode == 0 and json.loads(r.stdout)["socket"] == str(d.socket)


def test_bad_config_is_a_usage_error_naming_the_key(short_tmp: Path) -> None:
    cfg = short_tmp / "c.toml"
    cfg.write_text("[daemon]\nqueue_limit = 'lots'\n")
    r = cli("daemon", "--config", str(cfg), "--socket", str(short_tmp / "s.sock"))
    assert r.returncode == 2 and "daemon.queue_limit" in r.stderr
    cfg.write_text("[daemon]\nno_such_key = 1\n")
    r = cli("status", "--config", str(cfg))
    assert r.returncode == 2 and "no_such_key" in r.stderr


def test_corrupt_database_refuses_to_start_and_keeps_the_file(
        daemon_process: Callable[..., DaemonProcess], short_tmp: Path) -> None:
    data = short_tmp / "data"
    data.mkdir()
    db = data / "dgx-music.db"
    db.write_bytes(b"SQLite format 3\x00" + b"\x13" * 8000)  # a header, then garbage
    before = db.read_bytes()
    d = daemon_process().start(wait=False)
    assert d.proc is not None and d.proc.wait(60) == 1
    assert "dgx-music.db" in d.logs() and "dgx-music restore" in d.logs() and not d.socket.exists()
    assert db.read_bytes() == before  # nothing stored is touched
