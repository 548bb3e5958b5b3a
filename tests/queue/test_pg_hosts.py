"""Several daemons (hosts) on one PostgreSQL store and one shared storage root (issue 21):
each claims jobs under a lease, events reach the clients of every host, a dead host's job
runs again elsewhere, a cancel reaches the host that runs the job.

Each host has its own socket, data directory and model worker; they share store.url and
store.storage. The hosts started as processes run in network namespaces of their own where the
machine allows it (tests/netns.py; a warning says why not): PostgreSQL's Unix socket and the
storage directory are paths, so they are all the hosts share. The in-process hosts share the
test's namespace. Skips without PostgreSQL, as the store tests do."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from dgx_music.cli.status_cmd import format_status
from dgx_music.common.client import Client, RemoteError
from dgx_music.daemon.store import open_url
from tests import netns
from tests.conftest import wait_event

LEASE = 2.0
SLOW = "0.05"  # seconds per decode step in the worker: room to cancel mid-run


async def host(daemon_factory: Callable[..., Any], root: Path, name: str, url: str, tiny_model: Path,
               **overrides: Any) -> Any:
    overrides.setdefault("daemon__lease_s", LEASE)
    return await daemon_factory(daemon__socket=str(root / f"{name}.sock"), daemon__data_dir=str(root / name),
                                daemon__host=name, store__url=url,
                                store__storage=str(root / "shared"), engine__model=str(tiny_model),
                                engine__keep_alive=-1, **overrides)


async def wait_all(c: Client, name: str, ids: list[int], seen: list[Any], timeout: float = 120.0) -> None:
    """Read `c`'s events into `seen` until `name` has come for every id (in any order)."""
    async def scan() -> None:
        async for ev in c.events():
            seen.append(ev)
            if {e.data.get("id") for e in seen if e.name == name} >= set(ids):
                return
    await asyncio.wait_for(scan(), timeout)


async def hosts_seen(c: Client, want: dict[str, str], timeout: float = 30.0) -> list[dict[str, Any]]:
    """`status`'s hosts once each named host is in the wanted state (heartbeats come every lease/3)."""
    deadline = time.monotonic() + timeout
    while True:
        hosts = (await c.call("status")).get("hosts") or []
        if {h["host"]: h["state"] for h in hosts if h["host"] in want} == want:
            return hosts
        assert time.monotonic() < deadline, hosts
        await asyncio.sleep(0.1)


async def library_ids(c: Client) -> list[str]:
    return sorted(t["id"] for t in (await c.call("track.list", {"limit": 100}))["tracks"])


async def test_jobs_submitted_on_one_host_run_once_on_either(pg_url: str, daemon_factory: Callable[..., Any],
                                                           shared: Path, tiny_model: Path) -> None:
    a = await host(daemon_factory, shared, "a", pg_url, tiny_model)
    b = await host(daemon_factory, shared, "b", pg_url, tiny_model)
    async with await Client.connect(a.server.path) as ca, await Client.connect(b.server.path) as cb:
        await ca.subscribe("job", "track")
        await cb.subscribe("job")
        ids = [(await ca.call("job.submit", {"prompt": f"piece {i}", "duration": 0.5}))["id"] for i in range(4)]
        seen_a: list[Any] = []
        seen_b: list[Any] = []
        await wait_all(ca, "job.finished", ids, seen_a)
        await wait_all(cb, "job.finished", ids, seen_b)
        finished = [e.data["id"] for e in seen_a if e.name == "job.finished"]
        assert sorted(finished) == ids  # each once, at a client of A whichever host ran it
        starts = [e for e in seen_a if e.name == "job.started"]
        assert sorted(e.data["id"] for e in starts) == ids and {e.data["host"] for e in starts} <= {"a", "b"}
        for c in (ca, cb):  # one queue and one library, seen the same from both hosts
            assert await library_ids(c) == sorted(f"{i}-0" for i in ids)
            for job_id in ids:
                j = await c.call("job.get", {"id": job_id})
                assert j["state"] == "done" and j["attempts"] == 1
        added = [e.data for e in seen_a if e.name == "track.added"]
        assert sorted(t["id"] for t in added) == sorted(f"{i}-0" for i in ids)
        assert all(Path(t["file"]).is_file() for t in added)  # the shared storage, as A names it
        hosts = await hosts_seen(ca, {"a": "idle", "b": "idle"})
        assert [(h["host"], h["this"]) for h in hosts] == [("a", True), ("b", False)]
        ran = {e.data["host"] for e in starts}
        assert all(h["model"] == str(tiny_model) for h in hosts if h["host"] in ran)  # loaded to run its jobs
        text = format_status(await ca.call("status"))  # what `dgx-music status` prints
        assert f"host     a (this one): idle, {tiny_model}" in text and "host     b: idle" in text
        assert "\nstore    postgresql://" in text and ": reachable\n" in text  # the database is there


