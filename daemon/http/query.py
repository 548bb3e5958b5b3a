"""Query and path parameters: typed from their strings and checked against the route's declared bounds."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dgx_music.common import protocol
from dgx_music.daemon.handlers import HandlerError
from dgx_music.daemon.http.routes import Param, Route, _param


def request_params(r: Route, request: web.Request) -> dict[str, Any]:
    """Query and path parameters, typed and checked against the route's declared constraints."""
    params: dict[str, Any] = {}
    for name, raw in request.query.items():
        spec = r.query.get(name)
        if spec is None:
            raise HandlerError(protocol.INVALID_PARAMS, f"unknown query parameter {name!r}", field=name)
        params[name] = _check(name, _param(spec), _coerce_query(name, _param(spec).kind, raw))
    for name, spec in r.path_params.items():
        params[name] = _check(name, _param(spec), _coerce_query(name, _param(spec).kind, request.match_info[name]))
    return params


def _check(name: str, spec: Param, value: Any) -> Any:
    """The numeric bounds of a parameter (the handlers check the rest, with the same limits)."""
    lo, hi = spec.schema.get("minimum"), spec.schema.get("maximum")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value != value or lo is not None and value < lo or hi is not None and value > hi:
            raise HandlerError(protocol.INVALID_PARAMS, f"{name}: must be between {lo} and {hi}, got {value}",
                               field=name)
    return value


def _coerce_query(name: str, kind: type, raw: str) -> Any:
    if kind is bool:
        low = raw.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise HandlerError(protocol.INVALID_PARAMS, f"{name}: expected true or false, got {raw!r}", field=name)
    if kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise HandlerError(protocol.INVALID_PARAMS, f"{name}: expected {what}, got {raw!r}", field=name) from None
    return raw
