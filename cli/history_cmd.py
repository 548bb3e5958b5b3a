"""prune: delete old finished jobs from the job history (never tracks)."""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

from dgx_music.cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    add_client_flags,
    emit,
    fail,
    run_client,
)
from dgx_music.common.client import Client

DESCRIPTION = """\
Delete finished jobs (done, failed, cancelled) that ended more than DAYS days ago
from the job history (`dgx-music queue --all`). Your library is never touched: a
job is kept for as long as one of its tracks exists, so what goes is the history
of failed and cancelled jobs and of done jobs whose tracks you deleted. Queued
and running jobs are never pruned.

The daemon also does this by itself, at start and once a day, with
daemon.keep_finished_days (default 30; 0 turns it off). Without --older-than
this command uses that setting (or 30 when it is off)."""

EPILOG = """\
examples:
  dgx-music prune --dry-run                  how many jobs would go, nothing deleted
  dgx-music prune --older-than 7             forget finished jobs older than a week
  dgx-music prune --older-than 0             every finished job that owns no track
  dgx-music prune --json                     {"removed": 3, "kept_with_tracks": 12, ...}"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prune", help="delete old finished jobs from the history (tracks are kept)",
                       description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--older-than", type=float, metavar="DAYS", dest="older_than",
                   help="age in days (0 or more; fractions allowed) a finished job must have to be pruned "
                        "(default: daemon.keep_finished_days)")
    p.add_argument("--dry-run", action="store_true", help="count what would be pruned; delete nothing")
    add_client_flags(p)
    p.set_defaults(func=prune_cmd)


def prune_cmd(args: argparse.Namespace) -> int:
    if args.older_than is not None and not (math.isfinite(args.older_than) and args.older_than >= 0):
        return fail(args, "invalid_params", f"--older-than: must be a number of days >= 0, got {args.older_than:g}",
                    EXIT_USAGE)
    return run_client(args, prune)


def _summary(res: dict[str, Any]) -> str:
    days = res.get("older_than_days")
    age = f"finished more than {days:g} day{'' if days == 1 else 's'} ago" if days is not None else "old enough"
    if res.get("cutoff") is not None:
        age += f" (before {time.strftime('%Y-%m-%d %H:%M', time.localtime(res['cutoff']))})"
    n = res["removed"]
    jobs = f"{n} job{'' if n == 1 else 's'}"
    head = f"would prune {jobs} {age}" if res["dry_run"] else f"pruned {jobs} {age}"
    kept = res["kept_with_tracks"]
    if kept:
        head += (f"; kept {kept} that still own tracks in the library "
                 "(a job goes once all its tracks are deleted)")
    if res.get("melodies_removed"):
        m = res["melodies_removed"]
        head += f"; removed {m} stored melod{'y' if m == 1 else 'ies'} no job uses any more"
    if res.get("sources_removed"):
        m = res["sources_removed"]
        head += f"; removed {m} stored operation source{'' if m == 1 else 's'} no job uses any more"
    if res["dry_run"] and n:
        head += "\nrun again without --dry-run to delete them"
    return head


async def prune(client: Client, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"dry_run": args.dry_run}
    if args.older_than is not None:
        params["older_than_days"] = args.older_than
    emit(args, await client.call("job.prune", params, timeout=args.timeout), _summary)
    return EXIT_OK
