"""A scripted stand-in for the daemon's Client, with fixed data, for snapshots and fast tests.

Only what the TUI calls is implemented; answers follow docs/protocol.md. Every
value is fixed (no clock, no random ids), so screenshots are reproducible.
"""

from __future__ import annotations

import asyncio
import math
import random
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from dgx_music.common.client import DaemonUnavailable, Event
from dgx_music.common.protocol import RemoteError

T0 = 1767225600.0  # 2026-01-01 00:00:00 UTC
GIB = 1024 ** 3

PROMPTS = [
    "lofi hip hop, warm piano, vinyl crackle",
    "dark techno, rolling bassline, 128 bpm",
    "cinematic strings swelling into a brass fanfare",
    "ambient pads with distant rain and soft bells",
    "funky bass and clavinet groove, 70s",
    "dreamy synthwave with a gated snare",
]
KEYS = ["A minor", "C major", "F# minor", "D major", "E minor", "G major"]


def peaks(n: int, seed: int) -> list[list[float]]:
    out = []
    for i in range(n):
        env = 0.25 + 0.7 * abs(math.sin(i / n * math.pi * (2 + seed % 3)))
        wob = 0.85 + 0.15 * math.sin(i * 0.9 + seed)
        out.append([-env * wob, env * (0.9 + 0.1 * math.cos(i * 1.3))])
    return out


def make_tracks(n: int) -> list[dict[str, Any]]:
    rng = random.Random(7)
    tracks = []
    for i in range(n):
        job, idx = divmod(i, 2)
        prompt = PROMPTS[job % len(PROMPTS)]
        tracks.append({
            "id": f"{job + 1}-{idx}", "job_id": job + 1, "index": idx,
            "path": f"tracks/{job + 1:06d}/{job + 1}-{idx}.wav", "prompt": prompt,
            "title": prompt if idx == 0 else f"{prompt} (take {idx + 1})",
            "model": "facebook/musicgen-small" if job % 3 else "facebook/musicgen-medium",
            "backend": "transformers", "seed": 1000 + i,
            "params": {"duration": 8.0, "temperature": 1.0, "top_k": 250, "top_p": 0.0, "cfg": 3.0},
            "duration": 8.0 + (i % 5), "sample_rate": 32000, "channels": 1,
            "created": T0 + i * 3600.0, "lufs_before": -20.5, "lufs": -14.0, "true_peak": -1.2,
            "gain_db": 6.5, "loudness_note": None, "bpm": round(rng.uniform(70, 150), 1),
            "bpm_confidence": 0.8, "key": KEYS[i % len(KEYS)], "key_confidence": 0.7,
            "tags": ["keeper"] if i % 4 == 0 else [], "rating": i % 6, "favorite": i % 5 == 0,
            "notes": "try it with drums" if i % 7 == 0 else "",
        })
    return tracks


def make_jobs() -> list[dict[str, Any]]:
    base = {"params": {"duration": 8.0}, "count": 1, "model": "facebook/musicgen-small", "attempts": 1,
            "max_attempts": 3, "error": None, "track_ids": [], "progress": None}
    return [
        {**base, "id": 12, "state": "running", "prompt": PROMPTS[0], "seed": 11, "position": 1,
         "created": T0, "started": T0 + 1, "finished": None,
         "progress": {"step": 150, "total": 400, "elapsed": 6.2, "eta": 10.3}},
        {**base, "id": 13, "state": "queued", "prompt": PROMPTS[1], "seed": 12, "position": 2, "count": 2,
         "created": T0 + 2, "started": None, "finished": None},
        {**base, "id": 14, "state": "queued", "prompt": PROMPTS[2], "seed": 13, "position": 3,
         "created": T0 + 3, "started": None, "finished": None},
        {**base, "id": 11, "state": "done", "prompt": PROMPTS[3], "seed": 10, "position": 0,
         "created": T0 - 60, "started": T0 - 50, "finished": T0 - 20, "track_ids": ["11-0"]},
        {**base, "id": 10, "state": "failed", "prompt": PROMPTS[4], "seed": 9, "position": 0,
         "created": T0 - 120, "started": T0 - 110, "finished": T0 - 100,
         "error": "engine_error: out of GPU memory (oom)"},
        {**base, "id": 9, "state": "cancelled", "prompt": PROMPTS[5], "seed": 8, "position": 0,
         "created": T0 - 200, "started": None, "finished": T0 - 190},
    ]


