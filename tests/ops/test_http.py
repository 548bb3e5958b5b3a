"""The HTTP API end to end against a real daemon with the tiny model (127.0.0.1 only)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dgx_music.common.config import Settings
from dgx_music.daemon import http as http_api
from dgx_music.daemon.server import StartupError
from dgx_music.daemon.web.page import PAGE_PATHS
from tests.conftest import make_settings, start_http

from .conftest import bearer, cli

pytestmark = pytest.mark.slow

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? '
                    r'(-?[0-9.eE+-]+|\+Inf|-Inf|NaN)$')


def parse_prometheus(text: str) -> dict[str, list[tuple[str, float]]]:
    """A strict reader of the text exposition format: every line is a comment or a valid sample."""
    assert text.endswith("\n")
    families: dict[str, str] = {}
    samples: dict[str, list[tuple[str, float]]] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
            assert name not in families, f"duplicate TYPE for {name}"
            families[name] = kind
            continue
        m = SAMPLE.match(line)
        assert m, f"not a valid sample line: {line!r}"
        name = m.group(1)
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in families or base in families, f"sample {name} has no TYPE"
        samples.setdefault(name, []).append((m.group(2) or "", float(m.group(4))))
    return samples


async def get_json(s: aiohttp.ClientSession, url: str, status: int = 200, **kw: Any) -> Any:
    async with s.get(url, **kw) as r:
        assert r.status == status, await r.text()
        return await r.json()


async def read_sse(resp: aiohttp.ClientResponse, job_id: int, seen: list[tuple[str, Any]]) -> None:
    """Read SSE events until the job reaches a final state."""
    name = None
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: ") and name:
            data = json.loads(line[6:])
            seen.append((name, data))
            if name in ("job.finished", "job.failed", "job.cancelled") and data.get("id") == job_id \
                    and not data.get("retrying"):
                return


def write_wav(path: Path, seconds: float = 0.5, rate: int = 32000) -> None:
    import numpy as np
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 440 * t)).astype("float32"), rate, subtype="PCM_16")


async def import_track(daemon: Any, track_id: str, prompt: str, seconds: float = 0.5) -> dict[str, Any]:
    rel = f"library/imported/{track_id}.wav"
    write_wav(daemon.data_dir / rel, seconds)
    await daemon.store.import_tracks([{"id": track_id, "prompt": prompt, "path": rel, "duration": seconds,
                                       "sample_rate": 32000, "channels": 1, "peaks": [[-0.3, 0.3]] * 8,
                                       "tags": ["imported"]}])
    return await daemon.store.get_track(track_id)


async def check_audio(s: aiohttp.ClientSession, url: str, on_disk: bytes) -> None:
    async with s.get(url) as r:
        assert r.status == 200 and r.headers["Accept-Ranges"] == "bytes"
        assert r.headers["Content-Type"].startswith("audio/")
        assert await r.read() == on_disk
    async with s.get(url, headers={"Range": "bytes=0-99"}) as r:
        assert r.status == 206
        assert r.headers["Content-Range"] == f"bytes 0-99/{len(on_disk)}"
        assert await r.read() == on_disk[:100]
    async with s.get(url, headers={"Range": "bytes=44-"}) as r:
        assert r.status == 206 and await r.read() == on_disk[44:]
    async with s.get(url, headers={"Range": "bytes=-10"}) as r:
        assert r.status == 206 and await r.read() == on_disk[-10:]
    async with s.get(url, headers={"Range": f"bytes={len(on_disk) + 10}-"}) as r:
        assert r.status == 416
    async with s.head(url) as r:
        assert r.status == 200 and int(r.headers["Content-Length"]) == len(on_disk)


async def test_library_status_errors_metrics_openapi(http_daemon: Any) -> None:
    """Everything that needs no generation: the library (tracks imported into the store), audio with
    Range, edits, errors with protocol codes, /healthz, /metrics, /openapi.json."""
    base = http_daemon.http.url
    api = base + "/api/v1"
    t1 = await import_track(http_daemon, "900-0", "warm analog synth arpeggio")
    await import_track(http_daemon, "901-0", "lofi piano with rain")
    async with aiohttp.ClientSession(headers=bearer(http_daemon.http)) as s:
        health = await get_json(s, base + "/healthz")
        assert health["ok"] is True
        hello = await get_json(s, api + "/hello")
        assert "job.submit" in hello["methods"] and hello["protocol"] == 1
        assert (await get_json(s, api + "/status"))["pid"] == os.getpid()

        everything = await get_json(s, api + "/tracks?limit=10")
        assert {t["id"] for t in everything["tracks"]} == {"900-0", "901-0"}
        found = await get_json(s, api + "/tracks?search=piano")
        assert [t["id"] for t in found["tracks"]] == ["901-0"]
        page = await get_json(s, api + "/tracks?limit=1&sort=created&order=asc")
        assert len(page["tracks"]) == 1 and page["next_cursor"]
        page2 = await get_json(s, api + "/tracks", params={"limit": "1", "sort": "created", "order": "asc",
                                                           "cursor": page["next_cursor"]})
        assert page2["tracks"][0]["id"] != page["tracks"][0]["id"]
        track = await get_json(s, api + "/tracks/900-0")
        assert track["prompt"] == t1["prompt"] and len(track["peaks"]) == 8
        wave = await get_json(s, api + "/tracks/900-0/waveform")
        assert wave["peaks"] == track["peaks"]
        await check_audio(s, api + "/tracks/900-0/audio", (http_daemon.data_dir / t1["path"]).read_bytes())
        assert (await get_json(s, api + "/tracks/999-0/audio", status=404))["error"]["code"] == "not_found"

        async with s.patch(api + "/tracks/900-0", json={"rating": 4, "tags_add": ["http"]}) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["rating"] == 4
        bad = await get_json(s, api + "/tracks?limit=abc", status=400)
        assert bad["error"]["code"] == "invalid_params" and bad["error"]["field"] == "limit"
        assert (await get_json(s, api + "/tracks?bogus=1", status=400))["error"]["field"] == "bogus"
        async with s.post(api + "/jobs", json={"prompt": ""}) as r:
            assert r.status == 400 and (await r.json())["error"]["field"] == "prompt"
        async with s.post(api + "/jobs", data=b"not json", headers={"Content-Type": "application/json"}) as r:
            assert r.status == 400
        assert (await get_json(s, api + "/jobs/424242", status=404))["error"]["code"] == "not_found"
        assert (await get_json(s, api + "/nothing/here", status=404))["error"]["code"] == "unknown_route"
        async with s.delete(api + "/tracks/901-0") as r:
            assert r.status == 200 and (await r.json())["id"] == "901-0"
        await get_json(s, api + "/tracks/901-0", status=404)

        async with s.get(base + "/metrics") as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
            metrics = parse_prometheus(await r.text())
        for name in ("dgx_music_queue_depth", "dgx_music_jobs", "dgx_music_model_state",
                     "dgx_music_worker_restarts_total", "dgx_music_gpu_memory_bytes",
                     "dgx_music_generation_seconds_bucket", "dgx_music_real_time_factor_bucket",
                     "dgx_music_http_requests_total"):
            assert name in metrics, name
        assert ('{state="unloaded",model="' + str(http_daemon.settings["engine.model"]) + '"}', 1.0) \
            in metrics["dgx_music_model_state"]

        doc = await get_json(s, base + "/openapi.json")
        assert doc["openapi"].startswith("3.")
        for resource in http_daemon.http.app.router.resources():
            if resource.canonical in PAGE_PATHS:
                continue  # the listening room page, not part of the API
            assert resource.canonical in doc["paths"], f"{resource.canonical} missing from the OpenAPI document"


async def test_generation_end_to_end(http_daemon: Any) -> None:
    """Submit over HTTP, follow it on the SSE stream, then read the job, its tracks, audio and metrics."""
    base = http_daemon.http.url
    api = base + "/api/v1"
    async with aiohttp.ClientSession(headers=bearer(http_daemon.http)) as s:
        sse = await s.get(api + "/events?topics=job,track")
        assert sse.status == 200 and sse.headers["Content-Type"].startswith("text/event-stream")
        assert (await sse.content.readline()).startswith(b": ")  # open before the job is submitted
        async with s.post(api + "/jobs", json={"prompt": "http test tone", "duration": 1.0, "count": 2,
                                                "seed": 7}) as r:
            assert r.status == 201, await r.text()
            job = await r.json()
        seen: list[tuple[str, Any]] = []
        await asyncio.wait_for(read_sse(sse, job["id"], seen), 90)
        sse.close()
        names = [n for n, _ in seen]
        assert names[-1] == "job.finished", seen[-1]
        assert "job.queued" in names and "job.started" in names and "track.added" in names

        detail = await get_json(s, f"{api}/jobs/{job['id']}")
        assert detail["state"] == "done" and len(detail["track_ids"]) == 2
        listed = await get_json(s, api + "/jobs?all=true&limit=10")
        assert any(j["id"] == job["id"] for j in listed["jobs"])
        tracks = await get_json(s, api + "/tracks?search=tone&limit=10")
        assert {t["id"] for t in tracks["tracks"]} == set(detail["track_ids"])
        tid = detail["track_ids"][0]
        track = await get_json(s, f"{api}/tracks/{tid}")
        await check_audio(s, f"{api}/tracks/{tid}/audio", (http_daemon.data_dir / track["path"]).read_bytes())
        async with s.post(f"{api}/jobs/{job['id']}/cancel") as r:
            assert r.status in (200, 409)  # cancelling a finished job changes nothing
        assert (await get_json(s, f"{api}/jobs/{job['id']}"))["state"] == "done"
        async with s.post(api + "/jobs/prune", json={"older_than_days": 0, "dry_run": True}) as r:
            pruned = await r.json()
            # A done job that owns tracks is kept, even with a cutoff of now.
            assert r.status == 200 and pruned["removed"] == 0 and pruned["kept_with_tracks"] >= 1, pruned
        async with s.post(api + "/jobs/prune", json={"older_than_days": -1}) as r:
            assert r.status == 400 and "older_than_days" in (await r.json())["error"]["message"]
        async with s.get(base + "/metrics") as r:
            metrics = parse_prometheus(await r.text())
        assert metrics["dgx_music_generation_seconds_count"][0][1] == 1
        assert metrics["dgx_music_real_time_factor_count"][0][1] == 1
        assert ('{state="done"}', 1.0) in metrics["dgx_music_jobs"]


async def test_cancel_and_websocket(http_daemon: Any) -> None:
    api = http_daemon.http.url + "/api/v1"
    async with aiohttp.ClientSession(headers=bearer(http_daemon.http)) as s:
        async with s.ws_connect(api + "/events/ws?topics=job") as ws:
            jobs = []
            for prompt in ("first, keeps the worker busy", "second, waits in the queue"):
                async with s.post(api + "/jobs", json={"prompt": prompt, "duration": 30.0}) as r:
                    assert r.status == 201
                    jobs.append(await r.json())
            queued = jobs[1]
            async with s.post(f"{api}/jobs/{queued['id']}/cancel") as r:
                assert r.status == 200, await r.text()
            got = []
            while True:
                msg = json.loads((await asyncio.wait_for(ws.receive(), 30)).data)
                got.append(msg["event"])
                if msg["event"] == "job.cancelled" and msg["data"]["id"] == queued["id"]:
                    break
            assert got[0] == "job.queued"
        assert (await get_json(s, f"{api}/jobs/{queued['id']}"))["state"] == "cancelled"
        listed = await get_json(s, api + "/jobs")
        assert queued["id"] not in [j["id"] for j in listed["jobs"]]
        bad = await get_json(s, api + "/events?topics=nope", status=400)
        assert bad["error"]["field"] == "topics"


async def test_audio_never_served_from_outside_the_data_dir(http_daemon: Any, monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    from dgx_music.daemon import handlers

    secret = tmp_path / "secret.wav"
    secret.write_bytes(b"RIFF-secret")
    rel = os.path.relpath(secret, http_daemon.data_dir)

    async def fake_get(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
        return {"id": params["id"], "path": rel}

    monkeypatch.setitem(handlers.REGISTRY, "track.get", handlers.MethodSpec("track.get", fake_get, ""))
    async with aiohttp.ClientSession(headers=bearer(http_daemon.http)) as s:
        async with s.get(http_daemon.http.url + "/api/v1/tracks/1-0/audio") as r:
            assert r.status == 404
            assert b"secret" not in await r.read()


# ----------------------------------------------------------------------------- auth policy
def _settings(tmp: Path, **kw: Any) -> Settings:
    return make_settings(tmp, **kw)


def _token_file(tmp: Path, mode: int = 0o600, token: str = "t0ken-" + "x" * 26) -> Path:
    p = tmp / "token"
    p.write_text(token + "\n")
    os.chmod(p, mode)
    return p


def test_loopback_detection() -> None:
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        assert http_api.is_loopback(host), host
    for host in ("0.0.0.0", "", "::", "192.168.1.10", "10.0.0.1", "no-such-host.invalid"):
        assert not http_api.is_loopback(host), host


def test_policy_makes_a_token_and_checks_the_file(short_tmp: Path) -> None:
    assert http_api.plan(_settings(short_tmp)) is None  # the test settings turn it off
    for off in ("off", "", "OFF"):
        assert http_api.plan(_settings(short_tmp, http__listen=off)) is None
    # First start: a random token, written 0600, read back by the next start.
    p = http_api.plan(_settings(short_tmp, http__listen="127.0.0.1:8765"))
    token_file = short_tmp / "http-token"
    assert p is not None and p.token and len(p.token) >= 32 and p.explicit
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert token_file.read_text().strip() == p.token
    assert http_api.plan(_settings(short_tmp, http__listen="0.0.0.0:8765")).token == p.token
    with pytest.raises(StartupError, match="HOST:PORT"):
        http_api.plan(_settings(short_tmp, http__listen="8765"))
    loose = _token_file(short_tmp, 0o644)
    with pytest.raises(StartupError, match=r"mode 0644.*chmod 600"):
        http_api.plan(_settings(short_tmp, http__listen="0.0.0.0:8765", http__token_file=str(loose)))
    short = _token_file(short_tmp, 0o600, token="abc")
    with pytest.raises(StartupError, match="at least"):
        http_api.plan(_settings(short_tmp, http__listen="0.0.0.0:8765", http__token_file=str(short)))
    good = _token_file(short_tmp)
    p = http_api.plan(_settings(short_tmp, http__listen="[::]:9000", http__token_file=str(good)))
    assert p is not None and p.host == "::" and p.port == 9000 and p.token == "t0ken-" + "x" * 26
    with pytest.raises(StartupError, match="allowed_hosts"):
        http_api.plan(_settings(short_tmp, http__listen="127.0.0.1:0", http__allowed_hosts="http://x.example"))


def test_http_is_on_by_default_with_the_token_in_the_config_dir(short_tmp: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from dgx_music.common.config import load_settings
    from dgx_music.common.paths import http_token_path

    monkeypatch.setenv("XDG_CONFIG_HOME", str(short_tmp / "cfg"))
    cfg = short_tmp / "empty.toml"
    cfg.touch()
    settings = load_settings(cfg, {}, env={"XDG_CONFIG_HOME": str(short_tmp / "cfg")})
    p = http_api.plan(settings)
    assert p is not None and (p.host, p.port) == ("127.0.0.1", 8765) and not p.explicit
    assert http_token_path(settings) == short_tmp / "cfg" / "dgx-music" / "http-token"
    assert (short_tmp / "cfg" / "dgx-music" / "http-token").read_text().strip() == p.token


def test_an_explicit_listen_address_that_fails_is_a_startup_error(short_tmp: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = cli("daemon", "--socket", str(short_tmp / "d.sock"), "--data-dir", str(short_tmp / "data"),
                "--http", f"127.0.0.1:{port}", env={"XDG_CONFIG_HOME": str(short_tmp / "cfg")})
    assert r.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr
    assert not (short_tmp / "d.sock").exists()


async def test_token_required_on_every_request(daemon_factory: Any, short_tmp: Path) -> None:
    token = "t0ken-" + "x" * 26
    tf = _token_file(short_tmp, token=token)
    d = await daemon_factory(http__listen="127.0.0.1:0", http__token_file=str(tf))
    api = await start_http(d)
    async with aiohttp.ClientSession() as s:
        for path in ("/", "/healthz", "/metrics", "/openapi.json", "/api/v1/status", "/api/v1/jobs",
                     "/api/v1/events", "/api/v1/nonexistent"):
            async with s.get(api.url + path) as r:
                assert r.status == 401, path
                assert r.headers["WWW-Authenticate"].startswith("Bearer")
            async with s.get(api.url + path, headers={"Authorization": "Bearer wrong-" + "y" * 26}) as r:
                assert r.status == 401, path
            async with s.get(api.url + path, cookies={"dgx_music_token": "wrong"}) as r:
                assert r.status == 401, path
        async with s.post(api.url + "/api/v1/jobs", json={"prompt": "x"}) as r:
            assert r.status == 401
        auth = {"Authorization": f"Bearer {token}"}
        assert (await get_json(s, api.url + "/api/v1/status", headers=auth))["pid"] == os.getpid()
        assert (await get_json(s, api.url + "/healthz", headers=auth))["ok"] is True
        async with s.get(api.url + "/metrics", headers=auth) as r:
            assert r.status == 200
            samples = parse_prometheus(await r.text())
        assert any('code="401"' in labels for labels, _ in samples["dgx_music_http_requests_total"])


async def test_hostile_bodies_and_ids_are_invalid_params(daemon_factory: Any) -> None:
    d = await daemon_factory(http__listen="127.0.0.1:0")
    api = await start_http(d)
    url = api.url + "/api/v1"
    huge = "9" * 5001
    cases = [
        ("POST", "/jobs", '{"prompt": "x", "seed": ' + huge + "}", "seed"),
        ("POST", "/jobs", '{"prompt": ' + "[" * 100_000 + "]" * 100_000 + "}", "body"),
        ("POST", "/jobs", '{"prompt": "x", "tags": ' + "[" * 65 + "]" * 65 + "}", "body"),
        ("POST", "/jobs", '{"prompt": "x", "model": "' + "m" * 300 + '"}', "model"),
        ("GET", f"/jobs/{2**63}", None, "id"),
        ("GET", f"/jobs/{10**40}", None, "id"),
        ("GET", "/jobs/" + huge, None, "id"),
    ]
    async with aiohttp.ClientSession(headers=bearer(api)) as s:
        for method, path, body, field in cases:
            async with s.request(method, url + path, data=body,
                                 headers={"Content-Type": "application/json"}) as r:
                got = await r.json()
                assert r.status == 400, (path, field, got)
                assert got["error"]["code"] == "invalid_params" and got["error"]["field"] == field, (field, got)
        async with s.post(url + "/jobs", data=b"\xff\xfe", headers={"Content-Type": "application/json"}) as r:
            assert r.status == 400 and (await r.json())["error"]["code"] == "bad_request"
        assert (await get_json(s, url + "/status"))["pid"] == os.getpid()  # nothing broke
