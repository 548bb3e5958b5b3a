"""The job queue end to end: a real daemon, the tiny model through the real loaders, real files."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import soundfile as sf

from dgx_music.common.client import Client
from dgx_music.common.protocol import RemoteError
from tests.conftest import DaemonProcess, wait_event

SLOW = "0.03"  # seconds per decode step in the worker: room to cancel or kill mid-run


async def test_lifecycle_submit_progress_tracks_library(studio: Any) -> None:
    async with await Client.connect(studio.server.path) as c:
        await c.subscribe("job", "track")
        job = await c.call("job.submit", {"prompt": "calm piano with rain", "duration": 1.0, "count": 2})
        assert job["state"] == "queued" and isinstance(job["seed"], int)  # seed chosen and stored
        seen: list[Any] = []
        done = await wait_event(c, "job.finished", job["id"], seen=seen)
        names = [e.name for e in seen if e.data.get("id") == job["id"]]
        assert names[0] == "job.queued" and names[1] == "job.started"
        assert names.index("job.processing") > names.index("job.progress")
        steps = [e.data["step"] for e in seen if e.name == "job.progress"]
        assert steps == sorted(steps) and steps[-1] == seen[[e.name for e in seen].index("job.progress")].data["total"]
        added = [e.data for e in seen if e.name == "track.added"]
        assert sorted(t["id"] for t in added) == sorted(done.data["track_ids"]) == [f"{job['id']}-0", f"{job['id']}-1"]

        j = await c.call("job.get", {"id": job["id"]})
        assert j["state"] == "done" and j["attempts"] == 1 and j["track_ids"] == done.data["track_ids"]
        for tid in j["track_ids"]:
            t = await c.call("track.get", {"id": tid})
            path = studio.data_dir / t["path"]
            info = sf.info(str(path))
            assert info.samplerate == 32000 and abs(info.duration - 1.0) < 0.05
            assert t["seed"] == job["seed"] and t["prompt"] == "calm piano with rain"
            assert t["lufs"] is not None and t["true_peak"] <= -0.9 and len(t["peaks"]) > 10
            assert path.name.startswith(f"{tid}-calm-piano")
        page = await c.call("track.list", {"search": "rain"})
        assert {t["id"] for t in page["tracks"]} == set(j["track_ids"])
        assert (await c.call("track.list", {"search": "violin"}))["tracks"] == []
        history = await c.call("prompt.history")
        assert history["prompts"][0] == "calm piano with rain"
        # Streaming the file back gives exactly the bytes on disk.
        t = await c.call("track.get", {"id": j["track_ids"][0]})
        chunks, offset = [], 0
        while True:
            part = await c.call("track.audio", {"id": t["id"], "offset": offset, "size": 20000})
            chunks.append(part["data"])
            offset += len(part["data"])
            if part["eof"]:
                break
        assert b"".join(chunks) == (studio.data_dir / t["path"]).read_bytes()


async def test_a_clip_longer_than_30_s_is_made_in_windows_and_analysed(studio: Any) -> None:
    async with await Client.connect(studio.server.path) as c:
        await c.subscribe("job")
        job = await c.call("job.submit", {"prompt": "slow evolving ambient pads", "duration": 42.5})
        seen: list[Any] = []
        await wait_event(c, "job.finished", job["id"], seen=seen, timeout=180)
        progress = [e.data for e in seen if e.name == "job.progress"]
        assert progress[-1]["step"] == progress[-1]["total"] == 1500 + 3 + 625 + 3  # two windows, one bar
        t = await c.call("track.get", {"id": f"{job['id']}-0"})
        assert abs(t["duration"] - 42.5) < 0.05 and t["lufs"] is not None and len(t["peaks"]) > 10
        assert abs(sf.info(str(studio.data_dir / t["path"])).duration - 42.5) < 0.05


async def test_invalid_params_are_refused_before_queueing(studio: Any) -> None:
    async with await Client.connect(studio.server.path) as c:
        for bad, field in ((
                {"prompt": ""}, "prompt"), ({"prompt": "x", "duration": 301}, "duration"),
                ({"prompt": "x", "count": 0}, "count"), ({"prompt": "x", "top_p": 2}, "top_p"),
                ({"prompt": "x", "seed": -1}, "seed"), ({"prompt": "x", "temperature": "hot"}, "temperature"),
                ({"prompt": "x", "colour": "blue"}, "colour")):
            with pytest.raises(RemoteError) as e:
                await c.call("job.submit", bad)
            assert e.value.code == "invalid_params" and e.value.data.get("field") == field
        assert (await c.call("job.list", {"all": True}))["jobs"] == []


async def test_queue_bound_cancel_move_retry(daemon_factory: Callable[..., Any], tiny_model: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DGX_MUSIC_TEST_STEP_DELAY", SLOW)
    d = await daemon_factory(engine__model=str(tiny_model), daemon__queue_limit=4)
    async with await Client.connect(d.server.path) as c:
        await c.subscribe("job")
        first = await c.call("job.submit", {"prompt": "first", "duration": 1.0})
        await wait_event(c, "job.progress", first["id"])
        ids = [(await c.call("job.submit", {"prompt": f"job {i}", "duration": 0.5}))["id"] for i in range(3)]
        with pytest.raises(RemoteError) as e:
            await c.call("job.submit", {"prompt": "one too many"})
        assert e.value.code == "queue_full"
        assert len((await c.call("job.list"))["jobs"]) == 4  # refused, not accepted and dropped

        moved = await c.call("job.move", {"id": ids[2], "to": "top"})
        order = [j["id"] for j in (await c.call("job.list"))["jobs"] if j["state"] == "queued"]
        assert order == [ids[2], ids[0], ids[1]] and moved["id"] == ids[2]
        await c.call("job.move", {"id": ids[0], "to": "down"})
        order = [j["id"] for j in (await c.call("job.list"))["jobs"] if j["state"] == "queued"]
        assert order == [ids[2], ids[1], ids[0]]
        with pytest.raises(RemoteError) as e:
            await c.call("job.move", {"id": first["id"], "to": "top"})
        assert e.value.code == "conflict"

        assert (await c.call("job.cancel", {"id": ids[1]}))["state"] == "cancelled"  # queued: at once
        await c.call("job.cancel", {"id": first["id"]})  # running: at the next step
        await wait_event(c, "job.cancelled", first["id"])
        j = await c.call("job.get", {"id": first["id"]})
        assert j["state"] == "cancelled" and j["track_ids"] == []
        assert not list((d.data_dir / "library").rglob(f"{first['id']}-*"))  # partial output discarded

        again = await c.call("job.retry", {"id": first["id"]})
        assert again["state"] == "queued"
        await wait_event(c, "job.finished", first["id"], timeout=120)
        assert (await c.call("job.get", {"id": first["id"]}))["track_ids"] == [f"{first['id']}-0"]
        with pytest.raises(RemoteError) as e:
            await c.call("job.retry", {"id": first["id"]})
        assert e.value.code == "conflict"


async def test_worker_crash_is_retried_and_bad_model_fails_at_once(
        daemon_factory: Callable[..., Any], tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DGX_MUSIC_TEST_STEP_DELAY", SLOW)
    d = await daemon_factory(engine__model=str(tiny_model))
    async with await Client.connect(d.server.path) as c:
        await c.subscribe("job", "model")
        job = await c.call("job.submit", {"prompt": "crash me", "duration": 1.0})
        await wait_event(c, "job.progress", job["id"])
        os.kill((await c.call("model.state"))["worker_pid"], signal.SIGKILL)
        seen: list[Any] = []
        failed = await wait_event(c, "job.failed", job["id"], seen=seen)
        assert failed.data["retrying"] is True and failed.data["reason"] == "worker_crashed"
        crashed = [e.data for e in seen if e.name == "model.crashed"]
        assert crashed and "SIGKILL" in crashed[0]["reason"]  # subscribers are told why
        await wait_event(c, "job.finished", job["id"], timeout=120)
        j = await c.call("job.get", {"id": job["id"]})
        assert j["state"] == "done" and j["attempts"] == 2 and len(j["track_ids"]) == 1

        # A model that cannot exist is refused before queueing; a local directory outside the
        # data dir is refused outright (no request makes the daemon read outside it).
        with pytest.raises(RemoteError) as e:
            await c.call("job.submit", {"prompt": "x", "model": "/nonexistent/model"})
        assert e.value.code == "invalid_params" and e.value.data["field"] == "model"
        with pytest.raises(RemoteError) as e:
            await c.call("job.submit", {"prompt": "x", "model": str(tiny_model.parent)})
        assert e.value.code == "forbidden" and "models" in e.value.message
        with pytest.raises(RemoteError) as e:
            await c.call("model.load", {"model": "/etc"})
        assert e.value.code == "forbidden"
        # A broken model in the allowed place fails the job at once: retrying cannot help.
        broken = d.data_dir / "models" / "broken"
        broken.mkdir(parents=True)
        (broken / "config.json").write_text("{not json")
        bad = await c.call("job.submit", {"prompt": "x", "duration": 0.5, "model": str(broken)})
        failed = await wait_event(c, "job.failed", bad["id"])
        assert failed.data["retrying"] is False
        j = await c.call("job.get", {"id": bad["id"]})
        assert j["state"] == "failed" and j["attempts"] == 1 and j["error"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DGX_MUSIC_")}
    return subprocess.run([sys.executable, "-m", "dgx_music", *args], capture_output=True, text=True,
                          timeout=180, env=env)


async def _job_state(sock: Path, job_id: int) -> dict[str, Any]:
    async with await Client.connect(sock) as c:
        return await c.call("job.get", {"id": job_id})


@pytest.mark.parametrize("failpoint", ["after_start", "processing", "after_files"])
def test_kill_9_loses_nothing_and_finishes_once(daemon_process: Callable[..., DaemonProcess],
                                                tiny_model: Path, failpoint: str) -> None:
    env = {"DGX_MUSIC_FAILPOINT": failpoint}
    d = daemon_process("--model", str(tiny_model), env=env).start()
    r = cli("generate", "kill nine", "--duration", "0.5", "--count", "2", "--json", "--socket", str(d.socket))
    assert r.returncode == 0, r.stderr
    job_id = json.loads(r.stdout)["id"]
    assert d.proc is not None and d.proc.wait(120) == -signal.SIGKILL  # the failpoint fired
    files_before = sorted(p.name for p in (d.data_dir / "library").rglob("*.wav")) \
        if (d.data_dir / "library").exists() else []

    d.env = {}
    d.start()
    r = cli("generate", "after restart", "--duration", "0.5", "--wait", "--json", "--socket", str(d.socket))
    assert r.returncode == 0, r.stderr + d.logs()
    job = asyncio.run(_job_state(d.socket, job_id))
    assert job["state"] == "done" and job["attempts"] == 2, job
    assert job["track_ids"] == [f"{job_id}-0", f"{job_id}-1"]
    lib = sorted(p.name for p in (d.data_dir / "library").rglob("*.wav"))
    assert len(lib) == 3  # two from the recovered job, one from the new: nothing twice
    if failpoint in ("processing", "after_files"):
        # Files written before the crash had no rows: reported and kept aside, not deleted.
        assert files_before
        kept = sorted(p.name for p in (d.data_dir / "orphans").rglob("*.wav"))
        assert kept == files_before
        assert "orphan audio file" in d.logs()
    out = json.loads(r.stdout)
    assert {"id", "path", "file", "prompt", "seed", "duration", "sample_rate"} <= set(out["tracks"][0])
    assert Path(out["tracks"][0]["file"]).exists()
    d.stop()


async def test_cancel_right_after_submit_always_cancels(studio: Any) -> None:
    async with await Client.connect(studio.server.path) as c:
        await c.subscribe("job")
        for _ in range(3):  # whichever state the runner has reached, the job ends cancelled
            job = await c.call("job.submit", {"prompt": "never mind", "duration": 0.5})
            await c.call("job.cancel", {"id": job["id"]})
            await wait_event(c, "job.cancelled", job["id"])
            j = await c.call("job.get", {"id": job["id"]})
            assert j["state"] == "cancelled" and j["track_ids"] == []


def _dead(pid: int) -> bool:
    """Gone, or a zombie nobody has reaped yet (this sandbox's pid 1 may not reap)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_worker_dies_with_a_killed_daemon(daemon_process: Callable[..., DaemonProcess], tiny_model: Path) -> None:
    """kill -9 of the daemon must not leave a model holding the GPU."""
    d = daemon_process("--model", str(tiny_model), env={"DGX_MUSIC_TEST_STEP_DELAY": "0.05"}).start()

    async def start_job() -> int:
        async with await Client.connect(d.socket) as c:
            await c.subscribe("job")
            job = await c.call("job.submit", {"prompt": "long", "duration": 20})
            await wait_event(c, "job.progress", job["id"])
            return (await c.call("model.state"))["worker_pid"]

    worker = asyncio.run(start_job())
    assert not _dead(worker)
    d.stop(signal.SIGKILL)
    deadline = time.monotonic() + 3
    while not _dead(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _dead(worker)


def test_orderly_shutdown_requeues_the_running_job_without_using_an_attempt(
        daemon_process: Callable[..., DaemonProcess], tiny_model: Path) -> None:
    d = daemon_process("--model", str(tiny_model), env={"DGX_MUSIC_TEST_STEP_DELAY": "0.05"}).start()

    async def start_job() -> int:
        async with await Client.connect(d.socket) as c:
            await c.subscribe("job")
            job = await c.call("job.submit", {"prompt": "interrupted", "duration": 5})
            await wait_event(c, "job.progress", job["id"])
            return job["id"]

    job_id = asyncio.run(start_job())
    assert d.stop(signal.SIGTERM) == 0
    d.env = {}
    d.start()

    async def finish() -> dict[str, Any]:
        async with await Client.connect(d.socket) as c:
            await c.subscribe("job")
            j = await c.call("job.get", {"id": job_id})
            if j["state"] != "done":
                await wait_event(c, "job.finished", job_id, timeout=120)
            return await c.call("job.get", {"id": job_id})

    j = asyncio.run(finish())
    assert j["state"] == "done" and j["attempts"] == 1 and j["track_ids"] == [f"{job_id}-0"]
    assert "interrupted by shutdown" in d.logs()
