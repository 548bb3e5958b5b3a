"""`dgx-music store migrate`: move a SQLite library into PostgreSQL and shared storage."""

from __future__ import annotations

import argparse

from dgx_music.cli.common import EXIT_USAGE
from dgx_music.cli.daemon_cmd import box_command
from dgx_music.cli.extras import requires_extra

MIGRATE_EPILOG = """\
examples:
  systemctl --user stop dgx-music.socket dgx-music.service   # or leave it: a snapshot is read
  dgx-music store migrate --to postgresql://dgx@db.lan/dgx --storage /mnt/studio
  dgx-music store migrate --to 'postgresql://dgx@/dgx?host=/run/postgresql' --storage /mnt/studio --json
then set store.url and store.storage to the same values on every host and start the daemons.
A rerun after a failure is safe: the database copy is one transaction, and files already
copied (same sha256) are kept."""


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
    mig.set_defaults(func=box_command("store_cmd", "migrate"))
    requires_extra(mig, modules=("aiosqlite", "asyncpg"))
    st.set_defaults(func=lambda a: (st.print_help(), EXIT_USAGE)[1])
