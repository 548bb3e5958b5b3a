"""Careless and hostile peers: silent connections, a full backlog, other users' sockets, two daemons."""

from __future__ import annotations

import asyncio
import grp
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dgx_music.common import protocol
from dgx_music.common.client import Client, UnsafeSocket
from dgx_music.common.protocol import RemoteError
from dgx_music.daemon.server import PeerPolicy

ROOT_ONLY = pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another uid")
NOBODY = 65534


async def _poll(check: Any, timeout: float, what: str) -> Any:
    """Await `check()` until it returns a truthy value; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = await check()
            if value:
                return value
        except (RemoteError, ConnectionError, OSError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_silent_connections_cannot_lock_the_daemon_out(daemon_factory: Any) -> None:
    d = await daemon_factory(daemon__idle_timeout=1.0)
    listener = await Client.connect(d.server.path)
    await listener.subscribe("job")  # subscribed and idle: allowed to stay quiet
    stale = []
    for i in range(d.server.max_clients - 1):  # with the listener, every slot
        r, w = await asyncio.open_unix_connection(str(d.server.path))
        if i % 2:
            w.write(b"\x00\x00")  # half a header, then nothing
        stale.append((r, w))

    async def all_held() -> bool:
        return len(d.server.connections) == d.server.max_clients
    await _poll(all_held, 10, "the daemon to accept every connection")

    async def served() -> bool:
        async with await Client.connect(d.server.path, timeout=2) as c:
            return (await c.call("status", timeout=2))["pid"] == os.getpid()
    await _poll(served, 10, "a well-behaved client to be served again")

    for r, w in stale:  # each was told why, then closed
        msg = await asyncio.wait_for(protocol.read_frame(r), 5)
        assert msg and msg["error"]["code"] == protocol.IDLE_TIMEOUT, msg
        assert await asyncio.wait_for(r.read(), 5) == b""
        w.close()
    # The subscriber, quiet for longer than the timeout, still gets events and answers.
    d.publish("job.progress", {"id": 1})
    ev = await asyncio.wait_for(listener.events().__anext__(), 5)
    assert ev.name == "job.progress"
    assert (await listener.call("status"))["clients"] >= 1
    await listener.close()


async def test_listen_backlog_is_max_clients_not_asyncio_default(daemon_factory: Any) -> None:
    if int(Path("/proc/sys/net/core/somaxconn").read_text()) < 200:
        pytest.skip("net.core.somaxconn caps the backlog below 200")
    d = await daemon_factory(daemon__max_clients=200)
    socks = []
    try:
        # The event loop does not run between these connects, so the daemon accepts none of them:
        # each one waits in the listen backlog, which must hold max_clients (asyncio's default is 100).
        for _ in range(200):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            socks.append(s)
            s.connect(str(d.server.path))  # BlockingIOError once the backlog is full
    finally:
        for s in socks:
            s.close()


async def test_client_retries_while_the_backlog_is_full(short_tmp: Path) -> None:
    path = short_tmp / "busy.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(1)
    srv.setblocking(False)
    fillers = []
    for _ in range(2):  # Linux queues backlog + 1
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(path))
        fillers.append(s)
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(Client.connect(path, timeout=5))
    await asyncio.sleep(0.2)  # a few refused tries
    assert not task.done()
    for _ in fillers:  # the daemon catches up
        srv.accept()[0].close()
    client = await asyncio.wait_for(task, 5)
    conn = await _poll(lambda: _accept(srv), 5, "the client's connection")
    conn.setblocking(False)
    call = asyncio.create_task(client.call("status", timeout=5))
    request = await loop.sock_recv(conn, 4096)
    assert request, "the client sent nothing"
    await loop.sock_sendall(conn, protocol.pack(protocol.result(1, "pong")))
    assert await call == "pong"
    await client.close()
    conn.close()
    for s in fillers:
        s.close()
    srv.close()


async def _accept(srv: socket.socket) -> socket.socket | None:
    try:
        return srv.accept()[0]
    except BlockingIOError:
        return None


async def test_too_many_clients_is_reported_as_such(daemon_factory: Any) -> None:
    d = await daemon_factory(daemon__max_clients=1, daemon__owner_slots=0)
    async with await Client.connect(d.server.path) as first:
        assert (await first.call("status"))["clients"] == 1
        for _ in range(20):  # the daemon's answer and our request cross: either way, say why
            async with await Client.connect(d.server.path) as second:
                with pytest.raises(RemoteError) as e:
                    await second.call("status")
                assert e.value.code == protocol.TOO_MANY_CLIENTS


async def test_group_lookups_run_off_the_event_loop(daemon: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from dgx_music.daemon import server

    threads: list[int] = []

    class Entry:
        pw_name = "member"

    def getpwuid(uid: int) -> Entry:
        threads.append(threading.get_ident())
        return Entry()

    monkeypatch.setattr(server.pwd, "getpwuid", getpwuid)
    daemon.server.policy = PeerPolicy(os.getuid(), 4242, frozenset({"member"}))
    assert await daemon.server._admits(os.getuid() + 1000, 1000)
    assert threads and threading.get_ident() not in threads
    assert await daemon.server._admits(os.getuid(), 1000)  # the owner needs no lookup
    assert len(threads) == 1


@ROOT_ONLY
async def test_owner_keeps_slots_other_users_cannot_take(daemon_factory: Any, short_tmp: Path) -> None:
    group = grp.getgrgid(NOBODY).gr_name
    d = await daemon_factory(daemon__max_clients=4, daemon__owner_slots=2, daemon__socket_mode="0660",
                             daemon__socket_group=group)
    os.chmod(short_tmp, 0o755)
    code = (
        "import os,socket,struct,sys,msgpack\n"
        f"os.setgid({NOBODY}); os.setuid({NOBODY})\n"
        "out=[]; held=[]\n"
        "for i in range(3):\n"
        "    s=socket.socket(socket.AF_UNIX); s.connect(%r); held.append(s)\n"
        "    b=msgpack.packb({'id':1,'method':'status','params':{}}); s.sendall(struct.pack('>I',len(b))+b)\n"
        "    f=s.makefile('rb'); n=struct.unpack('>I',f.read(4))[0]; m=msgpack.unpackb(f.read(n))\n"
        "    out.append(m['error']['code'] if 'error' in m else 'ok')\n"
        "print(' '.join(out), flush=True); sys.stdin.read()\n" % str(d.server.path)
    )
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)  # type: ignore[union-attr]
        assert line.decode().split() == ["ok", "ok", protocol.TOO_MANY_CLIENTS], line
        owners = [await Client.connect(d.server.path) for _ in range(2)]  # the reserved slots
        for c in owners:
            assert (await c.call("status"))["clients"] == 4
        for c in owners:
            await c.close()
    finally:
        proc.stdin.close()  # type: ignore[union-attr]
        await proc.wait()


def _fake_runtime_dir(base: Path, monkeypatch: pytest.MonkeyPatch, owner: int) -> Path:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(base))
    rt = base / "dgx-music"
    rt.mkdir(mode=0o700)
    os.chown(rt, owner, owner)
    return rt


@ROOT_ONLY
async def test_client_refuses_a_socket_dir_another_user_owns(short_tmp: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    rt = _fake_runtime_dir(short_tmp, monkeypatch, NOBODY)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(rt / "daemon.sock"))
    srv.listen(4)
    srv.setblocking(False)
    with pytest.raises(UnsafeSocket, match=f"owned by uid {NOBODY}"):
        await Client.connect()  # the default socket, in the stranger's directory
    with pytest.raises(BlockingIOError):
        srv.accept()  # not even a connection was made
    srv.close()


@ROOT_ONLY
async def test_client_refuses_a_daemon_running_as_another_user(short_tmp: Path) -> None:
    shared = short_tmp / "shared"
    shared.mkdir()
    os.chmod(short_tmp, 0o755)
    os.chmod(shared, 0o777)
    path = shared / "d.sock"
    code = (
        "import os,socket,sys\n"
        f"os.setgid({NOBODY}); os.setuid({NOBODY})\n"
        "s=socket.socket(socket.AF_UNIX); s.bind(%r); s.listen(1); print('ready', flush=True)\n"
        "c,_=s.accept(); got=b''\n"
        "while True:\n"
        "    b=c.recv(4096)\n"
        "    if not b: break\n"
        "    got+=b\n"
        "print(len(got), flush=True)\n" % str(path)
    )
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    assert (await asyncio.wait_for(proc.stdout.readline(), 30)).strip() == b"ready"  # type: ignore[union-attr]
    with pytest.raises(UnsafeSocket, match=f"uid {NOBODY}"):
        await Client.connect(path)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert out.decode().strip() == "0", err.decode()  # the impostor received no byte


def _daemon_cmd(data_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "dgx_music", "daemon", "--data-dir", str(data_dir), *extra]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DGX_MUSIC_")}
    env.update(extra)
    return env


@ROOT_ONLY
def test_daemon_refuses_an_unsafe_socket_dir_in_one_line(short_tmp: Path) -> None:
    rt = short_tmp / "dgx-music"
    rt.mkdir(mode=0o700)
    os.chown(rt, NOBODY, NOBODY)
    cfg = short_tmp / "config.toml"
    cfg.touch()
    proc = subprocess.run(_daemon_cmd(short_tmp / "data"), capture_output=True, text=True, timeout=60,
                          env=_env(XDG_RUNTIME_DIR=str(short_tmp), DGX_MUSIC_CONFIG=str(cfg)))
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "ERROR" in ln]
    assert len(lines) == 1 and "unsafe socket directory" in lines[0] and f"uid {NOBODY}" in lines[0], proc.stderr
    assert not (rt / "daemon.sock").exists()


def test_second_daemon_on_one_data_dir_exits_naming_the_first(daemon_process: Any, short_tmp: Path) -> None:
    first = daemon_process().start()
    cfg = short_tmp / "config.toml"
    cfg.touch()
    t0 = time.monotonic()
    proc = subprocess.run(_daemon_cmd(first.data_dir, "--socket", str(short_tmp / "other.sock")),
                          capture_output=True, text=True, timeout=60, env=_env(DGX_MUSIC_CONFIG=str(cfg)))
    assert proc.returncode != 0
    assert f"pid {first.proc.pid}" in proc.stderr and "data directory" in proc.stderr, proc.stderr
    assert time.monotonic() - t0 < 30
    assert not (short_tmp / "other.sock").exists()
    asyncio.run(_status(first.socket))  # the first one is untouched
    assert first.stop() == 0


async def _status(path: Path) -> None:
    async with await Client.connect(path) as c:
        assert (await c.call("status"))["pid"] > 0


async def test_cli_says_too_many_clients_not_connection_lost(daemon_factory: Any,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from dgx_music.cli.main import main

    d = await daemon_factory(daemon__max_clients=1, daemon__owner_slots=0)
    async with await Client.connect(d.server.path) as first:
        assert (await first.call("status"))["clients"] == 1
        loop = asyncio.get_running_loop()
        code = await loop.run_in_executor(None, main, ["status", "--socket", str(d.server.path), "--json"])
    out = capsys.readouterr().out
    assert code != 0 and '"code": "too_many_clients"' in out, out


async def test_second_daemon_on_one_socket_is_refused_before_recovery(daemon_factory: Any, short_tmp: Path) -> None:
    from dgx_music.daemon.app import Daemon
    from dgx_music.daemon.server import StartupError
    from tests.conftest import make_settings

    first = await daemon_factory()
    other = Daemon(make_settings(short_tmp, daemon__data_dir=str(short_tmp / "data2")))
    with pytest.raises(StartupError, match="already listening"):
        await other.start()
    assert other.store is None  # refused before its database was opened or its queue recovered
    await other.close()
    await _status(first.server.path)
