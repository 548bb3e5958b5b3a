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
from dgx_music.daemon.http.routes import RANGE_PATTERN

log = logging.getLogger("dgx_music.http")


def range_satisfiable(request: web.Request, size: int) -> bool:
    """Whether the Range header (if any) is one byte range this `size`-byte file can satisfy, or a
    range in another unit (ignored: the whole file is served, RFC 9110 14.2). Anything else
    (malformed, several ranges, past the end) is unsatisfiable: 416.

    Parsed here, strictly (routes.RANGE_PATTERN, which the OpenAPI document states), before
    aiohttp sees it: aiohttp's own parser accepts some malformed values and a zero-length suffix.
    """
    header = request.headers.get("Range")
    if header is None:
        return True
    value = header.strip()
    if not re.fullmatch(RANGE_PATTERN, value):
        return False
    if not value.lower().startswith("bytes="):
        return True  # another unit: ignored
    first, _, last = value[len("bytes="):].partition("-")
    if not first:
        return size > 0 and int(last) > 0  # a suffix, bytes=-N
    return int(first) < size and (not last or int(last) >= int(first))


class _FileResponse(web.FileResponse):
    """A FileResponse that may be prepared early (on a request without its Range): aiohttp prepares
    what a handler returns again, and FileResponse.prepare would then try to set a status on a
    response already sent ("Cannot change the response status code after the headers have been sent")."""

    async def prepare(self, request: web.BaseRequest) -> Any:
        if self.prepared:
            return await web.StreamResponse.prepare(self, request)  # the writer, nothing sent twice
        return await super().prepare(request)


async def serve_track_file(request: web.Request, track: dict[str, Any], root: Path) -> web.StreamResponse:
    """The file of `track` (resolved inside the storage root `root`), whole or the one byte range asked for."""
    from dgx_music.daemon import libfiles

    try:
        path = libfiles.library_file(root, track["path"])
    except ValueError:
        log.warning("track %s has a path outside the storage root: %r", track.get("id"), track.get("path"))
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
