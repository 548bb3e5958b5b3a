"""SQLite and PostgreSQL side by side: library search at 100k tracks, and queue claim throughput.

    .venv/bin/python bench/bench_pg_store.py [--tracks 100000] [--runs 100] [--jobs 500] [--pg-url URL]
                                             [--keep DIR]

--keep DIR keeps both 100k-track libraries (DIR/lib.db and a PostgreSQL cluster in DIR/pg) and
reuses them on the next run with the same DIR and --tracks (building them takes ~2 min per
backend); the store's migrations still run on open, so a schema change applies to them too.

Without --pg-url a throwaway PostgreSQL cluster is started (tests/pgcluster.py's binaries) with
its DURABLE defaults (fsync on, synchronous_commit on: unlike the test fixture), so the claim
numbers compare with SQLite at synchronous=FULL.  Both libraries are built with the same
generator (bench/bench_library.py: realistic prompts, titles, tags, peaks) through
Store.import_tracks, then each search is timed end to end through list_tracks (p50/p99).
PostgreSQL gets a VACUUM ANALYZE after the bulk load (autovacuum does the same within a minute
or two of it; without it count(*) reads the heap: see docs/benchmarks.md).
Claims: JOBS trivial jobs queued, then one worker claims (claim_next_job) and finishes
(finish_job, one track row) until the queue is empty: jobs per second.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_library import QUERIES, build, pct  # noqa: E402

from dgx_music.daemon.store import Store  # noqa: E402
from dgx_music.daemon.store.pg import PgStore  # noqa: E402

SEARCHES = [(name, kw) for name, kw in QUERIES if "search" in kw] + [
    (name, kw) for name, kw in QUERIES if name in ("list default (created desc)", "list tag 'keeper'")]


def durable_cluster(keep: Path | None = None) -> Any:
    """A throwaway cluster with PostgreSQL's durable defaults (the test fixture turns fsync off);
    with ``keep``, one in keep/pg that outlives the run (started again if it is there)."""
    from tests.pgcluster import PgCluster, _locales, find_bin

    bindir = find_bin()
    if bindir is None:
        sys.exit("PostgreSQL is not installed (apt-get install postgresql); or pass --pg-url")

    class Durable(PgCluster):
        reused = False

        def start(self) -> None:
            if keep is not None:
                self.root = keep / "pg"
                self.root.mkdir(parents=True, exist_ok=True)
                self.reused = (self.root / "db" / "PG_VERSION").exists()
            if self._as_root:
                shutil.chown(self.root, "postgres")
            os.chmod(self.root, 0o755)
            locale = ["--locale=C.UTF-8"] if "C.utf8" in _locales() else []
            if not self.reused:
                self._server(str(self.bin / "initdb"), "-D", str(self.root / "db"), "-A", "trust", "-U",
                             "postgres", "--encoding=UTF8", *locale)
            elif (self.root / "db" / "postmaster.pid").exists():
                return  # still running (started by hand to look at plans): use it
            self._server(str(self.bin / "pg_ctl"), "-D", str(self.root / "db"), "-o",
                         f"-k {self.root} -c listen_addresses=''", "-l", str(self.root / "log"), "-w", "start")

        def stop(self) -> None:
            if keep is None:
                return super().stop()
            self._server(str(self.bin / "pg_ctl"), "-D", str(self.root / "db"), "-m", "fast", "stop")

    cluster = Durable(bindir)
    cluster.start()
    if not cluster.reused:
        cluster.setup_database()
    return cluster


async def search_times(store: Any, runs: int) -> dict[str, tuple[float, float, int]]:
    out = {}
    for name, kw in SEARCHES:
        for _ in range(3):
            await store.list_tracks(**kw)
        times, total = [], 0
        for _ in range(runs):
            t = time.perf_counter()
            page = await store.list_tracks(**kw)
            times.append((time.perf_counter() - t) * 1000)
            total = page["total"]
        times.sort()
        out[name] = (times[len(times) // 2], pct(times, 99), total)
    return out


async def claim_rate(store: Any, jobs: int) -> tuple[float, float]:
    """(jobs queued per second, jobs claimed and finished per second) with one worker."""
    t = time.perf_counter()
    for _ in range(jobs):
        await store.add_job(prompt="tick", params={"duration": 1.0}, count=1, seed=1, model=None)
    added = jobs / (time.perf_counter() - t)
    done = 0
    t = time.perf_counter()
    while (job := await store.claim_next_job("bench-host", lease_s=60)) is not None:
        await store.finish_job(job["id"], [{"path": f"library/{job['id']}/0.wav", "duration": 1.0,
                                            "sample_rate": 32000, "channels": 1}])
        done += 1
    assert done == jobs, (done, jobs)
    return added, done / (time.perf_counter() - t)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tracks", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=500)
    ap.add_argument("--pg-url", help="an empty PostgreSQL database (default: a throwaway cluster)")
    ap.add_argument("--keep", type=Path, metavar="DIR",
                    help="keep the built libraries in DIR and reuse them next time (a short path: "
                         "PostgreSQL's socket goes there)")
    ap.add_argument("--no-claims", action="store_true", help="time the searches only")
    args = ap.parse_args()
    if args.keep is not None:
        args.keep = args.keep.resolve()
        args.keep.mkdir(parents=True, exist_ok=True)

    cluster = None if args.pg_url else durable_cluster(args.keep)
    tmp = tempfile.TemporaryDirectory(prefix="dgx-bench-")
    libdir = args.keep if args.keep is not None else Path(tmp.name)
    try:
        def pg_url(schema: str) -> str:
            if args.pg_url:
                return args.pg_url
            cluster.psql(f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}", "dgx_tests")
            return cluster.url(schema=schema)

        def built(backend: str) -> Path | None:
            """The marker of a kept library of this size (None: nothing is kept)."""
            return None if args.keep is None else args.keep / f"{backend}-{args.tracks}.built"

        results: dict[str, dict[str, tuple[float, float, int]]] = {}
        claims: dict[str, tuple[float, float]] = {}
        for backend in ("sqlite", "postgresql"):
            marker = built(backend)
            reuse = marker is not None and marker.exists() and (backend == "sqlite" or not args.pg_url)
            if backend == "sqlite":
                if not reuse:
                    for f in libdir.glob("lib.db*"):
                        f.unlink()
                store = await Store.open(libdir / "lib.db")
            else:
                store = await PgStore.open(cluster.url(schema="lib") if reuse else pg_url("lib"))
            print(f"[{backend}]" + (f" reusing the library kept in {args.keep}" if reuse else ""), flush=True)
            if not reuse:
                await build(store, args.tracks)
            if backend == "postgresql":
                # What autovacuum does after a bulk load (PostgreSQL 13+ vacuums after inserts too): the
                # visibility map lets count(*) (each page's `total`) use an index-only scan.
                await store._conn.execute("VACUUM ANALYZE")
            else:
                await store.close()  # PRAGMA optimize on close, as the daemon's stores get
                store = await Store.open(libdir / "lib.db")
            if marker is not None:
                marker.touch()
            results[backend] = await search_times(store, args.runs)
            await store.close()
            if args.no_claims:
                continue
            q = await (Store.open(Path(tmp.name) / "queue.db") if backend == "sqlite" else PgStore.open(pg_url("q")))
            claims[backend] = await claim_rate(q, args.jobs)
            await q.close()
        width = max(len(n) for n, _ in SEARCHES)
        print(f"\n{args.tracks:,} tracks, {args.runs} runs per query, ms")
        print(f"{'query':<{width}}  {'SQLite p50':>10} {'p99':>7}   {'PostgreSQL p50':>14} {'p99':>7}  total")
        for name, _ in SEARCHES:
            s, p = results["sqlite"][name], results["postgresql"][name]
            flag = "" if max(s[1], p[1]) <= 20 else "   <-- over 20 ms"
            print(f"{name:<{width}}  {s[0]:10.2f} {s[1]:7.2f}   {p[0]:14.2f} {p[1]:7.2f}  {s[2]}/{p[2]}{flag}")
        print(f"\nqueue, {args.jobs} trivial jobs, one worker: jobs/s")
        for backend, (added, rate) in claims.items():
            print(f"{backend:<10}  queued {added:7.0f}/s   claimed+finished {rate:7.0f}/s")
    finally:
        tmp.cleanup()
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    asyncio.run(main())
