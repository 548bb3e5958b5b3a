"""`dgx-music store migrate`, run beside the SQLite library (its flags are in cli/store_cmd.py): it reads
the library (a snapshot) and writes PostgreSQL and the shared storage. The CLI reaches it through
its one bridge, cli/daemon_cmd.py."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dgx_music.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, fail, human_bytes, print_json
from dgx_music.common.config import ConfigError, load_settings
from dgx_music.common.fmt import plural
from dgx_music.daemon import migrate as mg
from dgx_music.daemon.store import store_kind
from dgx_music.daemon.store.pg import redact


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def migrate(args: argparse.Namespace) -> int:
    try:
        s = load_settings(args.config, {"daemon.data_dir": args.data_dir})
        if s["store.url"]:
            return fail(args, "invalid", "store.url is set already: migrate reads the SQLite library in the data "
                                         "directory; run it with the configuration that daemon used", EXIT_USAGE)
        if store_kind(args.to) != "postgresql":
            raise ValueError
    except ConfigError as exc:
        return fail(args, "config", str(exc), EXIT_USAGE)
    except Exception:
        return fail(args, "invalid", "--to must be a postgresql://user@host/db URL", EXIT_USAGE, field="to")
    try:
        report = mg.migrate(s.data_dir, args.to, Path(args.storage), src_storage=s.storage, progress=_err)
    except (mg.MigrateError, OSError) as exc:
        return fail(args, "migrate_failed", str(exc), EXIT_FAILED)
    if args.json:
        print_json(report.as_dict())
    else:
        print(f"moved {plural(report.rows.get('tracks', 0), 'track')} and {plural(report.rows.get('jobs', 0), 'job')} "
              f"into {redact(args.to)}, {plural(report.files, 'file')} ({human_bytes(report.bytes)}) into {report.storage} "
              f"in {report.seconds:.1f}s; the SQLite library is unchanged")
    return EXIT_OK
