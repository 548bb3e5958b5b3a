"""Fault campaign: kill the daemon and its worker at bad moments, fill the disk, send hostile bytes.

Every scenario runs a real daemon in a child process with a tiny random-weight MusicGen
(the real loaders, queue and library) and checks the promises users rely on:
no finished track and no queued job is lost, no job makes its tracks twice, the daemon
keeps serving a well-behaved client, and no request is answered `internal`.

    .venv/bin/python bench/chaos.py --quick          # ~1 minute; the test suite runs this
    .venv/bin/python bench/chaos.py --json > r.json  # the full campaign (docs/benchmarks.md)

Scenarios (each reports tried / survived / lost):
  kill9      kill -9 of the daemon at random moments while jobs run; restart; repeat
  worker     kill -9 of the model worker mid-generation
  postproc   the daemon killed by a failpoint while post-processing and between file and row
  diskfull   the data directory on a small tmpfs that fills up (root only; skipped otherwise)
  lockout    hundreds of connections that send half a header or nothing
  httplock   the same over HTTP (300 idle or half-header TCP connections, ulimit -n 256): the Unix
             socket keeps answering, HTTP serves again once the stale connections time out
  frames     hostile frames: garbage, huge lengths, non-maps, deep nesting, huge numbers
  paths      requests naming paths outside the data directory, and symlinks planted in it (folders
             and a track's file leading outside: refused, nothing outside touched)
  ops        kill -9 of the daemon mid stems job (tiny ACE-Step pipeline): each stem exists once,
             the source track and the daemon's stored source copy are unchanged
  tools      kill -9 of the daemon mid separation (tiny HTDemucs), mid loop (generation, then cut
             and stretch) and mid fit (a Rubber Band child): each job ends once, its tracks exactly
             as long as asked (a stem as the file, a loop its bars to the sample)
  hosts      3 daemons on one PostgreSQL and one storage root (each in a network namespace of its
             own where the machine allows it: they share only those), random ones killed with kill -9 and
             restarted: every job ends once, no track lost or twice, a dead host's job restarts
             within its lease + 5 s (bench/chaos_hosts.py; skipped without PostgreSQL)

The harness (a killable daemon, the audit) is bench/chaos_harness.py; the scenarios are
bench/chaos_kills.py (kill9, worker, postproc, diskfull), bench/chaos_floods.py (lockout,
httplock, frames), bench/chaos_paths.py, bench/chaos_ops.py and bench/chaos_tools.py.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

# The harness and the scenarios are modules beside this script (`python bench/chaos.py` puts bench/ on the path).
from chaos_floods import scenario_frames, scenario_httplock, scenario_lockout
from chaos_harness import Outcome
from chaos_hosts import scenario_hosts
from chaos_kills import scenario_diskfull, scenario_kill9, scenario_postproc, scenario_worker
from chaos_ops import scenario_ops
from chaos_paths import scenario_paths
from chaos_tools import scenario_tools


# --------------------------------------------------------------------------- driver
def build_model(root: Path) -> Path:
    from dgx_music.daemon.engine.testmodel import build_test_model

    return build_test_model(root / "tiny-musicgen", backend="transformers")


def _acestep(work: Path) -> Path:
    """A tiny ACE-Step pipeline (the operations need one), built only when its scenario runs."""
    from dgx_music.daemon.engine.testmodel import build_test_model

    return build_test_model(work / "tiny-acestep", family="ace-step")


def run(args: argparse.Namespace) -> list[Outcome]:
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="dgxm-chaos-", dir="/tmp"))
    outcomes: list[Outcome] = []
    try:
        model = build_model(work)
        plan: list[tuple[str, Callable[[Path], Outcome]]] = [
            ("kill9", lambda r: scenario_kill9(r, model, args.kills, rng)),
            ("worker", lambda r: scenario_worker(r, model, args.worker_kills, rng)),
            ("postproc", lambda r: scenario_postproc(r, model, args.post_kills, rng)),
            ("diskfull", lambda r: scenario_diskfull(r, model, rng)),
            ("lockout", lambda r: scenario_lockout(r, model, args.lockout_rounds, args.lockout_conns,
                                                   args.idle_timeout)),
            ("httplock", lambda r: scenario_httplock(r, model, args.lockout_rounds, args.http_conns,
                                                     args.header_timeout)),
            ("frames", lambda r: scenario_frames(r, model, args.frames, rng)),
            ("paths", lambda r: scenario_paths(r, model, rng)),
            ("ops", lambda r: scenario_ops(r, _acestep(work), args.op_kills, rng)),
            ("tools", lambda r: scenario_tools(r, model, args.tool_kills, rng)),
            ("hosts", lambda r: scenario_hosts(r, model, args.host_kills, rng, args.host_jobs)),
        ]
        for name, fn in plan:
            if args.only and name not in args.only:
                continue
            root = work / name
            root.mkdir()
            t0 = time.monotonic()
            try:
                o = fn(root)
            except Exception as exc:  # a scenario that breaks is a finding, not a crash of the campaign
                o = Outcome(name, tried=1, notes=[f"scenario failed: {type(exc).__name__}: {exc}"])
            o.seconds = round(time.monotonic() - t0, 1)
            outcomes.append(o)
            if not args.json:
                print(_row(o), flush=True)
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return outcomes


def _row(o: Outcome) -> str:
    if o.skipped:
        return f"{o.scenario:9s} skipped: {o.skipped}"
    verdict = "ok" if o.ok else "FAIL"
    notes = "; ".join(o.notes[:6])
    return (f"{o.scenario:9s} tried {o.tried:5d}  survived {o.survived:5d}  lost {o.lost}  internal {o.internal}"
            f"  {o.seconds:6.1f} s  {verdict}  {notes}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a small campaign (~1-2 minutes), as the tests run it")
    p.add_argument("--kills", type=int, default=40, help="kill -9 cycles of the daemon (default 40)")
    p.add_argument("--worker-kills", type=int, default=12)
    p.add_argument("--post-kills", type=int, default=10)
    p.add_argument("--op-kills", type=int, default=6, help="kill -9 cycles mid stems job (default 6)")
    p.add_argument("--tool-kills", type=int, default=8, help="kill -9 cycles mid loop / fit job (default 8)")
    p.add_argument("--host-kills", type=int, default=10,
                   help="kill -9 cycles of one of 3 hosts on one PostgreSQL (default 10)")
    p.add_argument("--host-jobs", type=int, default=2,
                   help="jobs submitted to random hosts before each of those kills (default 2; issue 21's "
                        "campaign: --host-kills 20 --host-jobs 15, 300 jobs)")
    p.add_argument("--frames", type=int, default=11000, help="hostile frames (default 11000)")
    p.add_argument("--lockout-rounds", type=int, default=3)
    p.add_argument("--lockout-conns", type=int, default=256)
    p.add_argument("--idle-timeout", type=float, default=10.0,
                   help="the daemon's daemon.idle_timeout in the lock-out scenario (default: its default, 10 s)")
    p.add_argument("--http-conns", type=int, default=300, help="TCP connections in the HTTP lock-out (default 300)")
    p.add_argument("--header-timeout", type=float, default=15.0,
                   help="the daemon's http.header_timeout in the HTTP lock-out (default: its default, 15 s)")
    p.add_argument("--only", action="append", help="run only this scenario (repeatable)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true", help="print the outcomes as JSON")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, data) for a post-mortem")
    args = p.parse_args(argv)
    if args.quick:
        args.kills, args.worker_kills, args.post_kills, args.frames, args.op_kills = 2, 1, 2, 300, 1
        args.tool_kills, args.host_kills = 2, 2
        args.lockout_rounds, args.lockout_conns, args.idle_timeout = 1, 64, 2.0
        args.header_timeout = 2.0
    outcomes = run(args)
    if args.json:
        print(json.dumps([{**asdict(o), "ok": o.ok} for o in outcomes], indent=2))
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
