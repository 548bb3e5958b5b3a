"""The HTTP API's middleware: the bearer token, JSON error bodies for every failure, request counting."""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import TYPE_CHECKING, Any, Callable

from aiohttp import web

from dgx_music.common import protocol
from dgx_music.daemon import handlers
from dgx_music.daemon.handlers import HandlerError
from dgx_music.daemon.http.errors import HTTP_CODES, HTTP_STATUS, json_error

if TYPE_CHECKING:
    from dgx_music.daemon.http.api import HttpApi

log = logging.getLogger("dgx_music.http")

Handler = Callable[[web.Request], Any]


def authorized(request: web.Request, token: str) -> bool:
    """Whether the request carries `token` as `Authorization: Bearer` (compared in constant time)."""
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def make_middleware(api: "HttpApi") -> Callable[[web.Request, Handler], Any]:
    """The one middleware of the app: auth, errors as JSON, counting by route and status."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        if api.plan.token is not None and not authorized(request, api.plan.token):
            resp: web.StreamResponse = json_error(401, "unauthorized", "a bearer token is required "
                                                  "(Authorization: Bearer <token from http.token_file>)")
            resp.headers["WWW-Authenticate"] = 'Bearer realm="dgx-music"'
        else:
            try:
                resp = await handler(request)
            except web.HTTPException as exc:
                if exc.status >= 400 and exc.content_type != "application/json":
                    message = {404: f"no route {request.path}; GET /openapi.json lists them",
                               405: f"{request.method} is not allowed on {request.path}"}.get(exc.status, exc.reason)
                    resp = json_error(exc.status, HTTP_CODES.get(exc.status, "bad_request"), message)
                    for k in ("Allow",):
                        if k in exc.headers:
                            resp.headers[k] = exc.headers[k]
                else:
                    raise
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                mapped = handlers.map_error(exc)
                if mapped is None:
                    log.exception("HTTP %s %s failed", request.method, request.path)
                    mapped = HandlerError(protocol.INTERNAL, f"internal error: {exc}")
                resp = json_error(HTTP_STATUS.get(mapped.code, 500), mapped.code, mapped.message, **mapped.data)
        key = (route, resp.status)
        api.metrics.http[key] = api.metrics.http.get(key, 0) + 1
        log.debug("HTTP %s %s -> %d", request.method, request.path_qs, resp.status)
        return resp

    return middleware
