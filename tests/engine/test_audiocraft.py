"""The audiocraft backend through the real worker and MusicGen.get_pretrained.

Runs where audiocraft imports (the audiocraft environment, docs/engine.md), or
from the main environment with DGX_MUSIC_AUDIOCRAFT_PYTHON naming that
environment's python: the worker and the model build then run there, which is
also how a daemon in the main environment can use the audiocraft backend.
Otherwise these tests are skipped, saying why.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dgx_music.daemon.engine.errors import EngineError

from .conftest import pid_alive
from .helpers import params, wait_for

AC_PYTHON = os.environ.get("DGX_MUSIC_AUDIOCRAFT_PYTHON") or (
    sys.executable if importlib.util.find_spec("audiocraft") is not None else None)

pytestmark = [
    pytest.mark.audiocraft,
    pytest.mark.skipif(AC_PYTHON is None, reason="audiocraft is not installed in this environment and "
                       "DGX_MUSIC_AUDIOCRAFT_PYTHON is not set (run `make test-audiocraft`)"),
]


@pytest.fixture(scope="module")
def ac_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dgx_music.daemon.engine.testmodel import build_test_model

    return build_test_model(tmp_path_factory.mktemp("tiny-audiocraft"), backend="audiocraft", python=AC_PYTHON)


@pytest.fixture
def make_ac(make_supervisor):  # type: ignore[no-untyped-def]
    def make(**kw: Any):  # type: ignore[no-untyped-def]
        return make_supervisor(backend="audiocraft", python=AC_PYTHON, **kw)

    return make




def test_checkpoint_format(ac_model: Path) -> None:
    import torch

    pkg = torch.load(ac_model / "state_dict.bin", map_location="cpu", weights_only=True)
    assert set(pkg) >= {"best_state", "xp.cfg"} and isinstance(pkg["xp.cfg"], str)
    assert (ac_model / "compression_state_dict.bin").is_file()
    assert (ac_model / "hf-cache" / "models--t5-base" / "refs" / "main").is_file()


async def test_generate_progress_seed_and_keep_alive(make_ac, ac_model: Path) -> None:  # type: ignore[no-untyped-def]
    sup, rec = make_ac(model=str(ac_model), keep_alive=0)
    progress: list[dict[str, Any]] = []
    res = await sup.generate(1, ["calm piano", "fast drums"], params(), progress.append)
    assert res.audio.shape == (2, 1, 32000) and res.audio.dtype == np.float32 and res.sample_rate == 32000
    assert res.backend == "audiocraft" and np.abs(res.audio).max() > 0
    steps = [p["step"] for p in progress]
    assert steps == sorted(set(steps)) and steps[0] == 1 and steps[-1] == progress[-1]["total"]
    assert rec.names().index("model.loaded") > rec.names().index("model.loading")
    # keep_alive 0: the worker process is gone after the job.
    await wait_for(lambda: rec.of("model.unloaded"))
    assert sup.state()["worker_pid"] is None
    again = await sup.generate(2, ["calm piano", "fast drums"], params(), None)
    other = await sup.generate(3, ["calm piano", "fast drums"], params(seed=2), None)
    assert np.array_equal(res.audio, again.audio)  # same seed, fresh process, same audio
    assert not np.array_equal(res.audio, other.audio)


async def test_cancel_and_sigkill(make_ac, ac_model: Path) -> None:  # type: ignore[no-untyped-def]
    sup, rec = make_ac(model=str(ac_model), worker_env={"DGX_MUSIC_TEST_STEP_DELAY": "0.05"})
    await sup.load()
    progress: list[dict[str, Any]] = []
    task = asyncio.create_task(sup.generate(4, ["calm piano"], params(), progress.append))
    await wait_for(lambda: len(progress) >= 2)
    assert await sup.cancel(4)
    with pytest.raises(EngineError) as ei:
        await task
    assert ei.value.code == "cancelled" and progress[-1]["step"] < progress[-1]["total"]

    pid = sup.state()["worker_pid"]
    progress.clear()
    task = asyncio.create_task(sup.generate(5, ["calm piano"], params(), progress.append))
    await wait_for(lambda: len(progress) >= 1)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(EngineError) as ei:
        await task
    assert ei.value.code == "worker_crashed" and "SIGKILL" in ei.value.message
    assert not pid_alive(pid)
    await wait_for(lambda: sup.state()["state"] == "ready")
    assert sup.state()["restarts"] == 1


async def test_offline_uncached_fails_clearly(make_ac, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sup, _ = make_ac(model="small", offline=True, cache_dir=tmp_path / "none")
    with pytest.raises(EngineError) as ei:
        await sup.load()
    assert ei.value.code == "model_not_found" and "offline" in ei.value.message


async def test_transformers_checkpoint_is_rejected_clearly(make_ac, tiny_model: Path) -> None:  # type: ignore[no-untyped-def]
    sup, _ = make_ac(model=str(tiny_model))
    with pytest.raises(EngineError) as ei:
        await sup.load()
    assert ei.value.code == "bad_model" and "--backend transformers" in ei.value.message


async def test_past_30_s_audiocraft_continues_with_one_progress_run(make_ac, ac_model: Path) -> None:  # type: ignore[no-untyped-def]
    sup, _ = make_ac(model=str(ac_model))
    progress: list[dict[str, Any]] = []
    res = await sup.generate(6, ["calm piano"], params(duration=36.0), progress.append)
    assert res.audio.shape == (1, 1, 36 * 32000) and np.isfinite(res.audio).all()
    steps = [p["step"] for p in progress]
    assert steps == sorted(set(steps)) and {p["total"] for p in progress} == {36 * 50}
    assert steps[-1] == 36 * 50  # the bar ends full, though audiocraft's own count is per window
