"""Serving a track's audio file with HTTP Range, from the data directory only."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from aiohttp import web

from dgx_music.common import protocol
from dgx_music.daemon.handlers import HandlerError
from dgx_music.daemon.http.errors import json_error

log = logging.getLogger("dgx_music.http")


def range_satisfiable(request: web.Request, size: int) -> bool:
    """Whether the Range header (if any) names one range aiohttp can serve from a `size`-byte file."""
    if "Range" not in request.headers or not request.headers["Range"].strip().lower().startswith("bytes="):
        return True  # none, or in a unit we do not know: ignored, the whole file is served
    try:
        rng = request.http_range
    except ValueError:
        return False
    start, stop = rng.start, rng.stop
    if start is None and stop is None:
        return True
    if start is not None and start < 0:  # a suffix, bytes=-N
        return size > 0 and -start > 0
    return start is not None and start < size and (stop is None or stop > start)


async def serve_track_file(request: web.Request, track: dict[str, Any], data_dir: Path) -> web.StreamResponse:
    """The file of `track` (resolved inside `data_dir`), whole or the one byte range asked for."""
    from dgx_music.daemon import libfiles

    try:
        path = libfiles.library_file(data_dir, track["path"])
    except ValueError:
        log.warning("track %s has a path outside the data dir: %r", track.get("id"), track.get("path"))
        raise HandlerError(protocol.NOT_FOUND, "the track's file is not in the library") from None
    if not path.is_file():
        raise HandlerError(protocol.NOT_FOUND, f"the audio file of track {track['id']} is missing")
    size = path.stat().st_size
    if not range_satisfiable(request, size):
        resp416 = json_error(416, "range_not_satisfiable", f"Range {request.headers.get('Range')!r} is not "
                             f"one satisfiable byte range of this {size}-byte file")
        resp416.headers["Content-Range"] = f"bytes */{size}"
        return resp416
    resp = web.FileResponse(path, headers={
        "Accept-Ranges": "bytes",
        "Content-Disposition": f'inline; filename="{track["id"]}{path.suffix}"',
        "Cache-Control": "private, max-age=3600",
    })
    if path.suffix.lower() == ".wav":
        resp.content_type = "audio/wav"
    rng = request.headers.get("Range")
    if rng is not None and not rng.strip().lower().startswith("bytes="):
        # RFC 9110 14.2: a Range in a unit the server does not know is ignored (the whole file).
        headers = request.headers.copy()
        del headers["Range"]
        await resp.prepare(request.clone(headers=headers))
    return resp
