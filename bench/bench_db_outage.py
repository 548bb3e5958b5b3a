"""Losing the database (issue 21): two hosts on one PostgreSQL, the server stopped for 30 s.

Two daemon processes share a throwaway PostgreSQL cluster (tests/pgcluster.py) and one storage
directory; one job makes three tracks, which each host lists, searches, shows and plays, and one
of which is then deleted on h1 (h0 hears of it by NOTIFY); jobs are queued, then the server is
stopped (`pg_ctl -m immediate`, as a crash or a lost network would) for `--outage` seconds and
started again on the same data. Meanwhile every
`--probe` seconds each host is asked reads and a write (`job.submit`), and each answer is counted
by its kind: ok, stale (a library read answered from what that host saw before the outage:
`track.list`, a search, `track.get`, `track.audio`, each checked against what it saw),
`store_unavailable` (the refusal the issue asks for: writes, and a search no host made before), or
anything else (a finding: `internal` above all). After the server is back it measures
how long until each host takes a write again by itself, then drains the queue and audits:
every job queued before the outage ends done exactly once with its tracks, none lost.

    .venv/bin/python bench/bench_db_outage.py [--outage 30] [--jobs 8] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chaos_harness import Daemon, call  # noqa: E402
from chaos_hosts import _cluster, _drained  # noqa: E402

from dgx_music.common.client import Client  # noqa: E402
from dgx_music.common.protocol import RemoteError  # noqa: E402

LEASE = 5.0


def _answer(sock: Path, method: str, params: dict[str, Any] | None = None) -> tuple[str, Any]:
    """("ok" or "stale" with the result, or the error code with None)."""
    try:
        r = call(sock, method, params or {}, timeout=15.0)
        return ("stale" if isinstance(r, dict) and r.get("stale") else "ok"), r
    except RemoteError as exc:
        return exc.code, None
    except Exception as exc:  # no answer at all: the daemon itself is in trouble
        return f"no answer ({type(exc).__name__})", None


def format_status(st: dict[str, Any]) -> str:
    from dgx_music.cli.status_cmd import format_status as fmt

    return fmt(st)


def _store_state(status: Any) -> str:
    """What a status answer says of the database: "reachable", "away", or "unsaid"."""
    store = status.get("store") if isinstance(status, dict) else None
    if not isinstance(store, dict) or "reachable" not in store:
        return "unsaid"
    return "reachable" if store["reachable"] else "away"


#: The library reads each host makes before the outage (and is asked again during it), and one it never made.
SEEN = {"track.list": {"limit": 5}, "search": {"search": "lighthouse", "limit": 5}}
NEVER = {"search": "a query no host ever made", "limit": 5}


async def _delete_seen_elsewhere(deleter: Path, watcher: Path, track_id: str, timeout: float = 30.0) -> bool:
    """Delete ``track_id`` on one host and wait until the other host publishes its track.deleted
    (relayed over NOTIFY): the event that drops it from that host's read cache."""
    async with await Client.connect(watcher) as c:
        await c.subscribe("track")
        await asyncio.to_thread(call, deleter, "track.delete", {"id": track_id})

        async def seen() -> bool:
            async for ev in c.events():
                if ev.name == "track.deleted" and ev.data.get("id") == track_id:
                    return True
            return False

        try:
            return await asyncio.wait_for(seen(), timeout)
        except TimeoutError:
            return False


def _ids(r: Any) -> list[str]:
    return sorted(t["id"] for t in r["tracks"]) if "tracks" in r else [r["id"]]


def _reads(sock: Path, track_id: str, *, never: bool = True) -> dict[str, tuple[str, Any]]:
    """The library reads a host serves: list, search, show, audio (first chunk), and (``never``)
    the search no host makes before the outage."""
    out = {name: _answer(sock, "track.list", params) for name, params in SEEN.items()}
    out["track.get"] = _answer(sock, "track.get", {"id": track_id})
    out["track.audio"] = _answer(sock, "track.audio", {"id": track_id, "size": 4096})
    if never:
        out["never_seen"] = _answer(sock, "track.list", NEVER)
    return out


def _pg_ctl(cluster: Any, *args: str) -> None:
    prefix = ["runuser", "-u", "postgres", "--"] if cluster._as_root else []
    subprocess.run([*prefix, str(cluster.bin / "pg_ctl"), "-D", str(cluster.root / "db"), *args],
                   check=True, capture_output=True, timeout=120)


