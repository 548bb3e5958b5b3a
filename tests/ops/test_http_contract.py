"""The HTTP API's contract: per-job SSE with ids and Last-Event-ID resume, the long poll, the
empty-trash route, JSON errors with distinct codes, and the track shape."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest

from .conftest import bearer
from .test_http import import_track

pytestmark = pytest.mark.slow


async def sse_events(resp: aiohttp.ClientResponse, until: str, job_id: int) -> list[tuple[str, str, Any]]:
    """(id, name, data) of each event until `until` for `job_id`."""
    out: list[tuple[str, str, Any]] = []
    event_id = name = ""
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = json.loads(line[6:])
            out.append((event_id, name, data))
            if name == until and data.get("id") == job_id:
                return out
            event_id = name = ""
    return out


async def test_sse_for_one_job_with_ids_and_resume(http_daemon: Any) -> None:
    base = http_daemon.http.url + "/api/v1"
    async with aiohttp.ClientSession(headers=bearer(http_daemon.http)) as s:
        async with s.post(f"{base}/jobs", json={"prompt": "first", "duration": 0.5}) as r:
            first = (await r.json())["id"]
        async with s.post(f"{base}/jobs", json={"prompt": "second", "duration": 0.5}) as r:
            second = (await r.json())["id"]
        # A stream for the second job only: it may start after some of its events; resume from 0.
        async with s.get(f"{base}/events", params={"job": str(second)},
                         headers={"Last-Event-ID": "0"}) as resp:
            assert resp.status == 200
            seen = await asyncio.wait_for(sse_events(resp, "job.finished", second), 120)
        names = [n for _, n, _ in seen]
        assert names[0] == "job.queued" and "job.started" in names and "track.added" in names
        assert all(job_of_event(n, d) == second for _, n, d in seen), seen
        ids = [int(i.rsplit("-", 1)[1]) for i, _, _ in seen]
        assert all(i for i, _, _ in seen) and ids == sorted(ids) and len(set(ids)) == len(ids)
        track = next(d for _, n, d in seen if n == "track.added")
        assert track["file"] == str(http_daemon.data_dir / track["path"])

        # Reconnect after the job's start: exactly the events after that id come back, in order.
        started = next(i for i, n, _ in seen if n == "job.started")
        async with s.get(f"{base}/events", params={"job": str(second)}, headers={"Last-Event-ID": started}) as resp:
            again = await asyncio.wait_for(sse_events(resp, "job.finished", second), 30)
        assert again == seen[[i for i, _, _ in seen].index(started) + 1:]

        # An id the buffer no longer holds (or another daemon's) is said to be a gap.
        async with s.get(f"{base}/events", params={"job": str(first)},
                         headers={"Last-Event-ID": "0-5"}) as resp:
            line = b""
            async for raw in resp.content:
                if raw.startswith(b"event: "):
                    line = raw
                    break
            assert line.strip() == b"event: stream.gap"


def job_of_event(name: str, data: dict[str, Any]) -> Any:
    return data.get("id") if name.startswith("job.") else data.get("job_id")


async def test_long_poll_returns_when_the_job_ends(http_daemon: Any) -> None:
    base = http_daemon.http.url + "/api/v1"
    async with aiohttp.ClientSession(headers=bearer(http_daemon.http)) as s:
        async with s.post(f"{base}/jobs", json={"prompt": "long poll", "duration": 0.5}) as r:
            job = await r.json()
        t0 = time.monotonic()
        async with s.get(f"{base}/jobs/{job['id']}", params={"wait": "120"}) as r:
            assert r.status == 200
            done = await r.json()
        assert done["state"] == "done" and done["track_ids"] and time.monotonic() - t0 < 120
        # On a finished job it answers at once; past the limit, or not a number, it is invalid_params.
        async with s.get(f"{base}/jobs/{job['id']}", params={"wait": "300"}) as r:
            assert r.status == 200 and (await r.json())["state"] == "done"
        for bad in ("301", "-1", "soon", "nan"):
            async with s.get(f"{base}/jobs/{job['id']}", params={"wait": bad}) as r:
                body = await r.json()
                assert r.status == 400 and body["error"]["field"] == "wait", (bad, body)
        # A job that has not ended when S passes: the answer comes then, with the job as it is.
        async with s.post(f"{base}/jobs", json={"prompt": "a longer one", "duration": 20}) as r:
            slow = await r.json()
        t0 = time.monotonic()
        async with s.get(f"{base}/jobs/{slow['id']}", params={"wait": "0.3"}) as r:
            now = await r.json()
        assert now["state"] in ("queued", "running", "processing") and 0.3 <= time.monotonic() - t0 < 10
        async with s.post(f"{base}/jobs/{slow['id']}/cancel") as r:
            assert r.status == 200
        # Cancelling it now that it is done is 409 not_cancellable.
        async with s.post(f"{base}/jobs/{job['id']}/cancel") as r:
            body = await r.json()
            assert r.status == 409 and body["error"]["code"] == "not_cancellable"


async def test_errors_are_json_with_distinct_codes(http_daemon: Any) -> None:
    url = http_daemon.http.url
    await import_track(http_daemon, "950-0", "imported")
    async with aiohttp.ClientSession(headers=bearer(http_daemon.http)) as s:
        async with s.get(f"{url}/api/v1/no/such/route") as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == "unknown_route"
        async with s.get(f"{url}/api/v1/tracks/999-0") as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
        async with s.delete(f"{url}/api/v1/jobs") as r:
            body = await r.json()
            assert r.status == 405 and body["error"]["code"] == "method_not_allowed"
            assert set(r.headers["Allow"].split(",")) >= {"GET", "POST"}
        async with s.get(f"{url}/api/v1/tracks/950-0/audio", headers={"Range": "bytes=999999-"}) as r:
            body = await r.json()
            assert r.status == 416 and body["error"]["code"] == "range_not_satisfiable"
            assert r.headers["Content-Range"].startswith("bytes */")
        async with s.patch(f"{url}/api/v1/tracks/950-0", json={"favourite": True}) as r:
            body = await r.json()
            assert r.status == 400 and body["error"]["field"] == "favourite"
        async with s.get(f"{url}/api/v1/tracks/950-0") as r:
            t = await r.json()
            assert t["file"] == str(http_daemon.data_dir / t["path"])
        async with s.delete(f"{url}/api/v1/tracks/950-0") as r:
            assert r.status == 200
        async with s.post(f"{url}/api/v1/library/empty-trash") as r:
            assert r.status == 200 and (await r.json())["removed"] == 1
        assert not list((http_daemon.data_dir / "trash").rglob("*.wav"))
