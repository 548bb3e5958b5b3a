"""JSON error bodies and the mapping from protocol error codes to HTTP statuses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aiohttp import web

from dgx_music.common import protocol

HTTP_STATUS = {
    protocol.BAD_REQUEST: 400,
    protocol.INVALID_PARAMS: 400,
    protocol.UNKNOWN_METHOD: 404,
    protocol.NOT_FOUND: 404,
    protocol.CONFLICT: 409,
    protocol.NOT_CANCELLABLE: 409,
    protocol.QUEUE_FULL: 429,
    protocol.DISK_FULL: 507,
    protocol.STORE_UNAVAILABLE: 503,
    protocol.ENGINE_ERROR: 502,
    protocol.FORBIDDEN: 403,
    protocol.NO_SPEAKER: 409,
    protocol.SHUTTING_DOWN: 503,
    protocol.INTERNAL: 500,
}

#: HTTP-only error codes, for what aiohttp itself answers (every error body is JSON with a code).
HTTP_CODES = {404: "unknown_route", 405: "method_not_allowed", 413: "body_too_large",
              415: "unsupported_media_type", 416: "range_not_satisfiable"}


def json_error(status: int, code: str, message: str, **data: Any) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message, **data}}, status=status,
                             dumps=dumps)


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, default=_default)


def _default(obj: Any) -> Any:
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)
