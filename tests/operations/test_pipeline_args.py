"""What reaches the diffusers pipeline: every ACE-Step field a user sets arrives in the pipeline's call.

The daemon and its worker run for real (the tiny AceStepPipeline through the real loader); a
`sitecustomize` module put on the worker's PYTHONPATH wraps `AceStepPipeline.__call__` in the worker
process, records each call's keyword arguments (arrays as .npy files), and calls through. So a field
dropped anywhere between the request and the pipeline (schema, job row, wire params, the backend's
task mapping) fails here, and so does an operation run as plain text to music: the daemon's splice
and mix would otherwise make any audio look like the operation's result.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from dgx_music.common.client import Client
from tests.operations.test_operation_jobs import SR, run, tone

SPY = '''
import json, os, sys
if "dgx_music.daemon.engine.worker_main" in sys.orig_argv:
    import numpy as np
    import torch
    from diffusers import AceStepPipeline

    _real = AceStepPipeline.__call__
    _dir = os.environ["DGX_MUSIC_TEST_PIPELINE_SPY"]

    def _plain(name, value, n):
        if isinstance(value, torch.Tensor):
            path = os.path.join(_dir, f"call{n}-{name}.npy")
            np.save(path, value.detach().to(torch.float32).cpu().numpy())
            return {"npy": path}
        if isinstance(value, (list, tuple)):
            return [_plain(name, v, n) for v in value]
        if value is None or isinstance(value, (str, int, float, bool)):
            return value
        return repr(type(value))

    def _spy(self, *args, **kwargs):
        n = len([f for f in os.listdir(_dir) if f.endswith(".json")])
        record = {k: _plain(k, v, n) for k, v in kwargs.items() if k not in ("callback_on_step_end", "generator")}
        with open(os.path.join(_dir, f"call{n}.json"), "w") as f:
            json.dump(record, f)
        return _real(self, *args, **kwargs)

    AceStepPipeline.__call__ = _spy
'''

LYRICS = "[verse]\nlanterns on the water\n[chorus]\ncarry me home"


@pytest.fixture
async def spied(daemon_factory: Callable[..., Any], tiny_acestep: Path, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Callable[[], list[dict[str, Any]]]]:
    site, calls = tmp_path / "site", tmp_path / "calls"
    site.mkdir()
    calls.mkdir()
    (site / "sitecustomize.py").write_text(SPY)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("DGX_MUSIC_TEST_PIPELINE_SPY", str(calls))
    d = await daemon_factory(engine__model=str(tiny_acestep))

    def taken() -> list[dict[str, Any]]:
        """Every pipeline call so far, in order; then forgotten, so each step sees only its own."""
        files = sorted(calls.glob("call*.json"), key=lambda p: int(p.stem[4:]))
        out = [json.loads(p.read_text()) for p in files]
        for p in files:
            p.rename(p.with_suffix(".seen"))
        return out

    return d, taken


def audio(arg: Any) -> np.ndarray:
    assert isinstance(arg, dict) and "npy" in arg, f"expected source audio, got {arg!r}"
    return np.load(arg["npy"])


async def test_every_field_a_user_sets_reaches_the_pipeline(spied: Any) -> None:
    d, taken = spied
    async with await Client.connect(d.server.path) as c:
        await c.subscribe("job")
        # Text to music: lyrics, language, bpm, key, time signature, duration, steps, guidance, shift.
        song = await run(c, "job.submit", {"prompt": "synth pop, female vocal", "lyrics": LYRICS, "language": "de",
                                           "duration": 10, "bpm": 96, "key": "A minor", "time_signature": 3,
                                           "steps": 2, "guidance": 1.5, "shift": 2.5, "seed": 7, "count": 2})
        [call] = taken()
        assert call["prompt"] == ["synth pop, female vocal"] * 2
        assert call["lyrics"] == [LYRICS] * 2
        assert call["vocal_language"] == ["de"] * 2
        assert (call["bpm"], call["keyscale"], call["timesignature"]) == (96, "A minor", "3")
        assert call["audio_duration"] == 10.0
        assert (call["num_inference_steps"], call["guidance_scale"], call["shift"]) == (2, 1.5, 2.5)
        assert call.get("task_type", "text2music") == "text2music" and call.get("src_audio") is None

        # Repaint: the source's own samples and the span, as the repaint task.
        src = await c.call("track.get", {"id": song["track_ids"][0]})
        source_samples = sf.read(str(d.data_dir / src["path"]), dtype="float32", always_2d=True)[0].T
        await run(c, "op.repaint", {"source": src["id"], "start": 2.5, "end": 4.0, "steps": 2, "seed": 5,
                                    "lyrics": "[verse]\nnew words", "language": "fr"})
        [call] = taken()
        assert call["task_type"] == "repaint"
        assert (call["repainting_start"], call["repainting_end"]) == (2.5, 4.0)
        got = audio(call["src_audio"])
        assert got.shape == source_samples.shape == (2, 10 * SR)
        assert np.abs(got - source_samples).max() < 1e-3  # the stored track, not other audio
        assert call["lyrics"] == ["[verse]\nnew words"] and call["vocal_language"] == ["fr"]

        # Cover: the uploaded source and the strength.
        up = tone(2.0, sr=SR, fmt="WAV")
        await run(c, "op.cover", {"source_audio": up, "source_name": "riff.wav", "prompt": "bossa nova",
                                  "strength": 0.7, "steps": 2, "lyrics": "[chorus]\nola", "language": "pt"})
        [call] = taken()
        assert call["task_type"] == "cover" and call["audio_cover_strength"] == 0.7
        assert call["prompt"] == ["bossa nova"] and call["lyrics"] == ["[chorus]\nola"]
        assert call["vocal_language"] == ["pt"]
        upload = sf.read(__import__("io").BytesIO(up), dtype="float32", always_2d=True)[0].T
        got = audio(call["src_audio"])
        assert got.shape == upload.shape and np.abs(got - upload).max() < 1e-3

        # Stems: one extract call per part, each naming its part, all on the source.
        await run(c, "op.stems", {"source_audio": up, "source_name": "riff.wav", "parts": ["vocals", "drums"],
                                  "steps": 2, "method": "generate"})
        calls = taken()
        assert [(k["task_type"], k["track_name"]) for k in calls] == [("extract", "vocals"), ("extract", "drums")]
        assert all(audio(k["src_audio"]).shape == upload.shape for k in calls)

        # Add a part: the lego task with the part's name.
        await run(c, "op.add_part", {"source_audio": up, "source_name": "riff.wav", "part": "strings",
                                     "steps": 2})
        [call] = taken()
        assert (call["task_type"], call["track_name"]) == ("lego", "strings")
        assert audio(call["src_audio"]).shape == upload.shape
