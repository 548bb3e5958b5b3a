"""How long `store migrate` takes: a SQLite library of N tracks copied into PostgreSQL (rows only).

    .venv/bin/python bench/bench_migrate.py [--tracks 20000]

Builds the library with bench/bench_library.py's generator (peaks, tags, notes), then runs
daemon.migrate.migrate into a throwaway PostgreSQL cluster with durable defaults
(bench_pg_store.durable_cluster): snapshot, copy in one transaction, verification.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_library import build  # noqa: E402
from bench_pg_store import durable_cluster  # noqa: E402

from dgx_music.daemon import migrate as mg  # noqa: E402
from dgx_music.daemon.store import DB_NAME, Store  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tracks", type=int, default=20_000)
    args = ap.parse_args()
    cluster = durable_cluster()
    try:
        with tempfile.TemporaryDirectory(prefix="dgx-bench-") as tmp:
            data, shared = Path(tmp) / "data", Path(tmp) / "shared"
            data.mkdir()
            shared.mkdir()

            async def make() -> None:
                store = await Store.open(data / DB_NAME)
                await build(store, args.tracks)
                await store.close()

            asyncio.run(make())
            cluster.psql("CREATE SCHEMA m", "dgx_tests")
            t = time.perf_counter()
            report = mg.migrate(data, cluster.url(schema="m"), shared)
            took = time.perf_counter() - t
            print(f"migrated {report.rows['tracks']:,} tracks ({sum(report.rows.values()):,} rows, "
                  f"{report.sampled_rows} compared field by field) in {took:.1f} s: "
                  f"{report.rows['tracks'] / took:,.0f} tracks/s")
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
