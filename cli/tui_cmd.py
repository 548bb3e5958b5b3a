"""`dgx-music tui` (also `dgx-music` alone): the terminal UI."""

from __future__ import annotations

import argparse

from dgx_music.cli.common import EXIT_USAGE, fail, settings_from
from dgx_music.common.config import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tui", help="open the terminal UI (what `dgx-music` alone does)",
                       description="Compose prompts, watch the queue live, browse and search the library and "
                                   "play previews. If no daemon answers it says how to start one and keeps "
                                   "retrying. Keys: F1 for help, ctrl+p for every action by name.")
    g = p.add_argument_group("connection")
    g.add_argument("--socket", metavar="PATH", help="daemon socket, e.g. one forwarded with ssh -L "
                   "(default: config, $DGX_MUSIC_SOCKET, or $XDG_RUNTIME_DIR/dgx-music/daemon.sock)")
    g.add_argument("--config", metavar="FILE", help="config file (default: ~/.config/dgx-music/config.toml)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_from(args)
    except ConfigError as exc:
        return fail(args, "config", str(exc), EXIT_USAGE)
    from dgx_music.tui.app import DgxMusicApp

    app = DgxMusicApp(settings.socket)
    app.run()
    return int(app.return_code or 0)
