"""The daemon's side of streaming preview: keep each running job's streamed audio, hand it to listeners.

The engine sends chunks of a MusicGen clip as it is made (engine/streaming.py). Here each job
keeps a buffer per variation, so a client that starts listening late first gets everything made
so far (the backlog, sent with backpressure), then the live chunks. Job events end the stream
with a reason. Ended streams are kept a few minutes, so `generate --listen` still hears a job
that finished before it asked. Also publishes `job.stream` (seconds ready), at most twice a second
per job. All of it runs on the event loop and only copies bytes: no decoding, nothing blocking.

Wire format: see docs/protocol.md, "Streaming audio".
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from dgx_music.common import protocol

if TYPE_CHECKING:
    from dgx_music.daemon.app import Daemon

log = logging.getLogger("dgx_music.stream")

FORMATS = ("f32", "s16")
KEEP_ENDED_SECONDS = 300.0  # an ended stream stays this long for late listeners
MAX_ENDED = 4  # ... and at most this many ended streams are kept
BACKLOG_PIECE_SECONDS = 1.0  # the backlog goes out in pieces of this much audio
READY_EVENT_INTERVAL = 0.5  # job.stream at most this often per job


def encode(audio: np.ndarray, fmt: str) -> bytes:
    """[channels, n] float32 -> interleaved little-endian PCM bytes."""
    inter = np.ascontiguousarray(audio.T)
    if fmt == "s16":
        return (np.clip(inter, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()
    return inter.astype("<f4").tobytes()


@dataclass
class Listener:
    conn: Any
    variation: int
    fmt: str
    live: bool = False  # False while its backlog is being sent
    ended: bool = False


@dataclass
class JobStream:
    job_id: int
    sample_rate: int | None = None
    channels: int | None = None
    buffers: dict[int, np.ndarray] = field(default_factory=dict)  # variation -> [channels, capacity]
    lengths: dict[int, int] = field(default_factory=dict)
    listeners: list[Listener] = field(default_factory=list)
    end_reason: str | None = None
    end_message: str = ""
    ended_at: float = 0.0
    last_ready_event: float = 0.0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def ready(self, variation: int = 0) -> int:
        return self.lengths.get(variation, 0)

    def write(self, variation: int, offset: int, audio: np.ndarray) -> None:
        """Place [channels, n] at `offset`; what followed it is dropped (an engine retry starts over)."""
        end = offset + audio.shape[-1]
        buf = self.buffers.get(variation)
        if buf is None or buf.shape[0] != audio.shape[0] or buf.shape[-1] < end:
            cap = max(end, 2 * (0 if buf is None else buf.shape[-1]), 32000 * 8)
            grown = np.zeros((audio.shape[0], cap), dtype=np.float32)
            if buf is not None and buf.shape[0] == audio.shape[0]:
                keep = min(self.lengths.get(variation, 0), offset)
                grown[:, :keep] = buf[:, :keep]
            buf = self.buffers[variation] = grown
        buf[:, offset:end] = audio
        self.lengths[variation] = end


class StreamRelay:
    def __init__(self, daemon: "Daemon") -> None:
        self.daemon = daemon
        self.jobs: dict[int, JobStream] = {}
        daemon.events.listen(self._on_event)

    # -- from the engine ---------------------------------------------------------------------
    def on_audio(self, chunk: dict[str, Any]) -> None:
        """A chunk from the supervisor: {job_id, variation, offset, sample_rate, audio [B, C, n]}."""
        job_id = int(chunk["job_id"])
        js = self.jobs.get(job_id)
        if js is None or js.end_reason is not None:
            js = self.jobs[job_id] = JobStream(job_id)
        audio = chunk["audio"]
        js.sample_rate, js.channels = int(chunk["sample_rate"]), int(audio.shape[1])
        first, offset = int(chunk["variation"]), int(chunk["offset"])
        for i in range(audio.shape[0]):
            js.write(first + i, offset, audio[i])
        frames: dict[tuple[int, str], bytes] = {}
        for lst in list(js.listeners):
            v = lst.variation - first
            if not lst.live or not 0 <= v < audio.shape[0]:
                continue
            if lst.conn.closed:
                js.listeners.remove(lst)
                continue
            key = (lst.variation, lst.fmt)
            if key not in frames:
                frames[key] = protocol.pack(protocol.event("job.audio", self._chunk_data(
                    js, lst.variation, offset, audio[v], lst.fmt)))
            lst.conn.push(frames[key])
        js.changed.set()
        now = time.monotonic()
        if now - js.last_ready_event >= READY_EVENT_INTERVAL:
            js.last_ready_event = now
            self._publish_ready(js)

    # -- job lifecycle, from the daemon's own events -----------------------------------------
    def _on_event(self, name: str, data: dict[str, Any]) -> None:
        job_id = data.get("id")
        if not isinstance(job_id, int):
            return
        if name == "job.started":
            old = self.jobs.get(job_id)
            js = self.jobs[job_id] = JobStream(job_id)
            if old is not None:  # a retried job: its listeners keep listening to the new run
                js.listeners = [lst for lst in old.listeners if not lst.ended]
            return
        reason = {"job.processing": "complete", "job.finished": "complete", "job.cancelled": "cancelled",
                  "job.failed": "failed"}.get(name)
        if reason is None:
            return
        js = self.jobs.get(job_id)
        if js is not None and js.end_reason is None:
            message = str(data.get("error") or "")
            if name == "job.failed" and data.get("retrying"):
                message = (message + "; " if message else "") + "it will run again (listen again then)"
            self._end(js, reason, message)

    def _end(self, js: JobStream, reason: str, message: str) -> None:
        js.end_reason, js.end_message, js.ended_at = reason, message, time.monotonic()
        self._publish_ready(js)
        for lst in list(js.listeners):
            if lst.live and not lst.ended:
                self._send_end(js, lst)
        js.changed.set()
        self._prune()

    def _send_end(self, js: JobStream, lst: Listener) -> None:
        lst.ended = True
        if lst.conn.closed:
            return
        lst.conn.push(protocol.pack(protocol.event("job.audio_end", {
            "job_id": js.job_id, "variation": lst.variation, "reason": js.end_reason, "message": js.end_message,
            "samples": js.ready(lst.variation), "sample_rate": js.sample_rate, "channels": js.channels})))
        lst.conn.topics.discard(f"audio:{js.job_id}")

    def _prune(self) -> None:
        now = time.monotonic()
        ended = sorted((js.ended_at, jid) for jid, js in self.jobs.items() if js.end_reason is not None)
        for i, (at, jid) in enumerate(ended):
            if now - at > KEEP_ENDED_SECONDS or i < len(ended) - MAX_ENDED:
                self.jobs.pop(jid, None)

    def _publish_ready(self, js: JobStream) -> None:
        if js.sample_rate:
            self.daemon.publish("job.stream", {"id": js.job_id, "seconds": round(js.ready(0) / js.sample_rate, 2),
                                               "sample_rate": js.sample_rate, "ended": js.end_reason})

    # -- for the handler and the queue view ---------------------------------------------------
    def ready_seconds(self, job_id: int) -> float | None:
        js = self.jobs.get(job_id)
        if js is None or not js.sample_rate:
            return None
        return round(js.ready(0) / js.sample_rate, 2)

    def has(self, job_id: int) -> bool:
        self._prune()
        return job_id in self.jobs

    def listen(self, conn: Any, job_id: int, variation: int, fmt: str) -> dict[str, Any]:
        """Add a listener; its backlog (then its end, if the job already ended) follows the answer."""
        js = self.jobs.get(job_id)
        if js is None:  # queued: the chunks come when it runs
            js = self.jobs[job_id] = JobStream(job_id)
        lst = Listener(conn, variation, fmt)
        js.listeners.append(lst)
        conn.topics.add(f"audio:{job_id}")  # a connection that waits for audio may stay quiet
        asyncio.get_running_loop().create_task(self._backlog(js, lst), name=f"stream-backlog-{job_id}")
        return {"job_id": job_id, "variation": variation, "format": fmt, "sample_rate": js.sample_rate,
                "channels": js.channels, "ready_samples": js.ready(variation), "ended": js.end_reason}

    async def _backlog(self, js: JobStream, lst: Listener) -> None:
        """Send what is buffered in pieces, waiting for the client to read; then go live."""
        await asyncio.sleep(0)  # after the answer to job.listen
        sent = 0
        try:
            while not lst.conn.closed:
                ready = js.ready(lst.variation)
                if sent >= ready:
                    break
                piece = int((js.sample_rate or 32000) * BACKLOG_PIECE_SECONDS)
                end = min(ready, sent + piece)
                audio = js.buffers[lst.variation][:, sent:end]
                await lst.conn.send(protocol.event("job.audio", self._chunk_data(js, lst.variation, sent, audio,
                                                                               lst.fmt)))
                sent = end
        finally:
            current = self.jobs.get(js.job_id)
            lst.live = True  # synchronously after the last check: no chunk can fall in between
            if current is not None and current is not js:  # restarted meanwhile: follow the new run
                if lst in js.listeners:
                    js.listeners.remove(lst)
                current.listeners.append(lst)
            elif js.end_reason is not None and not lst.ended:
                self._send_end(js, lst)

    @staticmethod
    def _chunk_data(js: JobStream, variation: int, offset: int, audio: np.ndarray, fmt: str) -> dict[str, Any]:
        return {"job_id": js.job_id, "variation": variation, "offset": offset, "frames": int(audio.shape[-1]),
                "sample_rate": js.sample_rate, "channels": int(audio.shape[0]), "format": fmt,
                "pcm": encode(audio, fmt)}
