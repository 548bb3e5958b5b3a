"""Any host's HTTP API serves the one queue and library (issue 21): a job submitted over
HTTP at one host, run by another, is followed on the first host's event stream and its
track is listed, searched and played from there. Skips without PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Callable

import aiohttp

from tests.conftest import start_http
from tests.ops.conftest import bearer
from tests.ops.test_http import check_audio, get_json, read_sse
from tests.queue.test_pg_hosts import host


async def test_a_job_posted_to_one_hosts_http_is_followed_and_played_at_another(
        pg_url: str, daemon_factory: Callable[..., Any], shared: Path, tiny_model: Path) -> None:
    # A's queue is paused (its disk never has room by its margin), so B runs the job; the user
    # watches and listens through A's HTTP API, the one their browser tab reaches.
    a = await host(daemon_factory, shared, "a", pg_url, tiny_model, daemon__min_free_mb=1 << 40,
                   http__listen="127.0.0.1:0")
    b = await host(daemon_factory, shared, "b", pg_url, tiny_model, http__listen="127.0.0.1:0")
    a.http, b.http = await start_http(a), await start_http(b)
    api_a, api_b = a.http.url + "/api/v1", b.http.url + "/api/v1"
    async with aiohttp.ClientSession(headers=bearer(a.http)) as sa, \
            aiohttp.ClientSession(headers=bearer(b.http)) as sb:
        sse = await sa.get(api_a + "/events?topics=job,track")
        assert sse.status == 200 and (await sse.content.readline()).startswith(b": ")
        async with sb.post(api_b + "/jobs", json={"prompt": "bright http marimba", "duration": 0.5,
                                                   "seed": 3}) as r:
            assert r.status == 201, await r.text()
            job = await r.json()
        seen: list[tuple[str, Any]] = []
        await asyncio.wait_for(read_sse(sse, job["id"], seen), 120)
        sse.close()
        names = [n for n, d in seen if d.get("id") == job["id"]]
        assert names[0] == "job.queued" and names[-1] == "job.finished", names
        assert [d["host"] for n, d in seen if n == "job.started"] == ["b"]

        detail = await get_json(sa, f"{api_a}/jobs/{job['id']}")
        assert detail["state"] == "done" and detail["track_ids"] == [f"{job['id']}-0"]
        track_id = detail["track_ids"][0]
        found = await get_json(sa, api_a + "/tracks", params={"search": "marimba"})
        assert [t["id"] for t in found["tracks"]] == [track_id]
        track = await get_json(sa, f"{api_a}/tracks/{track_id}")
        on_disk = next((shared / "shared").glob(f"library/**/{track_id}*.wav")).read_bytes()
        await check_audio(sa, f"{api_a}/tracks/{track_id}/audio", on_disk)  # B's file, played from A
        assert track["duration"] > 0
        assert await get_json(sb, f"{api_b}/tracks/{track_id}") == track  # one library