class FakeDaemon:
    """Holds the data; `connect` hands out FakeClients (set `up = False` to refuse)."""

    def __init__(self, n_tracks: int = 60, *, jobs: list[dict[str, Any]] | None = None) -> None:
        self.tracks = make_tracks(n_tracks)
        self.jobs = make_jobs() if jobs is None else jobs
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.clients: list[FakeClient] = []
        self.up = True
        self.model_state = {"model": "facebook/musicgen-small", "backend": "transformers", "state": "ready",
                            "device": "cuda:0", "worker_pid": 4243, "restarts": 0,
                            "memory": {"rss": int(1.5 * GIB), "cuda_allocated": int(2.25 * GIB),
                                       "cuda_total": 128 * GIB}}
        self.next_job = 100
        self.lineage: dict[str, dict[str, Any]] = {}  # track.lineage answers by track id
        self.delay = 0.0
        self.total_bound: int | None = None  # like the store's TOTAL_EXACT_MAX: totals past it are "N+"
        self.audio: dict[str, bytes] = {}  # track.audio bytes by track id (real audio files); else a stub blob
        self.styles: list[dict[str, Any]] = []  # style.list's answer
        self.stale_since: float | None = None  # set: the database is away; library reads answer stale

    async def connect(self, path: Path) -> "FakeClient":
        if not self.up:
            raise DaemonUnavailable(f"no daemon socket at {path}; start it with `dgx-music daemon`")
        c = FakeClient(self, path)
        self.clients.append(c)
        return c

    def push(self, name: str, data: dict[str, Any]) -> None:
        for c in self.clients:
            if c.subscribed and not c.closed:
                c.events_q.put_nowait(Event(name, data))

    def drop(self) -> None:
        """The daemon goes away: every connection ends."""
        self.up = False
        for c in self.clients:
            c.lose()

    def methods_called(self, name: str) -> list[dict[str, Any]]:
        return [p for m, p in self.calls if m == name]

    # ------------------------------------------------------------------ answers

    def answer(self, method: str, p: dict[str, Any]) -> Any:
        if method == "hello":
            return {"protocol": 1, "version": "0.1.0", "methods": ["status", "job.submit", "track.list"],
                    "topics": ["job", "track", "model", "daemon"], "max_frame": 8 << 20}
        if method == "status":
            return {"version": "0.1.0", "protocol": 1, "pid": 4242, "uptime": 10.0,
                    "data_dir": "/nonexistent/dgx-music-data", "socket": "/nonexistent/daemon.sock",
                    "clients": 1, "subscribers": 1, "model": self.model_state,
                    "queue": {"queued": 2, "running": 1}}
        if method == "model.state":
            return self.model_state
        if method == "model.list":
            return {"models": [{"name": "facebook/musicgen-small", "cached": True, "loaded": True},
                               {"name": "facebook/musicgen-medium", "cached": False, "loaded": False},
                               {"name": "melody", "cached": False, "loaded": False}]}
        if method == "job.list":
            return {"jobs": [dict(j) for j in self.jobs]}
        if method == "job.get":
            for j in self.jobs:
                if j["id"] == p.get("id"):
                    return dict(j)
            raise RemoteError("not_found", f"no job {p.get('id')}")
        if method == "job.submit":
            self.next_job += 1
            job = {"id": self.next_job, "state": "queued", "prompt": p["prompt"], "params": dict(p),
                   "count": p.get("count", 1), "seed": p.get("seed", 777), "model": p.get("model"),
                   "position": 9, "attempts": 0, "max_attempts": 3, "error": None, "created": T0,
                   "started": None, "finished": None, "track_ids": [], "progress": None}
            self.jobs.append(job)
            return job
        if method in ("job.cancel", "job.retry", "job.move"):
            for j in self.jobs:
                if j["id"] == p.get("id"):
                    if method == "job.cancel":
                        j["state"] = "cancelled"
                    elif method == "job.retry":
                        j["state"] = "queued"
                    return dict(j)
            raise RemoteError("not_found", f"no job {p.get('id')}")
        if method.startswith("op."):  # an operation on a track: queued as a job, as the daemon does
            self.next_job += 1
            job = {"id": self.next_job, "state": "queued", "prompt": p.get("prompt") or method[3:],
                   "params": dict(p), "count": 1, "seed": 777, "model": None, "position": 9, "attempts": 0,
                   "max_attempts": 3, "error": None, "created": T0, "started": None, "finished": None,
                   "track_ids": [], "progress": None, "operation": method[3:]}
            self.jobs.append(job)
            return job
        if method == "track.lineage":
            self.track(p.get("id"))
            return self.lineage.get(p["id"], {"id": p["id"], "source": None, "derived": []})
        if method == "prompt.history":
            return {"prompts": list(dict.fromkeys(j["prompt"] for j in self.jobs))}
        if method == "track.list":
            page = self.track_list(p)
            return {**page, "stale": True, "stale_since": self.stale_since} if self.stale_since else page
        if method in ("track.get", "track.peaks"):
            t = self.track(p.get("id"))
            return {**t, "peaks": peaks(200, t["seed"])}
        if method == "track.update":
            t = self.track(p.get("id"))
            for k in ("title", "rating", "favorite", "notes"):
                if k in p:
                    t[k] = p[k]
            t["tags"] = sorted((set(t["tags"]) | set(p.get("tags_add", []))) - set(p.get("tags_remove", [])))
            return dict(t)
        if method == "track.delete":
            t = self.track(p.get("id"))
            self.tracks.remove(t)
            return {"id": t["id"], "trashed": "trash/x"}
        if method == "track.audio":
            self.track(p.get("id"))
            blob = self.audio.get(str(p.get("id"))) or b"RIFF" + bytes(range(256)) * 4
            off = int(p.get("offset", 0))
            size = int(p.get("size", 262144))
            data = blob[off:off + size]
            return {"data": data, "offset": off, "total": len(blob), "eof": off + len(data) >= len(blob),
                    "format": "wav"}
        if method == "subscribe":
            return {"topics": ["daemon", "job", "model", "track"]}
        if method == "style.list":
            return {"styles": list(self.styles)}
        if method == "style.train":
            self.next_job += 1
            return {"id": self.next_job, "state": "queued", "prompt": f"style {p['name']}", "params": dict(p)}
        if method == "style.delete":
            before = len(self.styles)
            self.styles = [x for x in self.styles if x["name"] != p.get("name")]
            if len(self.styles) == before:
                raise RemoteError("not_found", f"there is no style {p.get('name')}")
            return {"deleted": p["name"]}
        raise RemoteError("unknown_method", f"unknown method {method!r}")

    def track(self, tid: Any) -> dict[str, Any]:
        for t in self.tracks:
            if t["id"] == tid:
                return t
        raise RemoteError("not_found", f"no track {tid!r}")

    def track_list(self, p: dict[str, Any]) -> dict[str, Any]:
        rows = list(self.tracks)
        if p.get("search"):
            words = str(p["search"]).lower().split()
            rows = [t for t in rows if all(w in (t["prompt"] + " " + t["title"] + " " + " ".join(t["tags"])
                                                 + " " + t["notes"]).lower() for w in words)]
        if p.get("favorite"):
            rows = [t for t in rows if t["favorite"]]
        if p.get("tag"):
            rows = [t for t in rows if p["tag"] in t["tags"]]
        if p.get("key"):
            rows = [t for t in rows if t["key"] == p["key"]]
        if p.get("model"):
            rows = [t for t in rows if t["model"] == p["model"]]
        if p.get("bpm_min") is not None:
            rows = [t for t in rows if t["bpm"] >= p["bpm_min"]]
        if p.get("bpm_max") is not None:
            rows = [t for t in rows if t["bpm"] <= p["bpm_max"]]
        sort = p.get("sort", "created")
        key: Any = lambda t: (t[sort] if t[sort] is not None else 0, t["id"])
        if sort == "relevance":  # like the daemon: needs a search; title and tags count most, notes least
            if not p.get("search"):
                raise RemoteError("invalid_params", "sort: relevance needs a search", {"field": "sort"})
            weights = {"title": 3, "prompt": 2, "notes": 1}
            score = {t["id"]: sum(w * t[k].lower().count(word) for word in words for k, w in weights.items())
                     + sum(3 * tag.count(word) for word in words for tag in t["tags"]) for t in rows}
            key = lambda t: (score[t["id"]], t["id"])
        rows.sort(key=key, reverse=p.get("order") != "asc")
        start = int(p.get("cursor") or 0)
        limit = int(p.get("limit", 50))
        page = rows[start:start + limit]
        nxt = str(start + limit) if start + limit < len(rows) else None
        total, exact = len(rows), True
        if self.total_bound is not None and total > self.total_bound:
            total, exact = self.total_bound, False
        return {"tracks": [dict(t) for t in page], "next_cursor": nxt,
                "total": total if not p.get("cursor") else None, "total_exact": exact if not p.get("cursor") else None}


