"""The CLI's way to the browser tab: when this machine cannot play (no player or output device, or SSH with
no forwarded sound server), `play` and `generate --listen` send the audio to the tab instead and say so on
stderr. With no tab open: one line with the page's URL (and token) and the ssh -L line, never a traceback."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dgx_music.cli.common import settings_from
from dgx_music.common.client import Client
from dgx_music.common.config import ConfigError
from dgx_music.common.protocol import NO_SPEAKER, RemoteError
from dgx_music.common.speaker import no_speaker_text, read_token


def token_for(args: argparse.Namespace, token_file: Any = None) -> str | None:
    try:
        settings = settings_from(args)
    except ConfigError:
        settings = None
    return read_token(settings, token_file)


def no_tab_message(args: argparse.Namespace, exc: RemoteError) -> str:
    """The daemon's no_speaker, said with the token the page needs (read here, never sent by the daemon)."""
    port = exc.data.get("port")
    return no_speaker_text(port if isinstance(port, int) else None, token_for(args, exc.data.get("token_file")))


async def to_tab(client: Client, args: argparse.Namespace, method: str, params: dict[str, Any],
                 what: str, why: str) -> tuple[str, str] | None:
    """Send `what` to the tab (speaker.play or speaker.stream); None when it plays there, else (code,
    one-line message) saying why not (no tab: the URL to open). Says on stderr where the audio goes."""
    try:
        await client.call(method, params, timeout=args.timeout)
    except RemoteError as exc:
        if exc.code == NO_SPEAKER:
            return exc.code, no_tab_message(args, exc)
        return exc.code, exc.message
    if not getattr(args, "json", False):
        print(f"{why}: playing {what} in the browser tab", file=sys.stderr)
    return None