def test_hosts_in_their_own_network_namespaces_meet_only_in_the_database_and_storage(
        pg_url: str, daemon_process: Callable[..., Any], shared: Path, tiny_model: Path) -> None:
    """Two host processes, each in a network namespace of its own (tests/netns.py): a job queued at A
    runs on B and A's client sees it all, though neither host can reach the other (or the test) over
    the network. Each serves HTTP on the same 127.0.0.1 port, which only separate namespaces allow,
    and that port is closed from the test's namespace while each host's socket answers there."""
    why = netns.reason()
    port = 0 if why else _free_port()
    procs = {}
    for name, extra in (("a", {"DGX_MUSIC_MIN_FREE_MB": str(1 << 40)}), ("b", {})):  # A's queue is paused
        (shared / name).mkdir()
        procs[name] = daemon_process(
            "--store", pg_url, "--storage", str(shared / "shared"), "--http", f"127.0.0.1:{port}" if port else "off",
            root=shared / name, netns=True,
            env={"DGX_MUSIC_HOST": name, "DGX_MUSIC_LEASE_S": str(LEASE), "DGX_MUSIC_MODEL": str(tiny_model),
                 "DGX_MUSIC_KEEP_ALIVE": "-1", **extra}).start(wait=False)
    for p in procs.values():
        p.wait_ready()
    asyncio.run(_queued_at_a_run_on_b(procs["a"].socket, procs["b"].socket))
    if why:
        pytest.skip(f"the hosts shared the test's network namespace ({why}); the job part passed")
    spaces = {name: netns.of(p.proc.pid) for name, p in procs.items()}
    assert len({netns.of(), *spaces.values()}) == 3, spaces  # the test's, A's and B's
    with pytest.raises(ConnectionRefusedError):  # A's and B's listeners are not in this namespace
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    for name, p in procs.items():  # ... but in their own, each answers on it
        inside = netns.enter(p.proc.pid, [sys.executable, "-c", _HTTP_GET, str(port)], timeout=30)
        assert inside.stdout.startswith("HTTP/1.1 "), (name, inside.stderr, p.logs()[-2000:])


#: Run inside a host's namespace: the first line of its HTTP answer at 127.0.0.1:PORT.
_HTTP_GET = ("import socket, sys\nc = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=5)\n"
             "c.sendall(b'GET / HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nConnection: close\\r\\n\\r\\n')\n"
             "print(c.makefile('rb').readline().decode().strip())")


def _free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return int(s.getsockname()[1])


async def _queued_at_a_run_on_b(sock_a: Path, sock_b: Path) -> None:
    async with await Client.connect(sock_a) as ca, await Client.connect(sock_b) as cb:
        await ca.subscribe("job", "track")
        with pytest.raises(RemoteError):  # A refuses submits while its disk is "full"
            await ca.call("job.submit", {"prompt": "refused on a", "duration": 0.5})
        job = await cb.call("job.submit", {"prompt": "made on b", "duration": 0.5})
        seen: list[Any] = []
        done = await wait_event(ca, "job.finished", job["id"], seen=seen)
        assert done.data["track_ids"] == [f"{job['id']}-0"]
        names = [e.name for e in seen if e.data.get("id") == job["id"]]
        assert names[0] == "job.queued" and "job.started" in names
        assert [e.data["host"] for e in seen if e.name == "job.started"] == ["b"]
        added = [e.data for e in seen if e.name == "track.added"]
        assert [t["id"] for t in added] == done.data["track_ids"] and Path(added[0]["file"]).is_file()
        status = await ca.call("status")
        assert status["queue"].get("done") == 1  # A's counts follow B's work
        hosts = await hosts_seen(ca, {"b": "idle"})  # B's heartbeats reach A through the database
        assert [(h["host"], h["this"]) for h in hosts] == [("a", True), ("b", False)]


