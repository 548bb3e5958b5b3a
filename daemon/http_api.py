"""The HTTP API (aiohttp): a REST mirror of the socket protocol, metrics, an event stream.

Off by default; `http.listen = "127.0.0.1:8765"` (or `dgx-music daemon --http ...`)
turns it on. Every route calls `handlers.dispatch`, the same code the socket uses,
so there is one implementation of each action. Track audio is served from the
data directory only (resolved through `libfiles.library_file`), with HTTP Range.

Security: on a loopback address the API may run without a token; bound to any
other address the daemon refuses to start unless `http.token_file` names a file
that only its owner can read (mode 0600). When a token is configured every request,
wherever it comes from, needs `Authorization: Bearer <token>`; anything else gets 401.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import hmac
import ipaddress
import json
import logging
import os
import socket
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from aiohttp import WSMsgType, web

from dgx_music.common import protocol
from dgx_music.common.config import Settings
from dgx_music.common.schemas import ParamError
from dgx_music.daemon import handlers
from dgx_music.daemon.handlers import Context, HandlerError
from dgx_music.daemon.http_body import JSON_INLINE_BYTES, parse_json_body
from dgx_music.common.speaker import WS_PATH as SPEAKER_WS
from dgx_music.daemon import http_speaker
from dgx_music.daemon.http_metrics import Metrics
from dgx_music.daemon.speaker_hub import hub_of
from dgx_music.daemon.http_routes import API, OPENAPI_PATH, ROUTES, Param, Route, _param, openapi
from dgx_music.daemon.server import StartupError

if TYPE_CHECKING:
    from dgx_music.daemon.app import Daemon

log = logging.getLogger("dgx_music.http")

#: Events one stream client may fall behind before it is dropped.
STREAM_QUEUE = 1000
KEEPALIVE_SECONDS = 15.0
MIN_TOKEN_CHARS = 16
#: Events kept for SSE clients that reconnect with Last-Event-ID (a few minutes of a busy daemon).
REPLAY_EVENTS = 2000

HTTP_STATUS = {
    protocol.BAD_REQUEST: 400,
    protocol.INVALID_PARAMS: 400,
    protocol.UNKNOWN_METHOD: 404,
    protocol.NOT_FOUND: 404,
    protocol.CONFLICT: 409,
    protocol.NOT_CANCELLABLE: 409,
    protocol.QUEUE_FULL: 429,
    protocol.DISK_FULL: 507,
    protocol.ENGINE_ERROR: 502,
    protocol.FORBIDDEN: 403,
    protocol.NO_SPEAKER: 409,
    protocol.SHUTTING_DOWN: 503,
    protocol.INTERNAL: 500,
}

#: HTTP-only error codes, for what aiohttp itself answers (every error body is JSON with a code).
HTTP_CODES = {404: "unknown_route", 405: "method_not_allowed", 413: "body_too_large",
              416: "range_not_satisfiable"}


# ---------------------------------------------------------------------- policy
@dataclass(frozen=True)
class HttpPlan:
    host: str
    port: int
    token: str | None


def parse_listen(value: str) -> tuple[str, int]:
    """"HOST:PORT" or "[v6]:PORT" -> (host, port)."""
    text = value.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise StartupError(f"http.listen {value!r}: write an IPv6 address as [addr]:PORT")
        port_s = rest[1:]
    else:
        host, sep, port_s = text.rpartition(":")
        if not sep:
            raise StartupError(f"http.listen {value!r}: expected HOST:PORT, e.g. 127.0.0.1:8765")
    if not port_s.isdigit() or not 0 <= int(port_s) <= 65535:
        raise StartupError(f"http.listen {value!r}: {port_s!r} is not a port number")
    return host, int(port_s)


def is_loopback(host: str) -> bool:
    """True only if every address `host` stands for is a loopback address."""
    if not host:
        return False  # "" binds every interface
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    addrs = {info[4][0] for info in infos}
    return bool(addrs) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addrs)


def read_token(path_text: str) -> str:
    """The bearer token from a file only its owner may read; refuses anything else, naming the problem."""
    path = Path(path_text).expanduser()
    try:
        st = os.stat(path)
    except OSError as exc:
        raise StartupError(f"http.token_file {path}: cannot read it: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise StartupError(f"http.token_file {path} is not a regular file")
    if st.st_mode & 0o077:
        raise StartupError(
            f"http.token_file {path} has mode {stat.S_IMODE(st.st_mode):04o}; other users could read the token. "
            f"Run `chmod 600 {path}`")
    if st.st_uid != os.getuid():
        raise StartupError(f"http.token_file {path} is owned by uid {st.st_uid}, not by the daemon's uid {os.getuid()}")
    token = path.read_text(encoding="utf-8", errors="strict").strip()
    if len(token) < MIN_TOKEN_CHARS or any(c.isspace() for c in token):
        raise StartupError(f"http.token_file {path}: the token must be one word of at least {MIN_TOKEN_CHARS} "
                           "characters (e.g. `openssl rand -hex 32`)")
    return token


def plan(settings: Settings) -> HttpPlan | None:
    """Check the HTTP settings before anything starts; None when the API is off."""
    listen = settings["http.listen"].strip()
    if not listen:
        return None
    host, port = parse_listen(listen)
    token_file = settings["http.token_file"].strip()
    token = read_token(token_file) if token_file else None
    if token is None and not is_loopback(host):
        raise StartupError(
            f"http.listen {listen!r} is not a loopback address, and no http.token_file is set: refusing to serve "
            "the API unauthenticated. Create a token file (mode 0600) and set http.token_file, or listen on "
            "127.0.0.1")
    return HttpPlan(host, port, token)


# ---------------------------------------------------------------------- routes (daemon/http_routes.py)

FINAL_STATES = ("done", "failed", "cancelled")


def _request_params(r: Route, request: web.Request) -> dict[str, Any]:
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


#: Limits on request bodies: Python's json would answer these with ValueError or RecursionError.
def _range_satisfiable(request: web.Request, size: int) -> bool:
    """Whether the Range header (if any) names one range aiohttp can serve from a `size`-byte file."""
    if "Range" not in request.headers or not request.headers["Range"].strip().lower().startswith("bytes="):
        return True  # none, or in a unit we do not know: ignored, the whole file is served
    try:
        rng = request.http_range
    except ValueError:
        return False
    start, stop = rng.start, rng.stop
    if start is None and stop is None:
        return True
    if start is not None and start < 0:  # a suffix, bytes=-N
        return size > 0 and -start > 0
    return start is not None and start < size and (stop is None or stop > start)


def _json_error(status: int, code: str, message: str, **data: Any) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message, **data}}, status=status,
                             dumps=_dumps)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, default=_default)


def _default(obj: Any) -> Any:
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


# ---------------------------------------------------------------------- server
def job_of(name: str, data: dict[str, Any]) -> int | None:
    """The job an event is about: job.* events by `id`, track events by the track's `job_id`
    (track.deleted by the job part of its id)."""
    if name.startswith("job."):
        value = data.get("id")
    elif name.startswith("track."):
        value = data.get("job_id")
        if value is None and isinstance(data.get("id"), str):
            head = data["id"].split("-")[0]
            value = int(head) if head.isdigit() else None
    else:
        return None
    return value if isinstance(value, int) else None


class _Stream:
    """One SSE or WebSocket client: a bounded queue fed by the daemon's event listener.
    Items are (event id, name, data); with `job`, only the events about that job."""

    def __init__(self, topics: set[str], job: int | None = None) -> None:
        self.topics = topics
        self.job = job
        self.queue: asyncio.Queue[tuple[str, str, dict[str, Any]] | None] = asyncio.Queue(STREAM_QUEUE)
        self.dropped = False

    def wants(self, name: str, data: dict[str, Any]) -> bool:
        if "*" not in self.topics and protocol.topic_of(name) not in self.topics:
            return False
        return self.job is None or job_of(name, data) == self.job

    def offer(self, name: str, data: dict[str, Any], event_id: str = "") -> None:
        if self.dropped or not self.wants(name, data):
            return
        try:
            self.queue.put_nowait((event_id, name, data))
        except asyncio.QueueFull:
            self.dropped = True
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(("", "daemon.dropped", {"reason": "event buffer overflow: the client did "
                                                                    "not read fast enough"}))
            self.queue.put_nowait(None)


class HttpApi:
    """The aiohttp application and its listening site; a `daemon.extras` service."""

    def __init__(self, daemon: "Daemon", plan_: HttpPlan) -> None:
        self.daemon = daemon
        self.plan = plan_
        self.host, self.port = plan_.host, plan_.port
        self.metrics = Metrics()
        self.streams: set[_Stream] = set()
        # Event ids for SSE are "<epoch>-<seq>": a reconnect after a daemon restart cannot resume
        # into the new daemon's numbering by mistake.
        self.epoch = format(int(time.time() * 1000) & 0xFFFFFFFFFF, "x")
        self.seq = 0
        self.replay: collections.deque[tuple[int, str, dict[str, Any]]] = collections.deque(maxlen=REPLAY_EVENTS)
        self._job_waiters: dict[int, set[asyncio.Future[None]]] = {}
        self._runner: web.AppRunner | None = None
        self.app = self._build_app()
        daemon.events.listen(self._on_event)

    # -- wiring -----------------------------------------------------------
    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=1024 * 1024)
        special: dict[str, Callable[[web.Request], Any]] = {
            "/healthz": self._healthz, "/metrics": self._metrics, OPENAPI_PATH: self._openapi,
            f"{API}/tracks/{{id}}/audio": self._audio, f"{API}/events": self._sse,
            f"{API}/events/ws": self._ws, SPEAKER_WS: functools.partial(http_speaker.serve_tab, self.daemon),
            "/static/speaker.js": http_speaker.speaker_js,
        }
        for r in ROUTES:
            if r.handler is not None:
                handler = getattr(self, r.handler)(r)
            else:
                handler = special.get(r.path) if r.rpc is None else self._rpc_handler(r)
            assert handler is not None, r.path
            # An integer path parameter matches digits only: /jobs/prune is not job "prune", and
            # the Allow header of a 405 lists only what the URL really takes.
            path = r.path
            for name, spec in r.path_params.items():
                if _param(spec).kind is int:
                    path = path.replace(f"{{{name}}}", f"{{{name}:\\d+}}")
            if r.method == "GET":
                app.router.add_get(path, handler)  # with HEAD
            else:
                app.router.add_route(r.method, path, handler)
        return app

    def _on_event(self, name: str, data: dict[str, Any]) -> None:
        self.metrics.on_event(name, data)
        self.seq += 1
        self.replay.append((self.seq, name, data))
        event_id = f"{self.epoch}-{self.seq}"
        for s in list(self.streams):
            s.offer(name, data, event_id)
        if name in ("job.finished", "job.cancelled") or name == "job.failed" and not data.get("retrying"):
            for waiter in self._job_waiters.get(data.get("id"), ()):  # type: ignore[arg-type]
                if not waiter.done():
                    waiter.set_result(None)

    async def start(self) -> None:
        # Long request lines: a search of 1000 characters, percent-encoded, is up to 12 KB.
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=2.0,
                                     max_line_size=65536)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host or None, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise StartupError(f"HTTP API cannot listen on {self.host}:{self.port}: {exc.strerror or exc}") from None
        server = site._server  # the asyncio server: learn the real port when 0 was asked for
        if server is not None and server.sockets:
            self.port = server.sockets[0].getsockname()[1]
        hub_of(self.daemon).port = self.port  # speaker.*'s no_speaker names the page's URL
        auth = "bearer token required" if self.plan.token else "no auth (loopback)"
        log.info("HTTP API on http://%s:%d (%s)", self.host if ":" not in self.host else f"[{self.host}]",
                 self.port, auth)

    async def close(self) -> None:
        for s in list(self.streams):
            s.queue.put_nowait(None) if not s.queue.full() else None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # -- middleware: auth, errors, counting ---------------------------------
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        if self.plan.token is not None and not self._authorized(request):
            resp: web.StreamResponse = _json_error(401, "unauthorized", "a bearer token is required "
                                                   "(Authorization: Bearer <token from http.token_file>)")
            resp.headers["WWW-Authenticate"] = 'Bearer realm="dgx-music"'
        else:
            try:
                resp = await handler(request)
            except web.HTTPException as exc:
                if exc.status >= 400 and exc.content_type != "application/json":
                    message = {404: f"no route {request.path}; GET /openapi.json lists them",
                               405: f"{request.method} is not allowed on {request.path}"}.get(exc.status, exc.reason)
                    resp = _json_error(exc.status, HTTP_CODES.get(exc.status, "bad_request"), message)
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
                resp = _json_error(HTTP_STATUS.get(mapped.code, 500), mapped.code, mapped.message, **mapped.data)
        key = (route, resp.status)
        self.metrics.http[key] = self.metrics.http.get(key, 0) + 1
        log.debug("HTTP %s %s -> %d", request.method, request.path_qs, resp.status)
        return resp

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        assert self.plan.token is not None
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.plan.token.encode())

    # -- handlers -------------------------------------------------------------
    async def _call(self, method: str, params: dict[str, Any]) -> Any:
        if self.daemon.stopping:
            raise HandlerError(protocol.SHUTTING_DOWN, "the daemon is shutting down")
        return await handlers.dispatch(Context(self.daemon, None), method, params)

    def _rpc_handler(self, r: Route) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.Response:
            params: dict[str, Any] = {}
            if r.body and request.can_read_body:
                raw = await request.read()
                if len(raw) > JSON_INLINE_BYTES:  # parsing a big body is CPU work: off the event loop
                    body = await asyncio.get_running_loop().run_in_executor(None, parse_json_body, raw)
                else:
                    body = parse_json_body(raw)
                params.update(body)
            params.update(_request_params(r, request))
            result = await self._call(r.rpc or "", params)
            return web.json_response(result, status=201 if r.created else 200, dumps=_dumps)

        return handle

    def _job_get(self, r: Route) -> Callable[[web.Request], Any]:
        """job.get, and with ?wait=S a long poll: answer once the job has ended, or after S seconds."""
        async def handle(request: web.Request) -> web.Response:
            params = _request_params(r, request)
            wait = params.pop("wait", 0.0)
            waiter = asyncio.get_running_loop().create_future()
            job_id = params["id"]
            # Registered before the first read: an end between the read and the wait is not missed.
            self._job_waiters.setdefault(job_id, set()).add(waiter)
            try:
                job = await self._call("job.get", params)
                if wait > 0 and job["state"] not in FINAL_STATES:
                    try:
                        await asyncio.wait_for(asyncio.shield(waiter), wait)
                    except asyncio.TimeoutError:
                        pass
                    job = await self._call("job.get", params)
            finally:
                waiters = self._job_waiters.get(job_id)
                if waiters is not None:
                    waiters.discard(waiter)
                    if not waiters:
                        del self._job_waiters[job_id]
            return web.json_response(job, dumps=_dumps)

        return handle

    async def _healthz(self, request: web.Request) -> web.Response:
        st = self.daemon.status()
        sched = self.daemon.scheduler
        runner = sched.runner_status() if sched is not None else None
        # A daemon whose queue runner is down answers requests but runs no job: not healthy.
        ok = not self.daemon.stopping and (runner is None or runner["alive"])
        body = {"ok": ok, "version": st.get("version"), "uptime": st.get("uptime"),
                "model": (st.get("model") or {}).get("state"), "queue": (st.get("queue") or {}).get("active"),
                "runner": runner and runner["state"], "disk_full": bool(sched is not None and sched.disk_full)}
        return web.json_response(body, status=200 if ok else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        text = self.metrics.render(self.daemon.status())
        return web.Response(text=text, content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})

    async def _openapi(self, request: web.Request) -> web.Response:
        try:
            family: str | None = self.daemon.scheduler.family_of(self.daemon.settings["engine.model"])
        except ParamError:
            family = None  # a model that does not resolve: bodies without a model may take either shape
        return web.json_response(openapi(default_family=family))

    async def _audio(self, request: web.Request) -> web.StreamResponse:
        track = await self._call("track.get", {"id": request.match_info["id"]})
        from dgx_music.daemon import libfiles

        try:
            path = libfiles.library_file(self.daemon.data_dir, track["path"])
        except ValueError:
            log.warning("track %s has a path outside the data dir: %r", track.get("id"), track.get("path"))
            raise HandlerError(protocol.NOT_FOUND, "the track's file is not in the library") from None
        if not path.is_file():
            raise HandlerError(protocol.NOT_FOUND, f"the audio file of track {track['id']} is missing")
        size = path.stat().st_size
        if not _range_satisfiable(request, size):
            resp416 = _json_error(416, "range_not_satisfiable", f"Range {request.headers.get('Range')!r} is not "
                                  f"one satisfiable byte range of this {size}-byte file")
            resp416.headers["Content-Range"] = f"bytes */{size}"
            return resp416
        resp = web.FileResponse(path, headers={
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

    def _topics(self, request: web.Request, allowed: tuple[str, ...] = ("topics",)) -> set[str]:
        raw = request.query.get("topics", "*")
        topics = {t.strip() for t in raw.split(",") if t.strip()} or {"*"}
        unknown = topics - set(protocol.TOPICS) - {"*"}
        if unknown:
            raise HandlerError(protocol.INVALID_PARAMS, f"topics: unknown topic {sorted(unknown)[0]!r}; known: "
                               f"{', '.join(protocol.TOPICS)} or *", field="topics")
        for name in request.query:
            if name not in allowed:
                raise HandlerError(protocol.INVALID_PARAMS, f"unknown query parameter {name!r}", field=name)
        return topics

    def _missed(self, stream: _Stream, last: str | None) -> tuple[list[tuple[str, str, dict[str, Any]]], bool]:
        """The buffered events after Last-Event-ID `last` that `stream` wants, and whether some
        were already gone. Called with the stream registered and no await in between: no event is
        both replayed and queued, or neither."""
        if not last:
            return [], False
        epoch, _, seq_text = last.strip().rpartition("-")
        ours = seq_text.isdigit() and epoch == self.epoch
        after = int(seq_text) if ours else 0
        oldest = self.replay[0][0] if self.replay else self.seq + 1
        gap = not ours or after + 1 < oldest and self.seq > after  # another daemon's id: a restart between
        missed = [(f"{self.epoch}-{seq}", name, data) for seq, name, data in self.replay
                  if seq > after and stream.wants(name, data)]
        return missed, gap

    async def _sse(self, request: web.Request) -> web.StreamResponse:
        topics = self._topics(request, allowed=("topics", "job"))
        job = _request_params(ROUTE_BY_PATH[f"{API}/events"], request).get("job")
        stream = _Stream(topics, job)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        self.streams.add(stream)
        missed, gap = self._missed(stream, request.headers.get("Last-Event-ID"))
        try:
            await resp.write(b": dgx-music event stream\nretry: 2000\n\n")
            if gap:
                await resp.write(f"event: stream.gap\ndata: {_dumps({'reason': 'events since Last-Event-ID are no longer buffered (or the daemon restarted); re-read the state you follow'})}\n\n".encode())
            for event_id, name, data in missed:
                await resp.write(f"id: {event_id}\nevent: {name}\ndata: {_dumps(data)}\n\n".encode())
            while True:
                try:
                    item = await asyncio.wait_for(stream.queue.get(), KEEPALIVE_SECONDS)
                except asyncio.TimeoutError:
                    await resp.write(b": keepalive\n\n")
                    continue
                if item is None:
                    break
                event_id, name, data = item
                head = f"id: {event_id}\n" if event_id else ""
                await resp.write(f"{head}event: {name}\ndata: {_dumps(data)}\n\n".encode())
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            self.streams.discard(stream)
        return resp

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        stream = _Stream(self._topics(request))
        ws = web.WebSocketResponse(heartbeat=KEEPALIVE_SECONDS)
        await ws.prepare(request)
        self.streams.add(stream)

        async def reader() -> None:
            async for msg in ws:
                if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                    break
            stream.queue.put_nowait(None) if not stream.queue.full() else None

        read_task = asyncio.create_task(reader())
        try:
            while True:
                item = await stream.queue.get()
                if item is None or ws.closed:
                    break
                _event_id, name, data = item
                await ws.send_str(_dumps({"event": name, "data": data}))
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            self.streams.discard(stream)
            read_task.cancel()
            await ws.close()
        return ws


ROUTE_BY_PATH = {r.path: r for r in ROUTES if r.method == "GET"}


async def start(daemon: "Daemon", plan_: HttpPlan) -> HttpApi:
    api = HttpApi(daemon, plan_)
    await api.start()
    return api
