"""Issue 21, what a shared queue must not lose or hide: a cancel sent while the running host was
not listening (its LISTEN connection cut) still stops the job, and `status` shows another host's
change at once, and a dead host as gone.

Two real daemons (in-process) on one PostgreSQL database; the running host's LISTEN connection
is cut with pg_terminate_backend, as a network blip would, and kept down (or down for a while)
by a failpoint (daemon/failpoints.py). Skips without PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from dgx_music.cli.status_cmd import format_status
from dgx_music.common.client import Client, RemoteError
from dgx_music.daemon import failpoints
from dgx_music.daemon.hosts import Hosts
from tests.conftest import wait_event
from tests.queue.test_pg_hosts import LEASE, SLOW, host, library_ids

asyncpg = pytest.importorskip("asyncpg")


async def cut_listener(url: str, name: str) -> None:
    """Terminate host `name`'s LISTEN connection and wait until the server has dropped it."""
    app = f"dgx-music listen {name}"
    conn = await asyncpg.connect(url)
    try:
        where = "application_name = $1 AND datname = current_database()"
        killed = await conn.fetchval(f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE {where}", app)
        assert killed == 1, f"{killed} LISTEN connection named {app!r}"
        deadline = time.monotonic() + 10
        while await conn.fetchval(f"SELECT count(*) FROM pg_stat_activity WHERE {where}", app):
            assert time.monotonic() < deadline, "the LISTEN connection outlived pg_terminate_backend"
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


async def state_within(c: Client, job_id: int, want: str, seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while (j := await c.call("job.get", {"id": job_id}))["state"] != want:
        assert j["state"] in ("running", "processing") and time.monotonic() < deadline, j
        await asyncio.sleep(0.1)
    return j


async def running_on_b(daemon_factory: Callable[..., Any], shared: Path, url: str, tiny_model: Path,
                       lease: float) -> tuple[Any, Any, int]:
    """Hosts A (queue paused: its disk never has room) and B; a long job submitted, running on B."""
    a = await host(daemon_factory, shared, "a", url, tiny_model, daemon__min_free_mb=1 << 40, daemon__lease_s=lease)
    b = await host(daemon_factory, shared, "b", url, tiny_model, daemon__lease_s=lease)
    async with await Client.connect(b.server.path) as cb:
        await cb.subscribe("job")
        job = await cb.call("job.submit", {"prompt": "long on b", "duration": 20.0})
        await wait_event(cb, "job.progress", job["id"])
    return a, b, job["id"]


async def test_a_cancel_sent_while_the_running_host_is_not_listening_stops_it_at_its_renewal(
        pg_url: str, daemon_factory: Callable[..., Any], shared: Path, tiny_model: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DGX_MUSIC_TEST_STEP_DELAY", SLOW)
    monkeypatch.setenv(failpoints.ENV, "relisten_never")  # B never hears the cancel's NOTIFY
    a, _b, job_id = await running_on_b(daemon_factory, shared, pg_url, tiny_model, LEASE)
    await cut_listener(pg_url, "b")
    async with await Client.connect(a.server.path) as ca:
        assert (await ca.call("job.cancel", {"id": job_id}))["cancel_requested"] is True
        # B renews every third of a lease and reads the cancel recorded on the row there.
        j = await state_within(ca, job_id, "cancelled", LEASE + 5)
        assert j["track_ids"] == [] and await library_ids(ca) == []
    assert not list((shared / "shared").glob("library/**/*.wav"))


async def test_a_cancel_missed_while_not_listening_is_found_when_the_host_listens_again(
        pg_url: str, daemon_factory: Callable[..., Any], shared: Path, tiny_model: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DGX_MUSIC_TEST_STEP_DELAY", SLOW)
    monkeypatch.setenv(failpoints.ENV, "relisten_slow")  # B listens again after a few seconds
    lease = 60.0  # the next renewal is 20 s away: only the check after listening again can be in time
    a, _b, job_id = await running_on_b(daemon_factory, shared, pg_url, tiny_model, lease)
    await cut_listener(pg_url, "b")
    async with await Client.connect(a.server.path) as ca:
        assert (await ca.call("job.cancel", {"id": job_id}))["cancel_requested"] is True
        await state_within(ca, job_id, "cancelled", failpoints.RELISTEN_SLOW_S + 6)


async def b_row(c: Client, ok: Callable[[dict[str, Any]], bool], seconds: float) -> dict[str, Any]:
    """Host b's entry in `status` once `ok` holds of it."""
    deadline = time.monotonic() + seconds
    while True:
        hosts = {h["host"]: h for h in (await c.call("status")).get("hosts") or []}
        if "b" in hosts and ok(hosts["b"]):
            return hosts["b"]
        assert time.monotonic() < deadline, hosts
        await asyncio.sleep(0.1)


async def test_status_shows_another_hosts_change_at_once_not_at_its_next_heartbeat(
        pg_url: str, daemon_factory: Callable[..., Any], shared: Path, tiny_model: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DGX_MUSIC_TEST_STEP_DELAY", SLOW)
    monkeypatch.setattr(Hosts, "POLL_MAX", 600.0)  # periodic heartbeats every 20 s (a third of the lease)
    lease = 60.0
    a = await host(daemon_factory, shared, "a", pg_url, tiny_model, daemon__min_free_mb=1 << 40, daemon__lease_s=lease)
    b = await host(daemon_factory, shared, "b", pg_url, tiny_model, daemon__lease_s=lease)
    async with await Client.connect(a.server.path) as ca, await Client.connect(b.server.path) as cb:
        await b_row(ca, lambda h: h["state"] == "idle" and h["model"] is None, 3)  # started, nothing loaded
        await cb.subscribe("job")
        job = await cb.call("job.submit", {"prompt": "seen from a", "duration": 20.0})
        await wait_event(cb, "job.progress", job["id"])  # B loaded the model and runs the job
        row = await b_row(ca, lambda h: h["state"] == "working" and h["job_id"] == job["id"], 3)
        assert row["model"] == str(tiny_model) and row["seen_s"] < lease
        text = format_status(await ca.call("status"))  # what `dgx-music status` on A prints
        assert f"host     b: working, {tiny_model}, job {job['id']}, seen " in text
        await cb.call("job.cancel", {"id": job["id"]})
        await wait_event(cb, "job.cancelled", job["id"])
        await b_row(ca, lambda h: h["state"] == "idle" and h["job_id"] is None, 3)
        await cb.call("model.unload")
        await b_row(ca, lambda h: h["model"] is None, 3)


async def test_a_delete_missed_while_not_listening_is_not_offered_in_a_later_outage(
        pg_url: str, daemon_factory: Callable[..., Any], shared: Path, tiny_model: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.ops.test_http import write_wav
    from tests.outage import AwayStore

    monkeypatch.setenv(failpoints.ENV, "relisten_slow")  # B is deaf for a few seconds
    a = await host(daemon_factory, shared, "a", pg_url, tiny_model)
    b = await host(daemon_factory, shared, "b", pg_url, tiny_model)
    rel = "library/imported/950-0.wav"
    write_wav(shared / "shared" / rel)
    await a.store.import_tracks([{"id": "950-0", "prompt": "gone soon", "path": rel, "duration": 0.5,
                                  "sample_rate": 32000, "channels": 1, "peaks": [[-0.3, 0.3]] * 8}])
    async with await Client.connect(a.server.path) as ca, await Client.connect(b.server.path) as cb:
        await cb.subscribe("track")  # may wait between requests
        assert (await cb.call("track.get", {"id": "950-0"}))["prompt"] == "gone soon"  # B remembers it
        await cut_listener(pg_url, "b")
        await ca.call("track.delete", {"id": "950-0"})  # its NOTIFY is lost on B
        away = AwayStore(b.store)
        b.store = away
        deadline = time.monotonic() + failpoints.RELISTEN_SLOW_S + 10
        while True:  # once B listens again, an outage must not bring the deleted track back
            away.away = True
            try:
                t = await cb.call("track.get", {"id": "950-0"})
            except RemoteError as exc:
                assert exc.code == "store_unavailable", exc
                break
            finally:
                away.away = False
            assert t.get("stale") and time.monotonic() < deadline, t
            await asyncio.sleep(0.1)
