"""The wire protocol: length-prefixed msgpack frames over a Unix stream socket.

Every frame is a 4-byte big-endian unsigned length followed by exactly that many
bytes holding one msgpack map. The length is checked against a cap before the
body is read, so a hostile or broken peer cannot make either side allocate.
See docs/protocol.md for the full contract; tests keep the two in step.
"""

from __future__ import annotations

import asyncio
import struct
from typing import IO, Any

import msgpack

PROTOCOL_VERSION = 1
HEADER = struct.Struct(">I")
DEFAULT_MAX_FRAME = 8 * 1024 * 1024
#: A client that sends half a frame and goes quiet must not hold a handler forever.
DEFAULT_READ_TIMEOUT = 30.0

# Error codes. Stable strings: scripts branch on them.
BAD_FRAME = "bad_frame"
FRAME_TOO_LARGE = "frame_too_large"
BAD_REQUEST = "bad_request"
UNKNOWN_METHOD = "unknown_method"
INVALID_PARAMS = "invalid_params"
NOT_FOUND = "not_found"
CONFLICT = "conflict"
NOT_CANCELLABLE = "not_cancellable"
QUEUE_FULL = "queue_full"
DISK_FULL = "disk_full"
STORE_UNAVAILABLE = "store_unavailable"  # store.url's database server cannot be reached now
ENGINE_ERROR = "engine_error"
FORBIDDEN = "forbidden"
INTERNAL = "internal"
SHUTTING_DOWN = "shutting_down"
TOO_MANY_CLIENTS = "too_many_clients"
IDLE_TIMEOUT = "idle_timeout"
NO_SPEAKER = "no_speaker"  # speaker.*: no browser tab is open as a speaker


class ProtocolError(Exception):
    """The byte stream cannot be trusted any more; the connection must close."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class RemoteError(Exception):
    """An error answer from the daemon, raised on the client side."""

    def __init__(self, code: str, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(f"{message} [{code}]")
        self.code = code
        self.message = message
        self.data = data or {}


def pack(obj: dict[str, Any], *, max_frame: int | None = None) -> bytes:
    """Encode one message as a complete frame (header + body).

    With `max_frame`, a body over the limit raises FRAME_TOO_LARGE here, so the
    sender learns it instead of the peer hanging up on it.
    """
    body = msgpack.packb(obj, use_bin_type=True)
    if max_frame is not None and len(body) > max_frame:
        raise ProtocolError(FRAME_TOO_LARGE, f"frame of {len(body)} bytes is over the {max_frame}-byte limit")
    return HEADER.pack(len(body)) + body


def unpack_body(body: bytes) -> dict[str, Any]:
    try:
        msg = msgpack.unpackb(body, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types, some with no message at all
        detail = str(exc).strip() or "malformed data"
        raise ProtocolError(BAD_FRAME, f"frame body is not valid msgpack ({detail})") from None
    if not isinstance(msg, dict):
        raise ProtocolError(BAD_REQUEST, f"a message must be a map, got {type(msg).__name__}")
    return msg


async def read_frame(
    reader: asyncio.StreamReader,
    *,
    max_frame: int = DEFAULT_MAX_FRAME,
    timeout: float | None = None,
    body_timeout: float | None = DEFAULT_READ_TIMEOUT,
) -> dict[str, Any] | None:
    """Read one message, or None on a clean end of stream between frames.

    `timeout` bounds the wait for a frame to start (None: wait forever, as an
    idle subscriber may); `body_timeout` bounds the rest of the frame once begun.
    """
    try:
        header = await asyncio.wait_for(reader.readexactly(HEADER.size), timeout)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise ProtocolError(BAD_FRAME, "connection closed inside a frame header") from None
    (length,) = HEADER.unpack(header)
    if length > max_frame:
        raise ProtocolError(
            FRAME_TOO_LARGE, f"frame of {length} bytes is over the {max_frame}-byte limit"
        )
    try:
        body = await asyncio.wait_for(reader.readexactly(length), body_timeout)
    except asyncio.IncompleteReadError:
        raise ProtocolError(BAD_FRAME, "connection closed inside a frame body") from None
    except asyncio.TimeoutError:
        raise ProtocolError(BAD_FRAME, f"frame body not received within {body_timeout:g} s") from None
    return unpack_body(body)


def _read_exact(stream: IO[bytes], n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = stream.read(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def read_frame_blocking(stream: IO[bytes], *, max_frame: int = DEFAULT_MAX_FRAME) -> dict[str, Any] | None:
    """Blocking read of one message from a binary file (a pipe), or None at a clean end between frames.

    For a thread that owns the stream (the model worker's stdin); same checks as read_frame.
    """
    header = _read_exact(stream, HEADER.size)
    if not header:
        return None
    if len(header) < HEADER.size:
        raise ProtocolError(BAD_FRAME, "stream ended inside a frame header")
    (length,) = HEADER.unpack(header)
    if length > max_frame:
        raise ProtocolError(
            FRAME_TOO_LARGE, f"frame of {length} bytes is over the {max_frame}-byte limit"
        )
    body = _read_exact(stream, length)
    if len(body) < length:
        raise ProtocolError(BAD_FRAME, "stream ended inside a frame body")
    return unpack_body(body)


def request(req_id: int, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"id": req_id, "method": method, "params": params or {}}


def result(req_id: Any, value: Any) -> dict[str, Any]:
    return {"id": req_id, "result": value}


def error(req_id: Any, code: str, message: str, **data: Any) -> dict[str, Any]:
    return {"id": req_id, "error": {"code": code, "message": message, **data}}


def event(name: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"event": name, "data": data}


#: Event topics a client can subscribe to. An event named "job.progress" belongs
#: to topic "job"; subscribing to "*" receives everything.
TOPICS = ("job", "track", "model", "daemon")


def topic_of(event_name: str) -> str:
    return event_name.split(".", 1)[0]
