"""ACE-Step's task types on source audio (repaint, cover, extract, lego) through the real loader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dgx_music.daemon.engine.errors import EngineError

SR = 48000


@pytest.fixture(scope="module")
def backend(tiny_acestep: Path) -> Any:
    from dgx_music.daemon.engine.acestep_backend import AceStepBackend

    b = AceStepBackend()
    b.load(str(tiny_acestep), "cpu", "auto", lambda p, m: None, offline=True)
    yield b
    b.close()


def _source(seconds: float = 3.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    left = 0.3 * np.sin(2 * np.pi * 220 * t)
    return np.stack([left, 0.3 * np.sin(2 * np.pi * 330 * t)]).astype(np.float32)


def _run(backend: Any, task: str, n: int = 1, steps: list[tuple[int, int]] | None = None,
         **extra: Any) -> np.ndarray:
    params = {"duration": 3.0, "seed": 11, "steps": 2, "task": task, **extra}
    on_step = (lambda s, t: steps.append((s, t))) if steps is not None else (lambda s, t: None)
    audio, sr = backend.generate_params(["warm tape"] * n, params, on_step, {"source": _source()})
    assert sr == SR
    return audio


@pytest.mark.parametrize("task,extra", [("repaint", {"repaint_start": 1.0, "repaint_end": 2.0}),
                                        ("cover", {"strength": 0.5}),
                                        ("extract", {"parts": ["drums"]}),
                                        ("lego", {"parts": ["bass"]})])
def test_each_task_follows_the_source_length_and_repeats_with_its_seed(backend: Any, task: str,
                                                                       extra: dict[str, Any]) -> None:
    a = _run(backend, task, **extra)
    assert a.shape[:2] == (1, 2) and a.dtype == np.float32
    assert abs(a.shape[-1] - 3 * SR) <= 1920  # whole latent frames around the source's length
    assert np.isfinite(a).all() and np.abs(a).max() > 0
    assert np.array_equal(a, _run(backend, task, **extra))  # global RNG seeded too: bit-identical


def test_stems_run_one_call_per_part_with_progress_across_all(backend: Any) -> None:
    steps: list[tuple[int, int]] = []
    a = _run(backend, "extract", n=3, steps=steps, parts=["vocals", "drums", "bass"])
    assert a.shape[0] == 3 and not np.allclose(a[0], a[1])
    assert steps == [(i, 6) for i in range(1, 7)]
    # A part does not depend on which parts were asked for beside it (a split batch keeps each part).
    alone = _run(backend, "extract", parts=["vocals"])
    assert np.array_equal(alone[0], a[0])


def test_bad_task_frames_are_refused(backend: Any) -> None:
    with pytest.raises(EngineError, match="source"):
        backend.generate_params(["x"], {"duration": 3.0, "seed": 1, "task": "cover"}, lambda s, t: None, {})
    with pytest.raises(EngineError, match="parts"):
        _run(backend, "extract")
    with pytest.raises(EngineError, match="repaint_start"):
        _run(backend, "repaint", repaint_start=2.0, repaint_end=1.0)
    with pytest.raises(EngineError, match="source"):
        backend.generate_params(["x"], {"duration": 3.0, "seed": 1}, lambda s, t: None, {"source": _source()})
