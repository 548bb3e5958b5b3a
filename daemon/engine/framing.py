"""Length-prefixed msgpack frames between the supervisor and its worker.

A frame is a 4-byte big-endian length followed by one msgpack map. Pipes carry
audio (up to ~60 MB: a job makes at most 480 s of audio), so the limit is generous but finite: a
corrupt length must not make either side allocate gigabytes.
"""

from __future__ import annotations

import asyncio
import struct
from typing import IO, Any

import msgpack

MAX_FRAME = 512 * 1024 * 1024
_HEADER = struct.Struct(">I")


class FrameError(Exception):
    """The pipe to or from the worker carried something that is not a valid frame."""


def encode(msg: dict[str, Any]) -> bytes:
    body = msgpack.packb(msg, use_bin_type=True)
    if len(body) > MAX_FRAME:
        raise FrameError(f"frame of {len(body)} bytes exceeds {MAX_FRAME}")
    return _HEADER.pack(len(body)) + body


def decode(body: bytes) -> dict[str, Any]:
    msg = msgpack.unpackb(body, raw=False, max_bin_len=MAX_FRAME, max_str_len=MAX_FRAME)
    if not isinstance(msg, dict):
        raise FrameError(f"expected a map, got {type(msg).__name__}")
    return msg


def _read_exact(stream: IO[bytes], n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = stream.read(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def read_frame(stream: IO[bytes]) -> dict[str, Any] | None:
    """Blocking read of one frame; None at a clean end of stream."""
    head = _read_exact(stream, 4)
    if head is None:
        return None
    (n,) = _HEADER.unpack(head)
    if n > MAX_FRAME:
        raise FrameError(f"frame length {n} exceeds {MAX_FRAME}")
    body = _read_exact(stream, n)
    if body is None:
        raise FrameError("stream ended inside a frame")
    return decode(body)


async def read_frame_async(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """Read one frame; None at end of stream (the worker exited)."""
    try:
        head = await reader.readexactly(4)
    except asyncio.IncompleteReadError:
        return None
    (n,) = _HEADER.unpack(head)
    if n > MAX_FRAME:
        raise FrameError(f"frame length {n} exceeds {MAX_FRAME}")
    try:
        body = await reader.readexactly(n)
    except asyncio.IncompleteReadError:
        return None
    return decode(body)
