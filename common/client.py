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
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

from dgx_music.common import paths, protocol
from dgx_music.common.protocol import RemoteError

__all__ = ["Client", "DaemonUnavailable", "Event", "RemoteError", "RequestTimeout"]

START_HINT = "start it with `dgx-music daemon` (or `systemctl --user start dgx-music`)"


class DaemonUnavailable(ConnectionError):
    """No daemon answers on the socket, or the connection to it was lost."""


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
        sock = Path(path) if path else paths.default_socket()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(str(sock), limit=2**16), timeout)
        except FileNotFoundError:
            raise DaemonUnavailable(f"no daemon socket at {sock}; {START_HINT}") from None
        except ConnectionRefusedError:
            raise DaemonUnavailable(f"nothing is listening on {sock} (a stale socket?); {START_HINT}") from None
        except PermissionError:
            raise DaemonUnavailable(f"permission denied on {sock}: the daemon belongs to another user") from None
        except asyncio.TimeoutError:
            raise DaemonUnavailable(f"timed out connecting to {sock}") from None
        except OSError as exc:
            raise DaemonUnavailable(f"cannot connect to {sock}: {exc.strerror or exc}") from None
        return cls(reader, writer, sock, max_frame)

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
            raise self._lost if isinstance(self._lost, DaemonUnavailable) else DaemonUnavailable(str(self._lost))
        req_id = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = fut
        try:
            self._writer.write(protocol.pack(protocol.request(req_id, method, params)))
            await self._writer.drain()
        except (ConnectionError, OSError):
            self._pending.pop(req_id, None)
            raise DaemonUnavailable("the connection to the daemon was lost") from None
        try:
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            self._pending.pop(req_id, None)
            raise RequestTimeout(f"{method}: no answer within {timeout:g} s") from None

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
