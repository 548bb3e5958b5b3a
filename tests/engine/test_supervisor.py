"""The supervisor with a real worker process and the tiny model: no fakes.

Two fault-injection variables of the real worker make timing deterministic on
a fast tiny model: DGX_MUSIC_TEST_STEP_DELAY (sleep per decode step) and
DGX_MUSIC_TEST_OOM_MIN_BATCH (raise a CUDA-style OOM from that batch size up).
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from dgx_music.common.params import ParamError, validate_params
from dgx_music.daemon.engine.errors import EngineError

from .conftest import pid_alive
from .helpers import params, wait_for

SLOW = {"DGX_MUSIC_TEST_STEP_DELAY": "0.05"}  # 53 steps -> ~2.7 s per 1 s clip




async def test_generate_progress_seed_and_model_switch(make_supervisor, tiny_model: Path,
                                                       tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sup, rec = make_supervisor()
    assert sup.state()["state"] == "unloaded" and sup.state()["worker_pid"] is None  # lazy start
    progress: list[dict[str, Any]] = []
    res = await sup.generate(1, ["calm piano", "fast drums"], params(), progress.append)
    assert res.audio.shape == (2, 1, 32000) and res.audio.dtype == np.float32 and res.sample_rate == 32000
    assert res.device == "cpu" and res.backend == "transformers" and res.audio.flags.writeable
    steps = [p["step"] for p in progress]
    assert steps == sorted(set(steps)) and steps[0] == 1 and steps[-1] == progress[-1]["total"] == 53
    elapsed = [p["elapsed"] for p in progress]
    assert elapsed == sorted(elapsed) and all(p["job_id"] == 1 for p in progress)
    names = rec.names()
    assert names[0] == "model.loading" and "model.loaded" in names
    assert names.index("model.loaded") > max(i for i, n in enumerate(names) if n == "model.loading")
    st = sup.state()
    assert st["state"] == "ready" and st["device"] == "cpu" and st["memory"]["rss"] > 10_000_000

    # Same prompt, params and seed give identical audio, also across a worker restart.
    again = await sup.generate(2, ["calm piano", "fast drums"], params(), None)
    assert np.array_equal(res.audio, again.audio)
    other = await sup.generate(3, ["calm piano", "fast drums"], params(seed=2), None)
    assert not np.array_equal(res.audio, other.audio)
    # A job naming another model switches the worker (a new process). The "other" model is the same
    # files under another name, so this also shows the audio is reproduced across processes.
    other_model = tmp_path / "other-model"
    other_model.symlink_to(tiny_model, target_is_directory=True)
    pid = sup.state()["worker_pid"]
    after = await sup.generate(4, ["calm piano", "fast drums"], params(model=str(other_model)), None)
    assert after.model == str(other_model) and sup.state()["model"] == str(other_model)
    assert sup.state()["worker_pid"] not in (None, pid) and not pid_alive(pid)
    assert any("switching" in d["reason"] for d in rec.of("model.unloaded"))
    assert np.array_equal(res.audio, after.audio)
    listed = {m["name"]: m for m in await sup.models()}
    assert listed[str(other_model)]["loaded"] and not listed[str(tiny_model)]["loaded"]
    new_pid = sup.state()["worker_pid"]
    await sup.unload()
    assert sup.state()["state"] == "unloaded" and sup.state()["worker_pid"] is None and not pid_alive(new_pid)


async def test_cancel_mid_run(make_supervisor) -> None:  # type: ignore[no-untyped-def]
    sup, _ = make_supervisor(worker_env=SLOW)
    await sup.load()
    progress: list[dict[str, Any]] = []
    task = asyncio.create_task(sup.generate(7, ["calm piano"], params(), progress.append))
    await wait_for(lambda: len(progress) >= 2)
    assert await sup.cancel(7) is True
    with pytest.raises(EngineError) as ei:
        await task
    assert ei.value.code == "cancelled" and not ei.value.transient
    assert progress[-1]["step"] < 53
    assert await sup.cancel(7) is False  # no longer known
    # The worker survives a cancel and serves the next job.
    pid = sup.state()["worker_pid"]
    res = await sup.generate(8, ["calm piano"], params(duration=0.5), None)
    assert res.audio.shape[0] == 1 and sup.state()["worker_pid"] == pid and sup.state()["restarts"] == 0

    # Closing (daemon shutdown) during a job cancels it promptly and stops the process.
    progress.clear()
    task = asyncio.create_task(sup.generate(9, ["calm piano"], params(), progress.append))
    await wait_for(lambda: len(progress) >= 1)
    await asyncio.wait_for(sup.close(), 10)
    with pytest.raises(EngineError) as ei:
        await task
    assert ei.value.code == "cancelled" and not pid_alive(pid)


async def test_keep_alive_zero_stops_the_process_after_the_job(make_supervisor) -> None:  # type: ignore[no-untyped-def]
    sup, rec = make_supervisor(keep_alive=0)
    await sup.generate(1, ["calm piano"], params(duration=0.5), None)
    pid = rec.of("model.loaded") and sup.state()["worker_pid"]
    await wait_for(lambda: rec.of("model.unloaded"), 15)
    assert "keep_alive 0" in rec.of("model.unloaded")[0]["reason"]
    assert sup.state()["state"] == "unloaded" and sup.state()["worker_pid"] is None
    assert pid and not pid_alive(pid)


async def test_keep_alive_idle_timeout_unloads(make_supervisor) -> None:  # type: ignore[no-untyped-def]
    sup, rec = make_supervisor(keep_alive=1.0)
    await sup.load()
    pid = sup.state()["worker_pid"]
    await asyncio.sleep(0.3)
    assert pid_alive(pid) and sup.state()["state"] == "ready"
    await wait_for(lambda: sup.state()["state"] == "unloaded", 10)
    assert not pid_alive(pid)
    assert "idle for 1 s" in rec.of("model.unloaded")[-1]["reason"]


async def test_sigkill_mid_job_is_detected_and_restarted(make_supervisor) -> None:  # type: ignore[no-untyped-def]
    sup, rec = make_supervisor(worker_env=SLOW)
    await sup.load()
    pid = sup.state()["worker_pid"]
    progress: list[dict[str, Any]] = []
    task = asyncio.create_task(sup.generate(5, ["calm piano"], params(), progress.append))
    await wait_for(lambda: len(progress) >= 1)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(EngineError) as ei:
        await task
    err = ei.value
    assert err.code == "worker_crashed" and err.transient
    assert "SIGKILL" in err.message and "job 5" in err.message
    crash = rec.of("model.crashed")
    assert len(crash) == 1 and "SIGKILL" in crash[0]["reason"]
    # Restarted with the same model without being asked, and it works.
    await wait_for(lambda: sup.state()["state"] == "ready", 30)
    st = sup.state()
    assert st["restarts"] == 1 and st["worker_pid"] not in (None, pid)
    res = await sup.generate(6, ["calm piano"], params(duration=0.5), None)
    assert res.audio.shape == (1, 1, 16000)


async def test_hung_worker_is_killed(make_supervisor) -> None:  # type: ignore[no-untyped-def]
    # keep_alive 0: no automatic restart after the kill (nothing else to wait for in this test).
    sup, rec = make_supervisor(worker_env=SLOW, hang_timeout=1.5, keep_alive=0)
    await sup.load()
    pid = sup.state()["worker_pid"]
    progress: list[dict[str, Any]] = []
    task = asyncio.create_task(sup.generate(9, ["calm piano"], params(), progress.append))
    await wait_for(lambda: len(progress) >= 1)
    os.kill(pid, signal.SIGSTOP)  # frozen: no progress, no exit
    with pytest.raises(EngineError) as ei:
        await asyncio.wait_for(task, 15)
    assert ei.value.code == "hung" and "no progress for 1.5 s" in ei.value.message
    assert not pid_alive(pid)
    assert "hung" in rec.of("model.crashed")[0]["reason"]


async def test_oom_retries_as_smaller_batches(make_supervisor) -> None:  # type: ignore[no-untyped-def]
    sup, rec = make_supervisor(worker_env={"DGX_MUSIC_TEST_OOM_MIN_BATCH": "2"})
    prompts = ["calm piano", "fast drums"]
    res = await sup.generate(1, prompts, params(duration=0.5), None)
    assert res.audio.shape == (2, 1, 16000)
    reasons = [d["reason"] for d in rec.of("model.unloaded")]
    assert any("out of memory on a batch of 2" in r for r in reasons)
    # The part that fitted matches generating it alone with the same seed.
    alone = await sup.generate(2, prompts[:1], params(duration=0.5), None)
    assert np.array_equal(alone.audio[0], res.audio[0])


async def test_oom_on_a_single_prompt_gives_up_clearly(make_supervisor) -> None:  # type: ignore[no-untyped-def]
    sup, rec = make_supervisor(worker_env={"DGX_MUSIC_TEST_OOM_MIN_BATCH": "1"}, keep_alive=0)
    with pytest.raises(EngineError) as ei:
        await sup.generate(1, ["calm piano"], params(duration=0.5), None)
    err = ei.value
    assert err.code == "oom" and err.transient
    assert "batch of one" in err.message and "shorter duration or a smaller model" in err.message
    assert any("batch of 1" in d["reason"] for d in rec.of("model.unloaded"))
    assert not rec.of("model.crashed") and sup.state()["worker_pid"] is None


async def test_invalid_requests_are_rejected_before_any_process(make_supervisor) -> None:  # type: ignore[no-untyped-def]
    sup, _ = make_supervisor()
    for bad in ({"prompt": ""}, {"prompt": "x", "duration": 0.1}, {"prompt": "x", "duration": 301},
                {"prompt": "x", "top_p": 1.5}, {"prompt": "x", "temperature": 0}, {"prompt": "x", "seed": -1},
                {"prompt": "x", "count": 0}, {"prompt": "x", "cfg": "lots"}, {"prompt": "x", "bogus": 1}):
        with pytest.raises(ParamError):
            validate_params(bad)
    with pytest.raises(EngineError) as ei:
        await sup.generate(1, [], params(), None)
    assert ei.value.code == "bad_request"
    with pytest.raises(EngineError) as ei:
        await sup.generate(1, ["x"], {"prompt": "x"}, None)  # type: ignore[arg-type]
    assert ei.value.code == "bad_request"
    with pytest.raises(EngineError) as ei:
        await sup.generate(1, ["x"], params(model="no-such-model"), None)
    assert ei.value.code == "model_not_found"
    assert sup.state()["worker_pid"] is None


async def test_offline_uncached_model_fails_clearly(make_supervisor, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sup, _ = make_supervisor(model="small", offline=True, cache_dir=tmp_path / "empty-cache")
    with pytest.raises(EngineError) as ei:
        await sup.load()
    assert ei.value.code == "model_not_found"
    assert "not cached" in ei.value.message and "offline" in ei.value.message
    assert sup.state()["worker_pid"] is None


async def test_bad_model_directory_reported_by_the_worker(make_supervisor, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "junk").mkdir()
    sup, rec = make_supervisor(model=str(tmp_path / "junk"))
    with pytest.raises(EngineError) as ei:
        await sup.load()
    assert ei.value.code == "bad_model" and "config.json" in ei.value.message
    assert sup.state()["state"] == "unloaded" and sup.state()["worker_pid"] is None
    assert not rec.of("model.crashed")


async def test_model_cache_scans_run_off_the_event_loop(make_supervisor, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """model.list and the offline cache check read the HF cache from disk: never on the daemon's loop."""
    from dgx_music.daemon.engine import supervisor as supmod
    from dgx_music.daemon.handlers.models import list_models

    threads: list[int] = []

    def spy(fn):  # type: ignore[no-untyped-def]
        def wrapped(*a: Any, **kw: Any) -> Any:
            threads.append(threading.get_ident())
            return fn(*a, **kw)
        return wrapped

    monkeypatch.setattr(supmod, "known_models", spy(supmod.known_models))
    monkeypatch.setattr(supmod, "is_cached", spy(supmod.is_cached))
    sup, _ = make_supervisor(model="small", offline=True, cache_dir=tmp_path / "empty-cache")
    out = await list_models(SimpleNamespace(daemon=SimpleNamespace(engine=sup)), {})  # type: ignore[arg-type]
    small = next(m for m in out["models"] if m["name"] == "small")
    assert small["configured"] and not small["cached"] and not small["loaded"]
    with pytest.raises(EngineError) as ei:
        await sup.load()  # offline and not cached: refused after a cache check
    assert ei.value.code == "model_not_found"
    assert len(threads) >= 2 and threading.get_ident() not in threads
