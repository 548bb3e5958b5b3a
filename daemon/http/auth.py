"""The HTTP API's middleware: who may ask (Host, Origin, token, content type), JSON error bodies
for every failure, request counting.

In order, a request is refused:
- 403 when its Host is not a loopback name, the listen address, or one in `http.allowed_hosts`
  (a DNS-rebinding page reaches 127.0.0.1 under its own name);
- 403 when it carries an Origin other than the page's own (a cross-site page, WebSocket or
  EventSource included);
- 401 without the token, as `Authorization: Bearer T` or the cookie `dgx_music_token=T`;
- 415 when it changes state with a body that is not `application/json`, or authenticates by cookie
  without declaring `application/json` (an HTML form can send neither).
A GET of a page (anything outside /api/ and the machine routes) with `?token=T` is the cookie
exchange: 303 to the same URL without the token, setting an HttpOnly, SameSite=Strict cookie.
No CORS header is ever sent, so no other origin may read an answer.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
from typing import TYPE_CHECKING, Any, Callable

from aiohttp import web

from dgx_music.common import protocol
from dgx_music.daemon import handlers
from dgx_music.daemon.handlers import HandlerError
from dgx_music.daemon.http.errors import HTTP_CODES, HTTP_STATUS, json_error
from dgx_music.daemon.http.routes import API, OPENAPI_PATH

if TYPE_CHECKING:
    from dgx_music.daemon.http.api import HttpApi

log = logging.getLogger("dgx_music.http")

Handler = Callable[[web.Request], Any]

COOKIE = "dgx_music_token"
#: Methods that change state: they need JSON (or a documented upload type) and a same-origin Origin.
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JSON_TYPES = frozenset({"application/json"})
#: Routes for programs, never a page: no cookie exchange there.
MACHINE_PATHS = frozenset({"/healthz", "/metrics", OPENAPI_PATH})


def _same(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token.encode())


def credential(request: web.Request, token: str) -> str | None:
    """How the request proves it has `token` ("bearer" or "cookie"; compared in constant time), or None."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and _same(given.strip(), token):
        return "bearer"
    cookie = request.cookies.get(COOKIE)
    if cookie is not None and _same(cookie, token):
        return "cookie"
    return None


def host_name(host: str) -> str:
    """The name part of a Host header, lower case: "[::1]:8765" -> "[::1]", "LocalHost:80" -> "localhost"."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end > 0 else host
    return host.rpartition(":")[0] if ":" in host else host


def is_loopback_name(name: str) -> bool:
    """localhost, 127.0.0.0/8 and [::1]: names a DNS-rebinding page cannot stand behind."""
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def _bind_name(host: str) -> str:
    return f"[{host.lower()}]" if ":" in host else host.lower()


def refusal(api: "HttpApi", request: web.Request) -> web.StreamResponse | None:
    """The answer to a request the policy refuses, or None to serve it."""
    plan = api.plan
    host = request.headers.get("Host")
    if host is not None:
        name = host_name(host)
        if not (is_loopback_name(name) or name in plan.allowed_hosts
                or plan.host and name == _bind_name(plan.host)):
            return json_error(403, protocol.FORBIDDEN, f"Host {host!r} is not served: use localhost or 127.0.0.1, "
                              "or add the name to http.allowed_hosts", field="Host")
    origin = request.headers.get("Origin")
    if origin is not None and (host is None or origin.strip().lower() != f"{request.scheme}://{host}".lower()):
        return json_error(403, protocol.FORBIDDEN, f"Origin {origin!r} is not this page's own origin: "
                          "cross-site requests are refused", field="Origin")
    token = plan.token
    if token is None:
        return None
    if request.method in ("GET", "HEAD") and "token" in request.query and not request.path.startswith(API + "/") \
            and request.path not in MACHINE_PATHS:
        return _exchange(request, token)
    how = credential(request, token)
    if how is None:
        resp = json_error(401, "unauthorized", "the token is required: Authorization: Bearer <token>, or open "
                          f"the page with ?token=<token> once (the token is in {plan.token_path or 'http.token_file'}"
                          "; `dgx-music web` prints the URL)")
        resp.headers["WWW-Authenticate"] = 'Bearer realm="dgx-music"'
        return resp
    if request.method in UNSAFE_METHODS and (request.body_exists or how == "cookie") \
            and request.content_type not in JSON_TYPES:
        given = request.headers.get("Content-Type", "none")
        return json_error(415, "unsupported_media_type", f"Content-Type {given!r}: requests that change state "
                          "take application/json", field="Content-Type")
    return None


def _exchange(request: web.Request, token: str) -> web.StreamResponse:
    """?token=T on a page: the token moves into a cookie and out of the address bar (and history)."""
    given = request.query.getone("token")
    if not _same(given, token):
        return json_error(401, "unauthorized", "the token in the URL is wrong (dgx-music web prints the right URL)")
    rest = [(k, v) for k, v in request.query.items() if k != "token"]
    location = str(request.rel_url.with_query(rest))
    resp = web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store",
                                             "Referrer-Policy": "no-referrer"})
    resp.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/")
    return resp


def make_middleware(api: "HttpApi") -> Callable[[web.Request, Handler], Any]:
    """The one middleware of the app: the policy above, errors as JSON, counting by route and status."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        refused = refusal(api, request)
        if refused is not None:
            resp: web.StreamResponse = refused
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
