"""Extending an ACE-Step track at either end (op.extend): a repaint of silence padded on, through a real
daemon with the tiny AceStepPipeline; every file read back with soundfile."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dgx_music.common.client import Client
from dgx_music.common.operations import CROSSFADE_SECONDS
from tests.operations.test_operation_jobs import SR, read, refused, run, tone

XF = int(CROSSFADE_SECONDS * SR)


def rms(a: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(a, dtype=np.float64) ** 2)))


@pytest.fixture
async def daemon(daemon_factory: Callable[..., Any], tiny_acestep: Path) -> Any:
    return await daemon_factory(engine__model=str(tiny_acestep))


async def test_extend_after_and_before_keeps_the_source_bit_for_bit(daemon: Any) -> None:
    d = daemon
    async with await Client.connect(d.server.path) as c:
        await c.subscribe("job")
        song = await run(c, "job.submit", {"prompt": "synth pop", "duration": 10, "steps": 2, "seed": 3,
                                           "lyrics": "[verse]\nla la"})
        src = await c.call("track.get", {"id": song["track_ids"][0]})
        a = read(d, src, "int32")  # the stored PCM values, exactly
        n = a.shape[0]

        after = await run(c, "op.extend", {"source": src["id"], "by": 3, "steps": 2, "seed": 5})
        new = await c.call("track.get", {"id": after["track_ids"][0]})
        b = read(d, new, "int32")
        assert b.shape == (n + 3 * SR, 2) and new["duration"] == pytest.approx(src["duration"] + 3, abs=1e-3)
        assert np.array_equal(b[:n - XF], a[:n - XF])  # the source, sample for sample, up to the crossfade
        assert not np.array_equal(b[n - XF:n], a[n - XF:])  # the crossfade blends into the new part
        fa, fb = read(d, src, "float32"), read(d, new, "float32")
        tail, added = rms(fa[-10 * SR:]), rms(fb[n:])
        assert 0.2 * tail < added <= 1.01 * tail  # new music, at the level of the source's end (not silence)
        assert new["title"] == f"{src['title']} (+3 s after)" and new["lyrics"] == "[verse]\nla la"
        lin = (await c.call("track.lineage", {"id": new["id"]}))["source"]
        assert (lin["id"], lin["operation"], lin["params"]["by"], lin["params"]["before"]) == \
            (src["id"], "extend", 3, False)

        before = await run(c, "op.extend", {"source": src["id"], "by": 2.5, "before": True, "steps": 2, "seed": 6})
        new2 = await c.call("track.get", {"id": before["track_ids"][0]})
        b2 = read(d, new2, "int32")
        pad = int(2.5 * SR)
        assert b2.shape == (n + pad, 2)
        assert np.array_equal(b2[pad + XF:], a[XF:])  # the source from the end of the crossfade on
        assert not np.array_equal(b2[pad:pad + XF], a[:XF])
        assert rms(read(d, new2, "float32")[:pad]) > 0.2 * rms(fa[:10 * SR])
        assert new2["title"] == f"{src['title']} (+2.5 s before)"
        derived = (await c.call("track.lineage", {"id": src["id"]}))["derived"]
        assert sorted(x["id"] for x in derived) == sorted([new["id"], new2["id"]])


async def test_extend_is_refused_past_the_limit_naming_the_field(daemon: Any) -> None:
    d = daemon
    async with await Client.connect(d.server.path) as c:
        await c.subscribe("job")
        up = {"source_audio": tone(2.0, sr=SR, fmt="WAV"), "source_name": "riff.wav"}
        queue = (await c.call("status"))["queue"]
        assert "past the 600 s limit" in await refused(c, "op.extend", {**up, "by": 599}, "by")
        await refused(c, "op.extend", {**up, "by": 0.1}, "by")
        await refused(c, "op.extend", {**up, "by": 3, "before": "yes"}, "before")
        assert "ACE-Step" in await refused(c, "op.extend", {**up, "by": 3, "model": "small"}, "model")
        assert (await c.call("status"))["queue"] == queue
        assert not (d.data_dir / "sources").exists() or not list((d.data_dir / "sources").iterdir())


async def test_cli_extend_of_an_ace_step_track_before_it(daemon: Any) -> None:
    import soundfile as sf

    from tests.cli.test_cli_e2e import cli, cli_json

    sock, tid = daemon.server.path, "500-0"
    rel = f"library/imported/{tid}.wav"
    (daemon.data_dir / rel).parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(daemon.data_dir / rel), sf.read(io.BytesIO(tone(2.0, sr=SR, fmt="WAV")))[0], SR, subtype="PCM_24")
    await daemon.store.import_tracks([{"id": tid, "prompt": "lofi beat", "path": rel, "duration": 2.0,
                                       "sample_rate": SR, "channels": 2, "family": "ace-step",
                                       "params": {"steps": 2, "family": "ace-step"}}])
    done = await cli_json(sock, "extend", tid, "--by", "1.5", "--before", "--seed", "2", "--wait")
    assert done["state"] == "done" and done["params"]["operation"] == "extend"
    assert done["params"]["before"] is True and done["params"]["steps"] == 2  # the source's settings
    assert done["prompt"] == "lofi beat" and done["tracks"][0]["duration"] == pytest.approx(3.5, abs=1e-3)
    rc, out, _ = await cli(sock, "show", tid)
    assert rc == 0 and f"derived   {done['tracks'][0]['id']}  extend" in out
    # Refusals name this command line's flags: the daemon's (the 600 s limit) and the offline ones.
    rc, _, err = await cli(sock, "extend", tid, "--by", "599")
    assert rc == 2 and "--by" in err and "600 s" in err, err
    rc, _, err = await cli(sock, "extend", tid, "--by", "3", "--count", "2")
    assert rc == 2 and "--count" in err, err
    rc, out, _ = await cli(sock, "extend", "--help")
    assert "--before" in out and "examples" in out


async def test_http_extend_route_matches_its_openapi_schema(daemon_factory: Callable[..., Any],
                                                            tiny_acestep: Path) -> None:
    import base64

    import aiohttp
    import jsonschema
    import soundfile as sf

    from tests.conftest import start_http, wait_event

    d = await daemon_factory(engine__model=str(tiny_acestep), http__listen="127.0.0.1:0")
    api = await start_http(d)
    base = api.url + "/api/v1"
    up = tone(1.5, sr=SR, fmt="WAV")
    body = {"source_audio": base64.b64encode(up).decode(), "source_name": "loop.wav", "by": 1, "before": True,
            "steps": 1}
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {api.plan.token}"}) as s, \
            await Client.connect(d.server.path) as c:
        await c.subscribe("job")
        async with s.get(api.url + "/openapi.json") as r:
            doc = await r.json()
        schema = {**doc["paths"]["/api/v1/ops/extend"]["post"]["requestBody"]["content"]["application/json"]
                  ["schema"], "components": doc["components"]}
        jsonschema.validate(body, schema)
        async with s.post(base + "/ops/extend", json=body) as r:
            assert r.status == 201, await r.text()
            job = await r.json()
        await wait_event(c, "job.finished", job["id"], timeout=300)
        done = await c.call("job.get", {"id": job["id"]})
        new = await c.call("track.get", {"id": done["track_ids"][0]})
        # An upload at 48 kHz, 16 bit: the stored copy is its samples, so the new file ends with them.
        a, _ = sf.read(io.BytesIO(up), dtype="float32", always_2d=True)
        b = read(d, new, "float32")
        assert b.shape == (a.shape[0] + SR, 2) and np.array_equal(b[SR + XF:], a[XF:])
        async with s.post(base + "/ops/extend", json={"source": "1-0", "by": 601}) as r:
            err = await r.json()
            assert r.status == 400 and err["error"]["field"] == "by"


@pytest.mark.parametrize("before", [False, True])
def test_the_new_part_takes_the_level_of_the_source_next_to_it(before: bool) -> None:
    """A quiet ending after a loud start: the extension matches the 10 s it joins, not the whole song
    nor the silence it replaces; the rest is the source's, bit for bit."""
    from dgx_music.daemon import op_render

    rng = np.random.default_rng(0)
    t = np.arange(30 * SR) / SR
    src = np.stack([np.sin(2 * np.pi * 220 * t), np.sin(2 * np.pi * 221 * t)]).astype(np.float32)
    loud, quiet = slice(0, 15 * SR), slice(15 * SR, None)
    if before:
        loud, quiet = quiet, loud
    src[:, loud] *= 0.8
    src[:, quiet] *= 0.05
    pad, _, _ = op_render.extend_span(src.shape[1], 4.0, before, SR)
    padded = op_render.pad_source(src, pad, before)
    model = (0.9 * rng.uniform(-1, 1, size=(1, 2, padded.shape[1] + 1000))).astype(np.float32)  # peak-normalised
    job = {"params": {"operation": "extend", "by": 4.0, "before": before, "source_name": "song"}}
    [out] = op_render.outputs(job, padded, model, SR, ceiling_dbtp=-1.0)
    a = out.audio
    assert a.shape == (2, 34 * SR) and out.title == f"song (+4 s {'before' if before else 'after'})"
    new, kept = (a[:, :pad], a[:, pad + XF:]) if before else (a[:, -pad:], a[:, :30 * SR - XF])
    assert np.array_equal(kept, src[:, XF:] if before else src[:, :30 * SR - XF])
    edge = src[:, :10 * SR] if before else src[:, -10 * SR:]
    assert rms(new) == pytest.approx(rms(edge), rel=0.02)  # 0.035, where the song's mean is ~0.4


@pytest.mark.parametrize("by", [0.5, 2.535, 7.77, 30.0])
@pytest.mark.parametrize("before", [False, True])
def test_the_model_regenerates_every_sample_spliced_in(by: float, before: bool) -> None:
    """The pipeline floors the repaint window to latent frames (1920 samples, as diffusers does:
    int(seconds * 25)); the window asked for still covers the whole span the daemon splices in."""
    import math

    from dgx_music.daemon import op_render

    n = int(12.3 * SR)
    pad, s, e = op_render.extend_span(n, by, before, SR)
    start, end = op_render.model_window(s, e, SR)
    frames = math.ceil((n + pad) / 1920)
    first, last = int(start * 25), min(int(end * 25), frames)
    assert first * 1920 <= s and last * 1920 >= e
