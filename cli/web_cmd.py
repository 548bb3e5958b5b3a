"""`dgx-music web`: the browser page's URL (with its token) and the `ssh -L` line that reaches it."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from dgx_music.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, add_client_flags, emit, fail, settings_from
from dgx_music.common.client import Client, DaemonUnavailable, UnsafeSocket
from dgx_music.common.config import ConfigError
from dgx_music.common.fmt import plural
from dgx_music.common.protocol import RemoteError
from dgx_music.common.speaker import page_url, port_of, read_token, ssh_line


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "web", help="the browser page (a speaker for the TUI, the listening room): its URL and the ssh line",
        description="Print the URL of the daemon's web page, with the token it needs, and the `ssh -L` line "
                    "that forwards its port from your laptop. Open the URL in a browser: while that tab is "
                    "open it is a speaker the TUI and the CLI play to when this machine cannot play (over SSH, "
                    "or without a sound device). The port comes from the daemon when it runs, else from "
                    "http.listen.",
        epilog="examples:\n  dgx-music web\n  dgx-music web --json\n  dgx-music web --host dgx.example.org",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", help="this machine's name as your laptop's ssh knows it (default: its hostname)")
    add_client_flags(p)
    p.set_defaults(func=web_cmd)


async def _daemon_status(settings: Any, timeout: float) -> dict[str, Any]:
    """speaker.status from a running daemon (the HTTP port, its token file, the open tabs), or {}."""
    try:
        async with await Client.connect(settings.socket, timeout=min(timeout, 5.0)) as client:
            return dict(await client.call("speaker.status", timeout=timeout))
    except (DaemonUnavailable, UnsafeSocket, RemoteError, OSError, asyncio.TimeoutError):
        return {}


def web_cmd(args: argparse.Namespace) -> int:
    try:
        settings = settings_from(args)
    except ConfigError as exc:
        return fail(args, "config", str(exc), EXIT_USAGE)
    info = asyncio.run(_daemon_status(settings, args.timeout))
    port, tabs = info.get("port"), info.get("tabs")
    if port is None:
        port = port_of(settings)
    if port is None:
        return fail(args, "http_off", "the daemon's HTTP server is off: set http.listen (e.g. 127.0.0.1:8765) "
                                      "in the config and restart the daemon", EXIT_FAILED)
    token = read_token(settings, info.get("token_file"))
    doc = {"url": page_url(port, token), "port": port, "ssh": ssh_line(port, args.host), "tabs": tabs}
    emit(args, doc, lambda d: f"open {d['url']}\nfrom your laptop, first: {d['ssh']}"
         + ("" if d["tabs"] is None else f"\n({plural(d['tabs'], 'tab')} open as speakers now)"))
    return EXIT_OK