def run(outage: float, jobs: int, probe: float, seed: int) -> dict[str, Any]:
    from dgx_music.daemon.engine.testmodel import build_test_model

    rng = random.Random(seed)
    cluster = _cluster()
    if cluster is None:
        return {"skipped": "PostgreSQL is not installed (scripts/ensure-test-tools installs it)"}
    root = Path(tempfile.mkdtemp(prefix="dgx-dbout-"))
    cluster.start()
    # The test cluster runs without fsync and with asynchronous commits, which a crash may undo:
    # restart it as a production server runs (fsync, synchronous commits) before crashing it.
    safe = f"-k {cluster.root} -c listen_addresses=''"
    _pg_ctl(cluster, "-m", "fast", "stop")
    _pg_ctl(cluster, "-o", safe, "-l", str(cluster.root / "log"), "-w", "start")
    hosts: list[Daemon] = []
    try:
        model = build_test_model(root / "tiny", backend="transformers")
        cluster.setup_database()
        url = cluster.url(schema=cluster.new_schema())
        shared = root / "shared"
        shared.mkdir()
        hosts = [Daemon(root / f"h{i}", model, DGX_MUSIC_STORE=url, DGX_MUSIC_STORAGE=str(shared),
                        DGX_MUSIC_HOST=f"h{i}", DGX_MUSIC_LEASE_S=str(LEASE)) for i in range(2)]
        for h in hosts:
            h.root.mkdir()
            h.start()
        # A library to browse: one job's tracks, then every host lists, searches and shows them.
        first = call(hosts[0].socket, "job.submit", {"prompt": "outage lighthouse", "duration": 1.0, "count": 3})
        _drained(hosts[0], 300)
        track_id, *others = sorted(call(hosts[0].socket, "job.get", {"id": first["id"]})["track_ids"])
        seen = {h.root.name: {k: _ids(r) for k, (code, r) in _reads(h.socket, track_id, never=False).items()
                              if code == "ok"} for h in hosts}
        # One of the tracks both hosts listed is deleted on h1: h0 learns it by h1's event (NOTIFY)
        # and must not offer it during the outage; what each host is expected to show loses it.
        gone = others[-1]
        deleted_seen = asyncio.run(_delete_seen_elsewhere(hosts[1].socket, hosts[0].socket, gone))
        for reads in seen.values():
            for name, ids in reads.items():
                reads[name] = [i for i in ids if i != gone]
        queued = {first["id"]: 2}
        for _ in range(jobs):
            j = call(rng.choice(hosts).socket, "job.submit",
                     {"prompt": f"outage {rng.randrange(10**6)}", "duration": 1.0, "count": rng.choice([1, 2])})
            queued[j["id"]] = j["count"]
        answers: dict[str, Counter[str]] = {k: Counter() for k in ("status", "status_store", *SEEN, "track.get",
                                                                    "track.audio", "never_seen", "job.submit")}
        wrong: list[str] = []  # a stale answer that is not what the host saw before
        status_line = ""
        _pg_ctl(cluster, "-m", "immediate", "stop")
        down = time.monotonic()
        while time.monotonic() - down < outage:
            for h in hosts:
                code, st = _answer(h.socket, "status")
                answers["status"][code] += 1
                answers["status_store"][_store_state(st)] += 1  # does status say the database is away?
                if st and not status_line:  # what `dgx-music status` prints then
                    status_line = next((line for line in format_status(st).splitlines()
                                        if line.startswith("store")), "")
                for name, (code, r) in _reads(h.socket, track_id).items():
                    answers[name][code] += 1
                    if code == "stale" and _ids(r) != seen[h.root.name].get(name):
                        wrong.append(f"{h.root.name} {name}: {_ids(r)}, saw {seen[h.root.name].get(name)}")
                    if code == "stale" and not r.get("stale_since"):
                        wrong.append(f"{h.root.name} {name}: stale without stale_since")
                answers["job.submit"][_answer(h.socket, "job.submit", {"prompt": "during the outage",
                                                                       "duration": 0.5})[0]] += 1
            time.sleep(probe)
        _pg_ctl(cluster, "-o", safe, "-l", str(cluster.root / "log"), "-w", "start")
        back = time.monotonic()
        recovered: dict[str, float | None] = {}
        late: dict[int, int] = {}
        for h in hosts:
            took = None
            while time.monotonic() - back < 120:
                try:
                    j = call(h.socket, "job.submit", {"prompt": "after the outage", "duration": 0.5}, timeout=15.0)
                    late[j["id"]] = j["count"]
                    took = time.monotonic() - back
                    break
                except Exception:
                    time.sleep(0.2)
            recovered[h.root.name] = None if took is None else round(took, 2)
        after = {h.root.name: {k: code for k, (code, _r) in _reads(h.socket, track_id).items()} for h in hosts}
        status_after = {h.root.name: _store_state(_answer(h.socket, "status")[1]) for h in hosts}
        drained = all(_drained(h, 300) for h in hosts)
        lost: list[str] = []
        for job_id, count in {**queued, **late}.items():
            try:
                job = call(hosts[0].socket, "job.get", {"id": job_id})
            except RemoteError as exc:
                lost.append(f"job {job_id}: {exc}")
                continue
            if job["state"] != "done" or len(job["track_ids"]) != count:
                lost.append(f"job {job_id}: {job['state']} with {len(job['track_ids'])} of {count} tracks "
                            f"({job.get('error')})")
        alive = [h.root.name for h in hosts if h.alive()]
        return {"outage_s": outage, "jobs_before": len(queued), "seen_before": seen, "deleted": gone, "delete_relayed": deleted_seen, "answers_during_outage":
                {k: dict(v) for k, v in answers.items()}, "stale_but_wrong": wrong, "reads_after": after,
                "status_store_after": status_after, "status_line_during_outage": status_line,
                "first_write_after_s": recovered,
                "drained": drained, "daemons_alive": alive, "lost": lost}
    finally:
        for h in hosts:
            if h.alive():
                h.stop()
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--outage", type=float, default=30.0, help="seconds the server is stopped (default 30)")
    p.add_argument("--jobs", type=int, default=8, help="jobs queued before the outage (default 8)")
    p.add_argument("--probe", type=float, default=2.0, help="seconds between rounds of requests (default 2)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    r = run(args.outage, args.jobs, args.probe, args.seed)
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        for k, v in r.items():
            print(f"{k}: {v}")
    answers = dict(r.get("answers_during_outage", {}))
    said = answers.pop("status_store", {})  # what status said of the database: it must say "away"
    bad = [code for counts in answers.values() for code in counts
           if code not in ("ok", "stale", "store_unavailable")] + [s for s in said if s != "away"]
    return 1 if r.get("lost") or bad or r.get("stale_but_wrong") or not r.get("drained", True) else 0


if __name__ == "__main__":
    sys.exit(main())
