"""fit and loop on the other surfaces: the CLI (subprocess, --json) and the HTTP API with its OpenAPI schema."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import soundfile as sf

from dgx_music.common.client import Client
from dgx_music.common.fitloop import loop_samples
from tests.audio import synth
from tests.cli.test_cli_e2e import cli, cli_json
from tests.conftest import start_http, wait_event
from tests.fitloop.test_fit_loop_jobs import SR, flac, needs_rubberband, smpl_loop


@needs_rubberband
async def test_cli_fit_and_loop_of_a_file(daemon_factory: Callable[..., Any], tiny_model: Path,
                                          tmp_path: Path) -> None:
    d = await daemon_factory(engine__model=str(tiny_model))
    sock = d.server.path
    f = tmp_path / "groove.flac"
    f.write_bytes(flac(synth.song(100, "A", "minor", seconds=12, sr=SR, stereo=True)))
    done = await cli_json(sock, "fit", str(f), "--bpm", "120", "--wait")
    assert done["state"] == "done" and done["tracks"][0]["title"] == "groove.flac (fit 120 BPM)"
    assert sf.info(done["tracks"][0]["file"]).frames == round(12 * SR * 100 / 120)
    fitted = done["tracks"][0]["id"]
    rc, out, _ = await cli(sock, "show", fitted)
    assert rc == 0 and "source    fit of file groove.flac" in out, out
    looped = await cli_json(sock, "loop", fitted, "--bars", "2", "--wait")
    n = loop_samples(2, 4, 120, SR)
    assert sf.info(looped["tracks"][0]["file"]).frames == n
    assert smpl_loop(Path(looped["tracks"][0]["file"])) == (1, 0, n - 1)
    # remix of a fit: the same fit again on the daemon's stored copy of the file (no seed to vary: same audio)
    again = await cli_json(sock, "remix", fitted, "--wait")
    assert again["tracks"][0]["title"] == "groove.flac (fit 120 BPM)"
    a, b = sf.read(done["tracks"][0]["file"])[0], sf.read(again["tracks"][0]["file"])[0]
    assert a.shape == b.shape and (a == b).all()
    rc, _, err = await cli(sock, "remix", fitted, "--seed", "3")
    assert rc == 2 and "--seed" in err
    # bad values are usage errors before any request: exit 2, the flag named
    rc, _, err = await cli(sock, "fit", fitted)
    assert rc == 2 and "--bpm" in err
    rc, _, err = await cli(sock, "loop", "funk drums", "--bars", "4")
    assert rc == 2 and "--bpm" in err
    rc, _, err = await cli(sock, "fit", fitted, "--key", "H")
    assert rc == 2 and "--key" in err
    rc, out, _ = await cli(sock, "loop", "--help")
    assert "examples" in out and "smpl" in out


async def test_http_loop_route_matches_its_openapi_schema(daemon_factory: Callable[..., Any],
                                                          tiny_model: Path) -> None:
    d = await daemon_factory(engine__model=str(tiny_model), http__listen="127.0.0.1:0")
    api = await start_http(d)
    base = api.url + "/api/v1"
    audio = flac(synth.song(120, "A", "minor", seconds=6, sr=22050), 22050)  # under the 1 MiB HTTP body limit
    body = {"source_audio": base64.b64encode(audio).decode(), "source_name": "beat.flac", "bars": 2}
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {api.plan.token}"}) as s, \
            await Client.connect(d.server.path) as c:
        await c.subscribe("job")
        async with s.get(api.url + "/openapi.json") as r:
            doc = await r.json()
        for route, name in (("loop", "LoopRequest"), ("fit", "FitRequest")):
            schema = doc["paths"][f"/api/v1/ops/{route}"]["post"]["requestBody"]["content"]["application/json"]
            assert schema["schema"]["$ref"].endswith(name)
        schema = {**doc["paths"]["/api/v1/ops/loop"]["post"]["requestBody"]["content"]["application/json"]["schema"],
                  "components": doc["components"]}
        jsonschema.validate(body, schema)
        async with s.post(base + "/ops/loop", json=body) as r:
            assert r.status == 201, await r.text()
            job = await r.json()
        await wait_event(c, "job.finished", job["id"], timeout=120)
        done = await c.call("job.get", {"id": job["id"]})
        async with s.get(base + f"/tracks/{done['track_ids'][0]}/lineage") as r:
            lin = await r.json()
        assert lin["source"]["name"] == "beat.flac" and lin["source"]["operation"] == "loop"
        track = await c.call("track.get", {"id": done["track_ids"][0]})
        assert sf.info(str(d.data_dir / track["path"])).frames == loop_samples(2, 4, 120, SR)
        async with s.post(base + "/ops/fit", json={"source": "1-0", "key": "Q"}) as r:
            err = await r.json()
            assert r.status == 400 and err["error"]["field"] == "key"


async def test_a_loop_from_a_prompt_on_ace_step_asks_the_model_for_the_tempo(daemon_factory: Callable[..., Any],
                                                                              tiny_acestep: Path) -> None:
    """The tiny ACE-Step pipeline through the real worker: bpm, key and metre go to the model as its
    conditions (not into the caption); the track is exactly 2 bars of 3/4 at 90 BPM with its loop points."""
    d = await daemon_factory(engine__model=str(tiny_acestep))
    async with await Client.connect(d.server.path) as c:
        await c.subscribe("job")
        job = await c.call("op.loop", {"prompt": "waltz, strings", "bars": 2, "bpm": 90, "beats_per_bar": 3,
                                       "key": "D major", "seed": 2})
        assert job["prompt"] == "waltz, strings"
        assert (job["params"]["bpm"], job["params"]["key"], job["params"]["time_signature"]) == (90, "D major", 3)
        await wait_event(c, "job.finished", job["id"], timeout=300)
        track = await c.call("track.get", {"id": (await c.call("job.get", {"id": job["id"]}))["track_ids"][0]})
        n = loop_samples(2, 3, 90, SR)
        assert sf.info(str(d.data_dir / track["path"])).frames == n == 4 * SR
        assert smpl_loop(d.data_dir / track["path"]) == (1, 0, n - 1)
