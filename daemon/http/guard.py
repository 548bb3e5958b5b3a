"""Connection limits for the HTTP API: a cap, and file descriptors kept for the Unix socket.

Idle or slow HTTP connections must never starve the socket protocol: with no cap, a few hundred
idle TCP connections use up the daemon's descriptors and the Unix socket's accept() fails too.
Here every accepted connection is counted; past `http.max_connections`, or while fewer than
`http.fd_reserve` descriptors are free, it is answered 503 and closed at once. Slow and idle
connections are closed by aiohttp's keep-alive timer (set to `http.header_timeout`, armed from the
moment a connection is made) and by the body timeout in the handlers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import time
from typing import Callable

from aiohttp import web

log = logging.getLogger("dgx_music.http")

#: A small accept backlog: asyncio accepts up to `backlog` connections per wake-up before any
#: protocol runs, so a large one lets a burst take descriptors before the guard can refuse it.
BACKLOG = 16
_WARN_EVERY = 30.0


def free_fds() -> int | None:
    """Descriptors this process may still open (None where /proc/self/fd is not there to count)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        used = len(os.listdir("/proc/self/fd"))
    except OSError:
        return None
    return soft - used


def _refusal(message: str) -> bytes:
    body = json.dumps({"error": {"code": "too_many_connections", "message": message}}).encode()
    return (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
            b"Retry-After: 5\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


class _Refuse(asyncio.Protocol):
    """Answers 503 and closes: the connection never reaches aiohttp."""

    def __init__(self, message: str) -> None:
        self.message = message

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        try:
            transport.write(_refusal(self.message))
        finally:
            transport.close()


class ConnectionGuard:
    """The protocol factory of the HTTP listener: aiohttp's handler while there is room, else `_Refuse`."""

    def __init__(self, server: web.Server, max_connections: int, fd_reserve: int) -> None:
        self.server = server
        self.max_connections = max_connections
        self.fd_reserve = fd_reserve
        self.refused = 0
        self._warned = 0.0

    def __call__(self) -> asyncio.BaseProtocol:
        why = None
        if len(self.server.connections) >= self.max_connections:
            why = f"the HTTP API already has {self.max_connections} connections open (http.max_connections)"
        else:
            free = free_fds()
            if free is not None and free < self.fd_reserve:
                why = (f"only {free} file descriptors are free; {self.fd_reserve} are kept for the daemon's "
                       "socket (http.fd_reserve)")
        if why is None:
            return self.server()
        self.refused += 1
        now = time.monotonic()
        if now - self._warned > _WARN_EVERY:
            self._warned = now
            log.warning("refusing HTTP connections: %s (%d refused so far)", why, self.refused)
        return _Refuse(why + "; try again later")


class GuardedSite(web.TCPSite):
    """A TCPSite whose connections go through a `ConnectionGuard`."""

    def __init__(self, runner: web.BaseRunner, host: str | None, port: int,
                 guard_factory: Callable[[web.Server], ConnectionGuard]) -> None:
        super().__init__(runner, host, port, reuse_address=True, backlog=BACKLOG)
        self._guard_factory = guard_factory
        self.guard: ConnectionGuard | None = None

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with the runner
        server = self._runner.server
        assert isinstance(server, web.Server)
        self.guard = self._guard_factory(server)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self.guard, self._host, self._port, backlog=self._backlog,
                                                reuse_address=self._reuse_address)
        self._bound_port = self._server.sockets[0].getsockname()[1] if self._server.sockets else self._port
