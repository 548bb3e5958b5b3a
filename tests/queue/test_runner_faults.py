"""The queue runner under faults: it is supervised, a full disk pauses it, close never blocks the loop."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator

import aiohttp
import pytest

from dgx_music.common.client import Client
from dgx_music.common.protocol import RemoteError
from dgx_music.daemon import diskspace
from dgx_music.daemon.store import StoreError
from tests.conftest import start_http, wait_event

SLOW = "0.03"  # seconds per decode step: room to fill the disk while a job generates
MiB = 1024 * 1024


async def until(cond: Callable[[], Awaitable[bool] | bool], timeout: float = 30.0, what: str = "condition") -> None:
    """Poll `cond` until it holds, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        res = cond()
        if not isinstance(res, bool):
            res = await res
        if res:
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


#: The bearer header of each HTTP API these tests start, by its URL.
AUTH: dict[str, dict[str, str]] = {}


async def with_http(d: Any) -> str:
    api = await start_http(d)
    AUTH[api.url] = {"Authorization": f"Bearer {api.plan.token}"}
    return api.url


async def healthz(url: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession(headers=AUTH[url]) as s, s.get(url + "/healthz") as r:
        return r.status, await r.json()


def records(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "dgx_music.queue" and text in r.getMessage()]


# ----------------------------------------------------------------------------- supervision
@pytest.mark.parametrize("breaks", ["next_queued_job", "refresh_counts"])
async def test_a_failing_runner_is_restarted_and_reported_down_meanwhile(
        daemon_factory: Callable[..., Any], tiny_model: Path, caplog: pytest.LogCaptureFixture, breaks: str) -> None:
    """Both calls sat outside the runner's try: either raising killed it silently, for good.

    next_queued_job fails on every try, so the runner stays down (restarted with backoff) until
    repaired; refresh_counts fails after the job is done (in the runner's `finally`), once per job,
    so a 1 s restart delay leaves ample time to see it down."""
    caplog.set_level(logging.INFO, logger="dgx_music.queue")
    d = await daemon_factory(engine__model=str(tiny_model), http__listen="127.0.0.1:0")
    url = await with_http(d)
    sched = d.scheduler
    sched.restart_delay = (1.0, 1.0) if breaks == "refresh_counts" else (0.05, 0.2)
    failures_seen = 1 if breaks == "refresh_counts" else 3
    broken, calls = True, 0
    target = sched if breaks == "refresh_counts" else d.store
    real = getattr(target, breaks)

    async def failing(*a: Any, **kw: Any) -> Any:
        nonlocal calls
        in_runner = asyncio.current_task() is sched._task  # the runner only; submit works on
        if broken and in_runner and (breaks == "next_queued_job" or sched.running is None):
            calls += 1
            raise RuntimeError(f"injected: {breaks} failed")
        return await real(*a, **kw)

    setattr(target, breaks, failing)
    async with await Client.connect(d.server.path) as c:
        await c.subscribe("job")
        first = await c.call("job.submit", {"prompt": "submitted while the runner breaks", "duration": 0.5})
        await until(lambda: calls >= failures_seen, what="the runner to fail")
        st = await c.call("status")
        assert st["runner"]["state"] == "restarting" and st["runner"]["alive"] is False
        assert st["runner"]["restarts"] >= failures_seen and "injected" in st["runner"]["error"]
        code, body = await healthz(url)
        assert code == 503 and body["ok"] is False and body["runner"] == "restarting"

        broken = False
        second = await c.call("job.submit", {"prompt": "after the repair", "duration": 0.5})
        for job in (first, second):
            if (await c.call("job.get", {"id": job["id"]}))["state"] != "done":
                await wait_event(c, "job.finished", job["id"], timeout=120)
        async def settled() -> bool:
            st = await c.call("status")
            return st["runner"]["state"] == "idle" and st["queue"].get("done") == 2  # the counts are right again

        await until(settled, what="an idle runner and the counts")
        st = await c.call("status")
        assert st["runner"]["alive"] is True and st["runner"]["restarts"] == calls
        code, body = await healthz(url)
        assert code == 200 and body["ok"] is True and body["runner"] == "idle"
    stopped = records(caplog, "the queue runner stopped")
    assert len(stopped) == calls and all(r.exc_info for r in stopped)  # one line, with traceback, per failure
    assert len(records(caplog, "running again")) == calls


# ----------------------------------------------------------------------------- disk full
class FullDisk:
    """A deterministic full disk: statvfs reports no room, and the store's commits fail with
    SQLITE_FULL exactly as SQLite reports them when the WAL cannot grow."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, store: Any) -> None:
        self.db_full = self.fs_full = False
        self.checks = 0  # free-space checks while full
        real_execute = store._conn.execute
        real_free = diskspace.free_bytes

        def execute(sql: str, *args: Any) -> Any:
            if self.db_full and sql.strip().upper() == "COMMIT":
                exc = sqlite3.OperationalError("database or disk is full")
                exc.sqlite_errorcode = sqlite3.SQLITE_FULL  # type: ignore[attr-defined]
                return _Raising(exc)
            return real_execute(sql, *args)

        def free(path: Path) -> int:
            if self.fs_full:
                self.checks += 1
                return 0
            return real_free(path)

        monkeypatch.setattr(store._conn, "execute", execute)
        monkeypatch.setattr(diskspace, "free_bytes", free)

    @property
    def full(self) -> bool:
        return self.db_full and self.fs_full

    @full.setter
    def full(self, value: bool) -> None:
        self.db_full = self.fs_full = value


class _Raising:
    """Stands in for aiosqlite's awaitable, async-context-manager cursor result."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def __await__(self) -> Any:
        raise self.exc
        yield  # pragma: no cover - makes this a generator

    async def __aenter__(self) -> Any:
        raise self.exc

    async def __aexit__(self, *exc: Any) -> None:
        return None


async def test_store_reports_a_full_disk_as_disk_full(store_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dgx_music.daemon.store import Store

    s = await Store.open(store_path, synchronous="NORMAL")
    try:
        job = await s.add_job(prompt="before", params={}, count=1, seed=1, model=None)
        disk = FullDisk(monkeypatch, s)
        disk.full = True
        with pytest.raises(StoreError) as e:
            await s.add_job(prompt="while full", params={}, count=1, seed=1, model=None)
        assert e.value.code == "disk_full" and "full" in e.value.message
        with pytest.raises(StoreError) as e:
            await s.mark_running(job["id"])
        assert e.value.code == "disk_full"
        disk.full = False
        # Rolled back, nothing half-done: the queue is as it was, and writes work again.
        assert [j["prompt"] for j in await s.list_jobs(include_finished=True)] == ["before"]
        assert (await s.mark_running(job["id"]))["state"] == "running"
    finally:
        await s.close()


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "db.sqlite"


def test_estimate_and_classification() -> None:
    assert diskspace.job_bytes(10.0, 2) == 10 * 2 * 48_000 * 2 * 4 * 2
    assert diskspace.is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert diskspace.is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    wrapped = RuntimeError("libsndfile: write failed")
    wrapped.__cause__ = OSError(errno.ENOSPC, "No space left on device")
    assert diskspace.is_disk_full(wrapped)
    assert not diskspace.is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not diskspace.is_disk_full(StoreError("conflict", "x"))


async def test_disk_full_pauses_the_queue_requeues_the_job_and_resumes_by_itself(
        daemon_factory: Callable[..., Any], tiny_model: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dgx_music.queue")
    monkeypatch.setenv("DGX_MUSIC_TEST_STEP_DELAY", SLOW)
    d = await daemon_factory(engine__model=str(tiny_model), http__listen="127.0.0.1:0", daemon__min_free_mb=1)
    url = await with_http(d)
    d.scheduler.disk_delay = (0.02, 0.1)
    disk = FullDisk(monkeypatch, d.store)
    async with await Client.connect(d.server.path) as c:
        await c.subscribe("job", "daemon")
        job = await c.call("job.submit", {"prompt": "interrupted by a full disk", "duration": 1.0})
        await wait_event(c, "job.progress", job["id"])
        # The disk fills while the job generates. A submission that reaches the database is
        # refused as disk_full, not internal (statvfs still shows room, say a quota is reached).
        disk.db_full = True
        with pytest.raises(RemoteError) as e:
            await c.call("job.submit", {"prompt": "refused by SQLite", "duration": 0.5})
        assert e.value.code == "disk_full" and "database or disk is full" in e.value.message
        disk.fs_full = True
        seen: list[Any] = []
        failed = await wait_event(c, "job.failed", job["id"], seen=seen)
        assert failed.data["reason"] == "disk_full" and failed.data["retrying"] is True
        assert [e.data["full"] for e in seen if e.name == "daemon.disk"] == [True]  # sent just before

        st = await c.call("status")
        assert st["disk_full"] is True and st["disk"]["full"] is True
        assert st["runner"]["state"] == "paused" and st["runner"]["reason"] == "disk_full"
        # The job's state could not be recorded: it is running in the database, until space returns.
        assert (await c.call("job.get", {"id": job["id"]}))["state"] == "running"
        # Refused early now, over the socket and as a 507 over HTTP.
        with pytest.raises(RemoteError) as e:
            await c.call("job.submit", {"prompt": "refused early", "duration": 0.5})
        assert e.value.code == "disk_full" and "free some space" in e.value.message
        async with aiohttp.ClientSession(headers=AUTH[url]) as s:
            async with s.post(url + "/api/v1/jobs", json={"prompt": "over http", "duration": 0.5}) as r:
                assert r.status == 507 and (await r.json())["error"]["code"] == "disk_full"
        code, body = await healthz(url)
        assert code == 200 and body["disk_full"] is True and body["runner"] == "paused"

        await until(lambda: disk.checks >= 8, what="the runner to check the disk again several times")
        disk.full = False  # space returns: no restart, no request needed
        await wait_event(c, "job.queued", job["id"], seen=seen)
        await wait_event(c, "job.finished", job["id"], seen=seen, timeout=120)
        assert [e.data["full"] for e in seen if e.name == "daemon.disk"] == [True, False]
        done = await c.call("job.get", {"id": job["id"]})
        assert done["state"] == "done" and done["attempts"] == 1 and done["track_ids"] == [f"{job['id']}-0"]
        st = await c.call("status")
        assert st["disk_full"] is False and st["runner"]["state"] in ("idle", "working")
        jobs = (await c.call("job.list", {"all": True}))["jobs"]
        assert [j["id"] for j in jobs] == [job["id"]]  # the refused submissions left no row
        # Nothing stored is lost, and no file is left without its row.
        wavs = {str(p.relative_to(d.data_dir)) for p in (d.data_dir / "library").rglob("*.wav")}
        assert wavs == {(await c.call("track.get", {"id": done["track_ids"][0]}))["path"]}
        assert (await c.call("job.submit", {"prompt": "accepted again", "duration": 0.5}))["state"] == "queued"
    # One line per change of state, however many times the runner looked at the disk meanwhile.
    assert disk.checks >= 8
    assert len(records(caplog, "disk full at")) == 1
    assert len(records(caplog, "disk space is back")) == 1
    assert [r for r in caplog.records if r.name == "dgx_music.queue" and r.levelno >= logging.ERROR] == []


async def test_a_job_that_does_not_fit_is_not_started(
        daemon_factory: Callable[..., Any], tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The free-space check comes before the job starts: it stays queued, no attempt is used."""
    d = await daemon_factory(engine__model=str(tiny_model), daemon__min_free_mb=1)
    d.scheduler.disk_delay = (0.02, 0.1)
    room = {"free": 5 * MiB}  # a margin of 1 MiB fits; 2 x 5 s (a ~7.3 MiB estimate) does not
    monkeypatch.setattr(diskspace, "free_bytes", lambda path: room["free"])
    async with await Client.connect(d.server.path) as c:
        await c.subscribe("job", "daemon")
        job = await c.call("job.submit", {"prompt": "too long for the disk", "duration": 5.0, "count": 2})
        ev = await wait_event(c, "daemon.disk")
        assert ev.data["full"] is True and ev.data["needed"] == MiB + diskspace.job_bytes(5.0, 2)
        j = await c.call("job.get", {"id": job["id"]})
        assert j["state"] == "queued" and j["attempts"] == 0
        room["free"] = 10 * 1024 * MiB
        await wait_event(c, "job.finished", job["id"], timeout=120)  # resumed by itself
        j = await c.call("job.get", {"id": job["id"]})
        assert j["state"] == "done" and j["attempts"] == 1


# ----------------------------------------------------------------------------- a real full disk
@pytest.fixture
def small_tmpfs(short_tmp: Path) -> Iterator[Path]:
    """<short_tmp>/data on a 24 MiB tmpfs (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    data = short_tmp / "data"
    data.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", str(data)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield data
    finally:
        subprocess.run(["umount", "-l", str(data)], check=False)


def fill(path: Path) -> None:
    with open(path, "wb") as f:
        try:
            while True:
                f.write(b"\0" * MiB)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


async def test_a_real_full_tmpfs(small_tmpfs: Path, daemon_factory: Callable[..., Any], tiny_model: Path,
                                 monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dgx_music.queue")
    monkeypatch.setenv("DGX_MUSIC_TEST_STEP_DELAY", SLOW)
    d = await daemon_factory(engine__model=str(tiny_model), daemon__min_free_mb=1)
    assert d.data_dir == small_tmpfs
    d.scheduler.disk_delay = (0.05, 0.2)
    filler = small_tmpfs / "filler"
    async with await Client.connect(d.server.path) as c:
        await c.subscribe("job", "daemon")
        kept = await c.call("job.submit", {"prompt": "made before the disk filled", "duration": 0.5})
        await wait_event(c, "job.finished", kept["id"], timeout=120)
        kept_track = await c.call("track.get", {"id": f"{kept['id']}-0"})
        kept_bytes = (d.data_dir / kept_track["path"]).read_bytes()

        running = await c.call("job.submit", {"prompt": "hits the full disk", "duration": 1.0})
        waiting = await c.call("job.submit", {"prompt": "waits for room", "duration": 0.5})
        await wait_event(c, "job.progress", running["id"])
        await asyncio.get_running_loop().run_in_executor(None, fill, filler)
        ev = await wait_event(c, "daemon.disk", timeout=60)
        assert ev.data["full"] is True
        with pytest.raises(RemoteError) as e:
            await c.call("job.submit", {"prompt": "no room", "duration": 0.5})
        assert e.value.code == "disk_full"
        assert (await c.call("status"))["disk_full"] is True
        assert (await c.call("job.get", {"id": waiting["id"]}))["state"] == "queued"

        filler.unlink()
        for job in (running, waiting):
            if (await c.call("job.get", {"id": job["id"]}))["state"] != "done":
                await wait_event(c, "job.finished", job["id"], timeout=120)
        assert (await c.call("status"))["disk_full"] is False
        assert (d.data_dir / kept_track["path"]).read_bytes() == kept_bytes
        for job in (kept, running, waiting):
            j = await c.call("job.get", {"id": job["id"]})
            assert j["state"] == "done" and len(j["track_ids"]) == 1
    assert len(records(caplog, "disk full at")) == 1
    assert len(records(caplog, "disk space is back")) == 1


# ----------------------------------------------------------------------------- close
async def test_close_waits_for_the_audio_thread_without_blocking_the_loop(daemon: Any) -> None:
    sched = daemon.scheduler
    gate, started = threading.Event(), threading.Event()
    loop = asyncio.get_running_loop()

    def render() -> None:  # a render that takes a while
        started.set()
        gate.wait(10.0)

    busy = loop.run_in_executor(sched.pool, render)
    # The audio thread may still be busy with start-up work (the first prune): a render still
    # queued behind it would be cancelled by close, which is not what this test is about.
    await until(started.is_set, timeout=30, what="the render to start")
    closing = asyncio.create_task(sched.close())
    # The loop keeps running while close waits: this coroutine sees the pool shutting down while
    # the render is still going (a blocking shutdown would let us in only after the 10 s wait).
    await until(lambda: sched.pool._shutdown, timeout=5, what="the pool to start shutting down")
    assert not busy.done() and not closing.done()
    gate.set()
    await asyncio.wait_for(closing, 5)
    assert busy.done() and sched.runner_status()["state"] == "stopped"


# ----------------------------------------------------------------------------- cancel at pick-up
async def test_a_cancel_as_the_runner_picks_the_job_up_logs_no_error(
        daemon_factory: Callable[..., Any], tiny_model: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The runner reads the next queued job, then marks it running; a cancel in between used to
    turn mark_running's conflict into "unexpected failure" and "could not record the failure"
    (two ERROR tracebacks, once in ~1,100 submit-then-cancel pairs). Here the cancel lands exactly
    there: the runner's mark_running first lets a cancel from another client complete."""
    caplog.set_level(logging.INFO)
    d = await daemon_factory(engine__model=str(tiny_model))
    sched, real = d.scheduler, d.store.mark_running
    answers: list[dict[str, Any]] = []
    async with await Client.connect(d.server.path) as c, await Client.connect(d.server.path) as other:
        async def cancel_then_start(job_id: int, **kw: Any) -> Any:
            if not answers and asyncio.current_task() is sched._task:
                answers.append(await other.call("job.cancel", {"id": job_id}))
            return await real(job_id, **kw)

        d.store.mark_running = cancel_then_start  # type: ignore[method-assign]
        await c.subscribe("job")
        first = await c.call("job.submit", {"prompt": "cancelled at pick-up", "duration": 1, "seed": 1})
        await until(lambda: bool(answers), what="the cancel at pick-up")
        assert answers[0]["state"] == "cancelled"
        second = await c.call("job.submit", {"prompt": "the runner goes on", "duration": 1, "seed": 2})
        await wait_event(c, "job.finished", second["id"], timeout=120)
        assert (await c.call("job.get", {"id": first["id"]}))["state"] == "cancelled"
    errors = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