class FakeClient:
    def __init__(self, daemon: FakeDaemon, path: Path) -> None:
        self.daemon = daemon
        self.path = path
        self.events_q: asyncio.Queue[Any] = asyncio.Queue()
        self.subscribed = False
        self.closed = False
        self.lost = False

    async def call(self, method: str, params: dict[str, Any] | None = None, *, timeout: float | None = 30.0) -> Any:
        if self.lost or self.closed:
            raise DaemonUnavailable("the connection to the daemon was lost")
        p = dict(params or {})
        self.daemon.calls.append((method, p))
        if self.daemon.delay:
            await asyncio.sleep(self.daemon.delay)
        if method == "subscribe":
            self.subscribed = True
        return self.daemon.answer(method, p)

    async def subscribe(self, *topics: str) -> list[str]:
        return (await self.call("subscribe", {"topics": list(topics)}))["topics"]

    async def events(self) -> Any:
        while True:
            item = await self.events_q.get()
            if item is None:
                raise DaemonUnavailable("the daemon closed the connection")
            yield item

    def lose(self) -> None:
        self.lost = True
        self.events_q.put_nowait(None)

    async def close(self) -> None:
        self.closed = True


class FakeProc:
    """Stands in for a player process; records the command it was started with."""

    pid = 999999
    started: list[list[str]] = []

    def __init__(self, cmd: list[str], **kw: Any) -> None:
        FakeProc.started.append(list(cmd))
        self.rc: int | None = None

    def poll(self) -> int | None:
        return self.rc

    def terminate(self) -> None:
        self.rc = -15

    def wait(self, timeout: float | None = None) -> int:
        return self.rc or 0


def stub_player_process(monkeypatch: Any, player_name: str) -> list[list[str]]:
    """Make `player_name` the only player found, started as a FakeProc. Only the player
    module's view of shutil/subprocess changes: the daemon's model worker still spawns."""
    from dgx_music.tui import player as player_mod

    FakeProc.started = []
    monkeypatch.setattr(player_mod, "shutil", SimpleNamespace(
        which=lambda name: f"/usr/bin/{name}" if name == player_name else None))
    monkeypatch.setattr(player_mod, "subprocess", SimpleNamespace(
        Popen=FakeProc, DEVNULL=subprocess.DEVNULL, TimeoutExpired=subprocess.TimeoutExpired))
    return FakeProc.started
