"""The ACE-Step family through the real diffusers loader (a tiny random-weight AceStepPipeline).

Never a faked engine: the pipeline is saved with save_pretrained and loaded back with
AceStepPipeline.from_pretrained, exactly as real weights are.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dgx_music.common import protocol
from dgx_music.daemon.engine.transport import WORKER_MAX_FRAME
from dgx_music.daemon.engine.errors import Cancelled, EngineError
from dgx_music.daemon.engine.models import dir_family, is_cached, known_models, resolve_model

LYRICS = "[verse]\nwalking down the empty street\n[chorus]\nla la la"


def _samples(duration: float) -> int:
    return math.ceil(duration * 25) * 1920  # whole latent frames: 25 per second, 1920 samples each


# ----------------------------------------------------------------------------- names (no torch)

def test_names_resolve_to_their_family(tiny_acestep: Path, tmp_path: Path) -> None:
    assert resolve_model("small").family == "musicgen" and resolve_model("random:melody").family == "musicgen"
    for name in ("ace-step", "ace-step-xl", "ace-step-base"):
        spec = resolve_model(name)
        assert (spec.family, spec.kind) == ("ace-step", "hub") and spec.ref.startswith("ACE-Step/")
    assert resolve_model("random:ace-step").ref == "ace-step"
    assert resolve_model("random:ace-step-base").family == "ace-step"
    assert resolve_model("ACE-Step/acestep-v15-base").family == "ace-step"
    assert resolve_model("facebook/musicgen-small").family == "musicgen"
    local = resolve_model(str(tiny_acestep))
    assert (local.kind, local.family) == ("local", "ace-step") and dir_family(tiny_acestep) == "ace-step"
    # Another diffusers pipeline is refused by name, not loaded as MusicGen.
    (tmp_path / "sd").mkdir()
    (tmp_path / "sd" / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(EngineError, match="StableDiffusionPipeline") as err:
        resolve_model(str(tmp_path / "sd"))
    assert err.value.code == "bad_model"
    with pytest.raises(EngineError, match="random:ace-step"):
        resolve_model("random:nope")


def test_known_models_list_both_families_with_licence(tmp_path: Path) -> None:
    snap = tmp_path / "models--ACE-Step--acestep-v15-xl-turbo-diffusers" / "snapshots" / "abc"
    (snap / "transformer").mkdir(parents=True)
    (snap / "model_index.json").write_text("{}")
    (snap / "transformer" / "w.safetensors").write_bytes(b"x" * 1000)
    models = {m["name"]: m for m in known_models(tmp_path)}
    assert models["small"]["family"] == "musicgen" and "CC-BY-NC" in models["small"]["licence"]
    turbo = models["ace-step"]
    assert turbo["family"] == "ace-step" and turbo["licence"].startswith("MIT")
    assert turbo["cached"] is True and turbo["size_bytes"] == 1002
    assert models["ace-step-base"]["cached"] is False and models["ace-step-base"]["size_bytes"] is None
    assert models["random:ace-step"]["kind"] == "random" and models["random:ace-step-base"]["family"] == "ace-step"
    # A MusicGen backend name does not make an ace-step snapshot look incomplete.
    assert is_cached(resolve_model("ace-step"), tmp_path, "transformers")


# ----------------------------------------------------------------------------- the backend, in process

@pytest.fixture(scope="module")
def backend(tiny_acestep: Path) -> Any:
    from dgx_music.daemon.engine.acestep_backend import AceStepBackend

    b = AceStepBackend()
    b.load(str(tiny_acestep), "cpu", "auto", lambda p, m: None, offline=True)
    yield b
    b.close()


def _gen(backend: Any, n: int = 1, on_step: Any = None, **params: Any) -> np.ndarray:
    params.setdefault("duration", 1.0)
    params.setdefault("seed", 0)
    audio, sr = backend.generate_params(["dreamy synth pop"] * n, params, on_step or (lambda s, t: None), {})
    assert sr == 48000
    return audio


def test_text2music_with_lyrics_is_48k_stereo_whole_frames(backend: Any) -> None:
    assert (backend.variant, backend.dtype, backend.sample_rate) == ("turbo", "float32", 48000)
    audio = _gen(backend, n=2, duration=2.01, lyrics=LYRICS, language="en", bpm=96, key="A minor",
                 time_signature=4, seed=3)
    assert audio.dtype == np.float32 and audio.shape == (2, 2, _samples(2.01)) == (2, 2, 97920)
    assert np.isfinite(audio).all() and 0.5 < float(np.abs(audio).max()) <= 1.0


def test_same_seed_same_audio_other_seed_other_audio(backend: Any) -> None:
    a = _gen(backend, seed=11, lyrics=LYRICS)
    assert np.array_equal(a, _gen(backend, seed=11, lyrics=LYRICS))
    assert not np.allclose(a, _gen(backend, seed=12, lyrics=LYRICS))
    # Variation i of a batch draws from seed + i: the first matches a single clip with the same seed.
    pair = _gen(backend, n=2, seed=11, lyrics=LYRICS)
    assert np.allclose(pair[0], a, atol=1e-5) and not np.allclose(pair[0], pair[1])


def test_progress_reports_every_step_in_order(backend: Any) -> None:
    seen: list[tuple[int, int]] = []
    _gen(backend, on_step=lambda s, t: seen.append((s, t)))
    assert seen == [(i, 8) for i in range(1, 9)]  # turbo's default: 8 steps
    seen.clear()
    _gen(backend, on_step=lambda s, t: seen.append((s, t)), steps=3)
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_cancel_stops_between_steps_and_never_decodes(backend: Any) -> None:
    vae = backend.pipe.vae
    real_decode = vae.decode
    decodes = []

    def counting_decode(*a: Any, **kw: Any) -> Any:
        decodes.append(1)
        return real_decode(*a, **kw)

    vae.decode = counting_decode
    try:
        seen: list[int] = []

        def on_step(step: int, total: int) -> None:
            seen.append(step)
            if step == 3:
                raise Cancelled()

        with pytest.raises(Cancelled):
            _gen(backend, on_step=on_step)
        assert seen == [1, 2, 3] and decodes == []  # stopped at step 3; the partial latents were dropped
        _gen(backend)  # the next job runs normally (and the counter does count decodes)
        assert decodes == [1]
    finally:
        del vae.decode


def test_parameters_of_another_family_are_refused(backend: Any) -> None:
    with pytest.raises(EngineError, match="top_k") as err:
        _gen(backend, top_k=250)
    assert err.value.code == "bad_request"
    with pytest.raises(EngineError, match="time_signature"):
        _gen(backend, time_signature=5)
    # One entry point (Backend.run) takes each family's own request: this backend has no MusicGen-shaped
    # `generate` to be called with MusicGen's arguments by mistake, and run() refuses MusicGen's fields.
    assert not hasattr(backend, "generate")
    with pytest.raises(EngineError, match="top_k"):
        backend.run(["x"], {"duration": 10.0, "seed": 0, "top_k": 250}, lambda s, t: None, {})


def test_lora_round_trip(backend: Any, tiny_acestep: Path, tmp_path: Path) -> None:
    from dgx_music.daemon.engine.acestep_testmodel import build_test_lora

    lora = build_test_lora(tiny_acestep, tmp_path / "lora")
    plain = _gen(backend, seed=5)
    with_lora = _gen(backend, seed=5, lora=str(lora))
    assert not np.allclose(plain, with_lora)
    assert np.array_equal(with_lora, _gen(backend, seed=5, lora=f"{lora}:1.0"))  # DIR:scale form, same scale
    half = _gen(backend, seed=5, lora=str(lora), lora_scale=0.5)
    assert not np.allclose(half, with_lora) and not np.allclose(half, plain)
    assert np.allclose(_gen(backend, seed=5), plain, atol=1e-6)  # a job without it unloads it
    with pytest.raises(EngineError, match="lora"):
        _gen(backend, lora=str(tmp_path / "missing"))


# ----------------------------------------------------------------------------- the worker process

def test_worker_process_generates_and_cancels_ace_step(tiny_acestep: Path, tmp_path: Path) -> None:
    env = dict(os.environ, DGX_MUSIC_TEST_STEP_DELAY="0.3", HF_HUB_CACHE=str(tmp_path / "hf"))
    proc = subprocess.Popen([sys.executable, "-m", "dgx_music.daemon.engine.worker_main"], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdin is not None and proc.stdout is not None
    guard = threading.Timer(240, proc.kill)  # a hung worker fails the test instead of blocking it
    guard.start()

    def send(msg: dict[str, Any]) -> None:
        proc.stdin.write(protocol.pack(msg, max_frame=WORKER_MAX_FRAME))  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]

    def until(kind: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        skipped = []
        while True:
            msg = protocol.read_frame_blocking(proc.stdout, max_frame=WORKER_MAX_FRAME)
            assert msg is not None, f"worker exited waiting for {kind}: skipped {skipped}"
            if msg["type"] in (kind, "error"):
                return msg, skipped
            skipped.append(msg)

    try:
        until("hello")
        send({"type": "load", "id": 1, "model": str(tiny_acestep), "backend": "transformers", "device": "cpu",
              "offline": True})
        loaded, _ = until("loaded")
        assert (loaded["family"], loaded["backend"], loaded["sample_rate"]) == ("ace-step", "diffusers", 48000)
        params = {"duration": 1.0, "seed": 7, "lyrics": LYRICS, "language": "en", "steps": 4}
        send({"type": "generate", "id": 2, "job_id": 1, "prompts": ["a", "b"], "params": params})
        result, progress = until("result")
        assert result["type"] == "result", result
        assert tuple(result["shape"]) == (2, 2, _samples(1.0)) and result["sample_rate"] == 48000
        assert [(p["step"], p["total"]) for p in progress] == [(1, 4), (2, 4), (3, 4), (4, 4)]

        send({"type": "generate", "id": 3, "job_id": 2, "prompts": ["a"], "params": params})
        first = protocol.read_frame_blocking(proc.stdout, max_frame=WORKER_MAX_FRAME)
        assert first is not None and first["type"] == "progress" and first["step"] == 1
        send({"type": "cancel", "id": 3})
        err, progress = until("result")
        assert (err["type"], err["code"], err["id"]) == ("error", "cancelled", 3)
        assert all(p["step"] < 4 for p in progress)  # stopped between steps, before the last

        send({"type": "generate", "id": 4, "job_id": 3, "prompts": ["a"], "params": {**params, "top_p": 0.9}})
        err, _ = until("result")
        assert err["code"] == "bad_request" and "top_p" in err["message"]
        send({"type": "exit", "id": 5})
        assert proc.wait(timeout=30) == 0
    finally:
        guard.cancel()
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_cli_make_test_model_ace_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from diffusers import AceStepPipeline

    from dgx_music.cli.main import main

    assert main(["make-test-model", str(tmp_path / "m"), "--family", "ace-step", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["family"] == "ace-step" and data["bytes"] < 5_000_000
    pipe = AceStepPipeline.from_pretrained(data["path"])
    assert pipe.sample_rate == 48000 and pipe.latents_per_second == 25.0 and pipe.is_turbo
    assert pipe.audio_tokenizer is not None and pipe.audio_token_detokenizer is not None  # cover works later
    silence = pipe.condition_encoder.silence_latent
    assert silence.shape == (1, 15000, 8) and float(silence.abs().sum()) > 0  # encoded silence, not zeros
    assert main(["make-test-model", str(tmp_path / "x"), "--family", "ace-step", "--melody"]) == 1


def test_doctor_reports_both_families(tmp_path: Path) -> None:
    from dgx_music.daemon.engine.doctor import doctor

    rep = doctor(model="random:ace-step", device="cpu", cache_dir=tmp_path)
    by = {c["name"]: c for c in rep["checks"]}
    assert by["family-musicgen"]["status"] == "ok" and "CC-BY-NC" in by["family-musicgen"]["detail"]
    ace = by["family-ace-step"]
    assert ace["status"] == "ok" and "diffusers 0." in ace["detail"] and "peft" in ace["detail"]
    assert "MIT" in ace["detail"] and "no named model cached" in ace["detail"]
    fams = rep["info"]["families"]
    assert {m["name"] for m in fams["ace-step"]["models"]} == {"ace-step", "ace-step-xl", "ace-step-base"}
    assert rep["info"]["model"]["family"] == "ace-step" and by["model"]["status"] == "ok"
