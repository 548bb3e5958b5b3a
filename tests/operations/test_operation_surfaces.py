"""The operations on the other surfaces: the CLI (subprocess) and the HTTP API, against a real daemon."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import soundfile as sf

from dgx_music.common.client import Client
from tests.cli.test_cli_e2e import cli, cli_json
from tests.conftest import start_http, wait_event
from tests.operations.test_operation_jobs import tone


async def test_cli_stems_of_a_file_then_show_lists_the_family(daemon_factory: Callable[..., Any],
                                                              tiny_acestep: Path, tmp_path: Path) -> None:
    d = await daemon_factory(engine__model=str(tiny_acestep))
    sock = d.server.path
    f = tmp_path / "take 1.ogg"
    f.write_bytes(tone(2.0, fmt="OGG"))
    done = await cli_json(sock, "stems", str(f), "--method", "generate", "--parts", "vocals,bass", "--steps", "1",
                          "--seed", "4", "--wait")
    assert done["state"] == "done" and [t["title"] for t in done["tracks"]] == \
        ["take 1.ogg (vocals)", "take 1.ogg (bass)"]
    for t in done["tracks"]:
        info = sf.info(t["file"])
        assert (info.samplerate, info.channels, info.frames) == (48000, 2, 96000)
    vocals = done["tracks"][0]["id"]
    rc, out, err = await cli(sock, "show", vocals)
    assert rc == 0 and "source    stems vocals of file take 1.ogg" in out, out + err
    # A repaint of the stem; its source then lists it as derived.
    rep = await cli_json(sock, "repaint", vocals, "--from", "0.5", "--to", "1.5", "--steps", "1", "--wait")
    rc, out, _ = await cli(sock, "show", vocals)
    assert f"derived   {rep['tracks'][0]['id']}  repaint" in out
    # Bad values are usage errors before any request: exit 2, the flag named.
    rc, out, err = await cli(sock, "repaint", vocals, "--from", "1", "--to", "1.1")
    assert rc == 2 and "--to" in err
    rc, _, err = await cli(sock, "stems", vocals, "--method", "generate", "--parts", "kazoo")
    assert rc == 2 and "--parts" in err and "backing_vocals" in err
    rc, out, _ = await cli(sock, "stems", "--help")
    assert "percussion" in out and "examples" in out


async def test_http_add_part_route_matches_its_openapi_schema(daemon_factory: Callable[..., Any],
                                                              tiny_acestep: Path) -> None:
    d = await daemon_factory(engine__model=str(tiny_acestep), http__listen="127.0.0.1:0")
    api = await start_http(d)
    base = api.url + "/api/v1"
    body = {"source_audio": base64.b64encode(tone(1.5)).decode(), "source_name": "loop.flac", "part": "drums",
            "steps": 1}
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {api.plan.token}"}) as s, await Client.connect(d.server.path) as c:
        await c.subscribe("job")
        async with s.get(api.url + "/openapi.json") as r:
            doc = await r.json()
        schema = {**doc["paths"]["/api/v1/ops/add-part"]["post"]["requestBody"]["content"]["application/json"]
                  ["schema"], "components": doc["components"]}
        jsonschema.validate(body, schema)
        async with s.post(base + "/ops/add-part", json=body) as r:
            assert r.status == 201, await r.text()
            job = await r.json()
        await wait_event(c, "job.finished", job["id"], timeout=300)
        done = await c.call("job.get", {"id": job["id"]})
        async with s.get(base + f"/tracks/{done['track_ids'][0]}/lineage") as r:
            lin = await r.json()
        assert lin["source"]["name"] == "loop.flac" and lin["source"]["part"] == "drums"
        async with s.post(base + "/ops/stems", json={"source": "1-0", "parts": ["nope"]}) as r:
            err = await r.json()
            assert r.status == 400 and err["error"]["field"] == "parts"


async def test_cli_remix_of_a_stem_runs_stems_again_on_the_same_source(daemon_factory: Callable[..., Any],
                                                                       tiny_acestep: Path, tmp_path: Path) -> None:
    d = await daemon_factory(engine__model=str(tiny_acestep))
    sock = d.server.path
    f = tmp_path / "take.flac"
    f.write_bytes(tone(1.5))
    done = await cli_json(sock, "stems", str(f), "--method", "generate", "--parts", "vocals,bass", "--steps", "1",
                          "--seed", "4", "--wait")
    vocals = done["tracks"][0]["id"]
    again = await cli_json(sock, "remix", vocals, "--wait")
    assert again["state"] == "done" and again["id"] != done["id"]
    # An op.stems job on the daemon's stored copy of the same source, the same settings, a new seed:
    # not a text-to-music job from the stem's prompt.
    p = again["params"]
    assert p["operation"] == "stems" and p["source_key"] == done["params"]["source_key"]
    assert p["parts"] == ["vocals", "bass"] and p["steps"] == 1 and again["seed"] != 4
    assert [t["title"] for t in again["tracks"]] == [t["title"] for t in done["tracks"]]
    fixed = await cli_json(sock, "remix", vocals, "--seed", "9")
    assert fixed["seed"] == 9 and fixed["params"]["operation"] == "stems"
    rc, out, err = await cli(sock, "remix", vocals, "--count", "2")
    assert rc == 2 and "--count" in err
    rc, out, _ = await cli(sock, "remix", "--help")
    out = " ".join(out.split())
    assert "that operation is run again on the same source" in out


async def test_cli_remix_of_a_library_tracks_stem_is_listed_under_the_source(
        daemon_factory: Callable[..., Any], tiny_acestep: Path) -> None:
    """A remix sends only the stored source's key: the daemon finds the track it came from, so `show`
    on the source lists the remix's tracks and the remix names its source (not "deleted since")."""
    d = await daemon_factory(engine__model=str(tiny_acestep))
    sock = d.server.path
    song = await cli_json(sock, "generate", "synth pop", "--duration", "10", "--steps", "1", "--seed", "2", "--wait")
    src = song["tracks"][0]["id"]
    stems = await cli_json(sock, "stems", src, "--method", "generate", "--parts", "drums", "--steps", "1", "--seed", "4",
                           "--wait")
    again = await cli_json(sock, "remix", stems["tracks"][0]["id"], "--wait")
    assert again["state"] == "done" and again["params"]["source_id"] == src
    remixed = again["tracks"][0]["id"]
    rc, out, _ = await cli(sock, "show", remixed)
    assert rc == 0 and f"source    stems drums of track {src} (" in out and "deleted since" not in out
    rc, out, _ = await cli(sock, "show", src)
    assert rc == 0 and f"derived   {remixed}  stems drums" in out
