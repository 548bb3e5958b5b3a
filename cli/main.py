"""`dgx-music`: the TUI with no subcommand, a client subcommand for every action."""

from __future__ import annotations

import argparse
import importlib
import sys

from dgx_music import __version__
from dgx_music.cli import extras
from dgx_music.cli.common import EXIT_USAGE, print_json

#: Modules contributing subcommands, each with `register(subparsers)`, in help order.
COMMAND_MODULES = (
    "daemon_cmd",
    "status_cmd",
    "jobs_cmd",
    "listen_cmd",
    "web_cmd",
    "history_cmd",
    "library_cmd",
    "track_ops_cmd",
    "midi_cmd",
    "fitloop_cmd",
    "styles_cmd",
    "audio_cmd",
    "engine_commands",
    "tui_cmd",
    "ops_cmd",
    "store_cmd",
    "completion_cmd",
)

DESCRIPTION = """\
DGX Music: a self-hosted AI music studio. The daemon owns the GPU and the
MusicGen model; this command talks to it over a Unix socket.

Run with no subcommand to open the TUI. Typical session:
  dgx-music daemon &                       start the daemon (systemd does this for you)
  dgx-music generate "lofi piano, rain" --wait
  dgx-music library --search piano
Every client subcommand takes --json for scripts (one JSON document on stdout, errors
included); --socket and --json may also come before the subcommand. Exit codes: 0 ok,
1 the request failed, 2 the request is wrong (usage, invalid_params), 3 no usable daemon.
Shell completion: `dgx-music completion bash|zsh|fish`. See docs/protocol.md to speak
the socket protocol directly.
"""

#: Options of the top-level parser that take a value (for finding where the subcommand starts).
GLOBAL_VALUED = ("--socket", "--config")


class _Parser(argparse.ArgumentParser):
    #: Set by main() when --json is on the command line: usage errors become a JSON document too.
    json_errors = False

    def error(self, message: str) -> None:  # usage errors exit 2, with a hint
        if _Parser.json_errors:
            print_json({"error": {"code": "usage", "message": f"{self.prog}: {message}"}})
            self.exit(EXIT_USAGE)
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n(see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dgx-music", description=DESCRIPTION,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"dgx-music {__version__}")
    # Distinct dests: a subcommand's own --socket/--json defaults would overwrite these otherwise.
    parser.add_argument("--socket", dest="global_socket", metavar="PATH",
                        help="daemon socket, for any subcommand (default: config, $DGX_MUSIC_SOCKET, or "
                             "$XDG_RUNTIME_DIR/dgx-music/daemon.sock)")
    parser.add_argument("--config", dest="global_config", metavar="FILE",
                        help="config file, for any subcommand (default: ~/.config/dgx-music/config.toml)")
    parser.add_argument("--json", dest="global_json", action="store_true",
                        help="one JSON document on stdout instead of text, for any subcommand")
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


def _command_index(argv: list[str]) -> int:
    """Where the subcommand is (or would go): after the global options."""
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--json" or a.startswith(tuple(f"{o}=" for o in GLOBAL_VALUED)):
            i += 1
        elif a in GLOBAL_VALUED:
            i += 2
        else:
            break
    return min(i, len(argv))


def _merge_globals(args: argparse.Namespace) -> None:
    """Options given before the subcommand count as if given after it (the subcommand's win)."""
    if getattr(args, "global_json", False):
        args.json = True
    for name in ("socket", "config"):
        value = getattr(args, f"global_{name}", None)
        if value is not None and getattr(args, name, None) is None:
            setattr(args, name, value)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _Parser.json_errors = "--json" in argv[:argv.index("--")] if "--" in argv else "--json" in argv
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    # `dgx-music` alone, or with only options such as --socket, opens the TUI.
    at = _command_index(argv)
    if "tui" in commands and (at == len(argv) or argv[at].startswith("-")
                              and argv[at] not in ("-h", "--help", "--version")):
        argv = [*argv[:at], "tui", *argv[at:]]
    args = parser.parse_args(argv)
    _merge_globals(args)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 0
    blocked = extras.check(args)  # a command that needs the daemon extra, on a client install
    if blocked is not None:
        return blocked
    try:
        return int(func(args) or 0)
    except ModuleNotFoundError as exc:
        code = extras.on_missing_module(args, exc)
        if code is None:
            raise
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
