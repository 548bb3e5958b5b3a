"""Fault campaign scenarios that flood (bench/chaos.py): idle or half-header connections on the Unix
socket (lockout) and over HTTP (httplock), and hostile frames (frames)."""

from __future__ import annotations

import asyncio
import random
import re
import struct
import time
from pathlib import Path
from typing import Any

import msgpack

from dgx_music.common import protocol
from dgx_music.common.client import Client, DaemonUnavailable, RemoteError

from chaos_harness import Daemon, Outcome, _served


async def _lockout(sock: Path, conns: int, grace: float) -> tuple[bool, int]:
    """`conns` connections send half a header or nothing; can a new client still get an answer,
    and are the stale ones closed within `grace` seconds?"""
    stale = []
    for i in range(conns):
        try:
            r, w = await asyncio.open_unix_connection(str(sock))
        except OSError:
            break
        if i % 2:
            w.write(b"\0\0")
        stale.append((r, w))
    try:
        # The stale connections share our uid (so the owner's reserved slots are theirs too): a
        # well-behaved client must get an answer once the idle timeout has let them go.
        served = False
        deadline = time.monotonic() + grace
        while not served and time.monotonic() < deadline:
            try:
                async with await Client.connect(sock, timeout=5.0) as c:
                    await c.call("status", timeout=5.0)
                    served = True
            except (RemoteError, DaemonUnavailable, OSError, asyncio.TimeoutError):
                await asyncio.sleep(0.5)
        closed = 0
        for r, _ in stale:
            try:
                await asyncio.wait_for(r.read(), max(0.01, deadline - time.monotonic()))
                closed += 1  # EOF (or an error frame then EOF): the daemon let go
            except (asyncio.TimeoutError, OSError):
                pass
        return served, len(stale) - closed
    finally:
        for _, w in stale:
            w.close()


def scenario_lockout(root: Path, model: Path, rounds: int, conns: int, idle_timeout: float) -> Outcome:
    out = Outcome("lockout")
    d = Daemon(root, model, DGX_MUSIC_IDLE_TIMEOUT=str(idle_timeout))
    d.start()
    grace = idle_timeout + 5.0
    for _ in range(rounds):
        out.tried += 1
        served, held = asyncio.run(_lockout(d.socket, conns, grace=grace))
        if served and held == 0 and _served(d.socket):
            out.survived += 1
        else:
            out.notes.append(f"served={served}, {held} stale connections still held after {grace:g} s")
    d.stop()
    return out


