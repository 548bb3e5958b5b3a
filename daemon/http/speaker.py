"""The speaker WebSocket: where a browser tab registers as a speaker (daemon/speaker_hub.py), and speaker.js.

A tab connects to /api/v1/speaker/ws, says `hello` (focused, visible), then `focus` whenever it gains focus
or becomes visible, and `state` when its playback starts, pauses, ends or seeks. The daemon sends it JSON
commands and binary stream chunks (formats: daemon/speaker_hub.py). Authentication and the Origin check are
the HTTP API's, as for every route.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web

from dgx_music import __version__
from dgx_music.daemon.speaker_hub import SpeakerHubError, hub_of

if TYPE_CHECKING:
    from dgx_music.daemon.app import Daemon

log = logging.getLogger("dgx_music.speaker")

STATIC_DIR = Path(__file__).resolve().parent / "static"
HEARTBEAT_SECONDS = 15.0
MAX_MESSAGE = 16384  # a tab only sends small JSON reports


async def serve_tab(daemon: "Daemon", request: web.Request) -> web.WebSocketResponse:
    """One tab, for as long as it stays connected."""
    hub = hub_of(daemon)
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_SECONDS, max_msg_size=MAX_MESSAGE)
    await ws.prepare(request)
    try:
        tab = hub.add(ws, agent=request.headers.get("User-Agent", ""))
    except SpeakerHubError as exc:
        await ws.close(code=1013, message=exc.message.encode()[:120])
        return ws
    tab.send({"cmd": "hello", "tab": tab.id, "version": __version__})

    async def write() -> None:
        try:
            await tab.writer()
        except (ConnectionError, RuntimeError) as exc:  # the tab went while a message was on its way
            log.debug("speaker tab %d: %s", tab.id, exc)
        finally:
            await ws.close()

    writer = asyncio.create_task(write(), name=f"speaker-tab-{tab.id}")
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                try:
                    data = json.loads(msg.data)
                except ValueError:
                    continue
                if isinstance(data, dict):
                    hub.report(tab, data)
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                break
    finally:
        hub.remove(tab)
        writer.cancel()
        await ws.close()
    return ws


async def speaker_js(request: web.Request) -> web.FileResponse:
    """The tab's script (also loaded by the listening room's page)."""
    return web.FileResponse(STATIC_DIR / "speaker.js", headers={"Content-Type": "text/javascript; charset=utf-8",
                                                                "Cache-Control": "no-cache"})
