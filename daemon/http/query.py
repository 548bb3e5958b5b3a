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
    """The constraints a parameter's schema states (bounds, lengths, choices), so the OpenAPI
    document never promises a refusal the daemon does not give. Patterns are left to the handlers:
    the document's tag pattern is a portable subset of what the library takes."""
    def bad(message: str) -> HandlerError:
        return HandlerError(protocol.INVALID_PARAMS, f"{name}: {message}", field=name)

    schema = spec.schema
    lo, hi = schema.get("minimum"), schema.get("maximum")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value != value or lo is not None and value < lo or hi is not None and value > hi:
            raise bad(f"must be between {lo} and {hi}, got {value}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            raise bad("must not be empty" if schema["minLength"] == 1 else
                      f"must be at least {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise bad(f"is {len(value)} characters; the limit is {schema['maxLength']}")
        if "enum" in schema and value not in schema["enum"]:
            raise bad(f"must be one of {', '.join(map(str, schema['enum']))}, got {value!r}")
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
