"""The HTTP API (aiohttp): a REST mirror of the socket protocol, metrics, an event stream.

Every route calls `handlers.dispatch`, the same code the socket uses, so there is one
implementation of each action. The policy (listen address, token) is in plan.py, the
middleware in auth.py, Range serving in ranges.py, SSE and WebSocket in events.py.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import TYPE_CHECKING, Any, Callable

from aiohttp import web

from dgx_music.common import protocol
from dgx_music.common.schemas import ParamError
from dgx_music.common.speaker import SCRIPT_PATH, WS_PATH as SPEAKER_WS
from dgx_music.daemon import handlers
from dgx_music.daemon.handlers import Context, HandlerError
from dgx_music.daemon.http.auth import make_middleware
from dgx_music.daemon.http.body import JSON_INLINE_BYTES, parse_json_body
from dgx_music.daemon.http.errors import dumps
from dgx_music.daemon.http.events import EventHub
from dgx_music.daemon.http.export import serve_export
from dgx_music.daemon.http.guard import ConnectionGuard, GuardedSite
from dgx_music.daemon.http.metrics import Metrics
from dgx_music.daemon.http.plan import HttpPlan
from dgx_music.daemon.http.query import request_params
from dgx_music.daemon.http.ranges import serve_track_file
from dgx_music.daemon.http import speaker
from dgx_music.daemon.http.routes import API, OPENAPI_PATH, ROUTES, Route, _param, openapi
from dgx_music.daemon.server import StartupError
from dgx_music.daemon.speaker_hub import hub_of

if TYPE_CHECKING:
    from dgx_music.daemon.app import Daemon

log = logging.getLogger("dgx_music.http")

FINAL_STATES = ("done", "failed", "cancelled")


class HttpApi:
    """The aiohttp application and its listening site; a `daemon.extras` service."""

    def __init__(self, daemon: "Daemon", plan_: HttpPlan) -> None:
        self.daemon = daemon
        self.plan = plan_
        self.host, self.port = plan_.host, plan_.port
        self.metrics = Metrics()
        self.hub = EventHub()
        self._runner: web.AppRunner | None = None
        self.app = self._build_app()
        daemon.events.listen(self._on_event)

    # -- wiring -----------------------------------------------------------
    def _build_app(self) -> web.Application:
        from dgx_music.daemon.web import page  # the listening room (daemon/web/)

        app = web.Application(middlewares=[make_middleware(self)], client_max_size=1024 * 1024)
        special: dict[str, Callable[[web.Request], Any]] = {
            "/": page.index, "/healthz": self._healthz, "/metrics": self._metrics, OPENAPI_PATH: self._openapi,
            f"{API}/tracks/{{id}}/audio": self._audio, f"{API}/events": self.hub.sse,
            f"{API}/events/ws": self.hub.ws,
            SPEAKER_WS: functools.partial(speaker.serve_tab, self.daemon), SCRIPT_PATH: speaker.speaker_js,
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
        page.add_routes(app)  # the listening room's files, /static/... (daemon/web/)
        return app

    def _on_event(self, name: str, data: dict[str, Any]) -> None:
        self.metrics.on_event(name, data)
        self.hub.on_event(name, data)

    async def start(self) -> None:
        # Long request lines: a search of 1000 characters, percent-encoded, is up to 12 KB.
        # aiohttp's keep-alive timer runs from the moment a connection is made until its request's
        # headers are in, and again between requests: it is the header and idle timeout.
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=2.0,
                                     max_line_size=65536, keepalive_timeout=self.plan.header_timeout)
        await self._runner.setup()
        site = GuardedSite(self._runner, self.host or None, self.port,
                           lambda server: ConnectionGuard(server, self.plan.max_connections, self.plan.fd_reserve))
        self.site = site
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise StartupError(f"HTTP API cannot listen on {self.host}:{self.port}: {exc.strerror or exc}") from None
        server = site._server  # the asyncio server: learn the real port when 0 was asked for
        if server is not None and server.sockets:
            self.port = server.sockets[0].getsockname()[1]
        hub = hub_of(self.daemon)  # speaker.*'s no_speaker names the page's URL and where its token is
        hub.port, hub.token_file = self.port, (str(self.plan.token_path) if self.plan.token_path else None)
        log.info("HTTP API on %s (token in %s)", self.url, self.plan.token_path or "http.token_file")

    async def close(self) -> None:
        self.hub.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # -- handlers -------------------------------------------------------------
    async def _call(self, method: str, params: dict[str, Any]) -> Any:
        if self.daemon.stopping:
            raise HandlerError(protocol.SHUTTING_DOWN, "the daemon is shutting down")
        return await handlers.dispatch(Context(self.daemon, None), method, params)

    def _rpc_handler(self, r: Route) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.Response:
            params: dict[str, Any] = {}
            if r.body and request.can_read_body:
                raw = await self._read_body(request)
                if len(raw) > JSON_INLINE_BYTES:  # parsing a big body is CPU work: off the event loop
                    body = await asyncio.get_running_loop().run_in_executor(None, parse_json_body, raw)
                else:
                    body = parse_json_body(raw)
                params.update(body)
            params.update(request_params(r, request))
            result = await self._call(r.rpc or "", params)
            return web.json_response(result, status=201 if r.created else 200, dumps=dumps)

        return handle

    async def _read_body(self, request: web.Request) -> bytes:
        """The whole body, within `http.body_timeout`: a client that trickles it in is cut off."""
        try:
            return await asyncio.wait_for(request.read(), self.plan.body_timeout)
        except asyncio.TimeoutError:
            request.transport.close() if request.transport is not None else None
            raise HandlerError(protocol.BAD_REQUEST, f"the request body took longer than {self.plan.body_timeout:g} s "
                               "(http.body_timeout)") from None

    def _job_get(self, r: Route) -> Callable[[web.Request], Any]:
        """job.get, and with ?wait=S a long poll: answer once the job has ended, or after S seconds."""
        async def handle(request: web.Request) -> web.Response:
            params = request_params(r, request)
            wait = params.pop("wait", 0.0)
            waiter = asyncio.get_running_loop().create_future()
            job_id = params["id"]
            # Registered before the first read: an end between the read and the wait is not missed.
            job_waiters = self.hub.job_waiters
            job_waiters.setdefault(job_id, set()).add(waiter)
            try:
                job = await self._call("job.get", params)
                if wait > 0 and job["state"] not in FINAL_STATES:
                    try:
                        await asyncio.wait_for(asyncio.shield(waiter), wait)
                    except asyncio.TimeoutError:
                        pass
                    job = await self._call("job.get", params)
            finally:
                waiters = job_waiters.get(job_id)
                if waiters is not None:
                    waiters.discard(waiter)
                    if not waiters:
                        del job_waiters[job_id]
            return web.json_response(job, dumps=dumps)

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

    async def _track_row(self, track_id: str) -> dict[str, Any]:
        """The row behind a file route: while the database is away, the one this host last saw
        (the audio itself is on shared storage), so a cached track still plays."""
        from dgx_music.daemon.handlers.tracks import read_track

        if self.daemon.stopping:
            raise HandlerError(protocol.SHUTTING_DOWN, "the daemon is shutting down")
        if not isinstance(track_id, str) or not 0 < len(track_id) <= 64:
            raise HandlerError(protocol.INVALID_PARAMS, "id: must be 1 to 64 characters", field="id")
        return await read_track(Context(self.daemon, None), track_id, full=False)

    @staticmethod
    def _mark_stale(resp: web.StreamResponse, track: dict[str, Any]) -> web.StreamResponse:
        if track.get("stale") and not resp.prepared:  # a ranged answer may already be on its way
            resp.headers["X-Dgx-Stale-Since"] = str(track.get("stale_since") or "")
        return resp

    async def _audio(self, request: web.Request) -> web.StreamResponse:
        track = await self._track_row(request.match_info["id"])
        return self._mark_stale(await serve_track_file(request, track, self.daemon.storage.root), track)

    def _midi(self, r: Route) -> Callable[[web.Request], Any]:
        """A MIDI file as a download: a track's (/tracks/{id}/midi) or a MIDI job's (/jobs/{id}/midi)."""
        from dgx_music.daemon.handlers.midi import midi_file

        by_job = r.path.startswith(f"{API}/jobs/")

        async def handle(request: web.Request) -> web.Response:
            params = request_params(r, request)
            if self.daemon.stopping:
                raise HandlerError(protocol.SHUTTING_DOWN, "the daemon is shutting down")
            name, data, _about = await midi_file(Context(self.daemon, None),
                                                 {"job": params["id"]} if by_job else {"id": params["id"]})
            stem = "".join(c if c.isalnum() or c in " -_." else "_" for c in name).strip() or "midi"
            return web.Response(body=data, content_type="audio/midi", headers={
                "Content-Disposition": f'attachment; filename="{stem[:80]}.mid"',
                "X-Content-Type-Options": "nosniff"})

        return handle

    def _export(self, r: Route) -> Callable[[web.Request], Any]:
        """A track as a WAV or FLAC download (daemon/http/export.py)."""
        async def handle(request: web.Request) -> web.StreamResponse:
            params = request_params(r, request)
            for name, spec in r.query.items():  # the enums (request_params checks bounds only)
                allowed = _param(spec).schema["enum"]
                if name in params and params[name] not in allowed:
                    raise HandlerError(protocol.INVALID_PARAMS, f"{name}: must be one of "
                                       f"{', '.join(map(str, allowed))}, got {params[name]!r}", field=name)
            track = await self._track_row(params["id"])
            return await serve_export(request, track, self.daemon.storage.root, params,
                                          tmp_dir=self.daemon.data_dir)

        return handle


async def start(daemon: "Daemon", plan_: HttpPlan) -> HttpApi:
    api = HttpApi(daemon, plan_)
    await api.start()
    return api
