"""The worker's frame protocol, spoken directly over its stdin/stdout (no model loaded)."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from dgx_music.common import protocol
from dgx_music.daemon.engine.transport import WORKER_MAX_FRAME


def read(stream):  # type: ignore[no-untyped-def]
    return protocol.read_frame_blocking(stream, max_frame=WORKER_MAX_FRAME)


def test_worker_frames_carry_request_ids_and_exit_on_eof() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "dgx_music.daemon.engine.worker_main"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        hello = read(proc.stdout)
        assert hello is not None and hello["type"] == "hello" and hello["pid"] == proc.pid and hello["id"] == 0
        proc.stdin.write(protocol.pack({"type": "stats", "id": 1}))
        proc.stdin.flush()
        stats = read(proc.stdout)
        assert stats is not None and stats["type"] == "stats" and stats["id"] == 1 and stats["memory"]["rss"] > 0
        for msg in ({"type": "cancel", "id": 1},  # finished already: ignored, no reply
                    {"type": "generate", "id": 2, "job_id": 3, "prompts": ["x"], "params": {}},
                    {"type": "bogus", "id": 3},
                    {"type": "stats"},  # no id: answered, but not with a usable one
                    {"type": "cancel", "id": 5}, {"type": "stats", "id": 5}):  # cancelled before it started
            proc.stdin.write(protocol.pack(msg))
        proc.stdin.flush()
        err = read(proc.stdout)
        assert err == {"type": "error", "id": 2, "op": "generate", "code": "bad_request",
                       "message": "generate before load", "transient": False}
        err = read(proc.stdout)
        assert err is not None and err["id"] == 3 and err["code"] == "bad_request" and "bogus" in err["message"]
        err = read(proc.stdout)
        assert err is not None and err["id"] is None and "integer id" in err["message"]
        err = read(proc.stdout)
        assert err is not None and err["id"] == 5 and err["op"] == "stats" and err["code"] == "cancelled"
        proc.stdin.close()  # the daemon went away: the worker must exit by itself
        assert proc.wait(timeout=10) == 0
        assert proc.stdout.read() == b""  # nothing but frames ever reached stdout
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_blocking_reader_checks_frames() -> None:
    frames = protocol.pack({"a": 1}) + protocol.pack({"b": b"x" * 100})
    stream = io.BytesIO(frames)
    assert read(stream) == {"a": 1}
    assert read(stream) == {"b": b"x" * 100}
    assert read(stream) is None  # clean end between frames
    with pytest.raises(protocol.ProtocolError) as ei:
        protocol.read_frame_blocking(io.BytesIO(protocol.pack({"b": b"x" * 100})), max_frame=50)
    assert ei.value.code == protocol.FRAME_TOO_LARGE
    with pytest.raises(protocol.ProtocolError) as ei:
        read(io.BytesIO(frames[:6]))
    assert ei.value.code == protocol.BAD_FRAME and "inside a frame body" in ei.value.message
    with pytest.raises(protocol.ProtocolError) as ei:
        read(io.BytesIO(frames[:2]))
    assert "inside a frame header" in ei.value.message
    with pytest.raises(protocol.ProtocolError) as ei:
        protocol.pack({"b": b"x" * 100}, max_frame=50)
    assert ei.value.code == protocol.FRAME_TOO_LARGE
