"""`dgx-music backup` and `restore`, run beside the data directory (their flags are in cli/ops_cmd.py):
they read and write the database files or PostgreSQL directly, daemon stopped or not. The CLI
reaches them through its one bridge, cli/daemon_cmd.py."""

from __future__ import annotations

import argparse
from pathlib import Path

from dgx_music.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, fail, human_bytes, print_json
from dgx_music.cli.ops_cmd import local_settings
from dgx_music.common.config import ConfigError
from dgx_music.common.fmt import plural
from dgx_music.daemon import backup as bk


def backup(args: argparse.Namespace) -> int:
    try:
        s = local_settings(args)
        if s["store.url"]:  # PostgreSQL: the same backup format (daemon/pgbackup.py)
            from dgx_music.daemon import pgbackup
            report = pgbackup.backup_pg(str(s["store.url"]), Path(args.dest), with_audio=args.with_audio,
                                        progress=None if args.json else print, storage=s.storage)
        else:
            report = bk.backup(s.data_dir, Path(args.dest), with_audio=args.with_audio,
                               progress=None if args.json else print, storage=s.storage)
    except ConfigError as exc:
        return fail(args, "config", str(exc), EXIT_USAGE)
    except (bk.BackupError, OSError) as exc:
        return fail(args, "backup_failed", str(exc), EXIT_FAILED)
    if args.json:
        print_json(report.as_dict())
    else:
        print(f"backup in {report.dest}: {human_bytes(report.bytes)} in {report.seconds:.1f}s"
              + (f" ({plural(len(report.missing), 'file')} deleted during the backup skipped)" if report.missing else ""))
    return EXIT_OK


def restore(args: argparse.Namespace) -> int:
    try:
        s = local_settings(args)
        if s["store.url"]:  # into an empty PostgreSQL database (daemon/pgbackup.py)
            from dgx_music.daemon import pgbackup
            report = pgbackup.restore_pg(Path(args.src), str(s["store.url"]), storage=s.storage,
                                         progress=None if args.json else print)
        else:
            report = bk.restore(Path(args.src), s.data_dir, socket_path=s.socket,
                                progress=None if args.json else print, storage=s.storage)
    except ConfigError as exc:
        return fail(args, "config", str(exc), EXIT_USAGE)
    except (bk.BackupError, OSError) as exc:
        return fail(args, "restore_failed", str(exc), EXIT_FAILED)
    if args.json:
        print_json(report.as_dict())
    else:
        print(f"restored into {report.dest} in {report.seconds:.1f}s; start the daemon again "
              "(systemctl --user start dgx-music.socket dgx-music.service)")
    return EXIT_OK
