"""`dgx-music daemon`: run the daemon in the foreground (systemd runs it so); and the CLI's one bridge
into the daemon package, for the commands that run on the daemon's machine.

The CLI is a client: it reaches the daemon over the socket, never through its modules (over a
forwarded socket they would describe the laptop). The box-side commands (backup, restore, store
migrate, make-test-model, doctor, bench) read the data directory or load the engine on this
machine, so their code lives in dgx_music.daemon.admin; the CLI keeps their flags and help, and
`box_command` imports the code only when the command runs: `--help` and every client command
load nothing from the daemon, and a client install (no `daemon` extra) gets cli/extras.py's line.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from typing import Callable

from dgx_music.cli.common import EXIT_USAGE
from dgx_music.cli.extras import requires_extra
from dgx_music.common.config import ConfigError, load_settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "daemon", help="run the daemon in the foreground",
        description="Run the daemon in the foreground: it owns the GPU and the model, the job queue and "
                    "the library, and serves the socket protocol. Logs go to stderr (journald under systemd). "
                    "Stop it with Ctrl-C or SIGTERM; queued jobs survive a restart.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  dgx-music daemon --model medium --preload\n"
               "  dgx-music daemon --data-dir /srv/dgx-music --http 127.0.0.1:8800\n"
               "  dgx-music daemon --storage /mnt/music   # audio on a directory every host mounts\n")
    p.add_argument("--socket", metavar="PATH", help="socket to listen on")
    p.add_argument("--data-dir", metavar="DIR", help="library, database and trash (default ~/.local/share/dgx-music)")
    p.add_argument("--storage", metavar="DIR", help="the library's audio, stored melodies and operation sources "
                   "(store.storage; default: the data dir): a directory every host mounts when several share it")
    p.add_argument("--store", metavar="URL", help="where the queue and library live: empty (default) SQLite in "
                   "the data directory; postgresql://user@host/db PostgreSQL (e.g. "
                   "--store 'postgresql://dgx@db.lan/dgx'; env DGX_MUSIC_STORE)")
    p.add_argument("--config", metavar="FILE", help="TOML config file")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="log verbosity")
    p.add_argument("--model", metavar="M", help="default model: small, medium, large, melody, random:small, a hub id or a directory")
    p.add_argument("--separator", metavar="NAME|DIR", help="source-separation model for `stems`: htdemucs (default), "
                   "htdemucs_ft, htdemucs_6s (six stems) or a demucs model directory (make-test-model --family separation)")
    p.add_argument("--backend", choices=("transformers", "audiocraft"), help="model backend")
    p.add_argument("--device", metavar="DEV", help="auto, cuda, cuda:N, mps or cpu")
    p.add_argument("--keep-alive", type=float, metavar="S", help="idle seconds before the model unloads (0: at once, -1: never)")
    p.add_argument("--offline", action="store_true", default=None, help="never download; fail if the model is not cached")
    p.add_argument("--preload", action="store_true", default=None, help="load the model at start")
    p.add_argument("--http", metavar="HOST:PORT", help="serve the HTTP API and the listening page here "
                   "(default 127.0.0.1:8765; off: no HTTP)")
    p.set_defaults(func=run)
    requires_extra(p)


def run(args: argparse.Namespace) -> int:
    from dgx_music.daemon import app

    try:
        settings = load_settings(args.config, {
            "daemon.socket": args.socket, "daemon.data_dir": args.data_dir,
            "store.storage": args.storage, "daemon.log_level": args.log_level, "engine.model": args.model,
            "engine.separator": args.separator,
            "engine.backend": args.backend, "engine.device": args.device,
            "engine.keep_alive": args.keep_alive, "engine.offline": args.offline,
            "engine.preload": args.preload, "http.listen": args.http, "store.url": args.store,
        })
    except ConfigError as exc:
        print(f"dgx-music daemon: {exc}", file=sys.stderr)
        return EXIT_USAGE
    app.setup_logging(settings["daemon.log_level"])
    return asyncio.run(app.run(settings))


def box_command(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    """The run function `name` of dgx_music.daemon.admin.`module`, imported when the command runs."""
    def run(args: argparse.Namespace) -> int:
        return int(getattr(importlib.import_module(f"dgx_music.daemon.admin.{module}"), name)(args))

    run.__name__ = run.__qualname__ = name
    return run
