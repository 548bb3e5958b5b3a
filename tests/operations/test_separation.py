"""`stems` by a separation model: a tiny HTDemucs (the real architecture, random weights, saved as a
demucs repository and loaded by demucs-infer's own loader) in the real worker, through a real daemon.

Every stem is read back with soundfile and checked against the uploaded file: as long, at its rate
and channel count, aligned, and adding up to it. The backend's own sum (exact, at 48 kHz) is
checked in tests/engine/test_separation_models.py."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import numpy as np
import pytest
import soundfile as sf

from dgx_music.common.client import Client
from tests.cli.test_cli_e2e import cli_json
from tests.conftest import start_http, wait_event
from tests.operations.test_operation_jobs import refused as refused_op
from tests.operations.test_operation_jobs import run


def song(seconds: float = 2.5, sr: int = 44100, channels: int = 2) -> tuple[bytes, np.ndarray]:
    """A file with a click at 1 s (for alignment) over three sines; and its samples [frames, channels]."""
    t = np.arange(int(seconds * sr)) / sr
    a = np.stack([0.3 * np.sin(2 * np.pi * 110 * t) + 0.1 * np.sin(2 * np.pi * 3000 * t),
                  0.2 * np.sin(2 * np.pi * 440 * t)], axis=1)[:, :channels]
    a[sr:sr + 8] += 0.5  # the click
    buf = io.BytesIO()
    sf.write(buf, a.astype(np.float32), sr, format="FLAC", subtype="PCM_24")
    return buf.getvalue(), sf.read(io.BytesIO(buf.getvalue()), dtype="float32", always_2d=True)[0]


@pytest.fixture
async def daemon(daemon_factory: Callable[..., Any], tiny_separator: Path) -> Any:
    # 32-bit float files: the stems' sum is checked closely (random weights make stems far louder
    # than the mix, cancelling out; a 16-bit file would clip them).
    return await daemon_factory(engine__separator=str(tiny_separator), engine__keep_alive=-1, audio__bit_depth=32)


def snr(ref: np.ndarray, got: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref ** 2) / np.sum((got - ref) ** 2)))


@pytest.mark.parametrize(("rate", "channels"), [(44100, 2), (32000, 1)])
async def test_stems_are_aligned_as_long_as_the_source_at_its_rate_and_add_up_to_it(
        daemon: Any, rate: int, channels: int) -> None:
    """A 44.1 kHz stereo upload, and a 32 kHz mono one (a MusicGen track's format): stems in the
    file's own format, the same number of frames, summing to it; the model itself ran at 44.1 kHz
    on the daemon's 48 kHz stereo copy."""
    d = daemon
    data, original = song(2.5, rate, channels)
    async with await Client.connect(d.server.path) as c:
        await c.subscribe("job")
        done = await run(c, "op.stems", {"source_audio": data, "source_name": "take.flac"})
        p = done["params"]
        assert p["method"] == "separate" and p["family"] == "separation" and done["model"] == str(d.settings[
            "engine.separator"])
        assert p["parts"] == ["vocals", "drums", "bass", "other"] and len(done["track_ids"]) == 4
        stems = {}
        for tid in done["track_ids"]:
            t = await c.call("track.get", {"id": tid})
            a, sr = sf.read(str(d.data_dir / t["path"]), dtype="float32", always_2d=True)
            assert sr == rate and a.shape == original.shape  # as long as the source, at its rate and channels
            assert (t["sample_rate"], t["channels"]) == (rate, channels)
            assert t["loudness_note"] == "kept at the level of the source"
            lin = await c.call("track.lineage", {"id": t["id"]})
            assert lin["source"]["operation"] == "stems" and lin["source"]["name"] == "take.flac"
            assert "source_rate" not in lin["source"]["params"]  # where the source was is not what was asked
            stems[lin["source"]["part"]] = a
        assert sorted(stems) == ["bass", "drums", "other", "vocals"]
        # The model ran: its stems are neither silent nor copies of each other.
        assert all(np.abs(stems[s]).max() > 1e-4 for s in ("vocals", "drums", "bass"))
        assert not np.allclose(stems["vocals"], stems["drums"], atol=1e-4)
        total = sum(stems.values())
        assert snr(original, total) > 50  # dB (measured 60 and more): the sum is the file, up to two resamplings
        # Aligned to the sample: the sum matches the file best at lag 0 (the click makes lags differ).
        x, y, k = total[:, 0], original[:, 0], 8
        lags = {lag: float(np.dot(x[k + lag:len(x) - k + lag], y[k:len(y) - k])) for lag in range(-k, k + 1)}
        assert max(lags, key=lags.__getitem__) == 0


async def test_stems_refusals_name_the_field(daemon: Any) -> None:
    data, _ = song(1.5)
    async with await Client.connect(daemon.server.path) as c:
        async def refused(params: dict[str, Any], field: str) -> str:
            return await refused_op(c, "op.stems", {"source_audio": data, **params}, field)

        assert "htdemucs_6s" in await refused({"parts": ["guitar"]}, "parts")  # the tiny model makes four
        assert "generate" in await refused({"parts": ["strings"]}, "parts")  # an ACE-Step part
        assert "generate" in await refused({"steps": 4}, "steps")  # separation has no sampler
        assert "ace-step-base" in await refused({"method": "generate", "model": "ace-step"}, "model")
        # MusicGen separates nothing
        assert "needs a Demucs model (htdemucs" in await refused({"model": "small"}, "model")


async def test_a_stems_job_reports_progress_cancels_and_retries_with_only_the_asked_stems(
        daemon_factory: Callable[..., Any], tiny_separator: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("DGX_MUSIC_TEST_STEP_DELAY", "0.5")  # each model segment waits: time to cancel
    d = await daemon_factory(engine__separator=str(tiny_separator))
    data, _ = song(6.0)  # four 2 s segments of the tiny model
    async with await Client.connect(d.server.path) as c:
        await c.subscribe("job")
        job = await c.call("op.stems", {"source_audio": data, "parts": ["bass", "vocals"]})
        assert job["count"] == 2
        ev = await wait_event(c, "job.progress", job["id"], timeout=120)
        assert ev.data["total"] == 4 and 1 <= ev.data["step"] < 4
        await c.call("job.cancel", {"id": job["id"]})
        await wait_event(c, "job.cancelled", job["id"], timeout=60)
        assert (await c.call("track.list", {}))["tracks"] == []
        await c.call("job.retry", {"id": job["id"]})
        await wait_event(c, "job.finished", job["id"], timeout=120)
        done = await c.call("job.get", {"id": job["id"]})
        titles = [(await c.call("track.get", {"id": t}))["title"] for t in done["track_ids"]]
        assert titles == ["uploaded audio (bass)", "uploaded audio (vocals)"]


async def test_extract_and_lego_run_on_the_base_model(daemon_factory: Callable[..., Any]) -> None:
    """Upstream trains extract and lego on ace-step-base only: with a turbo daemon model and no
    --model the job is the base model's (offline and not cached here: it fails naming it), and a
    turbo --model is refused."""
    d = await daemon_factory(engine__model="random:ace-step", engine__offline=True)
    data, _ = song(1.5)
    async with await Client.connect(d.server.path) as c:
        await c.subscribe("job")
        job = await c.call("op.add_part", {"source_audio": data, "part": "drums"})
        assert job["model"] == "ace-step-base"
        ev = await wait_event(c, "job.failed", job["id"], timeout=60)
        assert "ace-step-base" in ev.data["error"] and ev.data["reason"] == "model_not_found"
        stems = await c.call("op.stems", {"source_audio": data, "method": "generate", "parts": ["vocals"]})
        assert stems["model"] == "ace-step-base"
        assert "ace-step-base" in await refused_op(c, "op.add_part", {"source_audio": data, "part": "bass",
                                                                      "model": "ace-step-xl"}, "model")


async def test_cli_json_and_http_stems_by_separation(daemon_factory: Callable[..., Any], tiny_separator: Path,
                                                     tmp_path: Path) -> None:
    """The CLI splits a file (--json --wait); the HTTP API, checked against its OpenAPI schema,
    splits one of the library tracks that made, at that track's own rate."""
    d = await daemon_factory(engine__separator=str(tiny_separator), http__listen="127.0.0.1:0")
    f = tmp_path / "take 1.flac"
    f.write_bytes(song(2.0)[0])
    done = await cli_json(d.server.path, "stems", str(f), "--parts", "vocals,other", "--wait")
    assert done["state"] == "done" and [t["title"] for t in done["tracks"]] == \
        ["take 1.flac (vocals)", "take 1.flac (other)"]
    assert all(sf.info(t["file"]).samplerate == 44100 for t in done["tracks"])
    vocals = done["tracks"][0]["id"]
    api = await start_http(d)
    body = {"source": vocals, "method": "separate", "parts": ["bass"]}
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {api.plan.token}"}) as s, \
            await Client.connect(d.server.path) as c:
        await c.subscribe("job")
        async with s.get(api.url + "/openapi.json") as r:
            doc = await r.json()
        schema = {**doc["paths"]["/api/v1/ops/stems"]["post"]["requestBody"]["content"]["application/json"]
                  ["schema"], "components": doc["components"]}
        jsonschema.validate(body, schema)
        async with s.post(api.url + "/api/v1/ops/stems", json=body) as r:
            assert r.status == 201, await r.text()
            job = await r.json()
        await wait_event(c, "job.finished", job["id"], timeout=120)
        new = await c.call("track.get", {"id": (await c.call("job.get", {"id": job["id"]}))["track_ids"][0]})
        assert new["title"] == f"{done['tracks'][0]['title']} (bass)" and new["sample_rate"] == 44100
        lin = await c.call("track.lineage", {"id": new["id"]})
        assert lin["source"]["id"] == vocals and lin["source"]["part"] == "bass"
