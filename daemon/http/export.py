"""A track's audio as a download in the format a producer asks for: WAV or FLAC, optionally
resampled, at 16 or 24 bits, tagged (title, prompt, BPM, key) the way `dgx-music export` writes
files. Made in a temporary directory (off the event loop), sent, then removed."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web

from dgx_music.common import protocol
from dgx_music.daemon.handlers import HandlerError

FORMATS = ("wav", "flac")
CONTENT_TYPES = {"wav": "audio/wav", "flac": "audio/flac"}


def _attachment_name(track: dict[str, Any], fmt: str) -> str:
    """`Title (12-0).flac`, with only characters that need no quoting in Content-Disposition."""
    title = "".join(c if c.isascii() and (c.isalnum() or c in " ._-()") else "_" for c in track.get("title") or "")
    return f"{title.strip()[:80] or 'track'} ({track['id']}).{fmt}"


async def serve_export(request: web.Request, track: dict[str, Any], root: Path,
                       params: dict[str, Any], tmp_dir: Path) -> web.StreamResponse:
    """Write `track` (its file under the storage root `root`) in the asked format to a temp dir in
    `tmp_dir` (the data dir: local, never the shared storage), stream it as an attachment, delete it."""
    from dgx_music.common.audio import export as exporter
    from dgx_music.daemon import libfiles

    fmt = params.get("format", "wav")
    try:
        src = libfiles.library_file(root, track["path"])
    except ValueError:
        raise HandlerError(protocol.NOT_FOUND, "the track's file is not in the library") from None
    loop = asyncio.get_running_loop()
    tmp = Path(await loop.run_in_executor(None, lambda: tempfile.mkdtemp(prefix=".export-", dir=tmp_dir)))
    try:
        if not await loop.run_in_executor(None, src.is_file):
            raise HandlerError(protocol.NOT_FOUND, f"the audio file of track {track['id']} is missing")
        tags = {"title": track.get("title"), "comment": track.get("prompt"), "bpm": track.get("bpm"),
                "key": track.get("key")}
        try:
            out = await loop.run_in_executor(None, lambda: exporter.export_track(
                src, tmp, "export", format=fmt, sample_rate=params.get("sample_rate"),
                bit_depth=params.get("bit_depth", 16), tags=tags))
        except exporter.ExportError as exc:
            raise HandlerError(protocol.INVALID_PARAMS, str(exc)) from None
        resp = web.FileResponse(out, headers={
            "Content-Disposition": f'attachment; filename="{_attachment_name(track, fmt)}"',
            "Cache-Control": "private, no-store"})
        resp.content_type = CONTENT_TYPES[fmt]
        await resp.prepare(request)  # sent now, while the file still exists
        return resp
    finally:
        await loop.run_in_executor(None, lambda: shutil.rmtree(tmp, ignore_errors=True))