async def test_a_cancel_at_one_host_stops_the_job_another_host_runs(
        pg_url: str, daemon_factory: Callable[..., Any], shared: Path, tiny_model: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DGX_MUSIC_TEST_STEP_DELAY", SLOW)
    a = await host(daemon_factory, shared, "a", pg_url, tiny_model, daemon__min_free_mb=1 << 40)
    b = await host(daemon_factory, shared, "b", pg_url, tiny_model)
    async with await Client.connect(a.server.path) as ca:
        await ca.subscribe("job")
        async with await Client.connect(b.server.path) as cb:  # A refuses submits while its disk is "full"
            job = await cb.call("job.submit", {"prompt": "long on b", "duration": 1.0})
        await wait_event(ca, "job.progress", job["id"])  # running on B, seen at A
        answer = await ca.call("job.cancel", {"id": job["id"]})
        assert answer["cancel_requested"] is True
        await wait_event(ca, "job.cancelled", job["id"])
        j = await ca.call("job.get", {"id": job["id"]})
        assert j["state"] == "cancelled" and j["track_ids"] == []
        assert await library_ids(ca) == []
    assert not list((shared / "shared").glob("library/**/*.wav"))  # B kept no file of it


async def test_a_killed_hosts_job_runs_again_on_another_within_the_lease(
        pg_url: str, daemon_factory: Callable[..., Any], daemon_process: Callable[..., Any], shared: Path,
        tiny_model: Path) -> None:
    # Host B, a real process in a network namespace of its own, claims the job and is killed (kill -9)
    # right after starting it.
    b = daemon_process("--store", pg_url, "--storage", str(shared / "shared"), netns=True,
                       env={"DGX_MUSIC_FAILPOINT": "after_start", "DGX_MUSIC_HOST": "b",
                            "DGX_MUSIC_LEASE_S": str(LEASE), "DGX_MUSIC_MODEL": str(tiny_model)}).start(wait=False)
    deadline = time.monotonic() + 60
    while True:  # DaemonProcess.wait_ready runs its own event loop: not from this one
        assert b.proc.poll() is None and time.monotonic() < deadline, b.logs()
        try:
            cb = await Client.connect(b.socket, timeout=1.0)
            break
        except Exception:
            await asyncio.sleep(0.1)
    async with cb:
        job = await cb.call("job.submit", {"prompt": "survives its host", "duration": 0.5})
    assert b.proc.wait(30) == -9
    died = time.time()
    a = await host(daemon_factory, shared, "a", pg_url, tiny_model)
    async with await Client.connect(a.server.path) as ca:
        deadline = time.monotonic() + 60
        while (j := await ca.call("job.get", {"id": job["id"]}))["state"] != "done":
            assert j["state"] in ("running", "processing", "queued") and time.monotonic() < deadline, j
            await asyncio.sleep(0.1)
        assert j["attempts"] == 2  # B's claim counted, and A's: the job ran once more, once
        assert j["started"] - died < LEASE + 5, "a dead host's job waited past its lease + 5 s"
        assert await library_ids(ca) == [f"{job['id']}-0"]
        hosts = await hosts_seen(ca, {"a": "idle", "b": "gone"})  # B never came back
        gone = next(h for h in hosts if h["host"] == "b")
        assert gone["seen_s"] > LEASE  # its row is older than its lease
        text = format_status(await ca.call("status"))
        assert "host     b: gone" in text and "unreachable" in text


async def test_a_host_that_loses_its_lease_stops_the_job_and_records_nothing(
        pg_url: str, daemon_factory: Callable[..., Any], shared: Path, tiny_model: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DGX_MUSIC_TEST_STEP_DELAY", SLOW)
    b = await host(daemon_factory, shared, "b", pg_url, tiny_model)
    async with await Client.connect(b.server.path) as cb:
        await cb.subscribe("job", "track")
        job = await cb.call("job.submit", {"prompt": "taken away", "duration": 1.0})
        seen: list[Any] = []
        await wait_event(cb, "job.progress", job["id"], seen=seen)
        # As if B's renewals had not reached the store for a whole lease: its job goes back to the queue.
        other = await open_url(pg_url, data_dir=shared / "probe")
        try:
            assert (await other.requeue_expired(now=time.time() + 1000))["requeued"] == [job["id"]]
        finally:
            await other.close()
        # B's next renewal is refused: it stops the job, records nothing of that run, then claims it anew.
        await wait_event(cb, "job.finished", job["id"], seen=seen)
        names = [e.name for e in seen if e.data.get("id") == job["id"]]
        assert names.count("job.finished") == 1 and "job.cancelled" not in names and "job.failed" not in names
        assert [e.data["attempt"] for e in seen if e.name == "job.started"] == [1, 2]
        j = await cb.call("job.get", {"id": job["id"]})
        assert j["state"] == "done" and j["attempts"] == 2
        assert await library_ids(cb) == [f"{job['id']}-0"]
        wavs = sorted(p.name for p in (shared / "shared").glob("library/**/*.wav"))
        assert len(wavs) == 1, wavs  # the stopped run left no file behind
