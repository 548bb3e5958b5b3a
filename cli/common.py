"""Shared plumbing for client subcommands: flags, connecting, output, exit codes.

Exit codes follow the kind of error, whichever side noticed it (EXIT_FOR):
0 success; 1 the request failed (not_found, conflict, engine_error, timeout, ...);
2 the request is wrong (a usage error, or `invalid_params`/`bad_request` from the daemon);
3 no usable daemon (unreachable, unsafe_socket, too_many_clients, shutting_down);
4 the command needs the `daemon` extra, which this install lacks (missing_extra).
With --json every error is one JSON document on stdout: {"error": {"code", "message", ...}}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any, Awaitable, Callable

from dgx_music.common.client import Client, DaemonUnavailable, RequestTimeout, UnsafeSocket
from dgx_music.common.config import ConfigError, Settings, load_settings
from dgx_music.common.fmt import duration as human_duration, nbytes as human_bytes  # noqa: F401
from dgx_music.common.fmt import stale_note
from dgx_music.common.protocol import RemoteError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
#: A command that runs on the daemon's machine, on a client install without the `daemon` extra (cli/extras.py).
EXIT_MISSING_EXTRA = 4

#: Error codes the CLI itself reports, beside the daemon's (docs/protocol.md, "Error codes").
CLI_CODES = ("usage", "config", "unreachable", "unsafe_socket", "timeout", "missing_extra")
#: The exit code of an error code: by kind, not by which side noticed it. Others: EXIT_FAILED.
EXIT_FOR = {
    "usage": EXIT_USAGE, "config": EXIT_USAGE, "invalid_params": EXIT_USAGE, "bad_request": EXIT_USAGE,
    "unreachable": EXIT_UNREACHABLE, "unsafe_socket": EXIT_UNREACHABLE, "too_many_clients": EXIT_UNREACHABLE,
    "shutting_down": EXIT_UNREACHABLE, "missing_extra": EXIT_MISSING_EXTRA,
}


def exit_code_for(code: str) -> int:
    return EXIT_FOR.get(code, EXIT_FAILED)


class UsageError(Exception):
    """The command line asks for something impossible; exit code 2."""


def add_client_flags(p: argparse.ArgumentParser, *, json_flag: bool = True) -> None:
    g = p.add_argument_group("connection")
    g.add_argument("--socket", metavar="PATH", help="daemon socket (default: config, $DGX_MUSIC_SOCKET, "
                   "or $XDG_RUNTIME_DIR/dgx-music/daemon.sock)")
    g.add_argument("--config", metavar="FILE", help="config file (default: ~/.config/dgx-music/config.toml)")
    g.add_argument("--timeout", type=float, default=30.0, metavar="S", help="seconds to wait for an answer")
    if json_flag:
        p.add_argument("--json", action="store_true", help="print one JSON document instead of text")


def settings_from(args: argparse.Namespace, **overrides: Any) -> Settings:
    flags = {"daemon.socket": getattr(args, "socket", None), **overrides}
    return load_settings(getattr(args, "config", None), flags)


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")


def warn_stale(data: Any) -> None:
    """One line on stderr when the daemon answered from its cache (its database is away): stdout,
    --json included, stays exactly the reply, whose `stale` field says the same."""
    note = stale_note(data)
    if note:
        print(f"warning: {note} (its database cannot be reached; changes are refused until it is back)",
              file=sys.stderr)


def emit(args: argparse.Namespace, data: Any, human: Callable[[Any], str | None]) -> None:
    warn_stale(data)
    if getattr(args, "json", False):
        print_json(data)
    else:
        text = human(data)
        if text:
            print(text)


def fail(args: argparse.Namespace, code: str, message: str, exit_code: int | None = None, **extra: Any) -> int:
    """Report an error (one JSON document on stdout with --json) and return its exit code:
    `exit_code_for(code)` unless given."""
    if getattr(args, "json", False):
        print_json({"error": {"code": code, "message": message, **extra}})
    else:
        print(f"dgx-music: {message}", file=sys.stderr)
    return exit_code_for(code) if exit_code is None else exit_code


def job_document(job: dict[str, Any], tracks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The one --json document of every command that queues a job (generate, remix, extend, and
    other operations): the job map exactly as `job.get` returns it; after --wait, also `tracks`,
    each exactly as `track.get` returns it less `peaks`. Fields are never rewritten."""
    doc = dict(job)
    if tracks is not None:
        doc["tracks"] = [{k: v for k, v in t.items() if k != "peaks"} for t in tracks]
    return doc


ClientFn = Callable[[Client, argparse.Namespace], Awaitable[int]]


def run_client(args: argparse.Namespace, fn: ClientFn) -> int:
    """Connect, run `fn`, and turn every failure into a message and an exit code."""
    try:
        settings = settings_from(args)
    except ConfigError as exc:
        return fail(args, "config", str(exc), EXIT_USAGE)

    async def go() -> int:
        client = await Client.connect(settings.socket, timeout=min(args.timeout, 10.0))
        async with client:
            return await fn(client, args)

    try:
        return asyncio.run(go())
    except UnsafeSocket as exc:  # nothing was sent: someone else may own the socket
        return fail(args, "unsafe_socket", str(exc), EXIT_UNREACHABLE)
    except DaemonUnavailable as exc:
        return fail(args, "unreachable", str(exc), EXIT_UNREACHABLE)
    except RemoteError as exc:
        return fail(args, exc.code, exc.message, **exc.data)
    except RequestTimeout as exc:
        return fail(args, "timeout", str(exc))
    except UsageError as exc:
        return fail(args, "usage", str(exc), EXIT_USAGE)
    except KeyboardInterrupt:
        return 130
