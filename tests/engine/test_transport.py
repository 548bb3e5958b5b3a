"""Request ids between the supervisor and its worker: a request the daemon gave up on is
stopped in the worker, and its late reply is never taken for the answer to another request.

The real worker with the tiny model (slowed by DGX_MUSIC_TEST_STEP_DELAY), plus one scripted
fake worker that sends stale and unmatched frames on purpose.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from dgx_music.daemon.engine.errors import EngineError

from .helpers import params, wait_for

SLOW = {"DGX_MUSIC_TEST_STEP_DELAY": "0.05"}  # 50 steps per second of audio -> ~2.5 s per 1 s clip




async def test_cancelled_task_does_not_hand_its_audio_to_the_next_job(make_supervisor) -> None:  # type: ignore[no-untyped-def]
    """What the scheduler does at shutdown: cancel the task awaiting a 3 s job; the next 1 s job gets 1 s."""
    sup, rec = make_supervisor(worker_env=SLOW)
    await sup.load()
    pid = sup.state()["worker_pid"]
    progress: list[dict[str, Any]] = []
    task = asyncio.create_task(sup.generate(1, ["calm piano"], params(duration=3.0), progress.append))
    await wait_for(lambda: len(progress) >= 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    res = await sup.generate(2, ["calm piano"], params(duration=1.0), None)
    assert res.audio.shape == (1, 1, 32000)  # not the first job's 96,000 samples
    # The worker stopped the first job (its progress never reached the end) and was not restarted.
    assert progress[-1]["step"] < progress[-1]["total"]
    assert sup.state()["worker_pid"] == pid and sup.state()["restarts"] == 0
    assert sup.state()["state"] == "ready" and not rec.of("model.crashed")


FAKE_WORKER = '''
import sys
from dgx_music.common import protocol

out = sys.stdout.buffer
def send(msg):
    out.write(protocol.pack(msg, max_frame=1 << 29))
    out.flush()

send({"type": "hello", "id": 0, "pid": 0, "python": "fake"})
while True:
    msg = protocol.read_frame_blocking(sys.stdin.buffer, max_frame=1 << 29)
    if msg is None or msg.get("type") == "exit":
        break
    rid = msg.get("id")
    if msg["type"] == "load":
        send({"type": "loaded", "id": rid, "model": msg["model"], "backend": "fake", "device": "cpu",
              "dtype": "float32", "sample_rate": 32000, "load_seconds": 0.0, "memory": {}})
    elif msg["type"] == "generate":
        n = int(msg["params"]["duration"] * 32000)
        stale = (rid - 1) if isinstance(rid, int) else None
        # A late result of an earlier request (3 s of audio), then frames that match nothing.
        send({"type": "result", "id": stale, "pcm": b"\\0" * (4 * 96000), "shape": [1, 1, 96000],
              "sample_rate": 32000})
        send({"type": "error", "id": 4242, "op": "generate", "code": "internal", "message": "stray error",
              "transient": False})
        send({"type": "progress", "id": 4243, "step": 1, "total": 2, "elapsed": 0.0})
        send({"type": "result", "id": rid, "pcm": b"\\0" * (4 * n), "shape": [1, 1, n], "sample_rate": 32000})
'''


async def test_unmatched_replies_are_dropped_not_handed_to_the_waiting_request(
        make_supervisor, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    script = tmp_path / "fake-worker"
    script.write_text(f"#!{sys.executable}\n" + textwrap.dedent(FAKE_WORKER))
    script.chmod(0o755)
    sup, _ = make_supervisor(python=str(script))
    progress: list[dict[str, Any]] = []
    with caplog.at_level(logging.WARNING, logger="dgx_music.engine"):
        res = await sup.generate(1, ["calm piano"], params(duration=1.0), progress.append)
        again = await sup.generate(2, ["calm piano"], params(duration=0.5), progress.append)
    assert res.audio.shape == (1, 1, 32000) and again.audio.shape == (1, 1, 16000)
    assert progress == []  # the stray progress frame reached no job
    dropped = [r.getMessage() for r in caplog.records if "matches no request" in r.getMessage()]
    assert any("'error'" in m and "stray error" in m for m in dropped)
    assert any("'progress'" in m for m in dropped) and any("'result'" in m for m in dropped)


async def test_close_during_a_job_stops_it_and_the_worker_exits_by_itself(make_supervisor) -> None:  # type: ignore[no-untyped-def]
    """Daemon shutdown mid-job: the job stops at its next step and the worker exits 0 (no SIGKILL),
    both when the scheduler cancelled its task first and when close() finds the job still awaited."""
    sup, _ = make_supervisor(worker_env=SLOW)
    progress: list[dict[str, Any]] = []
    # 10 s at 50 steps/s and 0.05 s a step: ~25 s, far past the 10 s stop grace.
    task = asyncio.create_task(sup.generate(1, ["calm piano"], params(duration=10.0), progress.append))
    await wait_for(lambda: len(progress) >= 1)
    worker = sup.worker
    assert worker is not None
    task.cancel()  # the scheduler's close() first
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(sup.close(), 30)
    assert worker.returncode == 0 and not worker.killed, worker.exit_reason
    assert "daemon shutting down" in (worker.exit_reason or "")

    sup, _ = make_supervisor(worker_env=SLOW)
    progress.clear()
    task = asyncio.create_task(sup.generate(2, ["calm piano"], params(duration=10.0), progress.append))
    await wait_for(lambda: len(progress) >= 1)
    worker = sup.worker
    assert worker is not None
    await asyncio.wait_for(sup.close(), 30)
    with pytest.raises(EngineError) as ei:
        await task
    assert ei.value.code == "cancelled"
    assert worker.returncode == 0 and not worker.killed, worker.exit_reason
