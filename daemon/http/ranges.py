"""Serving a track's audio file with HTTP Range, from the data directory only."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from aiohttp import web

from dgx_music.common import protocol
from dgx_music.daemon.handlers import HandlerError
from dgx_music.daemon.http.errors import json_error

log = logging.getLogger("dgx_music.http")


#: The one byte range served: START-END, START- or -SUFFIX (RFC 9110 14.1.2), nothing else.
_ONE_RANGE = re.compile(r"bytes=(?:(\d{1,18})-(\d{0,18})|-(\d{1,18}))", re.ASCII)


def range_satisfiable(request: web.Request, size: int) -> bool:
    """Whether the Range header (if any) is one byte range this `size`-byte file can satisfy.

    Parsed here, strictly, before aiohttp sees it: aiohttp's own parser accepts some malformed
    values (and a zero-length suffix) and fails on others after the headers went out.
    """
    header = request.headers.get("Range")
    if header is None or not header.strip().lower().startswith("bytes="):
        return True  # none, or in a unit we do not know: ignored, the whole file is served
    m = _ONE_RANGE.fullmatch(header.strip().replace(" ", "").lower())
    if m is None:
        return False
    first, last, suffix = m.groups()
    if suffix is not None:
        return size > 0 and int(suffix) > 0
    return int(first) < size and (not last or int(last) >= int(first))


class _FileResponse(web.FileResponse):
    """A FileResponse that may be prepared early (on a request without its Range): aiohttp prepares
    what a handler returns again, and FileResponse.prepare would then try to set a status on a
    response already sent ("Cannot change the response status code after the headers have been sent")."""

    async def prepare(self, request: web.BaseRequest) -> Any:
        if self.prepared:
            return await web.StreamResponse.prepare(self, request)  # the writer, nothing sent twice
        return await super().prepare(request)


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
    resp = _FileResponse(path, headers={
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
