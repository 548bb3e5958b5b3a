"""Melody conditioning and half precision, through the real transformers loaders.

A tiny MusicGen-melody with random weights is saved with save_pretrained and loaded
with from_pretrained, as `--model melody` is; the chroma it reads is checked against
known pitches, so a wrong filter bank or frame layout fails here, not on the GPU box.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dgx_music.daemon.engine.chroma import chroma_features, fit_to_duration
from dgx_music.daemon.engine.errors import EngineError
from dgx_music.daemon.engine.models import accepts_melody, resolve_model

SR = 32000
PITCH_CLASSES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]


def tone(freq: float, seconds: float, harmonics: int = 3) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return sum(0.3 / (h + 1) * np.sin(2 * np.pi * freq * (h + 1) * t) for h in range(harmonics)).astype(np.float32)


@pytest.fixture(scope="module")
def melody_model(tiny_melody_model: Path) -> Path:
    return tiny_melody_model


@pytest.fixture(scope="module")
def backend(melody_model: Path) -> Any:
    from dgx_music.daemon.engine.backend import get_backend

    b = get_backend("transformers")
    b.load(str(melody_model), "cpu", "auto", lambda p, m: None)
    yield b
    b.close()


def gen(backend: Any, melody: np.ndarray | None, seed: int = 1, prompts: tuple[str, ...] = ("calm piano",),
        duration: float = 1.0) -> np.ndarray:
    audio, sr = backend.generate(list(prompts), duration, 1.0, 250, 0.0, 3.0, seed, lambda s, t: None,
                                 melody=melody)
    assert sr == SR
    return audio


def test_chroma_follows_the_notes_played() -> None:
    # A (440 Hz) for 2 s, then C (261.6 Hz) for 2 s: the one-hot frames name those pitch classes.
    melody = np.concatenate([tone(440.0, 2.0), tone(261.63, 2.0)])
    feats = chroma_features(melody, SR, batch=2)
    assert feats.shape == (2, 1 + melody.shape[0] // 4096, 12)
    assert bool((feats.sum(-1) == 1).all())  # one-hot per frame, as the model was trained on
    names = [PITCH_CLASSES[i] for i in feats[0].argmax(-1).tolist()]
    assert set(names[2:13]) == {"A"} and set(names[-12:-2]) == {"C"}
    assert bool((feats[0] == feats[1]).all())  # the same melody for every prompt of the batch


def test_a_short_melody_loops_to_the_clip_length() -> None:
    riff = np.arange(SR, dtype=np.float32)  # 1 s
    out = fit_to_duration(riff, 2.5, SR)
    assert out.shape == (int(2.5 * SR),)
    assert np.array_equal(out[SR:2 * SR], riff) and np.array_equal(out[2 * SR:], riff[: SR // 2])
    assert fit_to_duration(riff, 0.5, SR).shape == (SR // 2,)


def test_melody_model_follows_the_melody_reproducibly(backend: Any) -> None:
    assert backend.is_melody
    a_line = tone(440.0, 3.0)
    c_line = tone(261.63, 3.0)
    first = gen(backend, a_line)
    assert first.shape == (1, 1, SR) and first.dtype == np.float32 and np.isfinite(first).all()
    assert np.array_equal(first, gen(backend, a_line))  # same seed, same melody: same audio
    assert not np.array_equal(first, gen(backend, c_line))  # the melody changes the music
    text_only = gen(backend, None)  # a melody model still works from text alone
    assert text_only.shape == first.shape and not np.array_equal(first, text_only)
    batch = gen(backend, a_line, prompts=("calm piano", "fast drums"))
    assert batch.shape == (2, 1, SR)


def test_text_model_refuses_a_melody(tiny_model: Path) -> None:
    from dgx_music.daemon.engine.backend import get_backend

    b = get_backend("transformers")
    b.load(str(tiny_model), "cpu", "auto", lambda p, m: None)
    try:
        with pytest.raises(EngineError) as ei:
            gen(b, tone(440.0, 1.0))
        assert ei.value.code == "bad_request" and "melody" in ei.value.message
    finally:
        b.close()


def test_which_models_take_a_melody(melody_model: Path, tiny_model: Path) -> None:
    assert accepts_melody(resolve_model("melody")) and accepts_melody(resolve_model("random:melody"))
    assert accepts_melody(resolve_model(str(melody_model)))
    assert not accepts_melody(resolve_model("small")) and not accepts_melody(resolve_model("random:small"))
    assert not accepts_melody(resolve_model(str(tiny_model)))


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_half_precision_loads_and_generates(tiny_model: Path, melody_model: Path, dtype: str) -> None:
    """The dtypes CUDA runs in (bf16 on the GB10), exercised on the CPU so a dtype mismatch
    between inputs and weights (text, chroma) shows up without a GPU."""
    from dgx_music.daemon.engine.backend import get_backend

    for model, melody in ((tiny_model, None), (melody_model, tone(440.0, 1.0))):
        b = get_backend("transformers")
        b.load(str(model), "cpu", dtype, lambda p, m: None)
        try:
            assert b.dtype == {"bf16": "bfloat16", "fp16": "float16"}[dtype]
            audio = gen(b, melody, seed=3)
            assert audio.dtype == np.float32 and audio.shape == (1, 1, SR)
            assert np.isfinite(audio).all() and np.abs(audio).max() > 0
            if melody is None and dtype == "bf16":  # past 30 s the audio prompt is cast too
                long = gen(b, None, seed=3, duration=31.0)
                assert long.shape == (1, 1, 31 * SR) and np.isfinite(long).all()
        finally:
            b.close()


def test_melody_models_stop_at_one_window(backend: Any) -> None:
    with pytest.raises(EngineError) as ei:
        gen(backend, tone(440.0, 2.0), duration=31.0)
    assert ei.value.code == "bad_request" and "at most 30 s" in ei.value.message


def test_melody_models_cannot_continue_music(backend: Any) -> None:
    with pytest.raises(EngineError) as ei:
        backend.generate(["x"], 1.0, 1.0, 250, 0.0, 3.0, 1, lambda s, t: None, prefix=tone(440.0, 2.0))
    assert ei.value.code == "bad_request" and "cannot continue" in ei.value.message
