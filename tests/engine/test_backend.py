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


# ----------------------------------------------------------------------------- past 30 s: windows

def test_window_plan_covers_the_clip_with_ten_seconds_of_context() -> None:
    from dgx_music.daemon.engine.backend import window_plan

    assert window_plan(400, 1500, 500) == [(0, 400)]
    assert window_plan(1500, 1500, 500) == [(0, 1500)]
    assert window_plan(2250, 1500, 500) == [(0, 1500), (500, 750)]
    five_min = window_plan(15000, 1500, 500)
    assert five_min[0] == (0, 1500) and all(c == 500 and 0 < n <= 1000 for c, n in five_min[1:])
    assert sum(n for _, n in five_min) == 15000 and len(five_min) == 15


def test_join_keeps_what_was_made_and_appends_only_new_audio() -> None:
    from dgx_music.daemon.engine.backend import join_windows

    made = np.linspace(0, 1, 1000, dtype=np.float32)[None, None, :]
    prompt_redecoded = made[..., -300:] + 0.01  # close to, not exactly, the original tail
    new = np.full((1, 1, 500), 2.0, dtype=np.float32)
    out = join_windows(made, np.concatenate([prompt_redecoded, new], axis=-1), 300, 50)
    assert out.shape == (1, 1, 1500)
    assert np.array_equal(out[..., :950], made[..., :950])  # untouched before the crossfade
    assert np.array_equal(out[..., 1000:], new)  # then exactly the new audio
    assert np.all(np.abs(np.diff(out[0, 0, 940:1000])) < 0.02)  # no step where they meet


def test_a_clip_longer_than_one_window_continues_seamlessly(backend) -> None:  # type: ignore[no-untyped-def]
    steps: list[tuple[int, int]] = []
    audio, sr = _gen(backend, ("calm piano", "fast drums"), duration=45.0, seed=11,
                     on_step=lambda s, t: steps.append((s, t)))
    assert audio.shape == (2, 1, 45 * 32000) and np.isfinite(audio).all()
    # One progress run over both windows: 1500 + 750 frames, plus the delay pattern of each.
    assert [s for s, _ in steps] == list(range(1, 2257)) and {t for _, t in steps} == {2256}
    again, _ = _gen(backend, ("calm piano", "fast drums"), duration=45.0, seed=11)
    assert np.array_equal(audio, again)  # reproducible across windows
    # No click where the second window joins at 30 s: the largest sample-to-sample step there
    # is no larger than the largest anywhere else in the clip.
    d = np.abs(np.diff(audio[:, 0, :], axis=-1))
    at_join = d[:, 30 * 32000 - 2000:30 * 32000 + 2000].max()
    assert at_join <= d.max() and np.abs(audio[:, 0, 30 * 32000:]).max() > 0


def test_cancel_in_the_second_window(backend) -> None:  # type: ignore[no-untyped-def]
    def on_step(step: int, total: int) -> None:
        if step == 1600:  # 1503 steps make the first window
            raise Cancelled()

    with pytest.raises(Cancelled):
        _gen(backend, duration=40.0, on_step=on_step)


def test_duration_and_job_size_limits() -> None:
    from dgx_music.common.params import ParamError, validate_params

    assert validate_params({"prompt": "x", "duration": 300}).duration == 300.0
    assert validate_params({"prompt": "x", "duration": 30, "count": 16}).count == 16
    with pytest.raises(ParamError) as ei:
        validate_params({"prompt": "x", "duration": 301})
    assert ei.value.field == "duration" and "300 s" in ei.value.message
    with pytest.raises(ParamError) as ei:
        validate_params({"prompt": "x", "duration": 300, "count": 2})
    assert ei.value.field == "count" and "480 s" in ei.value.message


# ----------------------------------------------------------------------------- continuing a track

def test_window_plan_after_existing_music() -> None:
    from dgx_music.daemon.engine.backend import window_plan

    assert window_plan(300, 1500, 500, made=250) == [(250, 300)]  # a 5 s track: all of it is the context
    assert window_plan(1500, 1500, 500, made=250) == [(250, 1250), (500, 250)]
    assert window_plan(2000, 1500, 500, made=1000) == [(500, 1000), (500, 1000)]


def test_continuing_music_keeps_it_and_adds_the_asked_seconds(backend) -> None:  # type: ignore[no-untyped-def]
    source, _ = _gen(backend, duration=5.0, seed=1)
    steps: list[tuple[int, int]] = []
    out, sr = backend.generate(["calm piano", "fast drums"], 3.0, 1.0, 250, 0.0, 3.0, 2,
                               lambda s, t: steps.append((s, t)), prefix=source[0, 0])
    assert out.shape == (2, 1, 8 * 32000)
    fade = int(0.05 * sr)
    for clip in out:  # the original, untouched up to the crossfade into the continuation
        assert np.array_equal(clip[0, :5 * sr - fade], source[0, 0, :5 * sr - fade])
    assert not np.array_equal(out[0, 0, 5 * sr:], out[1, 0, 5 * sr:])  # two continuations
    assert [s for s, _ in steps] == list(range(1, 154)) and steps[-1][1] == 153  # 150 frames + delay
    again, _ = backend.generate(["calm piano", "fast drums"], 3.0, 1.0, 250, 0.0, 3.0, 2,
                                lambda s, t: None, prefix=source[0, 0])
    assert np.array_equal(out, again)
    # Past one window: 5 s + 40 s, the first window continuing from all 5 s, then 10 s of context.
    long, _ = backend.generate(["calm piano"], 40.0, 1.0, 250, 0.0, 3.0, 2, lambda s, t: None,
                               prefix=source[0, 0])
    assert long.shape == (1, 1, 45 * 32000) and np.isfinite(long).all()
