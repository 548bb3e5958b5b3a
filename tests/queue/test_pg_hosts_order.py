"""Queue order is one across hosts (issue 21): a move, a cancel and a retry asked at one host
decide the order in which another host runs the queue. Skips without PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from dgx_music.cli.jobs_cmd import format_job
from dgx_music.common.client import Client
from tests.conftest import wait_event
from tests.queue.test_pg_hosts import SLOW, host, wait_all


async def test_move_cancel_and_retry_at_one_host_order_the_work_of_another(
        pg_url: str, daemon_factory: Callable[..., Any], shared: Path, tiny_model: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DGX_MUSIC_TEST_STEP_DELAY", SLOW)
    # A's queue is paused (its disk never has room by its margin): B runs every job, in the
    # one queue's order, which only A's client changes.
    a = await host(daemon_factory, shared, "a", pg_url, tiny_model, daemon__min_free_mb=1 << 40)
    b = await host(daemon_factory, shared, "b", pg_url, tiny_model)
    async with await Client.connect(a.server.path) as ca, await Client.connect(b.server.path) as cb:
        await ca.subscribe("job")
        await cb.subscribe("job")  # a subscriber may wait between requests (model load on B)
        blocker = (await cb.call("job.submit", {"prompt": "first, long", "duration": 1.0}))["id"]
        await wait_event(ca, "job.started", blocker)  # B is busy: the rest wait in the queue
        j1, j2, j3 = [(await cb.call("job.submit", {"prompt": f"queued {i}", "duration": 0.5}))["id"]
                      for i in range(3)]
        moved = await ca.call("job.move", {"id": j3, "to": "top"})
        assert moved["state"] == "queued"
        assert (await ca.call("job.cancel", {"id": j1}))["state"] == "cancelled"
        assert (await ca.call("job.retry", {"id": j1}))["state"] == "queued"  # back, at the end
        queued = [j["id"] for j in (await cb.call("job.list"))["jobs"] if j["state"] == "queued"]
        assert queued == [j3, j2, j1]  # B's client reads the order A's client made
        seen: list[Any] = []
        await wait_all(ca, "job.finished", [blocker, j1, j2, j3], seen)
        starts = [(e.data["id"], e.data["host"]) for e in seen if e.name == "job.started"]
        assert starts == [(j3, "b"), (j2, "b"), (j1, "b")], starts
        for job_id in (j1, j2, j3):
            j = await ca.call("job.get", {"id": job_id})
            assert j["state"] == "done" and j["track_ids"] == [f"{job_id}-0"]
            assert j["host"] == "b"  # which box ran it, as A's clients read it
            assert "\n  host      b\n" in format_job(j)  # `dgx-music job ID` at A