def _http_port(d: Daemon, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(r"HTTP API on http://127\.0\.0\.1:(\d+)", d.log.read_text(errors="replace"))
        if m:
            return int(m.group(1))
        time.sleep(0.05)
    raise RuntimeError(f"the HTTP API did not start; see {d.log}")


async def _http_status(port: int, token: str) -> int:
    """The status code of an authenticated GET /api/v1/status (0: no answer)."""
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    except (OSError, asyncio.TimeoutError):
        return 0
    try:
        w.write(f"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
                "Connection: close\r\n\r\n".encode())
        line = await asyncio.wait_for(r.readline(), 10)
        parts = line.split()
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    except (OSError, asyncio.TimeoutError):
        return 0
    finally:
        w.close()


async def _http_lockout(sock: Path, port: int, token: str, conns: int, grace: float) -> tuple[bool, int, int]:
    """`conns` TCP connections send half a header or nothing: does the Unix socket still answer
    meanwhile, and does HTTP answer 200 again within `grace` seconds? (socket ok, HTTP status, held)"""
    stale = []
    for i in range(conns):
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
        except (OSError, asyncio.TimeoutError):
            continue  # refused or the backlog is full: the daemon is shedding load, as it should
        if i % 2:
            w.write(b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        stale.append((r, w))
    try:
        socket_ok = True
        for _ in range(3):
            try:
                async with await Client.connect(sock, timeout=5.0) as c:
                    await c.call("status", timeout=5.0)
            except (RemoteError, DaemonUnavailable, OSError, asyncio.TimeoutError):
                socket_ok = False
        deadline = time.monotonic() + grace
        status = 0
        while status != 200 and time.monotonic() < deadline:
            status = await _http_status(port, token)
            if status != 200:
                await asyncio.sleep(0.5)
        held = 0
        for r, _ in stale:
            try:
                await asyncio.wait_for(r.read(), max(0.01, deadline - time.monotonic()))
            except OSError:
                pass  # reset: a refused connection closed with our half header unread, let go all the same
            except asyncio.TimeoutError:
                held += 1
        return socket_ok, status, held
    finally:
        for _, w in stale:
            w.close()


def scenario_httplock(root: Path, model: Path, rounds: int, conns: int, header_timeout: float) -> Outcome:
    out = Outcome("httplock")
    d = Daemon(root, model, http="127.0.0.1:0", nofile=256, DGX_MUSIC_HEADER_TIMEOUT=str(header_timeout),
               DGX_MUSIC_MAX_CONNECTIONS="100000")  # no count cap: only the descriptor reserve saves the socket
    d.start()
    try:
        port = _http_port(d)
        token = (root / "config" / "dgx-music" / "http-token").read_text().strip()
        grace = header_timeout + 10.0
        for _ in range(rounds):
            out.tried += 1
            socket_ok, status, held = asyncio.run(_http_lockout(d.socket, port, token, conns, grace))
            if socket_ok and status == 200 and held == 0 and _served(d.socket):
                out.survived += 1
            else:
                out.notes.append(f"socket answered={socket_ok}, HTTP {status or 'no answer'} after the flood, "
                                 f"{held} stale connections held after {grace:g} s")
        if "out of system resource" in d.log.read_text(errors="replace"):
            out.notes.append("the daemon ran out of descriptors (accept() failed)")
            out.survived = min(out.survived, out.tried - 1)
    finally:
        d.stop()
    return out


def _hostile_frames(rng: random.Random, n: int) -> list[bytes]:
    def frame(obj: Any) -> bytes:
        body = msgpack.packb(obj, use_bin_type=True)
        return struct.pack(">I", len(body)) + body

    deep = b"\x81\xa6params\x81\xa1a" + b"\x91" * 100_000 + b"\x00"  # {"params": {"a": [[[...]]]}}
    fixed = [
        struct.pack(">I", len(deep)) + deep,
        struct.pack(">I", 0xFFFFFFFF),
        struct.pack(">I", 5) + b"\xc1\xc1\xc1\xc1\xc1",
        frame([1, 2, 3]),
        frame({"id": 1, "method": 7}),
        frame({"id": 1, "method": "status", "params": [1]}),
        frame({"id": 1, "method": "job.get", "params": {"id": 2**63}}),
        frame({"id": 1, "method": "job.get", "params": {"id": -2**63}}),
        frame({"id": 1, "method": "job.submit", "params": {"prompt": "x", "model": "m" * 300}}),
        frame({"id": 1, "method": "job.submit", "params": {"prompt": "x", "duration": float("nan")}}),
        frame({"id": 1, "method": "job.submit", "params": {"prompt": "x", "count": 2**64 - 1}}),
        frame({"id": 1, "method": "track.list", "params": {"limit": 2**62, "search": "\0" * 100}}),
        frame({"id": 1, "method": "track.update", "params": {"id": "1-0", "tags_add": [{"a": 1}]}}),
        frame({"id": 1}),
        frame({"id": {"nested": True}, "method": "status"}),
        frame({"id": 1, "method": "x" * 10000}),
    ]
    methods = ["status", "job.submit", "job.get", "job.cancel", "job.move", "job.list", "track.list",
               "track.get", "track.update", "track.delete", "track.audio", "model.load", "subscribe",
               "job.prune", "prompt.history"]
    values: list[Any] = [None, True, -1, 0, 2**63, 2**64 - 1, -2**63, 1e308, float("inf"), "", "x" * 5000,
                         "../../etc/passwd", "/etc/passwd", b"\0\1", [], {}, [1, "a"], {"a": {"b": None}}]
    fields = ["id", "prompt", "duration", "count", "seed", "model", "limit", "cursor", "search", "to",
              "offset", "size", "title", "tags_add", "melody", "extend", "topics", "older_than_days"]
    out = list(fixed)
    while len(out) < n:
        if rng.random() < 0.1:
            out.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))))
            continue
        params = {rng.choice(fields): rng.choice(values) for _ in range(rng.randrange(0, 4))}
        out.append(frame({"id": rng.randrange(1, 10**6), "method": rng.choice(methods), "params": params}))
    return out


async def _send_frames(sock: Path, frames: list[bytes]) -> tuple[int, int, list[str]]:
    """Send each frame on its own connection; count answers and `internal` errors."""
    answered = internal = 0
    notes: list[str] = []
    for f in frames:
        r, w = await asyncio.open_unix_connection(str(sock))
        try:
            w.write(f)
            await w.drain()
            try:
                msg = await protocol.read_frame(r, max_frame=64 * 1024 * 1024, timeout=10.0)
            except (protocol.ProtocolError, asyncio.TimeoutError, ConnectionError):
                msg = None
            if msg is not None:
                answered += 1
                err = msg.get("error") or {}
                if err.get("code") == "internal":
                    internal += 1
                    if len(notes) < 5:
                        notes.append(f"internal for {f[:80]!r}: {err.get('message')}")
        finally:
            w.close()
    return answered, internal, notes


def scenario_frames(root: Path, model: Path, n: int, rng: random.Random) -> Outcome:
    out = Outcome("frames")
    d = Daemon(root, model)
    d.start()
    frames = _hostile_frames(rng, n)
    answered, internal, notes = asyncio.run(_send_frames(d.socket, frames))
    out.tried = len(frames)
    out.internal = internal
    out.notes += notes
    out.survived = len(frames) if d.alive() and _served(d.socket) else 0
    out.notes.append(f"{answered} answered with a frame, the rest closed")
    d.stop()
    return out
