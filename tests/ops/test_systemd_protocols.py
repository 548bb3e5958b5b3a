"""sd_notify against a real datagram socket, and socket activation with an inherited fd."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dgx_music.common.client import Client
from dgx_music.daemon import activation, notify


def recv_all(sock: socket.socket, until: str, timeout: float) -> list[str]:
    """Datagrams until one contains `until` (or the time is up)."""
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            got.append(sock.recv(4096).decode())
        except socket.timeout:
            break
        if until in got[-1]:
            break
    return got


def test_sd_notify_path_and_abstract_addresses(short_tmp: Path) -> None:
    path = short_tmp / "n.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as srv:
        srv.bind(str(path))
        assert notify.sd_notify("STATUS=hello", {"NOTIFY_SOCKET": str(path)})
        assert srv.recv(100) == b"STATUS=hello"
    name = f"dgxm-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as srv:
        srv.bind("\0" + name)
        assert notify.sd_notify("READY=1", {"NOTIFY_SOCKET": "@" + name})
        assert srv.recv(100) == b"READY=1"
    assert not notify.sd_notify("READY=1", {})
    assert not notify.sd_notify("READY=1", {"NOTIFY_SOCKET": "relative/path"})
    assert not notify.sd_notify("READY=1", {"NOTIFY_SOCKET": str(short_tmp / "nobody-listens")})


def test_watchdog_interval() -> None:
    assert notify.watchdog_interval({}) is None
    assert notify.watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert notify.watchdog_interval({"WATCHDOG_USEC": "3000000"}) == pytest.approx(1.0)
    assert notify.watchdog_interval({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}) == \
        pytest.approx(1.0)
    assert notify.watchdog_interval({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}) is None


async def test_status_lines_follow_events(daemon: Any, short_tmp: Path) -> None:
    path = short_tmp / "n2.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as srv:
        srv.bind(str(path))
        srv.setblocking(False)
        n = notify.Notifier({"NOTIFY_SOCKET": str(path)})
        n.ready(daemon)
        daemon.publish("model.loading", {"model": "small", "progress": None, "message": "downloading"})
        daemon.publish("model.loaded", {"model": "small", "device": "cuda", "backend": "transformers",
                                        "load_seconds": 1.0})
        daemon.publish("job.started", {"id": 5, "attempt": 1})
        await asyncio.sleep(0.05)
        msgs = []
        while True:
            try:
                msgs.append(srv.recv(4096).decode())
            except BlockingIOError:
                break
        await n.close()
        msgs.append(srv.recv(4096).decode())
    assert msgs[0].startswith("READY=1\nSTATUS=") and "0 jobs queued" in msgs[0]
    assert any("STATUS=" in m and "loading model small" in m for m in msgs)
    assert any("model small ready on cuda" in m for m in msgs)
    assert any("generating job 5" in m for m in msgs)
    assert msgs[-1].startswith("STOPPING=1")


def test_daemon_notifies_ready_status_watchdog(daemon_process: Any, short_tmp: Path) -> None:
    ns = short_tmp / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as srv:
        srv.bind(str(ns))
        proc = daemon_process(env={"NOTIFY_SOCKET": str(ns), "WATCHDOG_USEC": "300000"})
        proc.start(wait=False)
        got = recv_all(srv, "READY=1", 60)
        ready = [m for m in got if "READY=1" in m]
        assert ready, f"no READY=1 in {got!r}\n{proc.logs()}"
        # READY came only once the socket answers and the database exists.
        assert proc.socket.exists()
        asyncio.run(_status(proc.socket))
        assert (proc.data_dir / "dgx-music.db").exists()
        before = got[: got.index(ready[0])]
        assert any(m.startswith("STATUS=starting") for m in before), got
        assert "STATUS=" in ready[0] and "jobs queued" in ready[0]
        more = recv_all(srv, "never", 1.0)
        assert sum(m == "WATCHDOG=1" for m in got + more) >= 3, got + more
        assert proc.stop() == 0
        tail = recv_all(srv, "STOPPING=1", 10)
        assert any(m.startswith("STOPPING=1") for m in tail), tail


async def _status(sock: Path) -> dict[str, Any]:
    async with await Client.connect(sock, timeout=5.0) as c:
        return await c.call("status", timeout=5.0)


# ----------------------------------------------------------------------------- activation
WRAPPER = """
import os, socket, sys
path = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
s.listen(16)
os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_PID"] = str(os.getpid())   # exec keeps the pid: the daemon is this process
os.environ["LISTEN_FDNAMES"] = "daemon"
os.execv(sys.executable, [sys.executable, "-m", "dgx_music", *sys.argv[2:]])
"""


def test_socket_activation_with_inherited_fd(short_tmp: Path) -> None:
    activated = short_tmp / "act.sock"
    configured = short_tmp / "configured.sock"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DGX_MUSIC_", "LISTEN_", "NOTIFY_"))}
    log = open(short_tmp / "log", "wb")
    proc = subprocess.Popen([sys.executable, "-c", WRAPPER, str(activated), "daemon", "--socket", str(configured),
                             "--data-dir", str(short_tmp / "data"), "--log-level", "debug"],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        st = None
        while time.monotonic() < deadline and st is None:
            assert proc.poll() is None, (short_tmp / "log").read_text()
            try:
                st = asyncio.run(_status(activated))
            except Exception:
                time.sleep(0.1)
        assert st is not None, (short_tmp / "log").read_text()
        assert st["pid"] == proc.pid
        assert st["socket"] == str(activated)
        assert not configured.exists()  # it used the inherited socket, it did not bind its own
        assert "inherited socket" in (short_tmp / "log").read_text()
        proc.terminate()
        assert proc.wait(20) == 0
        assert activated.exists()  # the socket belongs to systemd (the wrapper), not to the daemon
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def test_listen_fds_rules() -> None:
    env = {"LISTEN_FDS": "1", "LISTEN_PID": "1"}
    assert activation.listen_fds(env) == []  # for another process
    assert "LISTEN_FDS" not in env  # and removed either way
    assert activation.listen_fds({}) == []
    with pytest.raises(activation.ActivationError, match="not a number"):
        activation.listen_fds({"LISTEN_FDS": "x", "LISTEN_PID": str(os.getpid())})
