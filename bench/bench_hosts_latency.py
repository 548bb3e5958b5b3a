"""Latency across hosts (issue 21): events from host B seen at host A, and queue-on-A -> start-on-B.

Two daemon processes (hosts A and B, their own sockets, data directories and model workers) share
a throwaway PostgreSQL cluster (durable defaults as bench/bench_pg_store.py; --fast-pg: the test
fixture's fsync off, tests/pgcluster.py) and one storage directory, with the tiny random MusicGen
(daemon/engine/testmodel.py). Host A starts alone and
takes one long job (a slow decode, DGX_MUSIC_TEST_STEP_DELAY), so its runner stays busy; then B
starts, idle. Each measured job is submitted to A by a client of A; B claims it (woken by A's
NOTIFY). One real socket client (common/client.py) per host, both subscribed to "job", stamps
every event it receives with this process's clock (one machine: the daemons' clock too).

Figures, p50/p95/max over the measured jobs:
  start_seen_at_a / start_seen_at_b   submit on A -> job.started (B's) received by A's / B's client
  start_in_store                      submit on A -> the job's `started` time written by B
  relay_started / relay_finished      B's client receives job.started / job.finished -> A's client
                                      receives it (what crossing hosts adds over a local client)
  started_to_a                        B's `started` stamp -> A's client receives job.started

    .venv/bin/python bench/bench_hosts_latency.py --jobs 30 [--fast-pg] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from chaos_harness import Daemon, call

from dgx_music.common.client import Client

GOAL_MS = 100.0


def _cluster(fast: bool) -> Any:
    """A started throwaway cluster with its database: PostgreSQL's durable defaults (fsync and
    synchronous_commit on, as bench/bench_pg_store.py), or the test fixture's fsync off (`fast`)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository: `tests.pgcluster`
    if not fast:
        from bench_pg_store import durable_cluster

        return durable_cluster()
    from tests.pgcluster import PgCluster, find_bin

    bindir = find_bin()
    if bindir is None:
        raise SystemExit("PostgreSQL is not installed (scripts/ensure-test-tools installs it)")
    cluster = PgCluster(bindir)
    cluster.start()
    cluster.setup_database()
    return cluster


def _stats(xs: list[float]) -> dict[str, float]:
    s = sorted(xs)
    if not s:
        return {}
    p95 = s[min(len(s) - 1, max(0, round(0.95 * len(s)) - 1))]
    return {"n": len(s), "p50": round(statistics.median(s), 1), "p95": round(p95, 1), "max": round(s[-1], 1),
            "min": round(s[0], 1)}


