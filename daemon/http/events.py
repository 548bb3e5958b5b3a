"""Live events over HTTP: Server-Sent Events with Last-Event-ID replay, and a WebSocket.

An `EventHub` is fed by the daemon's event listener; each client is a bounded queue (`Stream`)
that is dropped, with a `daemon.dropped` event, when it falls too far behind.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

from aiohttp import WSMsgType, web

from dgx_music.common import protocol
from dgx_music.daemon.handlers import HandlerError
from dgx_music.daemon.http.errors import dumps
from dgx_music.daemon.http.query import request_params
from dgx_music.daemon.http.routes import API, ROUTES

#: Events one stream client may fall behind before it is dropped.
STREAM_QUEUE = 1000
KEEPALIVE_SECONDS = 15.0
#: Events kept for SSE clients that reconnect with Last-Event-ID (a few minutes of a busy daemon).
REPLAY_EVENTS = 2000

ROUTE_BY_PATH = {r.path: r for r in ROUTES if r.method == "GET"}


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


class Stream:
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


class EventHub:
    """The HTTP event clients, the replay buffer for Last-Event-ID, and waiters for a job's end."""

    def __init__(self) -> None:
        self.streams: set[Stream] = set()
        # Event ids for SSE are "<epoch>-<seq>": a reconnect after a daemon restart cannot resume
        # into the new daemon's numbering by mistake.
        self.epoch = format(int(time.time() * 1000) & 0xFFFFFFFFFF, "x")
        self.seq = 0
        self.replay: collections.deque[tuple[int, str, dict[str, Any]]] = collections.deque(maxlen=REPLAY_EVENTS)
        self.job_waiters: dict[int, set[asyncio.Future[None]]] = {}

    def on_event(self, name: str, data: dict[str, Any]) -> None:
        self.seq += 1
        self.replay.append((self.seq, name, data))
        event_id = f"{self.epoch}-{self.seq}"
        for s in list(self.streams):
            s.offer(name, data, event_id)
        if name in ("job.finished", "job.cancelled") or name == "job.failed" and not data.get("retrying"):
            for waiter in self.job_waiters.get(data.get("id"), ()):  # type: ignore[arg-type]
                if not waiter.done():
                    waiter.set_result(None)

    def close(self) -> None:
        for s in list(self.streams):
            s.queue.put_nowait(None) if not s.queue.full() else None

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

    def _missed(self, stream: Stream, last: str | None) -> tuple[list[tuple[str, str, dict[str, Any]]], bool]:
        """The buffered events after Last-Event-ID `last` that `stream` wants, and whether some
        were already gone. `0` asks for all the buffered ones (a client that has seen no id yet). Called with the stream registered and no await in between: no event is
        both replayed and queued, or neither."""
        if not last:
            return [], False
        epoch, _, seq_text = last.strip().rpartition("-")
        if last.strip() == "0":  # "from the start": everything this daemon still holds
            epoch, seq_text = self.epoch, "0"
        ours = seq_text.isdigit() and epoch == self.epoch
        after = int(seq_text) if ours else 0
        oldest = self.replay[0][0] if self.replay else self.seq + 1
        gap = not ours or after + 1 < oldest and self.seq > after  # another daemon's id: a restart between
        missed = [(f"{self.epoch}-{seq}", name, data) for seq, name, data in self.replay
                  if seq > after and stream.wants(name, data)]
        return missed, gap

    async def sse(self, request: web.Request) -> web.StreamResponse:
        topics = self._topics(request, allowed=("topics", "job"))
        job = request_params(ROUTE_BY_PATH[f"{API}/events"], request).get("job")
        stream = Stream(topics, job)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        self.streams.add(stream)
        missed, gap = self._missed(stream, request.headers.get("Last-Event-ID"))
        try:
            await resp.write(b": dgx-music event stream\nretry: 2000\n\n")
            if gap:
                await resp.write(f"event: stream.gap\ndata: {dumps({'reason': 'events since Last-Event-ID are no longer buffered (or the daemon restarted); re-read the state you follow'})}\n\n".encode())
            for event_id, name, data in missed:
                await resp.write(f"id: {event_id}\nevent: {name}\ndata: {dumps(data)}\n\n".encode())
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
                await resp.write(f"{head}event: {name}\ndata: {dumps(data)}\n\n".encode())
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            self.streams.discard(stream)
        return resp

    async def ws(self, request: web.Request) -> web.StreamResponse:
        stream = Stream(self._topics(request))
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
                await ws.send_str(dumps({"event": name, "data": data}))
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            self.streams.discard(stream)
            read_task.cancel()
            await ws.close()
        return ws
