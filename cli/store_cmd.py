"""`dgx-music store migrate`: move a SQLite library into PostgreSQL and shared storage."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dgx_music.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, fail, human_bytes, print_json
from dgx_music.cli.extras import requires_extra
from dgx_music.common.config import ConfigError, load_settings
from dgx_music.common.fmt import plural

MIGRATE_EPILOG = """\
examples:
  systemctl --user stop dgx-music.socket dgx-music.service   # or leave it: a snapshot is read
  dgx-music store migrate --to postgresql://dgx@db.lan/dgx --storage /mnt/studio
  dgx-music store migrate --to 'postgresql://dgx@/dgx?host=/run/postgresql' --storage /mnt/studio --json
then set store.url and store.storage to the same values on every host and start the daemons.
A rerun after a failure is safe: the database copy is one transaction, and files already
copied (same sha256) are kept."""


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _migrate(args: argparse.Namespace) -> int:
    from dgx_music.daemon import migrate as mg
    from dgx_music.daemon.store import store_kind
    from dgx_music.daemon.store.pg import redact

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


def register(sub: argparse._SubParsersAction) -> None:
    st = sub.add_parser("store", help="move the library between stores",
                        description="Operations on the store itself (the database behind the queue and library).")
    st_sub = st.add_subparsers(dest="store_command", metavar="ACTION")
    mig = st_sub.add_parser(
        "migrate", help="copy a SQLite library and its files into PostgreSQL and a shared storage directory",
        description="Copy every table of the SQLite library in the data directory into the EMPTY PostgreSQL "
                    "database --to, and its files (audio, MIDI, stored melodies and sources) into --storage; "
                    "verify row counts, a sample of rows field by field and the sha256 of every file. The "
                    "source is only read (a snapshot, safe while the daemon runs). Progress goes to stderr.",
        epilog=MIGRATE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    mig.add_argument("--to", required=True, metavar="URL", help="the PostgreSQL database (postgresql://...)")
    mig.add_argument("--storage", required=True, metavar="DIR", help="the shared storage directory (it must exist)")
    mig.add_argument("--config", metavar="FILE", help="config file (default: ~/.config/dgx-music/config.toml)")
    mig.add_argument("--data-dir", metavar="DIR", help="the SQLite library's data directory (default: from the config)")
    mig.add_argument("--json", action="store_true", help="print one JSON document (the summary)")
    mig.set_defaults(func=_migrate)
    requires_extra(mig, modules=("aiosqlite", "asyncpg"))
    st.set_defaults(func=lambda a: (st.print_help(), EXIT_USAGE)[1])
