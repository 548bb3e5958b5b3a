"""Asyncio client for the daemon, used by the CLI, the TUI and users' scripts.

    async with await Client.connect() as c:
        print(await c.call("status"))
        await c.subscribe("job")
        async for ev in c.events():
            print(ev.name, ev.data)

Many calls may be in flight on one connection; answers are matched by id.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

from dgx_music.common import paths, peer, protocol
from dgx_music.common.protocol import RemoteError

__all__ = ["Client", "DaemonUnavailable", "Event", "RemoteError", "RequestTimeout", "UnsafeSocket"]

START_HINT = "start it with `dgx-music daemon` (or `systemctl --user start dgx-music`)"


class DaemonUnavailable(ConnectionError):
    """No daemon answers on the socket, or the connection to it was lost."""


class UnsafeSocket(DaemonUnavailable):
    """The socket's directory or the process listening on it is not to be trusted; nothing was sent."""


class RequestTimeout(TimeoutError):
    """The daemon took longer than the call's timeout; the request may still complete."""


@dataclass(frozen=True)
class Event:
    name: str
    data: dict[str, Any]

    @property
    def topic(self) -> str:
        return protocol.topic_of(self.name)


_END = object()


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: Path,
                 max_frame: int = protocol.DEFAULT_MAX_FRAME) -> None:
        self.path = path
        self._reader = reader
        self._writer = writer
        self._max_frame = max_frame
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._events: asyncio.Queue[Any] = asyncio.Queue()
        self._closed = False
        self._lost: BaseException | None = None
        self._read_task = asyncio.create_task(self._read_loop())

    @classmethod
    async def connect(cls, path: str | Path | None = None, *, timeout: float = 5.0,
                      max_frame: int = protocol.DEFAULT_MAX_FRAME) -> "Client":
        """Connect and check who answers before anything is sent (see common/peer.py).

        A daemon whose listen backlog is full is retried until `timeout`, not reported dead.
        """
        sock_path = Path(path) if path else paths.default_socket()
        default_dir = paths.runtime_dir()
        if sock_path.parent == default_dir:
            problem = peer.private_dir_problem(default_dir)
            if problem:
                raise UnsafeSocket(f"refusing to use the socket in {default_dir}: {problem}. Another user may "
                                   "be posing as the daemon; remove the directory or set XDG_RUNTIME_DIR")
        try:
            sock = await asyncio.wait_for(_connect_unix(sock_path), timeout)
        except FileNotFoundError:
            raise DaemonUnavailable(f"no daemon socket at {sock_path}; {START_HINT}") from None
        except ConnectionRefusedError:
            raise DaemonUnavailable(f"nothing is listening on {sock_path} (a stale socket?); {START_HINT}") from None
        except PermissionError:
            raise DaemonUnavailable(f"permission denied on {sock_path}: the daemon belongs to another user") from None
        except asyncio.TimeoutError:
            raise DaemonUnavailable(f"timed out connecting to {sock_path} (the daemon is not accepting "
                                    "connections: busy or stuck)") from None
        except OSError as exc:
            raise DaemonUnavailable(f"cannot connect to {sock_path}: {exc.strerror or exc}") from None
        try:
            _pid, uid, _gid = peer.peer_credentials(sock)
        except OSError as exc:
            sock.close()
            raise DaemonUnavailable(f"cannot tell who listens on {sock_path}: {exc.strerror or exc}") from None
        if uid not in peer.trusted_daemon_uids(sock_path, default_dir):
            sock.close()
            raise UnsafeSocket(f"refusing to talk to the process on {sock_path}: it runs as uid {uid}, not as you "
                               f"(uid {os.getuid()}) or root. Another user may be posing as the daemon")
        try:
            reader, writer = await asyncio.open_unix_connection(sock=sock, limit=2**16)
        except OSError as exc:
            sock.close()
            raise DaemonUnavailable(f"cannot connect to {sock_path}: {exc.strerror or exc}") from None
        return cls(reader, writer, sock_path, max_frame)

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return not self._closed and self._lost is None

    async def _read_loop(self) -> None:
        reason: BaseException = DaemonUnavailable("the daemon closed the connection")
        try:
            while True:
                msg = await protocol.read_frame(self._reader, max_frame=self._max_frame)
                if msg is None:
                    break
                if "event" in msg:
                    data = msg.get("data")
                    self._events.put_nowait(Event(str(msg["event"]), data if isinstance(data, dict) else {}))
                    continue
                fut = self._pending.pop(msg.get("id"), None)  # type: ignore[arg-type]
                if fut is None:
                    err = msg.get("error")
                    if msg.get("id") is None and isinstance(err, dict):
                        # A connection-level error (forbidden, bad frame): the daemon hangs up next.
                        reason = RemoteError(str(err.get("code")), str(err.get("message")))
                    continue
                if fut.done():
                    continue
                if isinstance(msg.get("error"), dict):
                    err = dict(msg["error"])
                    fut.set_exception(RemoteError(str(err.pop("code", "error")), str(err.pop("message", "")), err))
                else:
                    fut.set_result(msg.get("result"))
        except protocol.ProtocolError as exc:
            reason = DaemonUnavailable(f"bad data from the daemon: {exc.message}")
        except (ConnectionError, OSError):
            reason = DaemonUnavailable("the connection to the daemon was lost")
        except asyncio.CancelledError:
            reason = DaemonUnavailable("client closed")
        finally:
            self._lost = reason
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(reason)
            self._pending.clear()
            self._events.put_nowait(_END)

    async def call(self, method: str, params: dict[str, Any] | None = None, *,
                   timeout: float | None = 30.0) -> Any:
        """Send one request and wait for its answer; RemoteError carries the daemon's code."""
        if self._lost is not None:
            raise self._lost_error()
        req_id = next(self._ids)
        frame = protocol.pack(protocol.request(req_id, method, params))  # unencodable params raise here
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = fut
        try:
            self._writer.write(frame)
            await self._writer.drain()
        except (ConnectionError, OSError):
            self._pending.pop(req_id, None)
            # The daemon may have said why before hanging up (too_many_clients): wait for the reader.
            try:
                await asyncio.wait_for(asyncio.shield(self._read_task), 1.0)
            except (asyncio.TimeoutError, Exception):
                pass
            if isinstance(self._lost, RemoteError):
                raise self._lost from None
            raise DaemonUnavailable("the connection to the daemon was lost") from None
        try:
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            self._pending.pop(req_id, None)
            raise RequestTimeout(f"{method}: no answer within {timeout:g} s") from None

    def _lost_error(self) -> Exception:
        """Why calls fail now: the daemon's own error (e.g. too_many_clients) when it gave one."""
        if isinstance(self._lost, (DaemonUnavailable, RemoteError)):
            return self._lost
        return DaemonUnavailable(str(self._lost))

    async def subscribe(self, *topics: str) -> list[str]:
        res = await self.call("subscribe", {"topics": list(topics) or ["*"]})
        return list(res["topics"])

    async def events(self) -> AsyncIterator[Event]:
        """Pushed events until the connection ends; then DaemonUnavailable is raised."""
        while True:
            item = await self._events.get()
            if item is _END:
                self._events.put_nowait(_END)  # let other iterators end too
                if self._closed:
                    return
                raise self._lost if isinstance(self._lost, Exception) else DaemonUnavailable("connection lost")
            yield item

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except (ConnectionError, OSError):
            pass
        self._read_task.cancel()
        try:
            await self._read_task
        except asyncio.CancelledError:
            pass


#: Pause between tries while the daemon's listen backlog is full (it drains as the daemon accepts).
_BACKLOG_RETRY = (0.01, 0.02, 0.05, 0.1, 0.2)


async def _connect_unix(path: Path) -> socket.socket:
    """A connected Unix socket. A full backlog makes a non-blocking connect() fail with EAGAIN
    (and asyncio would then hand back a socket that is not connected): wait and try again."""
    tries = 0
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(str(path))
            return sock
        except BlockingIOError as exc:
            sock.close()
            if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                raise
        except BaseException:
            sock.close()
            raise
        await asyncio.sleep(_BACKLOG_RETRY[min(tries, len(_BACKLOG_RETRY) - 1)])
        tries += 1
