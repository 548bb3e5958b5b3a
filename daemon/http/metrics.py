"""Prometheus metrics for the HTTP API's /metrics: counters and histograms kept from daemon events.

Kept apart from the server so the exposition format and the event bookkeeping can be read alone.
"""

from __future__ import annotations

import time
from typing import Any

from dgx_music import __version__


class Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.sum += value
        self.count += 1
        for i, b in enumerate(self.buckets):
            if value <= b:
                self.counts[i] += 1


def _esc(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value)) if isinstance(value, float) and not float(value).is_integer() else str(int(value))


MODEL_STATES = ("unloaded", "loading", "ready", "busy")


class Metrics:
    """Counters and histograms fed by daemon events; gauges read from daemon.status() at scrape time."""

    def __init__(self) -> None:
        self.generation = Histogram((1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800))
        self.rtf = Histogram((0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 4, 8, 16))
        self.load = Histogram((1, 2, 5, 10, 20, 30, 60, 120, 300))
        self.jobs_total: dict[str, int] = {"done": 0, "failed": 0, "cancelled": 0}
        self.submitted = 0
        self.retries = 0
        self.tracks = 0
        self.audio_seconds = 0.0
        self.crashes: dict[str, int] = {}
        self.http: dict[tuple[str, int], int] = {}
        self._started: dict[int, float] = {}
        self._generated: dict[int, float] = {}
        self._audio: dict[int, float] = {}

    def on_event(self, name: str, data: dict[str, Any]) -> None:
        now = time.monotonic()
        job = data.get("id") if name.startswith("job.") else data.get("job_id")
        if name == "job.queued":
            if data.get("attempts", 0) == 0:
                self.submitted += 1
        elif name == "job.started":
            self._started[job] = now
            self._generated.pop(job, None)
            self._audio.pop(job, None)
        elif name == "job.processing":
            self._generated[job] = now
        elif name == "track.added":
            self.tracks += 1
            dur = float(data.get("duration") or 0.0)
            self.audio_seconds += dur
            if job is not None:
                self._audio[job] = self._audio.get(job, 0.0) + dur
        elif name == "job.finished":
            self.jobs_total["done"] += 1
            start = self._started.pop(job, None)
            end = self._generated.pop(job, now)
            audio = self._audio.pop(job, 0.0)
            if start is not None:
                seconds = max(end - start, 0.0)
                self.generation.observe(seconds)
                if audio > 0:
                    self.rtf.observe(seconds / audio)
        elif name == "job.failed":
            if data.get("retrying"):
                self.retries += 1
            else:
                self.jobs_total["failed"] += 1
            self._forget(job)
        elif name == "job.cancelled":
            self.jobs_total["cancelled"] += 1
            self._forget(job)
        elif name == "model.loaded":
            if isinstance(data.get("load_seconds"), (int, float)):
                self.load.observe(float(data["load_seconds"]))
        elif name == "model.crashed":
            reason = str(data.get("reason") or "unknown").split(":")[0].split()[0][:40]
            self.crashes[reason] = self.crashes.get(reason, 0) + 1

    def _forget(self, job: Any) -> None:
        self._started.pop(job, None)
        self._generated.pop(job, None)
        self._audio.pop(job, None)

    def render(self, status: dict[str, Any]) -> str:
        out: list[str] = []

        def family(name: str, kind: str, help_: str, samples: list[tuple[dict[str, Any], float]]) -> None:
            out.append(f"# HELP dgx_music_{name} {help_}")
            out.append(f"# TYPE dgx_music_{name} {kind}")
            for labels, value in samples:
                lab = ",".join(f'{k}="{_esc(v)}"' for k, v in labels.items())
                out.append(f"dgx_music_{name}{{{lab}}} {_num(value)}" if lab else f"dgx_music_{name} {_num(value)}")

        def histogram(name: str, help_: str, h: Histogram) -> None:
            out.append(f"# HELP dgx_music_{name} {help_}")
            out.append(f"# TYPE dgx_music_{name} histogram")
            for b, c in zip(h.buckets, h.counts):
                out.append(f'dgx_music_{name}_bucket{{le="{_num(b)}"}} {c}')
            out.append(f'dgx_music_{name}_bucket{{le="+Inf"}} {h.count}')
            out.append(f"dgx_music_{name}_sum {_num(h.sum)}")
            out.append(f"dgx_music_{name}_count {h.count}")

        family("info", "gauge", "Version of the running daemon.",
               [({"version": status.get("version", __version__), "protocol": status.get("protocol", "")}, 1)])
        family("uptime_seconds", "gauge", "Seconds since the daemon started.", [({}, float(status.get("uptime", 0)))])
        family("clients", "gauge", "Connected socket clients.", [({}, status.get("clients", 0))])
        family("subscribers", "gauge", "Socket clients subscribed to events.", [({}, status.get("subscribers", 0))])
        queue = status.get("queue") or {}
        states = [k for k in ("queued", "running", "processing", "done", "failed", "cancelled") if k in queue]
        states += [k for k in queue if k not in states and k not in ("active", "limit")]
        family("queue_depth", "gauge", "Jobs waiting or running (queued + running + processing).",
               [({}, queue.get("active", sum(queue.get(s, 0) for s in ("queued", "running", "processing"))))])
        if "limit" in queue:
            family("queue_limit", "gauge", "Most jobs waiting or running at once (daemon.queue_limit).",
                   [({}, queue["limit"])])
        family("jobs", "gauge", "Jobs in the database by state.", [({"state": s}, queue.get(s, 0)) for s in states])
        family("jobs_submitted_total", "counter", "Jobs submitted since the daemon started.", [({}, self.submitted)])
        family("jobs_completed_total", "counter", "Jobs that reached a final state since the daemon started.",
               [({"state": s}, n) for s, n in self.jobs_total.items()])
        family("job_retries_total", "counter", "Transient job failures that were retried.", [({}, self.retries)])
        family("tracks_generated_total", "counter", "Tracks added to the library since the daemon started.",
               [({}, self.tracks)])
        family("audio_generated_seconds_total", "counter", "Seconds of audio generated since the daemon started.",
               [({}, self.audio_seconds)])
        histogram("generation_seconds", "Wall-clock seconds from a job's start to the end of generation "
                  "(before post-processing).", self.generation)
        histogram("real_time_factor", "Generation seconds per second of audio produced (below 1: faster "
                  "than real time).", self.rtf)
        histogram("model_load_seconds", "Seconds to load the model.", self.load)
        model = status.get("model") or {}
        current = model.get("state")
        all_states = list(MODEL_STATES) + ([current] if current and current not in MODEL_STATES else [])
        family("model_state", "gauge", "1 for the model's current state.",
               [({"state": s, "model": model.get("model", "")}, 1 if s == current else 0) for s in all_states])
        family("worker_restarts_total", "counter", "Times the model worker process was restarted.",
               [({}, model.get("restarts") or 0)])
        family("worker_crashes_total", "counter", "Model worker crashes seen since the daemon started, by reason.",
               [({"reason": r}, n) for r, n in sorted(self.crashes.items())] or [({"reason": "none"}, 0)])
        mem = model.get("memory") or {}
        gpu = [({"kind": k}, mem[f"cuda_{k}"]) for k in ("allocated", "total") if mem.get(f"cuda_{k}") is not None]
        family("gpu_memory_bytes", "gauge", "GPU memory of the model worker (allocated by torch; device total).",
               gpu or [({"kind": "allocated"}, 0)])
        family("worker_rss_bytes", "gauge", "Resident memory of the model worker process.",
               [({}, mem.get("rss") or 0)])
        family("http_requests_total", "counter", "HTTP API requests by route and status code.",
               [({"route": r, "code": c}, n) for (r, c), n in sorted(self.http.items())])
        return "\n".join(out) + "\n"
