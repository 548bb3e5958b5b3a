"""The transformers backend in-process, through the real from_pretrained loaders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dgx_music.daemon.engine.errors import Cancelled, EngineError


@pytest.fixture(scope="module")
def backend(tiny_model: Path):  # type: ignore[no-untyped-def]
    from dgx_music.daemon.engine.backend import get_backend

    b = get_backend("transformers")
    messages: list[str] = []
    b.load(str(tiny_model), "cpu", "auto", lambda p, m: messages.append(m))
    assert any("loading weights" in m for m in messages)
    yield b
    b.close()


def _gen(backend, prompts=("calm piano",), seed=1, duration=1.0, on_step=lambda s, t: None, **kw):  # type: ignore[no-untyped-def]
    args = dict(temperature=1.0, top_k=250, top_p=0.0, cfg=3.0)
    args.update(kw)
    return backend.generate(list(prompts), duration, args["temperature"], args["top_k"], args["top_p"],
                            args["cfg"], seed, on_step)


def test_generates_one_second_with_progress(backend) -> None:  # type: ignore[no-untyped-def]
    steps: list[tuple[int, int]] = []
    audio, sr = _gen(backend, ("calm piano", "fast drums"), on_step=lambda s, t: steps.append((s, t)))
    assert sr == 32000
    assert audio.dtype == np.float32 and audio.shape == (2, 1, 32000)
    assert np.isfinite(audio).all() and np.abs(audio).max() > 0
    assert [s for s, _ in steps] == list(range(1, len(steps) + 1))
    assert steps[-1][0] == steps[-1][1] == 53  # 50 frames + 3 for the delay pattern


def test_same_seed_same_audio_other_seed_differs(backend) -> None:  # type: ignore[no-untyped-def]
    a, _ = _gen(backend, seed=7)
    b, _ = _gen(backend, seed=7)
    c, _ = _gen(backend, seed=8)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_sampling_parameters_are_applied(backend) -> None:  # type: ignore[no-untyped-def]
    base, _ = _gen(backend, seed=3)
    for kw in ({"top_k": 5}, {"top_p": 0.5}, {"cfg": 1.0}, {"temperature": 0.3}):
        other, _ = _gen(backend, seed=3, **kw)
        assert other.shape == base.shape
        assert not np.array_equal(base, other), kw


def test_raising_from_a_step_cancels(backend) -> None:  # type: ignore[no-untyped-def]
    seen: list[int] = []

    def on_step(step: int, total: int) -> None:
        seen.append(step)
        if step == 5:
            raise Cancelled()

    with pytest.raises(Cancelled):
        _gen(backend, on_step=on_step)
    assert seen == [1, 2, 3, 4, 5]


def test_bad_model_directory(tmp_path: Path) -> None:
    from dgx_music.daemon.engine.backend import get_backend

    (tmp_path / "state_dict.bin").write_bytes(b"")
    with pytest.raises(EngineError) as ei:
        get_backend("transformers").load(str(tmp_path), "cpu", "auto", lambda p, m: None)
    assert ei.value.code == "bad_model" and "audiocraft" in ei.value.message


def test_device_and_dtype_choice() -> None:
    import torch

    from dgx_music.daemon.engine.backend import pick_device, pick_dtype

    assert pick_device("cpu") == "cpu"
    assert pick_device("auto") in ("cuda", "mps", "cpu")
    assert pick_dtype("cpu") == torch.float32
    with pytest.raises(EngineError):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(EngineError) as ei:
            pick_device("cuda")
        assert "CUDA" in ei.value.message
