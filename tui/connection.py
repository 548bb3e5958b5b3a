"""The connection worker: owns the Client, reconnects forever, posts messages.

Runs as an asyncio worker on the App's loop (the client is asyncio, and the
work per event is tiny). It never touches a widget: it posts `Connected`,
`Disconnected` and `DaemonEvent`/`JobProgress` messages to the App.

Order on (re)connect: subscribe first, then fetch the snapshot, so no event
between the two is lost (events that arrive meanwhile are queued by the client
and applied after the snapshot; applying them twice is harmless).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, Awaitable, Callable

from textual.message import Message

from dgx_music.common.client import START_HINT, Client, DaemonUnavailable, RemoteError, RequestTimeout
from dgx_music.tui.messages import Connected, Disconnected, Snapshot, event_message

log = logging.getLogger("dgx_music.tui")

ConnectFn = Callable[[Path], Awaitable[Any]]
#: Seconds between reconnect attempts (the last one repeats).
RETRY_DELAYS = (0.25, 0.5, 1.0)


class NotConnected(DaemonUnavailable):
    """An action needs the daemon while the TUI is (re)connecting."""


async def _default_connect(path: Path) -> Client:
    return await Client.connect(path, timeout=3.0)


class DaemonLink:
    """The live link to the daemon; `client` is None while disconnected."""

    def __init__(self, socket: Path, post: Callable[[Message], Any], *,
                 connect: ConnectFn | None = None, retry_delays: tuple[float, ...] = RETRY_DELAYS) -> None:
        self.socket = Path(socket)
        self.post = post
        self.connect = connect or _default_connect
        self.retry_delays = retry_delays
        self.client: Any = None
        self.methods: set[str] = set()
        self._wake = asyncio.Event()

    async def call(self, method: str, params: dict[str, Any] | None = None, *, timeout: float = 30.0) -> Any:
        client = self.client
        if client is None:
            raise NotConnected(f"not connected to the daemon; {START_HINT}")
        return await client.call(method, params, timeout=timeout)

    def retry_now(self) -> None:
        self._wake.set()

    async def _optional(self, client: Any, method: str, params: dict[str, Any] | None, default: Any) -> Any:
        """A snapshot part a daemon may not have yet (an older daemon): missing is not fatal."""
        try:
            return await client.call(method, params, timeout=10.0)
        except RemoteError as exc:
            if exc.code in ("unknown_method", "not_found"):
                return default
            raise

    async def snapshot(self, client: Any) -> Snapshot:
        hello = await self._optional(client, "hello", {"client": "dgx-music tui"}, {})
        status, model, jobs, prompts, models = await asyncio.gather(
            client.call("status", timeout=10.0),
            self._optional(client, "model.state", None, None),
            self._optional(client, "job.list", {"all": True, "limit": 200}, {"jobs": []}),
            self._optional(client, "prompt.history", {"limit": 100}, {"prompts": []}),
            self._optional(client, "model.list", None, {"models": []}),
        )
        return Snapshot(socket=str(self.socket), status=status or {},
                        model=model if model is not None else (status or {}).get("model"),
                        jobs=list((jobs or {}).get("jobs", [])), prompts=list((prompts or {}).get("prompts", [])),
                        models=list((models or {}).get("models", [])), methods=list(hello.get("methods", [])))

    async def run(self) -> None:
        """Connect, stream, and on any loss say so and try again, forever."""
        attempt = 0
        while True:
            reason = ""
            client = None
            try:
                client = await self.connect(self.socket)
                await client.subscribe("*")
                snap = await self.snapshot(client)
                self.methods = set(snap.methods)
                self.client = client
                attempt = 0
                self.post(Connected(snap))
                async for ev in client.events():
                    self.post(event_message(ev.name, ev.data))
                reason = "the daemon closed the connection"
            except (DaemonUnavailable, RequestTimeout, OSError) as exc:
                reason = str(exc) or type(exc).__name__
            except RemoteError as exc:
                reason = f"the daemon refused: {exc.message} [{exc.code}]"
            except asyncio.CancelledError:
                if client is not None:
                    await _close_quietly(client)
                raise
            except Exception as exc:  # a bug here must not kill the TUI: log it and retry
                log.exception("connection worker")
                reason = f"unexpected error: {exc}"
            self.client = None
            if client is not None:
                await _close_quietly(client)
            delay = self.retry_delays[min(attempt, len(self.retry_delays) - 1)]
            attempt += 1
            self.post(Disconnected(reason, attempt, delay))
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except asyncio.TimeoutError:
                pass


async def _close_quietly(client: Any) -> None:
    try:
        await client.close()
    except Exception:
        pass
