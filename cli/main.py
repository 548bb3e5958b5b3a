"""`dgx-music`: the TUI with no subcommand, a client subcommand for every action."""

from __future__ import annotations

import argparse
import importlib
import sys

from dgx_music import __version__
from dgx_music.cli.common import EXIT_USAGE

#: Modules contributing subcommands, each with `register(subparsers)`, in help order.
COMMAND_MODULES = (
    "daemon_cmd",
    "status_cmd",
    "jobs_cmd",
    "listen_cmd",
    "history_cmd",
    "library_cmd",
    "audio_cmd",
    "engine_commands",
    "tui_cmd",
    "ops_cmd",
)

DESCRIPTION = """\
DGX Music: a self-hosted AI music studio. The daemon owns the GPU and the
MusicGen model; this command talks to it over a Unix socket.

Run with no subcommand to open the TUI. Typical session:
  dgx-music daemon &                       start the daemon (systemd does this for you)
  dgx-music generate "lofi piano, rain" --wait
  dgx-music library --search piano
Every subcommand takes --json for scripts; see docs/protocol.md to speak the
socket protocol directly.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # usage errors exit 2, with a hint
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n(see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dgx-music", description=DESCRIPTION,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"dgx-music {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(f"dgx_music.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"dgx_music.cli.{name}":
                raise
            continue
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    # `dgx-music` alone, or with only options such as --socket, opens the TUI.
    if "tui" in commands and (not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv = ["tui", *argv]
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 0
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