class Watcher:
    """A client subscribed to "job" on one host; stamps (event, job id) with the time received."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.seen: dict[tuple[str, int], float] = {}
        self.data: dict[tuple[str, int], dict[str, Any]] = {}
        self.changed = asyncio.Event()

    async def run(self) -> None:
        async for ev in self.client.events():
            now = time.time()
            job_id = ev.data.get("id")
            if isinstance(job_id, int):
                self.seen.setdefault((ev.name, job_id), now)
                self.data.setdefault((ev.name, job_id), ev.data)
                self.changed.set()

    async def wait(self, name: str, job_id: int, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while (name, job_id) not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {name} for job {job_id} in {timeout:g} s")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except TimeoutError:
                pass
        return self.seen[(name, job_id)]


async def measure(a: Daemon, b: Daemon, jobs: int, warmup: int) -> dict[str, Any]:
    ca = await Client.connect(a.socket, timeout=10)
    cb = await Client.connect(b.socket, timeout=10)
    await ca.subscribe("job")
    await cb.subscribe("job")
    wa, wb = Watcher(ca), Watcher(cb)
    tasks = [asyncio.create_task(wa.run()), asyncio.create_task(wb.run())]
    rows: list[dict[str, Any]] = []
    odd: list[str] = []
    try:
        for i in range(warmup + jobs):
            await asyncio.sleep(0.3)  # B back to idle (its runner waiting for work)
            t0 = time.time()
            job = await ca.call("job.submit", {"prompt": f"hosts latency {i}", "duration": 0.5, "seed": i})
            t_ret = time.time()
            jid = int(job["id"])
            ta = await wa.wait("job.started", jid, 60)
            tb = await wb.wait("job.started", jid, 60)
            host = wb.data[("job.started", jid)].get("host")
            fb = await wb.wait("job.finished", jid, 120)
            fa = await wa.wait("job.finished", jid, 30)
            row = await cb.call("job.get", {"id": jid})
            if host != "B":
                odd.append(f"job {jid} started on host {host!r}, not B")
            if i < warmup:
                continue
            rows.append({"id": jid, "submit_call_ms": (t_ret - t0) * 1000,
                         "start_seen_at_a": (ta - t0) * 1000, "start_seen_at_b": (tb - t0) * 1000,
                         "start_in_store": (float(row["started"]) - t0) * 1000,
                         "started_to_a": (ta - float(row["started"])) * 1000,
                         "relay_started": (ta - tb) * 1000, "relay_finished": (fa - fb) * 1000})
    finally:
        for t in tasks:
            t.cancel()
        await ca.close()
        await cb.close()
    keys = ["submit_call_ms", "start_seen_at_a", "start_seen_at_b", "start_in_store", "started_to_a",
            "relay_started", "relay_finished"]
    return {"figures": {k: _stats([r[k] for r in rows]) for k in keys}, "odd": odd,
            "raw": [{k: (round(v, 1) if isinstance(v, float) else v) for k, v in r.items()} for r in rows]}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from dgx_music.daemon.engine.testmodel import build_test_model

    cluster = _cluster(args.fast_pg)
    work = Path(tempfile.mkdtemp(prefix="dgxm-hostlat-", dir="/tmp"))
    hosts: list[Daemon] = []
    try:
        model = build_test_model(work / "tiny-musicgen", backend="transformers")
        url = cluster.url(schema=cluster.new_schema())
        shared = work / "shared"
        shared.mkdir()
        common = {"DGX_MUSIC_STORE": url, "DGX_MUSIC_STORAGE": str(shared)}
        if args.lease:
            common["DGX_MUSIC_LEASE_S"] = str(args.lease)
        a = Daemon(work / "A", model, DGX_MUSIC_HOST="A", DGX_MUSIC_TEST_STEP_DELAY="0.2", **common)
        b = Daemon(work / "B", model, DGX_MUSIC_HOST="B", DGX_MUSIC_TEST_STEP_DELAY="0", **common)
        hosts = [a, b]
        for h in hosts:
            h.root.mkdir()
        a.start()
        # A alone takes a long job (30 s of audio at 0.2 s a decode step: minutes) and stays busy.
        long_job = call(a.socket, "job.submit", {"prompt": "keep host A busy", "duration": 30.0, "seed": 1})
        deadline = time.monotonic() + 60
        while call(a.socket, "job.get", {"id": long_job["id"]})["state"] != "running":
            if time.monotonic() > deadline:
                raise RuntimeError("host A did not start its long job in 60 s")
            time.sleep(0.1)
        b.start()
        out = asyncio.run(measure(a, b, args.jobs, args.warmup))
        busy = call(a.socket, "job.get", {"id": long_job["id"]})
        if busy["state"] != "running":
            out["odd"].append(f"host A's long job was {busy['state']} at the end: A was not busy throughout")
        out["hosts"] = call(a.socket, "status").get("hosts")
        out["jobs"] = args.jobs
        out["postgresql"] = "fsync off (test fixture)" if args.fast_pg else "durable defaults (fsync on)"
        out["machine"] = f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPUs, " \
                         f"Python {platform.python_version()}"
        return out
    finally:
        for h in hosts:
            h.stop()
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=30, help="measured jobs (default 30)")
    ap.add_argument("--warmup", type=int, default=2, help="jobs run first and not counted (default 2)")
    ap.add_argument("--lease", type=float, default=0, help="daemon.lease_s for both hosts (default: theirs)")
    ap.add_argument("--fast-pg", action="store_true",
                    help="the test fixture's PostgreSQL (fsync off) instead of the durable defaults")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args()
    out = run(args)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{out['jobs']} jobs submitted to busy host A, run by idle host B ({out['machine']}; "
          f"PostgreSQL {out['postgresql']})")
    print(f"{'ms':<18}{'p50':>8}{'p95':>8}{'max':>8}{'min':>8}")
    for k, s in out["figures"].items():
        print(f"{k:<18}{s['p50']:>8}{s['p95']:>8}{s['max']:>8}{s['min']:>8}")
    p95 = out["figures"]["start_seen_at_a"]["p95"]
    print(f"goal: queued on A -> started on B within {GOAL_MS:g} ms: "
          f"{'met' if out['figures']['start_seen_at_a']['max'] <= GOAL_MS else 'not met'} at max, "
          f"{'met' if p95 <= GOAL_MS else 'not met'} at p95")
    for note in out["odd"]:
        print("note:", note)


if __name__ == "__main__":
    main()
